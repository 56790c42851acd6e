/**
 * What the driver (solve.ts) needs from a batch of ODE states, wherever they live: `rows` independent systems of
 * `dim` components each, with the tableau's stages K₀…K_s. Two implementations: host float64 (state-host.ts) and
 * GPU float32 (state-gpu.ts). Only scalars (norms, per-row flags) come back to the driver.
 */
import type { EmbeddedRkTableau } from './tableau.js';

/** A value, or a promise of it: a host state answers at once (no microtask per stage on the hot path). */
export type MaybePromise<T> = T | Promise<T>;

/** Per row: 1 where the row holds a non-finite value. */
export type RowFlags = Uint8Array;

/** A term of a stage combination: logical stage index (0 … nStages) and its coefficient. */
export interface StageTerm {
  readonly stage: number;
  readonly coef: number;
}

/** The terms Σⱼ K[j]·wⱼ of a row of weights (A[s], B, E), zeros included: the reference sums them all. */
export function weightTerms(weights: readonly number[]): StageTerm[] {
  return weights.map((coef, stage) => ({ stage, coef }));
}

/** What an initial-step norm is taken of: y0, f(t0, y0), or f(probe) − f(t0, y0) (the probe is stage 1). */
export type InitialNormOf = 'y' | 'f0' | 'probe';

export interface StateNorms {
  /**
   * Per row RMS over its components of x/scale; pooled: every entry is the RMS over the whole batch (how each
   * state sums is its own business: the host sums left to right over all components, as scipy on the flattened
   * batch; the GPU sums per row, then over rows).
   */
  readonly norms: Float64Array;
  /** Rows with a non-finite operand (null: the state found none, or checks elsewhere). */
  readonly bad: RowFlags | null;
}

export interface RkState<Term> {
  readonly rows: number;
  readonly dim: number;
  readonly tableau: EmbeddedRkTableau;
  /** Rows whose initial state holds NaN/±Inf. */
  nonFiniteInitialRows(): RowFlags;
  /** The signed step of each row for the following combinations and norms (0 freezes the row: out = y). */
  setStep(h: Float64Array): void;
  /**
   * into = y + (Σⱼ K[stageⱼ]·coefⱼ)·h_b, summed in the order given. Returns the live rows whose result is
   * non-finite when the state can tell at once (host, for 'new'), else null.
   */
  combine(terms: readonly StageTerm[], into: 'stage' | 'new', live: readonly number[]): RowFlags | null;
  /**
   * K[stage] = f(times, source). Returns the live rows whose K[stage] is non-finite when the state can tell at
   * once (host), else null (the GPU reports them with the norms).
   */
  evaluate(term: Term, stage: number, source: 'y' | 'stage' | 'new', times: Float64Array, live: readonly number[]): MaybePromise<RowFlags | null>;
  /** Norms for the initial step, scale = atol + |y|·rtol; `bad`: rows whose operand is non-finite. */
  initialNorms(of: InitialNormOf, pooled: boolean): MaybePromise<StateNorms>;
  /**
   * The scaled error of the trial: RMS of (h·Σ EⱼKⱼ)/(atol + max(|y|, |y_new|)·rtol); `bad`: rows with a
   * non-finite stage or new state, where not reported before.
   */
  errorNorms(pooled: boolean): MaybePromise<StateNorms>;
  /** Accepted rows take y ← y_new and K₀ ← K_last (FSAL); pooled: every row was accepted. */
  commit(accepted: RowFlags, pooled: boolean): void;
  /** The current states, row-major [rows, dim]. */
  readY(): Promise<Float64Array>;
}
