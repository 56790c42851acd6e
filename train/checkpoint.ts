/**
 * Training checkpoints (SPEC §6): ONE safetensors file holding the parameters, their EMA, Adam's m and v, and in
 * its `__metadata__` the step, the host RNG states, the Philox stream layout, the model config and the training
 * options (JSON). Written atomically (temp file + fsync + rename), so a crash or a failed write leaves the previous
 * checkpoint intact and no partial file. One rolling checkpoint per run, not a history.
 *
 * Tensor names: `param/<name>`, `ema/<name>`, `adam_m/<name>`, `adam_v/<name>`, all F32 with the parameter's shape.
 * Everything a step depends on is in here or derived from (seed, step), so resuming continues bit-identically.
 */
import { SbgcError } from '../engine/errors.js';
import { writeFileAtomic, readFileBytes } from '../engine/files.js';
import { encodeSafetensors, parseSafetensors, type SafetensorsTensor } from '../formats/safetensors.js';
import type { ArenaBuffer, ParamArena } from './param-arena.js';

export const CHECKPOINT_FORMAT = 'sbgc-train-checkpoint/1';
const META_KEY = 'sbgc.train';

/** A HostRng's full state (HostRng.state() / HostRng.restore()). */
export interface HostRngState {
  seed: [number, number];
  stream: number;
  block: number;
  used: number;
}

export interface TrainingState {
  /** Optimizer updates done. */
  step: number;
  /** Host RNG streams by purpose (e.g. t-sampling, flips). */
  rng: Record<string, HostRngState>;
  /** The Philox (GPU + host draw) layout: seed, stream per purpose; offsets are a function of the step. */
  philox: { seed: number; streams: Record<string, number>; note: string };
  /** The model description (`TrainableModel.describe()`), checked on resume. */
  model: unknown;
  /** The training options the run was started with (JSON). */
  options: unknown;
  /** Anything else worth keeping (e.g. recent losses, wall time). */
  extra?: Record<string, unknown>;
}

export interface CheckpointData {
  state: TrainingState;
  param: Map<string, Float32Array>;
  ema: Map<string, Float32Array> | null;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

const PREFIX: Record<Exclude<ArenaBuffer, 'grad'>, string> = { param: 'param/', ema: 'ema/', m: 'adam_m/', v: 'adam_v/' };

/** Reads the arena back and writes the checkpoint atomically. Refuses non-finite values (a diverged run). */
export async function saveCheckpoint(path: string, arena: ParamArena, state: TrainingState): Promise<void> {
  const kinds: Array<Exclude<ArenaBuffer, 'grad'>> = arena.hasEma ? ['param', 'ema', 'm', 'v'] : ['param', 'm', 'v'];
  const tensors = new Map<string, SafetensorsTensor>();
  for (const kind of kinds) {
    const values = await arena.read(kind);
    for (const s of arena.slots) {
      const data = values.get(s.name)!;
      for (let i = 0; i < data.length; i++) {
        if (!Number.isFinite(data[i])) {
          throw new SbgcError(`${path}: not saved: ${kind} of '${s.name}' is ${data[i]} at element ${i} (training diverged)`);
        }
      }
      tensors.set(PREFIX[kind] + s.name, { dtype: 'F32', shape: [...s.shape], data });
    }
  }
  const metadata = { format: CHECKPOINT_FORMAT, [META_KEY]: JSON.stringify(state) };
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata, path));
}

function stateFromMetadata(metadata: Record<string, string>, path: string): TrainingState {
  if (metadata.format !== CHECKPOINT_FORMAT) {
    throw new SbgcError(`${path}: not a training checkpoint (metadata format is ${JSON.stringify(metadata.format)}, expected "${CHECKPOINT_FORMAT}")`);
  }
  let state: TrainingState;
  try {
    state = JSON.parse(metadata[META_KEY] ?? '') as TrainingState;
  } catch (e) {
    throw new SbgcError(`${path}: metadata "${META_KEY}" is not valid JSON: ${(e as Error).message}`);
  }
  if (!Number.isInteger(state.step) || state.step < 0) throw new SbgcError(`${path}: metadata step ${String(state.step)} is not a step count`);
  return state;
}

/** The training state of a checkpoint from its header alone (no tensor data read). */
export async function readCheckpointState(path: string): Promise<TrainingState> {
  const { open } = await import('node:fs/promises');
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new SbgcError(`${path}: cannot read: ${(e as Error).message}`);
  }
  try {
    const head = new Uint8Array(8);
    await fh.read(head, 0, 8, 0);
    const n = Number(new DataView(head.buffer).getBigUint64(0, true));
    if (!(n > 0 && n < 100_000_000)) throw new SbgcError(`${path}: not a safetensors file (header length ${n})`);
    const json = new Uint8Array(n);
    const { bytesRead } = await fh.read(json, 0, n, 8);
    if (bytesRead !== n) throw new SbgcError(`${path}: truncated header (${bytesRead} of ${n} bytes)`);
    let header: { __metadata__?: Record<string, string> };
    try {
      header = JSON.parse(new TextDecoder().decode(json)) as typeof header;
    } catch (e) {
      throw new SbgcError(`${path}: header is not valid JSON: ${(e as Error).message}`);
    }
    return stateFromMetadata(header.__metadata__ ?? {}, path);
  } finally {
    await fh.close();
  }
}

/** Parses a checkpoint file; errors name the file and what is wrong. */
export async function loadCheckpoint(path: string): Promise<CheckpointData> {
  const file = parseSafetensors(await readFileBytes(path), path);
  const state = stateFromMetadata(file.metadata, path);
  const groups: Record<string, Map<string, Float32Array>> = { param: new Map(), ema: new Map(), m: new Map(), v: new Map() };
  for (const [name, t] of file.tensors) {
    const kind = (Object.keys(PREFIX) as Array<keyof typeof PREFIX>).find((k) => name.startsWith(PREFIX[k]));
    if (!kind) throw new SbgcError(`${path}: unexpected tensor '${name}' (expected param/, ema/, adam_m/ or adam_v/ names)`);
    if (t.dtype !== 'F32') throw new SbgcError(`${path}: tensor '${name}' is ${t.dtype}, expected F32`);
    groups[kind].set(name.slice(PREFIX[kind].length), t.data);
  }
  return {
    state,
    param: groups.param,
    ema: groups.ema.size > 0 ? groups.ema : null,
    m: groups.m,
    v: groups.v,
  };
}

/**
 * Writes a checkpoint's tensors into the arena (validated by `ParamArena.upload`: every parameter present with
 * its size). A checkpoint without EMA restarts the EMA at the parameters.
 */
export function restoreArena(arena: ParamArena, ckpt: CheckpointData, source: string): void {
  arena.upload('param', ckpt.param, `${source} (param/)`);
  arena.upload('m', ckpt.m, `${source} (adam_m/)`);
  arena.upload('v', ckpt.v, `${source} (adam_v/)`);
  if (arena.hasEma) {
    if (ckpt.ema) arena.upload('ema', ckpt.ema, `${source} (ema/)`);
    else arena.resetEmaToParams();
  }
}

/**
 * Writes one set of weights (raw or EMA) under the plain parameter names, loadable by model/weights.ts; the
 * metadata says which set it is.
 */
export async function saveWeightsFile(
  path: string,
  arena: ParamArena,
  which: 'param' | 'ema',
  metadata: Record<string, string>,
): Promise<void> {
  const values = await arena.read(which);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const s of arena.slots) tensors.set(s.name, { dtype: 'F32', shape: [...s.shape], data: values.get(s.name)! });
  await writeFileAtomic(path, encodeSafetensors(tensors, { ...metadata, weights: which === 'ema' ? 'ema' : 'raw' }, path));
}

/** The weights `--eval-weights auto` picks at `step` for an EMA of `decay` (null: none): EMA once decay^step < 1 %. */
export function autoEvalWeights(step: number, decay: number | null): 'ema' | 'raw' {
  return decay !== null && decay ** step < 0.01 ? 'ema' : 'raw';
}

/** Stable JSON equality (key order ignored), for checking a checkpoint's config against the current one. */
export function sameJson(a: unknown, b: unknown): boolean {
  const norm = (v: unknown): unknown =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, norm((v as Record<string, unknown>)[k])]))
      : Array.isArray(v)
        ? v.map(norm)
        : v;
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}
