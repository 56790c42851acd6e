/**
 * scipy's `solve_ivp` (RK45 by default, SPEC §4) on a host Float64Array state: validation, the result's shape,
 * saved states, tEval and dense output around the one driver (solve.ts) with a one-row HostF64State.
 *
 * Reproduction notes: every expression follows the operation order of the reference (see state-host.ts) and the
 * step factors use a correctly rounded pow (pow-correctly-rounded.ts). Against scipy with an unfused BLAS kernel
 * the accepted times, nfev and states are bit-identical on the test fixtures; scipy's own results move by up to
 * ~1e-5 relative between BLAS kernels at tight tolerances (the cancelling error estimate amplifies rounding).
 *
 * Storage: accepted states are kept (`y`) by default only for n ≤ SAVE_STEPS_DEFAULT_MAX_DIM; dense output costs
 * (degree + 1)·n doubles per step. The whole state vector shares one step size (the reference's batch-as-one-vector).
 */
import { scipyControl } from './control-policy.js';
import { DenseOutput, StepInterpolant } from './dense-output.js';
import type { OdeRhs } from './host-rhs.js';
import type { SolveIvpStatus } from './outcome.js';
import { solve } from './solve.js';
import { HostF64State } from './state-host.js';
import type { EmbeddedRkTableau } from './tableau.js';
import { RK45 } from './tableaus.js';
import { validateTolerances, type Tolerance } from './tolerance.js';

export type { OdeRhs } from './host-rhs.js';

/** States up to this many components keep every accepted state by default (8 KiB each; the GPU batch does not). */
export const SAVE_STEPS_DEFAULT_MAX_DIM = 1024;

export interface StepInfo {
  /** 0-based index of this accepted step. */
  readonly stepIndex: number;
  readonly tOld: number;
  readonly t: number;
  /** Signed step taken. */
  readonly h: number;
  /** The accepted state at t: the solver's buffer, valid only during the callback (copy to keep). */
  readonly y: Float64Array;
  /** f(t, y) (the FSAL stage): the solver's buffer, valid only during the callback. */
  readonly f: Float64Array;
  readonly errNorm: number;
  /** Rejected trials before this step was accepted. */
  readonly rejected: number;
  /** |h| proposed for the next step. */
  readonly hNext: number;
  readonly nfev: number;
}

export interface SolveIvpOptions {
  /** Relative tolerance (default 1e-3); values below 100·eps are raised to it, as scipy does. */
  rtol?: Tolerance;
  /** Absolute tolerance (default 1e-6), a number or one value per component. */
  atol?: Tolerance;
  /** Largest |h| (default Infinity). */
  maxStep?: number;
  /** Initial |h| (default: selected as scipy does, one extra evaluation). Must be in (0, |t1 − t0|]. */
  firstStep?: number;
  /**
   * Stop with status 'max-steps' after this many accepted steps (default unlimited). A fixed-step solve is
   * firstStep = maxStep = h with huge rtol/atol (every step is accepted and grows to maxStep).
   */
  maxSteps?: number;
  /** Build `sol`, the continuous solution over the whole solve (default false). */
  denseOutput?: boolean;
  /** Times (within the span, strictly monotone in the integration direction) to evaluate via the step interpolants. */
  tEval?: readonly number[];
  /** Keep every accepted state in `y` (default: n ≤ SAVE_STEPS_DEFAULT_MAX_DIM). */
  saveSteps?: boolean;
  /**
   * 'fail' (default): a NaN/Inf in any f evaluation or new state ends the solve with status 'non-finite'.
   * 'reject': treat it as a failed trial (shrink h by minFactor), which is what scipy ends up doing.
   */
  nonFinite?: 'fail' | 'reject';
  /** The embedded RK pair (default RK45, scipy's; RK23 is scipy's Bogacki–Shampine 3(2)). */
  method?: EmbeddedRkTableau;
  /** Called after each accepted step (awaited if it returns a promise); throwing ends the solve with 'failed'. */
  onStep?: (info: StepInfo) => void | Promise<void>;
}

export interface SolveIvpResult {
  /** Accepted times, t0 first. */
  t: number[];
  /** States at `t` (only if saveSteps; otherwise empty). */
  y: Float64Array[];
  /** State at tFinal: t1 on success, else the last accepted state. */
  yFinal: Float64Array;
  tFinal: number;
  /** tEval as given and the states there (only with options.tEval; on failure only the points reached). */
  tEval?: number[];
  yEval?: Float64Array[];
  nfev: number;
  /** Accepted steps. */
  nSteps: number;
  /** Rejected trials. */
  nRejected: number;
  status: SolveIvpStatus;
  message: string;
  /** The exception behind status 'failed'. */
  error?: unknown;
  sol?: DenseOutput;
}

function validateOptions(t0: number, t1: number, o: SolveIvpOptions): void {
  if (!Number.isFinite(t0) || !Number.isFinite(t1)) throw new RangeError(`solveIvp: tSpan must be finite, got [${t0}, ${t1}]`);
  const maxStep = o.maxStep ?? Infinity;
  if (!(maxStep > 0)) throw new RangeError(`solveIvp: maxStep must be positive, got ${maxStep}`);
  if (o.firstStep !== undefined) {
    if (!(o.firstStep > 0)) throw new RangeError(`solveIvp: firstStep must be positive, got ${o.firstStep}`);
    if (o.firstStep > Math.abs(t1 - t0)) {
      throw new RangeError(`solveIvp: firstStep ${o.firstStep} exceeds the interval length ${Math.abs(t1 - t0)}`);
    }
  }
  if (o.maxSteps !== undefined && !(o.maxSteps >= 0)) throw new RangeError(`solveIvp: maxSteps must be ≥ 0, got ${o.maxSteps}`);
  if (o.tEval) {
    const lo = Math.min(t0, t1);
    const hi = Math.max(t0, t1);
    const d = t1 >= t0 ? 1 : -1;
    o.tEval.forEach((te, k) => {
      if (!(te >= lo && te <= hi)) throw new RangeError(`solveIvp: tEval[${k}] = ${te} is not within [${lo}, ${hi}]`);
      if (k > 0 && !(d * (te - o.tEval![k - 1]) > 0)) {
        const order = d > 0 ? 'increasing' : 'decreasing';
        throw new RangeError(`solveIvp: tEval must be strictly ${order} (the integration direction); see index ${k}`);
      }
    });
  }
}

/**
 * Solve y' = f(t, y), y(t0) = y0 from t0 to t1 (either direction) with scipy's RK45 (or options.method). Invalid
 * arguments throw (before any evaluation); everything after that returns a result, with the partial state and a
 * status on failure.
 */
export async function solveIvp(
  fun: OdeRhs,
  tSpan: readonly [number, number],
  y0: ArrayLike<number>,
  options: SolveIvpOptions = {},
): Promise<SolveIvpResult> {
  const [t0, t1] = tSpan;
  const n = y0.length;
  validateOptions(t0, t1, options);
  const { rtol, atol } = validateTolerances(options.rtol ?? 1e-3, options.atol ?? 1e-6, n);
  const saveSteps = options.saveSteps ?? n <= SAVE_STEPS_DEFAULT_MAX_DIM;
  const tableau = options.method ?? RK45;
  const direction: 1 | -1 = t1 >= t0 ? 1 : -1;
  const state = new HostF64State(tableau, y0, 1, n, rtol, atol);

  const ts: number[] = [t0];
  const ys: Float64Array[] = [];
  // The saved copy of the current state, shared with the dense output's y_old.
  let ySaved: Float64Array | null = saveSteps ? state.y.slice() : null;
  if (ySaved) ys.push(ySaved);
  const sol = options.denseOutput ? new DenseOutput(t0, state.y.slice(), direction) : undefined;
  const tEval = options.tEval;
  const yEval: Float64Array[] | undefined = tEval ? [] : undefined;
  let tEvalIndex = 0;
  const result = (status: SolveIvpStatus, message: string, nSteps: number, nRejected: number, nfev: number, error?: unknown) => {
    const res: SolveIvpResult = {
      t: ts,
      y: ys,
      yFinal: state.y.slice(),
      tFinal: ts[ts.length - 1],
      nfev,
      nSteps,
      nRejected,
      status,
      message,
    };
    if (tEval && yEval) {
      res.tEval = tEval.slice(0, yEval.length);
      res.yEval = yEval;
    }
    if (error !== undefined) res.error = error;
    if (sol) res.sol = sol;
    return res;
  };

  if (n === 0) {
    if (t1 !== t0) ts.push(t1);
    if (saveSteps && t1 !== t0) ys.push(state.y.slice());
    // Nothing to integrate: the (empty) solution exists on the whole interval.
    return result('success', 'Empty state: nothing to integrate.', 0, 0, 0);
  }
  const out = await solve((t: Float64Array, y: Float64Array, f: Float64Array) => fun(t[0], y, f), tableau, scipyControl('shared', options), state, {
    tSpan,
    nonFinite: options.nonFinite,
    callbackName: 'onStep',
    beforeCommit: (s, round) => {
      const trial = round.trials[0]!;
      const tNew = trial.tNew;
      const pending = tEval !== undefined && tEvalIndex < tEval.length && direction * (tEval[tEvalIndex] - tNew) <= 0;
      if (!sol && !pending) return;
      const interp = StepInterpolant.fromStages(tableau, trial.t, tNew, ySaved ?? s.y.slice(), s.K);
      sol?.push(interp);
      while (tEval && yEval && tEvalIndex < tEval.length && direction * (tEval[tEvalIndex] - tNew) <= 0) {
        yEval.push(interp.evaluate(tEval[tEvalIndex]));
        tEvalIndex++;
      }
    },
    afterCommit: (s, round) => {
      const trial = round.trials[0]!;
      const c = round.controllers[0]!;
      ts.push(trial.tNew);
      if (saveSteps) {
        ySaved = s.y.slice();
        ys.push(ySaved);
      }
      return options.onStep?.({
        stepIndex: c.nAccepted - 1,
        tOld: trial.t,
        t: trial.tNew,
        h: trial.h,
        y: s.y,
        f: s.K[0],
        errNorm: round.errNorms[0],
        rejected: c.rejectionsThisStep,
        hNext: c.hAbs,
        nfev: round.nfev,
      });
    },
  });
  const row = out.rows[0];
  return result(row.status, row.message, row.nSteps, row.nRejected, row.nfev, out.error);
}
