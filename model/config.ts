// Network + SDE configuration of an NCSN++ score model (score_sde's `ncsnpp`), parsed strictly from JSON.
// Field names are camelCase versions of score_sde's config keys (config.model.*, config.data.*, config.training.*);
// everything the forward pass depends on lives here, nothing about solvers or training schedules.

import { SbgcError } from '../engine/errors.js';
import cifar10Ddpmpp from './presets/cifar10-ddpmpp.json' with { type: 'json' };
import cifar10Sbgc from './presets/cifar10-sbgc.json' with { type: 'json' };
import mnistSmall from './presets/mnist-small.json' with { type: 'json' };
import tiny from './presets/tiny.json' with { type: 'json' };

export type ResblockType = 'biggan' | 'ddpm';
export type Progressive = 'none' | 'output_skip' | 'residual';
export type ProgressiveInput = 'none' | 'input_skip' | 'residual';
export type ProgressiveCombine = 'sum' | 'cat';
export type EmbeddingType = 'positional' | 'fourier';
export type SdeType = 'vp' | 'subvp';

export interface NcsnppConfig {
  /** Free-form label, e.g. the preset name. */
  name: string;
  // --- data (config.data) ---
  /** Square image side (data.image_size); must be divisible by 2^(chMult.length − 1). */
  imageSize: number;
  /** Image channels (data.num_channels). */
  channels: number;
  /** Model space is [−1, 1] when true, [0, 1] when false; the net maps [0,1] inputs to 2x − 1 itself (data.centered). */
  centered: boolean;
  // --- network (config.model) ---
  nf: number;
  chMult: number[];
  numResBlocks: number;
  attnResolutions: number[];
  resblockType: ResblockType;
  fir: boolean;
  firKernel: number[];
  resampWithConv: boolean;
  skipRescale: boolean;
  progressive: Progressive;
  progressiveInput: ProgressiveInput;
  progressiveCombine: ProgressiveCombine;
  embeddingType: EmbeddingType;
  fourierScale: number;
  /** Time conditioning (model.conditional): the time MLP exists and feeds every residual block. */
  conditional: boolean;
  /** 0 = class-unconditional; > 0 adds the label embedding + per-block label projections of SPEC §6b. */
  numClasses: number;
  dropout: number;
  /** Scale of the zero-ish inits (last conv of each block, attention output, output conv); 0 means 1e-10. */
  initScale: number;
  groupNormEps: number;
  // --- SDE (config.training / config.model) ---
  sde: SdeType;
  betaMin: number;
  betaMax: number;
  continuous: boolean;
  /** Discretisation count N; discrete VP models see the time label t·(N − 1), continuous ones 999·t (score_sde `get_score_fn`). */
  numScales: number;
}

/** A config problem, always naming the offending field and where the config came from. */
export class ConfigError extends SbgcError {
  constructor(
    readonly source: string,
    readonly field: string,
    detail: string,
  ) {
    super(`${source}: config field "${field}": ${detail}`);
    this.name = 'ConfigError';
  }
}

// Defaults are score_sde's own defaults, so presets may omit them; every other field is required.
const DEFAULTS: Partial<NcsnppConfig> = {
  firKernel: [1, 3, 3, 1],
  progressiveInput: 'none',
  progressiveCombine: 'sum',
  fourierScale: 16,
  numClasses: 0,
  groupNormEps: 1e-6,
  numScales: 1000,
};

const FIELDS: readonly (keyof NcsnppConfig)[] = [
  'name', 'imageSize', 'channels', 'centered', 'nf', 'chMult', 'numResBlocks', 'attnResolutions',
  'resblockType', 'fir', 'firKernel', 'resampWithConv', 'skipRescale', 'progressive', 'progressiveInput',
  'progressiveCombine', 'embeddingType', 'fourierScale', 'conditional', 'numClasses', 'dropout', 'initScale',
  'groupNormEps', 'sde', 'betaMin', 'betaMax', 'continuous', 'numScales',
];

function show(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

class Reader {
  constructor(
    private readonly obj: Record<string, unknown>,
    private readonly source: string,
  ) {}

  private get(field: keyof NcsnppConfig): unknown {
    if (this.obj[field] !== undefined) return this.obj[field];
    const d = DEFAULTS[field];
    if (d === undefined) throw new ConfigError(this.source, field, 'is required but missing');
    return Array.isArray(d) ? [...d] : d;
  }

  fail(field: string, expected: string, got: unknown): never {
    throw new ConfigError(this.source, field, `expected ${expected}, got ${show(got)}`);
  }

  string(field: keyof NcsnppConfig): string {
    const v = this.get(field);
    if (typeof v !== 'string') this.fail(field, 'a string', v);
    return v;
  }

  bool(field: keyof NcsnppConfig): boolean {
    const v = this.get(field);
    if (typeof v !== 'boolean') this.fail(field, 'true or false', v);
    return v;
  }

  number(field: keyof NcsnppConfig, min: number, minInclusive: boolean, max = Infinity): number {
    const v = this.get(field);
    const ok = typeof v === 'number' && Number.isFinite(v) && (minInclusive ? v >= min : v > min) && v <= max;
    if (!ok) this.fail(field, `a finite number ${minInclusive ? '>=' : '>'} ${min}${max < Infinity ? ` and <= ${max}` : ''}`, v);
    return v as number;
  }

  int(field: keyof NcsnppConfig, min: number): number {
    const v = this.get(field);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) this.fail(field, `an integer >= ${min}`, v);
    return v;
  }

  intArray(field: keyof NcsnppConfig, min: number, allowEmpty: boolean): number[] {
    const v = this.get(field);
    const ok = Array.isArray(v) && (allowEmpty || v.length > 0) && v.every((e) => typeof e === 'number' && Number.isInteger(e) && e >= min);
    if (!ok) this.fail(field, `${allowEmpty ? 'an' : 'a non-empty'} array of integers >= ${min}`, v);
    return [...(v as number[])];
  }

  oneOf<T extends string>(field: keyof NcsnppConfig, options: readonly T[]): T {
    const v = this.get(field);
    if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) this.fail(field, `one of ${options.map((o) => `"${o}"`).join(', ')}`, v);
    return v as T;
  }
}

/**
 * Validate a config given as a JSON string or an already-parsed value. `source` (a file name, a preset name)
 * prefixes every error. Unknown fields are errors, so typos cannot silently fall back to defaults.
 */
export function parseConfig(json: unknown, source: string): NcsnppConfig {
  let value = json;
  if (typeof json === 'string') {
    try {
      value = JSON.parse(json);
    } catch (e) {
      throw new ConfigError(source, '(root)', `not valid JSON: ${(e as Error).message}`);
    }
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(source, '(root)', `expected a JSON object, got ${show(value)}`);
  }
  const obj = value as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!(FIELDS as readonly string[]).includes(key)) {
      throw new ConfigError(source, key, `unknown field (known: ${FIELDS.join(', ')})`);
    }
  }
  const r = new Reader(obj, source);
  const cfg: NcsnppConfig = {
    name: r.string('name'),
    imageSize: r.int('imageSize', 1),
    channels: r.int('channels', 1),
    centered: r.bool('centered'),
    nf: r.int('nf', 1),
    chMult: r.intArray('chMult', 1, false),
    numResBlocks: r.int('numResBlocks', 1),
    attnResolutions: r.intArray('attnResolutions', 1, true),
    resblockType: r.oneOf('resblockType', ['biggan', 'ddpm'] as const),
    fir: r.bool('fir'),
    firKernel: r.intArray('firKernel', 0, false),
    resampWithConv: r.bool('resampWithConv'),
    skipRescale: r.bool('skipRescale'),
    progressive: r.oneOf('progressive', ['none', 'output_skip', 'residual'] as const),
    progressiveInput: r.oneOf('progressiveInput', ['none', 'input_skip', 'residual'] as const),
    progressiveCombine: r.oneOf('progressiveCombine', ['sum', 'cat'] as const),
    embeddingType: r.oneOf('embeddingType', ['positional', 'fourier'] as const),
    fourierScale: r.number('fourierScale', 0, false),
    conditional: r.bool('conditional'),
    numClasses: r.int('numClasses', 0),
    dropout: r.number('dropout', 0, true, 0.999),
    initScale: r.number('initScale', 0, true),
    groupNormEps: r.number('groupNormEps', 0, false),
    sde: r.oneOf('sde', ['vp', 'subvp'] as const),
    betaMin: r.number('betaMin', 0, false),
    betaMax: r.number('betaMax', 0, false),
    continuous: r.bool('continuous'),
    numScales: r.int('numScales', 2),
  };
  checkConsistency(cfg, r);
  return cfg;
}

/** Cross-field rules: everything score_sde would assert on, plus shapes GroupNorm can actually split. */
function checkConsistency(c: NcsnppConfig, r: Reader): void {
  const levels = c.chMult.length;
  if (c.imageSize % 2 ** (levels - 1) !== 0) {
    r.fail('imageSize', `a multiple of 2^(chMult.length − 1) = ${2 ** (levels - 1)} so every level halves exactly`, c.imageSize);
  }
  const resolutions = c.chMult.map((_, i) => c.imageSize / 2 ** i);
  for (const a of c.attnResolutions) {
    if (!resolutions.includes(a)) r.fail('attnResolutions', `resolutions among the levels [${resolutions.join(', ')}]`, c.attnResolutions);
  }
  if (c.betaMax <= c.betaMin) r.fail('betaMax', `a value > betaMin (${c.betaMin})`, c.betaMax);
  if (c.embeddingType === 'fourier' && !c.continuous) {
    r.fail('embeddingType', '"positional" when continuous is false (score_sde: Fourier features need continuous training)', c.embeddingType);
  }
  if (c.fir && (c.firKernel.length < 2 || c.firKernel.reduce((a, b) => a + b, 0) === 0)) {
    r.fail('firKernel', 'at least 2 taps with a non-zero sum', c.firKernel);
  }
  // GroupNorm uses min(C/4, 32) groups, so C must be >= 4 and divisible by that group count. Check every
  // channel count the network normalises: level widths and the widths after concatenating a skip.
  const widths = new Set<number>();
  for (const m of c.chMult) widths.add(c.nf * m);
  // input_skip + cat doubles the width entering the next level's first block.
  if (c.progressiveInput === 'input_skip' && c.progressiveCombine === 'cat') for (const m of c.chMult) widths.add(2 * c.nf * m);
  for (const w of skipConcatWidths(c)) widths.add(w);
  for (const w of widths) {
    const groups = Math.min(Math.floor(w / 4), 32);
    if (groups < 1 || w % groups !== 0) {
      r.fail('nf', `a width whose channel counts split into min(C/4, 32) GroupNorm groups; C = ${w} (nf × chMult, or a skip concatenation) does not`, c.nf);
    }
  }
}

/** Channel counts of the up path's concatenated inputs (a light replay of the plan's channel bookkeeping). */
function skipConcatWidths(c: NcsnppConfig): number[] {
  const catDouble = c.progressiveInput === 'input_skip' && c.progressiveCombine === 'cat';
  const hs = [c.nf];
  let ch = c.nf;
  c.chMult.forEach((m, level) => {
    for (let b = 0; b < c.numResBlocks; b++) {
      ch = c.nf * m;
      hs.push(ch);
    }
    if (level !== c.chMult.length - 1) {
      if (catDouble) ch *= 2;
      hs.push(ch);
    }
  });
  const out: number[] = [];
  for (let level = c.chMult.length - 1; level >= 0; level--) {
    for (let b = 0; b <= c.numResBlocks; b++) {
      out.push(ch + (hs.pop() as number));
      ch = c.nf * c.chMult[level];
    }
  }
  return out;
}

const PRESETS: Readonly<Record<string, unknown>> = {
  'cifar10-ddpmpp': cifar10Ddpmpp,
  'cifar10-sbgc': cifar10Sbgc,
  'mnist-small': mnistSmall,
  tiny,
};

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

/** A preset from model/presets/<name>.json, validated. Presets are bundled JSON imports so this works in browsers too. */
export function loadPreset(name: string): NcsnppConfig {
  const raw = PRESETS[name];
  if (raw === undefined) {
    throw new ConfigError(`preset "${name}"`, '(preset)', `unknown preset; known: ${presetNames().join(', ')}`);
  }
  return parseConfig(raw, `model/presets/${name}.json`);
}

/** Per-level spatial resolutions, imageSize / 2^level (score_sde `all_resolutions`). */
export function levelResolutions(c: NcsnppConfig): number[] {
  return c.chMult.map((_, i) => c.imageSize / 2 ** i);
}
