/**
 * The score model of an evaluation command, from flags:
 *   --config PRESET|FILE.json --weights W.safetensors   a trained NCSN++ network
 *   --config PRESET|FILE.json --init-seed N             a randomly initialised (UNTRAINED) network, for plumbing
 *   --model analytic:TYPE [--model-file SPEC.json]      a closed-form model (model/analytic-models.ts): exact
 *                                                       scores and log p_t, to validate the pipeline
 *
 * Analytic model types and their --model-file JSON (unknown keys are errors; all types also take
 * "sde": "vp" | "subvp" (default vp), "betaMin" (0.1), "betaMax" (20) and "centered" (default false: the model
 * space of pixel input is [0, 1), SPEC §1)):
 *   analytic:gaussian  {"shape": [C, H, W], "mean": number | number[D], "variance": s²}  — unconditional N(μ, s²I)
 *   analytic:mixture   {"shape": [C, H, W], "classes": [[{"mean": …, "variance": s², "weight"?: w}, …], …],
 *                       "conditional"?: bool (default: more than one class), "classNames"?: [string, …]}
 *                      — class y is Σ_c w_yc·N(μ_yc, s²_yc·I); every class has the same number of components.
 * Without --model-file the built-in defaults are used (see DEFAULT_ANALYTIC): a 1×4×4 N(0.5, 0.02·I), and a
 * 4-class mixture of 2 components per class on 1×4×4 whose classes overlap (Bayes accuracy ≈ 0.67 on its samples), so that
 * Hutchinson noise visibly changes decisions.
 */
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import type { Engine } from '../engine/engine.js';
import { readFileBytes } from '../engine/files.js';
import { HostRng } from '../engine/rng.js';
import { loadPreset, parseConfig, presetNames, type NcsnppConfig } from '../model/config.js';
import { NetworkScoreModel, type ScoreModel } from '../model/score.js';
import { createSde } from '../model/sde.js';
import { hostWeightsFromBytes, initWeights, uploadWeights } from '../model/weights.js';
import { GaussianMixtureScoreModel, type GaussianComponent, type GaussianMixtureSpec } from '../model/analytic-models.js';
import { valueFlags, type FlagReader, type FlagValues } from './flag-reader.js';

export const MODEL_FLAGS = valueFlags('config', 'weights', 'init-seed', 'model', 'model-file');

export const ANALYTIC_MODEL_TYPES = {
  'analytic:gaussian': 'unconditional isotropic Gaussian N(μ, s²I): {"shape", "mean", "variance"}',
  'analytic:mixture': 'class-conditional Gaussian mixture: {"shape", "classes": [[{"mean", "variance", "weight"?}]], "conditional"?, "classNames"?}',
} as const;
export type AnalyticModelType = keyof typeof ANALYTIC_MODEL_TYPES;

export const MODEL_USAGE = `model (one of):
  --config PRESET|FILE.json --weights W.safetensors   trained NCSN++ network (presets: ${presetNames().join(', ')})
  --config PRESET|FILE.json --init-seed N             random UNTRAINED network (pipeline checks only)
  --model TYPE [--model-file SPEC.json]               analytic model with exact answers; TYPE:
${Object.entries(ANALYTIC_MODEL_TYPES)
  .map(([k, v]) => `      ${k.padEnd(18)} ${v}`)
  .join('\n')}
      (optional keys for both: "sde": "vp"|"subvp", "betaMin", "betaMax", "centered"; no file = built-in default)`;

export interface LoadedModel {
  model: ScoreModel;
  kind: 'network' | 'analytic';
  /** How the model was named on the command line, e.g. "analytic:mixture" or "mnist-small + w.safetensors". */
  source: string;
  /** One line for humans (and the output file). */
  description: string;
  /** A randomly initialised network: numbers are meaningless except as a pipeline check. */
  untrained: boolean;
  /** Model space of pixel input (SPEC §1). */
  centered: boolean;
  classNames?: string[];
  /** The analytic model (exact log p_t, Bayes posterior), or null for a network. */
  analytic: GaussianMixtureScoreModel | null;
  /** Provenance of a weights file: its metadata (training step, raw/EMA, …; not the config) and sha256. */
  weightsInfo?: Record<string, string>;
  dispose(): void;
}

export function usesModelFlags(values: FlagValues): boolean {
  return Object.keys(MODEL_FLAGS).some((k) => values[k] !== undefined);
}

// ---------------------------------------------------------------------------------------------------------------
// Analytic model files

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

class SpecReader {
  constructor(private readonly source: string) {}
  fail(path: string, msg: string): never {
    throw new Error(`${this.source}: ${path}: ${msg}`);
  }
  object(v: Json | undefined, path: string, keys: readonly string[]): Record<string, Json> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, `expected a JSON object, got ${JSON.stringify(v)}`);
    const extra = Object.keys(v).filter((k) => !keys.includes(k));
    if (extra.length) this.fail(path, `unknown key${extra.length > 1 ? 's' : ''} ${extra.map((k) => `'${k}'`).join(', ')} (known: ${keys.join(', ')})`);
    return v;
  }
  number(v: Json | undefined, path: string, check: (x: number) => boolean = Number.isFinite, what = 'a finite number'): number {
    if (typeof v !== 'number' || !check(v)) this.fail(path, `expected ${what}, got ${JSON.stringify(v)}`);
    return v;
  }
  shape(v: Json | undefined, path: string): [number, number, number] {
    if (!Array.isArray(v) || v.length !== 3) this.fail(path, `expected [C, H, W], got ${JSON.stringify(v)}`);
    return v.map((x, i) => this.number(x, `${path}[${i}]`, (n) => Number.isInteger(n) && n >= 1, 'a positive integer')) as [number, number, number];
  }
  vector(v: Json | undefined, path: string, D: number): Float64Array {
    if (typeof v === 'number') return new Float64Array(D).fill(this.number(v, path));
    if (!Array.isArray(v)) this.fail(path, `expected a number or an array of D = ${D} numbers, got ${JSON.stringify(v)}`);
    if (v.length !== D) this.fail(path, `has ${v.length} values, the shape needs D = ${D}`);
    return Float64Array.from(v, (x, i) => this.number(x, `${path}[${i}]`));
  }
}

const COMMON_KEYS = ['shape', 'sde', 'betaMin', 'betaMax', 'centered'] as const;

interface AnalyticSpec {
  spec: GaussianMixtureSpec;
  centered: boolean;
  classNames?: string[];
}

function commonFields(r: SpecReader, o: Record<string, Json>) {
  const shape = r.shape(o.shape, 'shape');
  if (o.sde !== undefined && o.sde !== 'vp' && o.sde !== 'subvp') r.fail('sde', `expected "vp" or "subvp", got ${JSON.stringify(o.sde)}`);
  const betaMin = o.betaMin === undefined ? 0.1 : r.number(o.betaMin, 'betaMin', (x) => x > 0, 'a positive number');
  const betaMax = o.betaMax === undefined ? 20 : r.number(o.betaMax, 'betaMax', (x) => x > betaMin, `a number > betaMin (${betaMin})`);
  if (o.centered !== undefined && typeof o.centered !== 'boolean') r.fail('centered', `expected true or false, got ${JSON.stringify(o.centered)}`);
  const sde = createSde((o.sde as 'vp' | 'subvp' | undefined) ?? 'vp', betaMin, betaMax);
  return { shape, sde, centered: o.centered === true };
}

/** Parses an analytic model's JSON spec (see the module comment); errors name the file and the field. */
export function parseAnalyticSpec(type: AnalyticModelType, json: unknown, source: string): AnalyticSpec {
  const r: SpecReader = new SpecReader(source);
  if (type === 'analytic:gaussian') {
    const o = r.object(json as Json, '(root)', [...COMMON_KEYS, 'mean', 'variance']);
    const c = commonFields(r, o);
    const D = c.shape[0] * c.shape[1] * c.shape[2];
    const mean = r.vector(o.mean, 'mean', D);
    const variance = r.number(o.variance, 'variance', (x) => x > 0, 'a positive number');
    return { spec: { shape: c.shape, sde: c.sde, classes: [[{ mean, variance }]], conditional: false }, centered: c.centered };
  }
  const o = r.object(json as Json, '(root)', [...COMMON_KEYS, 'classes', 'conditional', 'classNames']);
  const c = commonFields(r, o);
  const D = c.shape[0] * c.shape[1] * c.shape[2];
  if (!Array.isArray(o.classes) || o.classes.length === 0) r.fail('classes', 'expected a non-empty array (one array of components per class)');
  const classes: GaussianComponent[][] = o.classes.map((cls, y) => {
    if (!Array.isArray(cls) || cls.length === 0) r.fail(`classes[${y}]`, 'expected a non-empty array of components');
    return cls.map((comp, k) => {
      const p = `classes[${y}][${k}]`;
      const co = r.object(comp, p, ['mean', 'variance', 'weight']);
      return {
        mean: r.vector(co.mean, `${p}.mean`, D),
        variance: r.number(co.variance, `${p}.variance`, (x) => x > 0, 'a positive number'),
        ...(co.weight !== undefined ? { weight: r.number(co.weight, `${p}.weight`, (x) => x > 0, 'a positive number') } : {}),
      };
    });
  });
  if (classes.some((cl) => cl.length !== classes[0].length)) r.fail('classes', 'every class needs the same number of components');
  if (o.conditional !== undefined && typeof o.conditional !== 'boolean') r.fail('conditional', 'expected true or false');
  let classNames: string[] | undefined;
  if (o.classNames !== undefined) {
    if (!Array.isArray(o.classNames) || o.classNames.length !== classes.length || o.classNames.some((n) => typeof n !== 'string')) {
      r.fail('classNames', `expected ${classes.length} strings (one per class)`);
    }
    classNames = o.classNames as string[];
  }
  const spec: GaussianMixtureSpec = { shape: c.shape, sde: c.sde, classes, ...(o.conditional !== undefined ? { conditional: o.conditional as boolean } : {}) };
  return { spec, centered: c.centered, ...(classNames ? { classNames } : {}) };
}

/** The built-in default of each analytic type (deterministic). */
export const DEFAULT_ANALYTIC: Record<AnalyticModelType, () => AnalyticSpec> = {
  'analytic:gaussian': () => ({
    spec: { shape: [1, 4, 4], sde: createSde('vp'), classes: [[{ mean: new Float64Array(16).fill(0.5), variance: 0.02 }]], conditional: false },
    centered: false,
  }),
  'analytic:mixture': () => {
    // Two prototypes a, b in [0, 1); class y shifts both by its own small offset d_y. Component variances differ,
    // so the score Jacobian is not ∝ I and Rademacher probes have a real variance.
    const rng = new HostRng(7);
    const D = 16;
    const a = Float64Array.from({ length: D }, () => 0.5 + 0.15 * rng.normal());
    const b = Float64Array.from({ length: D }, () => 0.5 + 0.15 * rng.normal());
    const classes = Array.from({ length: 4 }, () => {
      const d = Float64Array.from({ length: D }, () => 0.04 * rng.normal());
      return [
        { mean: a.map((v, i) => v + d[i]), variance: 0.004 },
        { mean: b.map((v, i) => v + d[i]), variance: 0.02 },
      ];
    });
    return { spec: { shape: [1, 4, 4], sde: createSde('vp'), classes, conditional: true }, centered: false };
  },
};

function describeAnalytic(m: GaussianMixtureScoreModel, type: string, file: string | undefined): string {
  const [C, H, W] = m.shape;
  const what =
    m.numClasses === 0 && m.componentsPerClass === 1
      ? 'isotropic Gaussian'
      : `Gaussian mixture, ${m.numClasses || 1} class${m.numClasses === 1 ? '' : 'es'} × ${m.componentsPerClass} component${m.componentsPerClass === 1 ? '' : 's'}`;
  return `${type}: ${what} on ${C}×${H}×${W}, ${m.sde.kind.toUpperCase()} SDE (${file ? `from ${file}` : 'built-in default'}); exact scores and log p_t`;
}

// ---------------------------------------------------------------------------------------------------------------

async function resolveConfig(f: FlagReader, spec: string): Promise<NcsnppConfig> {
  if (presetNames().includes(spec)) return loadPreset(spec);
  let text: string;
  try {
    text = await readFile(spec, 'utf8');
  } catch (e) {
    f.fail(`--config ${spec}: neither a preset (${presetNames().join(', ')}) nor a readable file (${(e as Error).message})`);
  }
  return parseConfig(text, spec);
}

/**
 * Builds the model the flags name. `fallback` (e.g. 'analytic:mixture') is used when no model flag is given;
 * without one, a missing model is an error.
 */
export async function loadModelSource(f: FlagReader, values: FlagValues, engine: () => Promise<Engine>, fallback?: AnalyticModelType): Promise<LoadedModel> {
  const config = f.string(values, 'config');
  const weights = f.string(values, 'weights');
  const initSeedRaw = f.string(values, 'init-seed');
  let type = f.string(values, 'model');
  const file = f.string(values, 'model-file');
  if (type !== undefined && (config !== undefined || weights !== undefined || initSeedRaw !== undefined)) {
    f.fail('give either --model (analytic models) or --config with --weights/--init-seed (networks), not both');
  }
  if (file !== undefined && type === undefined) f.fail('--model-file needs --model analytic:TYPE');

  if (config !== undefined || weights !== undefined || initSeedRaw !== undefined) {
    if (config === undefined) f.fail('--weights/--init-seed need --config PRESET|FILE.json');
    if ((weights === undefined) === (initSeedRaw === undefined)) f.fail('give exactly one of --weights and --init-seed with --config');
    const untrained = weights === undefined;
    const seed = untrained ? f.int(values, 'init-seed', 0, 0) : 0;
    const cfg = await resolveConfig(f, config);
    const e = await engine();
    let weightsInfo: Record<string, string> | undefined;
    let w;
    if (untrained) w = initWeights(e, cfg, seed);
    else {
      const bytes = await readFileBytes(weights!);
      const host = hostWeightsFromBytes(cfg, bytes, weights!);
      // The file's metadata (minus the config) and its SHA-256: a result file names exactly the weights it used,
      // so --resume refuses weights retrained under the same path.
      weightsInfo = {
        ...Object.fromEntries(Object.entries(host.metadata).filter(([k]) => k !== 'model')),
        sha256: createHash('sha256').update(bytes).digest('hex'),
      };
      w = uploadWeights(e, cfg, host.params, weights!);
    }
    const model = new NetworkScoreModel(w);
    const [C, S] = [cfg.channels, cfg.imageSize];
    const description = untrained
      ? `UNTRAINED network "${cfg.name}" (random init, seed ${seed}): the numbers only check the pipeline, they mean nothing`
      : `network "${cfg.name}" (${C}×${S}×${S}, ${cfg.numClasses} classes, ${cfg.centered ? 'centred' : 'uncentred'}) with weights ${weights}`;
    return {
      model,
      kind: 'network',
      source: untrained ? `${config} + init-seed ${seed}` : `${config} + ${weights}`,
      description,
      untrained,
      centered: cfg.centered,
      analytic: null,
      ...(weightsInfo ? { weightsInfo } : {}),
      dispose: () => w.dispose(),
    };
  }

  type ??= fallback;
  if (type === undefined) f.fail('no model: give --config with --weights (or --init-seed), or --model analytic:TYPE');
  if (!(type in ANALYTIC_MODEL_TYPES)) {
    f.fail(
      `unknown model type '${type}'; known: ${Object.keys(ANALYTIC_MODEL_TYPES).join(', ')} ` +
        '(networks: --config PRESET|FILE.json with --weights W.safetensors or --init-seed N)',
    );
  }
  const t = type as AnalyticModelType;
  let parsed: AnalyticSpec;
  if (file !== undefined) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      f.error(`--model-file ${file}: cannot read (${(e as Error).message})`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      f.error(`--model-file ${file}: not valid JSON (${(e as Error).message})`);
    }
    try {
      parsed = parseAnalyticSpec(t, json, `--model-file ${file}`);
    } catch (e) {
      f.error((e as Error).message);
    }
  } else {
    parsed = DEFAULT_ANALYTIC[t]();
  }
  let model: GaussianMixtureScoreModel;
  try {
    model = new GaussianMixtureScoreModel(parsed.spec);
  } catch (e) {
    f.error(`${file ? `--model-file ${file}` : t}: ${(e as Error).message}`);
  }
  return {
    model,
    kind: 'analytic',
    source: file ? `${t} ${file}` : t,
    description: describeAnalytic(model, t, file),
    untrained: false,
    centered: parsed.centered,
    ...(parsed.classNames ? { classNames: parsed.classNames } : {}),
    analytic: model,
    dispose: () => model.dispose(),
  };
}

/**
 * Draws `perClass` samples of each class from an analytic model (model space, t = 0): component by weight, then
 * mean + s·N(0, I). Labels are y for class-conditional models, null for unconditional ones.
 */
export function sampleAnalytic(m: GaussianMixtureScoreModel, perClass: number, seed: number): { x: Float64Array; labels: Uint32Array | null } {
  const rng = new HostRng(seed);
  const D = m.dim;
  const nc = m.tableClasses;
  const K = m.componentsPerClass;
  const x = new Float64Array(perClass * nc * D);
  const labels = new Uint32Array(perClass * nc);
  for (let i = 0; i < perClass * nc; i++) {
    const y = i % nc;
    labels[i] = y;
    let u = rng.uniform();
    let c = 0;
    for (; c < K - 1; c++) {
      u -= Math.exp(m.logWeights[y * K + c]);
      if (u < 0) break;
    }
    const j = y * K + c;
    const s = Math.sqrt(m.variances[j]);
    // Rounded to f32 as the GPU sees the points, so host references use the same x.
    for (let d = 0; d < D; d++) x[i * D + d] = Math.fround(m.means[j * D + d] + s * rng.normal());
  }
  return { x, labels: m.numClasses > 0 ? labels : null };
}
