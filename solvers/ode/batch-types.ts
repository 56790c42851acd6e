/**
 * Types of the batched solve (solveBatch in solve-batch.ts): the batched right-hand side, the options (where the
 * state lives, how steps are controlled, what is kept) and the per-row results.
 */
import type { Tensor } from '../../engine/tensor.js';
import { ShapeError } from '../../engine/errors.js';
import type { StepControl } from './control-policy.js';
import type { GpuDenseOutput } from './dense-output-gpu.js';
import type { RowOutcome, SolveIvpStatus } from './outcome.js';
import type { EmbeddedRkTableau } from './tableau.js';

export type { StepControl } from './control-policy.js';
export type { RowOutcome } from './outcome.js';

/**
 * The batched right-hand side: write f(t_b, y_b) for every row b of y ([B, N], f32) into `out` ([B, N], f32).
 * `t` holds one time per row. Must be row-local (row b of out depends on row b of y and t_b only). Runs inside an
 * engine scope: tensors it creates are released after the call.
 */
export type BatchRhs = (t: Float64Array, y: Tensor, out: Tensor) => void | Promise<void>;

export type StatePlacement = 'gpu-f32' | 'host-f64';
/** 'states': the state after each accepted step; 'stages' (gpu-f32, shared): also its stages, for dense output. */
export type KeepSteps = 'none' | 'states' | 'stages';

export interface SolveProgress {
  /** Accepted steps (shared) or rounds (per-sample). */
  step: number;
  /** Batched RHS evaluations so far. */
  nfev: number;
  /** Time reached (per-sample: the least advanced running row). */
  t: number;
  /** Last accepted |h| (per-sample: the smallest over running rows). */
  h: number;
  /** Rows still integrating. */
  running: number;
}

export interface BatchSolveOptions {
  /** Relative tolerance (default 1e-3, as solveIvp). */
  rtol?: number;
  /** Absolute tolerance (default 1e-6). */
  atol?: number;
  maxStep?: number;
  /** Initial |h| for every row (default: selected as scipy does, one extra evaluation). */
  firstStep?: number;
  /** Per row (or shared), stop with 'max-steps' after this many accepted steps. */
  maxSteps?: number;
  stepControl?: StepControl;
  state?: StatePlacement;
  /** The embedded RK pair (default RK45, scipy's). */
  method?: EmbeddedRkTableau;
  keepSteps?: KeepSteps;
  onProgress?: (p: SolveProgress) => void;
}

/** A stored state: per-row times and the state (GPU tensor in 'gpu-f32', host float64 in 'host-f64'). */
export interface Checkpoint {
  t: Float64Array;
  y: Tensor | Float64Array;
}

export interface BatchSolveResult {
  batch: number;
  dim: number;
  /** Final states, row-major [B, N] (the last accepted state of rows that failed). */
  yFinal: Float64Array;
  tFinal: Float64Array;
  /** 'success' when every row succeeded, else the status of the first failed row. */
  status: SolveIvpStatus;
  message: string;
  rows: RowOutcome[];
  /** Batched RHS evaluations (each evaluates all B rows). */
  nfev: number;
  /** Accepted steps (shared) or rounds (per-sample: the maximum over rows of accepted + rejected trials). */
  nSteps: number;
  nRejected: number;
  stepControl: StepControl;
  state: StatePlacement;
  /** What precision the state, stages and error control had (PRECISION_NOTE[state]). */
  precision: string;
  /** Accepted times per row, t0 first (equal lists under shared control). */
  stepTimes: number[][];
  /** With keepSteps: the initial state and the state after every accepted step (per-sample: every round). */
  checkpoints: Checkpoint[];
  /** With keepSteps 'stages' (gpu-f32, shared): the continuous solution. */
  dense?: GpuDenseOutput;
  /** What the right-hand side (or onProgress) threw, behind status 'failed'. */
  error?: unknown;
  /** Releases the checkpoint tensors. */
  dispose(): void;
}

export const PRECISION_NOTE: Record<StatePlacement, string> = {
  'gpu-f32': 'state, stages and error norms in float32 on the GPU (rtol below ~1e-6 is not meaningful); step control in float64 on the host',
  'host-f64': 'state and error control in float64 on the host (SPEC §4 reference); the RHS runs in float32 on the GPU',
};

export function validateBatchOptions(
  t0: number,
  t1: number,
  batch: number,
  dim: number,
  o: BatchSolveOptions,
): Required<Pick<BatchSolveOptions, 'rtol' | 'atol' | 'stepControl' | 'state' | 'keepSteps'>> {
  if (!Number.isFinite(t0) || !Number.isFinite(t1)) throw new RangeError(`solveBatch: tSpan must be finite, got [${t0}, ${t1}]`);
  if (!Number.isInteger(batch) || batch < 1 || !Number.isInteger(dim) || dim < 1) {
    throw new ShapeError(`solveBatch: batch ${batch} × dim ${dim} must be positive integers`);
  }
  const rtol = o.rtol ?? 1e-3;
  const atol = o.atol ?? 1e-6;
  if (!(rtol >= 0) || !(atol >= 0)) throw new RangeError(`solveBatch: rtol ${rtol} and atol ${atol} must be ≥ 0`);
  const stepControl = o.stepControl ?? 'shared';
  const state = o.state ?? 'gpu-f32';
  const keepSteps = o.keepSteps ?? 'none';
  if (stepControl !== 'shared' && stepControl !== 'per-sample') throw new RangeError(`solveBatch: unknown stepControl '${stepControl}'`);
  if (state !== 'gpu-f32' && state !== 'host-f64') throw new RangeError(`solveBatch: unknown state '${state}'`);
  if (keepSteps === 'stages' && !(state === 'gpu-f32' && stepControl === 'shared')) {
    throw new RangeError("solveBatch: keepSteps 'stages' (dense output) needs state 'gpu-f32' and stepControl 'shared'");
  }
  if (keepSteps !== 'none' && state === 'host-f64' && stepControl === 'per-sample') {
    throw new RangeError("solveBatch: keepSteps needs stepControl 'shared' with state 'host-f64' (per-row checkpoints are not kept)");
  }
  if (o.maxStep !== undefined && !(o.maxStep > 0)) throw new RangeError(`solveBatch: maxStep must be positive, got ${o.maxStep}`);
  if (o.firstStep !== undefined && !(o.firstStep > 0 && o.firstStep <= Math.abs(t1 - t0))) {
    throw new RangeError(`solveBatch: firstStep must be in (0, ${Math.abs(t1 - t0)}], got ${o.firstStep}`);
  }
  if (o.maxSteps !== undefined && !(o.maxSteps >= 0)) throw new RangeError(`solveBatch: maxSteps must be ≥ 0, got ${o.maxSteps}`);
  return { rtol: Math.max(rtol, 100 * Number.EPSILON), atol, stepControl, state, keepSteps };
}
