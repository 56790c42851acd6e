// Network weights on the GPU: one f32 tensor per parameter of `paramSpec(config)`, with host copies on demand,
// loaded from / saved to safetensors (names and shapes exactly score_sde_pytorch's state dict, see param-spec.ts).

import type { Engine } from '../engine/engine.js';
import { SbgcError, SourceError } from '../engine/errors.js';
import type { Tensor } from '../engine/tensor.js';
import { f16BitsToNumber } from '../engine/tensor.js';
import type { NcsnppConfig } from './config.js';
import { initParams } from './init.js';
import { paramSpec } from './param-spec.js';
import { numel } from './params.js';
import { readFileBytes } from '../engine/files.js';
import {
  parseSafetensors,
  saveSafetensors,
  validateAgainstSpec,
  type SafetensorsDtype,
  type SafetensorsTensor,
  type TensorSpec,
} from '../formats/safetensors.js';

/** A weights problem (missing/unexpected/mis-shaped tensors, non-finite values); the message names the source. */
export class WeightsError extends SourceError {
  override name = 'WeightsError';
}

const FLOAT_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16', 'F64'];

/** The parameters of one network, resident on the GPU as f32. Owns its tensors until `dispose()`. */
export class NetworkWeights {
  private readonly hostCache = new Map<string, Float32Array>();

  constructor(
    readonly engine: Engine,
    readonly config: NcsnppConfig,
    /** Parameter name → f32 tensor of the spec's shape, in state-dict order. */
    readonly tensors: ReadonlyMap<string, Tensor>,
  ) {}

  /** The tensor of a parameter; a clear error for a name the config does not have. */
  get(name: string): Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new WeightsError(`weights of "${this.config.name}"`, `no parameter named '${name}'`);
    return t;
  }

  /** A host copy of one parameter (read once, then cached; the cache is dropped by `invalidateHost`). */
  async host(name: string): Promise<Float32Array> {
    const hit = this.hostCache.get(name);
    if (hit) return hit;
    const data = (await this.get(name).read()) as Float32Array;
    this.hostCache.set(name, data);
    return data;
  }

  /** Host copies of every parameter, in state-dict order. */
  async toHost(): Promise<Map<string, Float32Array>> {
    const names = [...this.tensors.keys()];
    const missing = names.filter((n) => !this.hostCache.has(n));
    const arrays = await this.engine.readMany(missing.map((n) => this.get(n)));
    missing.forEach((n, i) => this.hostCache.set(n, arrays[i] as Float32Array));
    return new Map(names.map((n) => [n, this.hostCache.get(n)!]));
  }

  /** Call after writing into the tensors (e.g. an optimizer step) so `host` re-reads them. */
  invalidateHost(): void {
    this.hostCache.clear();
  }

  /** Total number of scalars. */
  get numParams(): number {
    let n = 0;
    for (const t of this.tensors.values()) n += t.size;
    return n;
  }

  dispose(): void {
    for (const t of this.tensors.values()) t.dispose();
    this.hostCache.clear();
  }
}

/** NaN or ±Inf anywhere → an error naming the tensor and the first bad element. */
export function assertFinite(name: string, data: ArrayLike<number>, source: string): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new WeightsError(source, `tensor '${name}' has a non-finite value (${data[i]}) at element ${i}`);
    }
  }
}

/**
 * Uploads host parameters for `config`: every name of the spec must be present with the right element count,
 * no extra names, all values finite. Tensors are kept outside any scope (the NetworkWeights owns them).
 */
export function uploadWeights(e: Engine, config: NcsnppConfig, host: ReadonlyMap<string, Float32Array>, source = 'weights'): NetworkWeights {
  const spec = paramSpec(config);
  const missing = spec.filter((p) => !host.has(p.name)).map((p) => `${p.name} [${p.shape.join(',')}]`);
  const known = new Set(spec.map((p) => p.name));
  const unexpected = [...host.keys()].filter((k) => !known.has(k));
  const wrongSize = spec
    .filter((p) => host.has(p.name) && host.get(p.name)!.length !== numel(p.shape))
    .map((p) => `${p.name}: expected ${numel(p.shape)} values [${p.shape.join(',')}], got ${host.get(p.name)!.length}`);
  if (missing.length + unexpected.length + wrongSize.length > 0) {
    const lines = [`parameters do not match config "${config.name}":`];
    if (missing.length) lines.push(`  missing (${missing.length}): ${missing.join(', ')}`);
    if (unexpected.length) lines.push(`  unexpected (${unexpected.length}): ${unexpected.join(', ')}`);
    if (wrongSize.length) lines.push(`  mis-sized (${wrongSize.length}):`, ...wrongSize.map((m) => `    ${m}`));
    throw new WeightsError(source, lines.join('\n'));
  }
  for (const p of spec) assertFinite(p.name, host.get(p.name)!, source);
  const tensors = new Map<string, Tensor>();
  try {
    for (const p of spec) tensors.set(p.name, e.keep(e.tensor(host.get(p.name)!, p.shape, 'f32', p.name)));
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  }
  return new NetworkWeights(e, config, tensors);
}

/** A freshly initialised network (model/init.ts), deterministic in `seed`. */
export function initWeights(e: Engine, config: NcsnppConfig, seed: number): NetworkWeights {
  return uploadWeights(e, config, initParams(config, seed), `init(seed ${seed})`);
}

/** f32 values of a float safetensors tensor (F16 / BF16 / F64 converted; F64 rounds to nearest). */
function toFloat32(t: SafetensorsTensor): Float32Array {
  switch (t.dtype) {
    case 'F32':
      return t.data;
    case 'F64':
      return Float32Array.from(t.data);
    case 'F16':
      return Float32Array.from(t.data, f16BitsToNumber);
    case 'BF16': {
      // bfloat16 is the top half of an f32.
      const bits = new Uint32Array(t.data.length);
      for (let i = 0; i < bits.length; i++) bits[i] = t.data[i] << 16;
      return new Float32Array(bits.buffer);
    }
    default:
      throw new Error(`internal: ${t.dtype} is not a float dtype`);
  }
}

/** Reads a safetensors file into host f32 arrays validated against `paramSpec(config)`, plus its metadata. */
export async function loadHostWeights(
  config: NcsnppConfig,
  path: string,
): Promise<{ params: Map<string, Float32Array>; metadata: Record<string, string> }> {
  return hostWeightsFromBytes(config, await readFileBytes(path), path);
}

/** loadHostWeights on the bytes of a file already read (`path` names it in errors). */
export function hostWeightsFromBytes(
  config: NcsnppConfig,
  bytes: Uint8Array,
  path: string,
): { params: Map<string, Float32Array>; metadata: Record<string, string> } {
  const file = parseSafetensors(bytes, path);
  // Any float dtype is accepted per tensor (converted below); a non-float one is reported as a mismatch against F32.
  const expected: TensorSpec[] = paramSpec(config).map((p) => {
    const got = file.tensors.get(p.name)?.dtype;
    return { name: p.name, shape: p.shape, dtype: got && FLOAT_DTYPES.includes(got) ? got : 'F32' };
  });
  validateAgainstSpec(file, expected, `${path} (config "${config.name}")`);
  const params = new Map<string, Float32Array>();
  for (const p of expected) {
    const data = toFloat32(file.tensors.get(p.name)!);
    assertFinite(p.name, data, path);
    params.set(p.name, data);
  }
  return { params, metadata: file.metadata };
}

/** Loads weights for `config` onto the GPU (see loadHostWeights for the validation). */
export async function loadWeights(e: Engine, config: NcsnppConfig, path: string): Promise<NetworkWeights> {
  const { params } = await loadHostWeights(config, path);
  return uploadWeights(e, config, params, path);
}

/**
 * Writes weights as an F32 safetensors file with the spec's shapes, atomically. Refuses non-finite values (naming
 * the tensor), so a diverged run never overwrites a good checkpoint with NaNs.
 */
export async function saveWeights(path: string, weights: NetworkWeights, metadata?: Readonly<Record<string, string>>): Promise<void> {
  await saveHostWeights(path, weights.config, await weights.toHost(), metadata);
}

/** Saves host parameters with their spec shapes (a host map alone does not know shapes). */
export async function saveHostWeights(
  path: string,
  config: NcsnppConfig,
  params: ReadonlyMap<string, Float32Array>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const spec = paramSpec(config);
  const known = new Set(spec.map((p) => p.name));
  const extra = [...params.keys()].filter((k) => !known.has(k));
  if (extra.length) throw new WeightsError(path, `parameters not in config "${config.name}": ${extra.join(', ')}`);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const p of spec) {
    const data = params.get(p.name);
    if (!data) throw new WeightsError(path, `parameter '${p.name}' is missing`);
    if (data.length !== numel(p.shape)) throw new WeightsError(path, `parameter '${p.name}' has ${data.length} values, shape [${p.shape.join(',')}] needs ${numel(p.shape)}`);
    assertFinite(p.name, data, path);
    tensors.set(p.name, { dtype: 'F32', shape: [...p.shape], data });
  }
  await saveSafetensors(path, tensors, metadata);
}
