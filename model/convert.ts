/**
 * score_sde_pytorch checkpoint (.pth) → sbgc weights (.safetensors, F32, score_sde parameter names).
 *
 * A score_sde checkpoint is utils.save_checkpoint's `{'optimizer', 'model', 'ema', 'step'}`:
 * - `model`: the state dict of `torch.nn.DataParallel(NCSNpp(config))`, so every key starts with `module.`; it
 *   also holds NCSNpp's buffer `sigmas` (a noise schedule, not a parameter), which is dropped and reported.
 * - `ema`: ExponentialMovingAverage.state_dict() = `{decay, num_updates, shadow_params}`, where shadow_params
 *   is a bare list of tensors: `[p.clone().detach() for p in model.parameters() if p.requires_grad]`.
 *
 * Naming the EMA tensors relies on two orders being equal. model.parameters() walks modules depth-first in
 * registration order (named_modules), each module's own parameters first; Module.state_dict() walks the same
 * tree in the same order, each module's own parameters then its buffers. So, once buffers are removed, the state
 * dict's keys are the parameters() order — exactly (NCSN++ shares no parameter between modules, the one case
 * where parameters() would list fewer names). paramSpec(config) is documented and tested to be in state-dict
 * order and registers no buffers, so its `trainable` entries are the shadow_params order. The only frozen
 * parameter (requires_grad=False, hence absent from shadow_params) is the Gaussian Fourier projection
 * `all_modules.0.W`; score_sde's ema.copy_to leaves it untouched, so the EMA weights take it from `model`.
 * Every shadow tensor's shape is checked against the name it is given, so a misalignment cannot pass silently.
 */
import { basename, resolve } from 'node:path';

import { SbgcError, SourceError } from '../engine/errors.js';
import { f16BitsToNumber } from '../engine/tensor.js';
import type { NcsnppConfig } from './config.js';
import { paramSpec } from './param-spec.js';
import { saveSafetensors, type SafetensorsTensor } from '../formats/safetensors.js';
import { PickleDict, TorchTensor, loadTensorData, readTorchCheckpoint, type PickleValue, type TorchDtype } from '../formats/torch-checkpoint.js';

/** A checkpoint that cannot be converted as asked; the message names the file and what is wrong. */
export class ConvertError extends SourceError {
  override name = 'ConvertError';
}

export type ScoreSdeEntry = 'model' | 'ema';

export interface ConvertOptions {
  /** `model` (raw weights) or `ema` (the exponential moving average score_sde samples and evaluates with). */
  entry: ScoreSdeEntry;
  /** When given, the result must match paramSpec(config) exactly (names, shapes); also names the EMA tensors. */
  config?: NcsnppConfig;
}

export interface ConvertReport {
  entry: ScoreSdeEntry;
  /** Training step stored in the checkpoint (null for a bare state dict). */
  step: number | null;
  /** EMA decay and update count (entry 'ema' only). */
  ema: { decay: number | null; numUpdates: number | null } | null;
  /** Parameter names in output (state-dict) order. */
  names: string[];
  /** Total number of values. */
  numel: number;
  /** Non-parameter buffers found in the state dict and left out (e.g. `sigmas`). */
  droppedBuffers: string[];
  /** Tensors stored in another float type, with that type; all are written as F32. */
  converted: Array<{ name: string; from: TorchDtype }>;
  /** Frozen parameters of an EMA conversion, taken from `model` (not in shadow_params). */
  frozenFromModel: string[];
  /** Whether a `module.` (DataParallel) prefix was stripped. */
  strippedModulePrefix: boolean;
  /** Name of the config the result was validated against, or null. */
  validatedAgainst: string | null;
}

export interface ScoreSdeWeights {
  /** Parameter name → tensor, in state-dict order. Data is not materialised until read. */
  tensors: Map<string, TorchTensor>;
  report: ConvertReport;
}

// Registered buffers of score_sde's models (NCSNpp, DDPM, NCSNv2 all register `sigmas`); never parameters.
const KNOWN_BUFFERS = new Set(['sigmas']);
// Parameters created with requires_grad=False in score_sde's NCSN++ (GaussianFourierProjection.W).
const KNOWN_FROZEN = new Set(['all_modules.0.W']);
const FLOAT_DTYPES: ReadonlySet<TorchDtype> = new Set<TorchDtype>(['F32', 'F16', 'BF16', 'F64']);
const MODULE_PREFIX = 'module.';

const fmt = (shape: readonly number[]): string => `[${shape.join(',')}]`;
const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

function kind(v: PickleValue | undefined): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'None';
  if (v instanceof TorchTensor) return `tensor ${v.dtype} ${fmt(v.shape)}`;
  if (v instanceof PickleDict) return v.pythonClass;
  if (Array.isArray(v)) return 'list';
  return typeof v;
}

function keysOf(d: PickleDict): string {
  return [...d.keys()].map((k) => (typeof k === 'string' ? `'${k}'` : String(k))).join(', ');
}

function isStateDict(v: PickleValue | undefined): v is PickleDict {
  return v instanceof PickleDict && v.size > 0 && [...v].every(([k, t]) => typeof k === 'string' && t instanceof TorchTensor);
}

function numberOrNull(v: PickleValue | undefined): number | null {
  return typeof v === 'number' ? v : null;
}

/** `model` as name → tensor: `module.` stripped, buffers dropped, every value a float tensor. */
function readStateDict(
  sd: PickleValue | undefined,
  where: string,
  source: string,
): { params: Map<string, TorchTensor>; dropped: string[]; stripped: boolean } {
  if (!(sd instanceof PickleDict)) throw new ConvertError(source, `${where} must be a state dict (OrderedDict of tensors), got ${kind(sd)}`);
  const entries: Array<[string, TorchTensor]> = [];
  for (const [k, v] of sd) {
    if (typeof k !== 'string') throw new ConvertError(source, `${where} has a non-string key ${String(k)}`);
    if (!(v instanceof TorchTensor)) throw new ConvertError(source, `${where}['${k}'] is a ${kind(v)}, not a tensor`);
    entries.push([k, v]);
  }
  const prefixed = entries.filter(([k]) => k.startsWith(MODULE_PREFIX)).length;
  if (prefixed > 0 && prefixed < entries.length) {
    const odd = entries.find(([k]) => !k.startsWith(MODULE_PREFIX))![0];
    throw new ConvertError(source, `${where} mixes 'module.'-prefixed keys with unprefixed ones (e.g. '${odd}')`);
  }
  const stripped = prefixed > 0 && prefixed === entries.length;
  const params = new Map<string, TorchTensor>();
  const dropped: string[] = [];
  for (const [k, v] of entries) {
    const name = stripped ? k.slice(MODULE_PREFIX.length) : k;
    if (KNOWN_BUFFERS.has(name)) {
      dropped.push(name);
      continue;
    }
    if (!FLOAT_DTYPES.has(v.dtype)) throw new ConvertError(source, `${where}['${k}'] has dtype ${v.dtype}; NCSN++ parameters are floating point`);
    params.set(name, v);
  }
  return { params, dropped, stripped };
}

/** The top-level dict of a score_sde checkpoint, or null for a bare state dict. */
function checkpointDict(root: PickleValue, source: string): PickleDict | null {
  if (!(root instanceof PickleDict)) throw new ConvertError(source, `expected a dict at the top level, got ${kind(root)}`);
  if (root.has('model') || root.has('ema')) return root;
  if (isStateDict(root)) return null;
  throw new ConvertError(source, `not a score_sde checkpoint: no 'model' or 'ema' entry (top-level keys: ${keysOf(root)})`);
}

const LIST_CAP = 25;

/** At most LIST_CAP items, then a count of the rest (a wrong config can differ in hundreds of tensors). */
function capped(items: string[]): string[] {
  return items.length <= LIST_CAP ? items : [...items.slice(0, LIST_CAP), `… and ${items.length - LIST_CAP} more`];
}

/** Checks names and shapes against the config; one error listing every missing, unexpected and mis-shaped tensor. */
function validate(tensors: ReadonlyMap<string, TorchTensor>, config: NcsnppConfig, where: string, source: string): void {
  const spec = paramSpec(config);
  const known = new Set(spec.map((p) => p.name));
  const missing = spec.filter((p) => !tensors.has(p.name)).map((p) => `${p.name} ${fmt(p.shape)}`);
  const unexpected = [...tensors].filter(([k]) => !known.has(k)).map(([k, t]) => `${k} ${fmt(t.shape)}`);
  const misShaped = spec
    .filter((p) => tensors.has(p.name) && !sameShape(tensors.get(p.name)!.shape, p.shape))
    .map((p) => `${p.name}: config needs ${fmt(p.shape)}, checkpoint has ${fmt(tensors.get(p.name)!.shape)}`);
  const n = missing.length + unexpected.length + misShaped.length;
  if (n === 0) return;
  const lines = [`${where} does not match config "${config.name}" (${n} problem${n === 1 ? '' : 's'}):`];
  if (missing.length) lines.push(`  missing (${missing.length}): ${capped(missing).join(', ')}`);
  if (unexpected.length) lines.push(`  unexpected (${unexpected.length}): ${capped(unexpected).join(', ')}`);
  if (misShaped.length) lines.push(`  mis-shaped (${misShaped.length}):`, ...capped(misShaped).map((m) => `    ${m}`));
  // The Fourier projection's presence decides every later module index, so name that cause directly.
  const hasW = tensors.has('all_modules.0.W');
  if (hasW !== (config.embeddingType === 'fourier')) {
    lines.push(
      `  hint: the checkpoint ${hasW ? 'has' : 'has no'} Fourier projection all_modules.0.W, so it was trained with ` +
        `embeddingType "${hasW ? 'fourier' : 'positional'}", but the config says "${config.embeddingType}"`,
    );
  } else if (n > spec.length / 2) {
    lines.push('  hint: most parameters differ; is this the config the checkpoint was trained with?');
  }
  throw new ConvertError(source, lines.join('\n'));
}

/**
 * Names the checkpoint's `entry` weights (see the module comment). Pure: reads no tensor data. `source` names the
 * file in errors. With a config, the result is validated against paramSpec(config) and put in its order.
 */
export function scoreSdeWeights(root: PickleValue, options: ConvertOptions, source: string): ScoreSdeWeights {
  const { entry, config } = options;
  if (entry !== 'model' && entry !== 'ema') throw new ConvertError(source, `entry must be 'model' or 'ema', got ${JSON.stringify(entry)}`);
  const ckpt = checkpointDict(root, source);
  const step = ckpt ? numberOrNull(ckpt.get('step')) : null;
  const base = { entry, step, validatedAgainst: config?.name ?? null };

  if (ckpt === null && entry === 'ema') {
    throw new ConvertError(source, "this file is a bare state dict (no 'ema' entry); convert it with entry 'model'");
  }
  const modelWhere = ckpt === null ? 'the state dict' : "'model'";
  const model = ckpt === null || ckpt.has('model') ? readStateDict(ckpt === null ? root : ckpt.get('model'), modelWhere, source) : null;

  if (entry === 'model') {
    if (!model) throw new ConvertError(source, `no 'model' entry (top-level keys: ${keysOf(ckpt!)})`);
    const tensors = config ? ordered(model.params, config) : model.params;
    if (config) validate(model.params, config, modelWhere, source);
    const partial = { ...base, ema: null, droppedBuffers: model.dropped, frozenFromModel: [], strippedModulePrefix: model.stripped };
    return { tensors, report: finish(partial, tensors) };
  }

  const ema = ckpt!.get('ema');
  if (!(ema instanceof PickleDict)) {
    throw new ConvertError(source, `'ema' must be a dict {decay, num_updates, shadow_params}, got ${kind(ema)} (top-level keys: ${keysOf(ckpt!)})`);
  }
  const shadow = ema.get('shadow_params');
  if (!Array.isArray(shadow)) throw new ConvertError(source, `'ema' has no 'shadow_params' list (keys: ${keysOf(ema)})`);
  shadow.forEach((t, i) => {
    if (!(t instanceof TorchTensor)) throw new ConvertError(source, `ema.shadow_params[${i}] is a ${kind(t)}, not a tensor`);
    if (!FLOAT_DTYPES.has(t.dtype)) throw new ConvertError(source, `ema.shadow_params[${i}] has dtype ${t.dtype}; parameters are floating point`);
  });
  const shadowTensors = shadow as TorchTensor[];

  // The full parameter list in parameters() order, and which of them are trainable (in shadow_params).
  let all: Array<{ name: string; shape: readonly number[]; trainable: boolean }>;
  let namesFrom: string;
  if (config) {
    all = paramSpec(config);
    namesFrom = `config "${config.name}"`;
  } else if (model) {
    const list = [...model.params].map(([name, t]) => ({ name, shape: t.shape, trainable: true }));
    const frozen = list.filter((p) => KNOWN_FROZEN.has(p.name));
    if (list.length !== shadowTensors.length && list.length - frozen.length === shadowTensors.length) for (const p of frozen) p.trainable = false;
    all = list;
    namesFrom = "the 'model' state dict";
  } else {
    throw new ConvertError(source, "ema.shadow_params is a bare list of tensors; to name them the checkpoint needs a 'model' entry, or pass a config");
  }
  // A wrong config is best reported by the full name/shape comparison, before the bare count below.
  if (config && model) validate(model.params, config, "'model'", source);
  const trainable = all.filter((p) => p.trainable);
  if (trainable.length !== shadowTensors.length) {
    throw new ConvertError(
      source,
      `ema.shadow_params has ${shadowTensors.length} tensors but ${namesFrom} has ${trainable.length} trainable parameters, ` +
        `so they cannot be matched by order${config ? '' : ' (pass the model config to name them)'}`,
    );
  }
  trainable.forEach((p, i) => {
    const t = shadowTensors[i];
    if (!sameShape(t.shape, p.shape)) {
      throw new ConvertError(
        source,
        `ema.shadow_params[${i}] has shape ${fmt(t.shape)}, but trainable parameter #${i} of ${namesFrom} in model.parameters() order, '${p.name}', ` +
          `has ${fmt(p.shape)}: the EMA does not belong to this model`,
      );
    }
  });
  const tensors = new Map<string, TorchTensor>();
  const frozenFromModel: string[] = [];
  let k = 0;
  for (const p of all) {
    if (p.trainable) {
      tensors.set(p.name, shadowTensors[k++]);
      continue;
    }
    const t = model?.params.get(p.name);
    if (!t) throw new ConvertError(source, `frozen parameter '${p.name}' is not in ema.shadow_params, and the checkpoint has no 'model' entry holding it`);
    tensors.set(p.name, t);
    frozenFromModel.push(p.name);
  }
  if (config) validate(tensors, config, "'ema'", source);
  return {
    tensors,
    report: finish(
      {
        ...base,
        ema: { decay: numberOrNull(ema.get('decay')), numUpdates: numberOrNull(ema.get('num_updates')) },
        droppedBuffers: model?.dropped ?? [],
        frozenFromModel,
        strippedModulePrefix: model?.stripped ?? false,
      },
      tensors,
    ),
  };
}

function ordered(params: ReadonlyMap<string, TorchTensor>, config: NcsnppConfig): Map<string, TorchTensor> {
  const out = new Map<string, TorchTensor>();
  for (const p of paramSpec(config)) {
    const t = params.get(p.name);
    if (t) out.set(p.name, t);
  }
  for (const [k, t] of params) if (!out.has(k)) out.set(k, t);
  return out;
}

function finish(partial: Omit<ConvertReport, 'names' | 'numel' | 'converted'>, tensors: ReadonlyMap<string, TorchTensor>): ConvertReport {
  const converted = [...tensors].filter(([, t]) => t.dtype !== 'F32').map(([name, t]) => ({ name, from: t.dtype }));
  let numel = 0;
  for (const t of tensors.values()) numel += t.numel;
  return { ...partial, names: [...tensors.keys()], numel, converted };
}

/** f32 copy of a float tensor's row-major data (F64 rounds to nearest; F16/BF16 are exact). */
export function toFloat32(t: TorchTensor): Float32Array {
  const data = t.data;
  switch (t.dtype) {
    case 'F32':
      return data as Float32Array;
    case 'F64':
      return Float32Array.from(data as Float64Array);
    case 'F16':
      return Float32Array.from(data as Uint16Array, f16BitsToNumber);
    case 'BF16': {
      // bfloat16 is the top half of an f32.
      const src = data as Uint16Array;
      const bits = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
      return new Float32Array(bits.buffer);
    }
    default:
      throw new SbgcError(`internal: ${t.dtype} is not a float dtype`);
  }
}

/**
 * Converts a score_sde_pytorch checkpoint to an F32 safetensors file of NCSN++ parameters named as in
 * score_sde's state dict (without `module.`), written atomically: on any error no output file appears.
 */
export async function convertScoreSdeCheckpoint(pthPath: string, outPath: string, options: ConvertOptions): Promise<ConvertReport> {
  if (resolve(pthPath) === resolve(outPath)) throw new ConvertError(outPath, 'output path is the input checkpoint');
  const root = await readTorchCheckpoint(pthPath);
  const { tensors, report } = scoreSdeWeights(root, options, pthPath);
  loadTensorData(tensors.values());
  const out = new Map<string, SafetensorsTensor>();
  for (const [name, t] of tensors) {
    const data = toFloat32(t);
    const bad = data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) {
      throw new ConvertError(
        pthPath,
        `${options.entry} parameter '${name}' has a non-finite value (${data[bad]}) at element ${bad}; refusing to write ${outPath}`,
      );
    }
    out.set(name, { dtype: 'F32', shape: [...t.shape], data });
  }
  const metadata: Record<string, string> = { format: 'pt', source: basename(pthPath), entry: report.entry };
  if (report.step !== null) metadata.step = String(report.step);
  if (report.ema?.decay != null) metadata.ema_decay = String(report.ema.decay);
  if (report.ema?.numUpdates != null) metadata.ema_num_updates = String(report.ema.numUpdates);
  if (report.validatedAgainst !== null) metadata.config = report.validatedAgainst;
  await saveSafetensors(outPath, out, metadata);
  return report;
}
