/**
 * Dormand–Prince 5(4) with the step control, initial-step selection and dense output of scipy 1.17's
 * `solve_ivp(method="RK45")` (SPEC §4), on a host Float64Array state. The same controller, tableau and
 * initial-step pieces are exported so that a GPU-resident state (which only reports scalar norms back) can be
 * driven by exactly the same accept/reject/step-size decisions.
 *
 * Reproduction notes: every expression follows the operation order of the reference (a stage is y + (Σ Kⱼaⱼ)·h,
 * the new state y + h·Σ KⱼBⱼ, the FSAL call is at t + h rather than the clipped t_new, sums run left to right), and
 * the step factors use a correctly rounded pow (see powCorrectlyRounded). Against scipy with an unfused BLAS kernel
 * the accepted times, nfev and states are bit-identical on the test fixtures; scipy's own results move by up to
 * ~1e-5 relative between BLAS kernels at tight tolerances (the cancelling error estimate amplifies rounding).
 *
 * Storage: accepted states are kept (`y`) by default only for n ≤ SAVE_STEPS_DEFAULT_MAX_DIM; dense output costs
 * 5·n doubles per step. The whole state vector shares one step size (the reference's batch-as-one-vector choice).
 */

/** Right-hand side: write f(t, y) into `out`. `y` belongs to the solver: read it, never keep or modify it. */
export type OdeRhs = (t: number, y: Float64Array, out: Float64Array) => void | Promise<void>;

/** A tolerance: one value for every component, or one per component. */
export type Tolerance = number | Float64Array;

// ---------------------------------------------------------------------------------------------------------------
// Tableau

/** An explicit embedded Runge–Kutta pair with FSAL error stage and a polynomial dense output. */
export interface EmbeddedRkTableau {
  /** Number of stages of the main step (6 for Dormand–Prince); K has nStages + 1 rows (the FSAL stage). */
  readonly nStages: number;
  readonly order: number;
  /** Order of the embedded error estimator; the step-size exponent is −1/(errorEstimatorOrder + 1). */
  readonly errorEstimatorOrder: number;
  readonly C: readonly number[];
  /** Strictly lower triangular: A[s] has s entries (A[0] is empty). */
  readonly A: readonly (readonly number[])[];
  readonly B: readonly number[];
  /** Error weights over all nStages + 1 stages (the last is the FSAL stage f(t + h, y_new)). */
  readonly E: readonly number[];
  /** Dense-output matrix, (nStages + 1) × interpolant degree: Q = Kᵀ·P, y(t_old + x·h) = y_old + h·Q·[x, x², …]. */
  readonly P: readonly (readonly number[])[];
}

export const RK45_C: readonly number[] = Object.freeze([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1]);
export const RK45_A: readonly (readonly number[])[] = Object.freeze([
  Object.freeze([]),
  Object.freeze([1 / 5]),
  Object.freeze([3 / 40, 9 / 40]),
  Object.freeze([44 / 45, -56 / 15, 32 / 9]),
  Object.freeze([19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729]),
  Object.freeze([9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656]),
]);
export const RK45_B: readonly number[] = Object.freeze([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]);
export const RK45_E: readonly number[] = Object.freeze([
  -71 / 57600, 0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40,
]);
/** Shampine's 4th-order interpolant with the optimal c₆ (Math. Comp. 46, 1986), as scipy's RK45 uses it. */
export const RK45_P: readonly (readonly number[])[] = Object.freeze([
  Object.freeze([1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432]),
  Object.freeze([0, 0, 0, 0]),
  Object.freeze([0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799]),
  Object.freeze([0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072]),
  Object.freeze([0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632]),
  Object.freeze([0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844]),
  Object.freeze([0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423]),
]);

export const RK45: EmbeddedRkTableau = Object.freeze({
  nStages: 6,
  order: 5,
  errorEstimatorOrder: 4,
  C: RK45_C,
  A: RK45_A,
  B: RK45_B,
  E: RK45_E,
  P: RK45_P,
});

// ---------------------------------------------------------------------------------------------------------------
// Norms, tolerances

/** RMS norm √(Σx²)/√n, as scipy's `norm` (np.linalg.norm(x)/√n). Infinity on overflow, like the reference. */
export function rmsNorm(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s) / Math.sqrt(x.length);
}

/** scipy raises rtol below 100·eps to 100·eps (with a warning); we do the same silently. */
export const MIN_RTOL = 100 * Number.EPSILON;

function tolAt(tol: Tolerance, i: number): number {
  return typeof tol === 'number' ? tol : tol[i];
}

/** Validated tolerances: rtol clamped to ≥ 100·eps, atol ≥ 0, per-component arrays of the right length. */
export function validateTolerances(rtol: Tolerance, atol: Tolerance, n: number): { rtol: Tolerance; atol: Tolerance } {
  for (const [name, tol] of [['rtol', rtol], ['atol', atol]] as const) {
    if (typeof tol !== 'number' && tol.length !== n) {
      throw new RangeError(`solveIvp: ${name} has ${tol.length} components, the state has ${n}`);
    }
    const vals = typeof tol === 'number' ? [tol] : tol;
    for (const v of vals) {
      if (!(v >= 0)) throw new RangeError(`solveIvp: ${name} must be ≥ 0 and not NaN, got ${v}`);
    }
  }
  let r: Tolerance;
  if (typeof rtol === 'number') r = Math.max(rtol, MIN_RTOL);
  else r = rtol.map((v) => Math.max(v, MIN_RTOL));
  return { rtol: r, atol };
}

/** True if every entry is finite. */
export function allFinite(x: ArrayLike<number>): boolean {
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// Correctly rounded pow for the step-size factors.
//
// The error estimate h·Σ EⱼKⱼ is a heavily cancelling sum: a 1-ulp change anywhere (e.g. in a step factor) moves
// the next error norm by ~eps·|hK|/|err| (up to 1e-6 relative at rtol 1e-10), and the step sequences drift apart.
// V8's `**` differs from glibc's pow (which scipy gets) in ~10 % of the calls err^(−1/5); glibc is nearly always
// correctly rounded (measured: 1 in 2000 differs), so a correctly rounded pow is the closest match we can make.
// Computed in double-double (Dekker/Knuth error-free transformations; no FMA in JS).

type DD = readonly [number, number];
const SPLITTER = 134217729; // 2^27 + 1

function twoSum(a: number, b: number): DD {
  const s = a + b;
  const bb = s - a;
  return [s, a - (s - bb) + (b - bb)];
}
/** Requires |a| ≥ |b|. */
function fastTwoSum(a: number, b: number): DD {
  const s = a + b;
  return [s, b - (s - a)];
}
function twoProd(a: number, b: number): DD {
  const p = a * b;
  let c = SPLITTER * a;
  const ah = c - (c - a);
  const al = a - ah;
  c = SPLITTER * b;
  const bh = c - (c - b);
  const bl = b - bh;
  return [p, ah * bh - p + ah * bl + al * bh + al * bl];
}
function ddAdd(a: DD, b: DD): DD {
  const s = twoSum(a[0], b[0]);
  const t = twoSum(a[1], b[1]);
  const u = fastTwoSum(s[0], s[1] + t[0]);
  return fastTwoSum(u[0], u[1] + t[1]);
}
function ddMul(a: DD, b: DD): DD {
  const p = twoProd(a[0], b[0]);
  return fastTwoSum(p[0], p[1] + (a[0] * b[1] + a[1] * b[0]));
}
function ddMulD(a: DD, b: number): DD {
  const p = twoProd(a[0], b);
  return fastTwoSum(p[0], p[1] + a[1] * b);
}
function ddDivD(a: DD, b: number): DD {
  const q1 = a[0] / b;
  const p = twoProd(q1, b);
  return fastTwoSum(q1, (a[0] - p[0] - p[1] + a[1]) / b);
}

const LN2_DD: DD = [0.6931471805599453, 2.3190468138462996e-17];
/** 1/i! as double-doubles, i = 0..9. */
const INV_FACT: DD[] = (() => {
  const out: DD[] = [[1, 0]];
  let f = 1;
  for (let i = 1; i <= 9; i++) {
    f *= i;
    out.push(ddDivD([1, 0], f));
  }
  return out;
})();

/** 2^k exactly, for −1022 ≤ k ≤ 1023. */
function pow2(k: number): number {
  const b = new DataView(new ArrayBuffer(8));
  b.setUint32(0, (k + 1023) << 20);
  return b.getFloat64(0);
}

/** exp of a double-double, |a| ≤ ~700; relative error ~1e-30. */
function expDD(a: DD): DD {
  const k = Math.round(a[0] / LN2_DD[0]);
  const kl = twoProd(k, LN2_DD[0]);
  let r = ddAdd(a, [-kl[0], -kl[1]]);
  r = ddAdd(r, [-k * LN2_DD[1], 0]);
  // exp(r) = (exp(r/1024))^1024, with expm1 kept through the squarings so that nothing cancels.
  r = [r[0] / 1024, r[1] / 1024];
  let p: DD = INV_FACT[9];
  for (let i = 8; i >= 1; i--) p = ddAdd(ddMul(p, r), INV_FACT[i]);
  let m = ddMul(p, r);
  for (let i = 0; i < 10; i++) m = ddAdd([2 * m[0], 2 * m[1]], ddMul(m, m));
  const res = ddAdd([1, 0], m);
  const s = pow2(k);
  return [res[0] * s, res[1] * s];
}

/** x^e correctly rounded (to ~1e-14 ulp of a midpoint) for finite x > 0; other cases as `**`. */
export function powCorrectlyRounded(x: number, e: number): number {
  if (!(x > 0) || !Number.isFinite(x) || !Number.isFinite(e) || e === 0 || x === 1) return x ** e;
  const l0 = Math.log(x);
  // ln x = l0 + ln(1 + δ) with δ = x·e^(−l0) − 1 ~ 1e-16, so ln(1 + δ) = δ − δ²/2 to far below the ulp of ln x.
  const d = ddAdd(ddMulD(expDD([-l0, 0]), x), [-1, 0]);
  const ln = ddAdd([l0, 0], ddAdd(d, [-0.5 * d[0] * d[0], 0]));
  const y = ddMulD(ln, e);
  if (!(Math.abs(y[0]) < 700)) return x ** e;
  return expDD(y)[0];
}

// ---------------------------------------------------------------------------------------------------------------
// Initial step (Hairer, Nørsett & Wanner I, II.4), split so a GPU caller can supply the norms d0, d1, d2.

/** First guess h0 from d0 = RMS(y0/scale), d1 = RMS(f0/scale); never beyond the interval (scipy ≥ 1.15). */
export function initialStepGuess(d0: number, d1: number, intervalLength: number): number {
  const h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : (0.01 * d0) / d1;
  return pyMin(h0, intervalLength);
}

// Python's min/max keep the earliest argument unless a later one compares strictly smaller/larger, so a NaN
// argument is skipped (Math.min/max would return NaN); used where the reference calls them.
function pyMin(...xs: number[]): number {
  let m = xs[0];
  for (let i = 1; i < xs.length; i++) if (xs[i] < m) m = xs[i];
  return m;
}
function pyMax(...xs: number[]): number {
  let m = xs[0];
  for (let i = 1; i < xs.length; i++) if (xs[i] > m) m = xs[i];
  return m;
}

/** Final initial |h| from h0, d1 and d2 = RMS((f(t0 + h0, y0 + h0·f0) − f0)/scale)/h0. */
export function initialStepFinal(
  h0: number,
  d1: number,
  d2: number,
  intervalLength: number,
  maxStep: number,
  errorEstimatorOrder: number = RK45.errorEstimatorOrder,
): number {
  const h1 = d1 <= 1e-15 && d2 <= 1e-15 ? pyMax(1e-6, h0 * 1e-3) : powCorrectlyRounded(0.01 / pyMax(d1, d2), 1 / (errorEstimatorOrder + 1));
  return pyMin(100 * h0, h1, intervalLength, maxStep);
}

export interface InitialStepOptions {
  rtol: Tolerance;
  atol: Tolerance;
  maxStep?: number;
  errorEstimatorOrder?: number;
}

/**
 * Initial |h| for a host state, as scipy's `select_initial_step`. Costs one evaluation of `fun` (returned in
 * `nfev`, its value in `f1`, its time in `tProbe`), none for an empty state or a zero-length interval.
 */
export async function selectInitialStep(
  fun: OdeRhs,
  t0: number,
  y0: Float64Array,
  f0: Float64Array,
  t1: number,
  options: InitialStepOptions,
): Promise<{ hAbs: number; nfev: number; f1?: Float64Array; tProbe: number }> {
  const n = y0.length;
  if (n === 0) return { hAbs: Infinity, nfev: 0, tProbe: t0 };
  const intervalLength = Math.abs(t1 - t0);
  if (intervalLength === 0) return { hAbs: 0, nfev: 0, tProbe: t0 };
  const direction = t1 > t0 ? 1 : -1;
  const { rtol, atol } = options;
  const scale = new Float64Array(n);
  for (let i = 0; i < n; i++) scale[i] = tolAt(atol, i) + Math.abs(y0[i]) * tolAt(rtol, i);
  const tmp = new Float64Array(n);
  for (let i = 0; i < n; i++) tmp[i] = y0[i] / scale[i];
  const d0 = rmsNorm(tmp);
  for (let i = 0; i < n; i++) tmp[i] = f0[i] / scale[i];
  const d1 = rmsNorm(tmp);
  const h0 = initialStepGuess(d0, d1, intervalLength);
  const hd = h0 * direction;
  const y1 = new Float64Array(n);
  for (let i = 0; i < n; i++) y1[i] = y0[i] + hd * f0[i];
  const f1 = new Float64Array(n);
  const tProbe = t0 + hd;
  const r = fun(tProbe, y1, f1);
  if (r !== undefined) await r;
  for (let i = 0; i < n; i++) tmp[i] = (f1[i] - f0[i]) / scale[i];
  const d2 = rmsNorm(tmp) / h0;
  const hAbs = initialStepFinal(h0, d1, d2, intervalLength, options.maxStep ?? Infinity, options.errorEstimatorOrder);
  return { hAbs, nfev: 1, f1, tProbe };
}

// ---------------------------------------------------------------------------------------------------------------
// Step-size controller

/** 10·|nextafter(t, direction·∞) − t|: below this, t + h cannot be told apart from t reliably. */
export function minStepAt(t: number, direction: 1 | -1): number {
  return 10 * Math.abs(nextAfter(t, direction > 0) - t);
}

const f64 = new Float64Array(1);
const u64 = new BigUint64Array(f64.buffer);

/** The next float after x towards +∞ (up) or −∞. */
export function nextAfter(x: number, up: boolean): number {
  if (Number.isNaN(x)) return x;
  if (x === 0) return up ? Number.MIN_VALUE : -Number.MIN_VALUE;
  if (x === (up ? Infinity : -Infinity)) return x;
  f64[0] = x;
  // Away from zero increments the magnitude bits; towards zero decrements them.
  u64[0] += (x > 0) === up ? 1n : -1n;
  return f64[0];
}

/** One attempt at a step: from t by h (signed) to tNew (tNew is the clipped end; h = tNew − t). */
export interface StepTrial {
  readonly t: number;
  readonly h: number;
  readonly tNew: number;
}

/**
 * The step-control protocol, independent of where the state lives:
 *
 *   while (!c.finished) {
 *     let trial = c.beginStep();
 *     while (trial) {
 *       const errNorm = …attempt trial.h from trial.t, return RMS(err/scale)…;
 *       if (c.reportError(errNorm)) break;     // accepted: c.t === trial.tNew
 *       trial = c.retry();                    // rejected: a smaller h, or null
 *     }
 *     if (!trial) …min-step failure at c.t…
 *   }
 */
export interface StepController {
  readonly direction: 1 | -1;
  readonly tBound: number;
  /** Time of the last accepted state. */
  readonly t: number;
  /** |h| proposed for the next step. */
  readonly hAbs: number;
  readonly nAccepted: number;
  readonly nRejected: number;
  /** Rejected trials in the step in progress (or in the last step once accepted). */
  readonly rejectionsThisStep: number;
  /** min_step of the step in progress. */
  readonly minStep: number;
  readonly finished: boolean;
  /** Multiplier for |h| after a trial with this error norm (accept: ≤ maxFactor; reject: ≥ minFactor). */
  errorNormToFactor(errNorm: number, rejectedThisStep: boolean): number;
  /** Whether a trial with this error norm is accepted. */
  accepts(errNorm: number): boolean;
  beginStep(): StepTrial | null;
  reportError(errNorm: number): boolean;
  retry(): StepTrial | null;
}

export interface StepControllerOptions {
  t0: number;
  t1: number;
  /** Initial |h| (from selectInitialStep or a user's first step). */
  hAbs: number;
  maxStep?: number;
  errorEstimatorOrder?: number;
  safety?: number;
  minFactor?: number;
  maxFactor?: number;
}

/** scipy's RK45 controller: safety 0.9, factor ∈ [0.2, 10], exponent −1/5, no growth right after a rejection. */
export class Rk45Controller implements StepController {
  readonly direction: 1 | -1;
  readonly tBound: number;
  readonly maxStep: number;
  readonly safety: number;
  readonly minFactor: number;
  readonly maxFactor: number;
  readonly errorExponent: number;
  t: number;
  hAbs: number;
  nAccepted = 0;
  nRejected = 0;
  rejectionsThisStep = 0;
  minStep = 0;
  /** |h| of the trial in progress (or the next one after a rejection). */
  private trialHAbs = 0;
  private trial: StepTrial | null = null;

  constructor(options: StepControllerOptions) {
    this.t = options.t0;
    this.tBound = options.t1;
    this.direction = options.t1 >= options.t0 ? 1 : -1;
    this.hAbs = options.hAbs;
    this.maxStep = options.maxStep ?? Infinity;
    this.safety = options.safety ?? 0.9;
    this.minFactor = options.minFactor ?? 0.2;
    this.maxFactor = options.maxFactor ?? 10;
    this.errorExponent = -1 / ((options.errorEstimatorOrder ?? RK45.errorEstimatorOrder) + 1);
  }

  get finished(): boolean {
    return this.direction * (this.t - this.tBound) >= 0;
  }

  /** The trial in progress, if any. */
  get currentTrial(): StepTrial | null {
    return this.trial;
  }

  accepts(errNorm: number): boolean {
    return errNorm < 1;
  }

  errorNormToFactor(errNorm: number, rejectedThisStep: boolean): number {
    if (errNorm < 1) {
      const f = errNorm === 0 ? this.maxFactor : pyMin(this.maxFactor, this.safety * powCorrectlyRounded(errNorm, this.errorExponent));
      return rejectedThisStep ? pyMin(1, f) : f;
    }
    // A NaN norm is a rejection by the smallest factor, as the reference's max(0.2, nan) gives.
    return pyMax(this.minFactor, this.safety * powCorrectlyRounded(errNorm, this.errorExponent));
  }

  beginStep(): StepTrial | null {
    this.minStep = minStepAt(this.t, this.direction);
    this.rejectionsThisStep = 0;
    // The proposal is clamped into [min_step, max_step] once per step; a rejection may still go below min_step.
    this.trialHAbs = this.hAbs > this.maxStep ? this.maxStep : this.hAbs < this.minStep ? this.minStep : this.hAbs;
    return this.makeTrial();
  }

  retry(): StepTrial | null {
    return this.makeTrial();
  }

  private makeTrial(): StepTrial | null {
    if (this.trialHAbs < this.minStep) {
      this.trial = null;
      return null;
    }
    const t = this.t;
    let tNew = t + this.trialHAbs * this.direction;
    if (this.direction * (tNew - this.tBound) > 0) tNew = this.tBound;
    const h = tNew - t;
    this.trialHAbs = Math.abs(h);
    this.trial = { t, h, tNew };
    return this.trial;
  }

  reportError(errNorm: number): boolean {
    const trial = this.trial;
    if (!trial) throw new Error('Rk45Controller.reportError: no trial in progress (call beginStep or retry first)');
    const factor = this.errorNormToFactor(errNorm, this.rejectionsThisStep > 0);
    this.trialHAbs *= factor;
    if (this.accepts(errNorm)) {
      this.t = trial.tNew;
      this.hAbs = this.trialHAbs;
      this.nAccepted++;
      this.trial = null;
      return true;
    }
    this.rejectionsThisStep++;
    this.nRejected++;
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One generic RK step and its error norm

/** Result code of rkStep: -1 all finite; s ∈ [0, nStages] the stage whose f was non-finite; NONFINITE_Y the state. */
export const NONFINITE_Y = -2;

/**
 * One explicit RK step of `tableau` from (t, y) with signed h. K[0] must hold f(t, y); fills K[1..nStages],
 * yNew = y + h·Σ BⱼKⱼ and K[nStages] = f(t + h, yNew) (FSAL). `yStage` is scratch. With `stopOnNonFinite`,
 * returns at the first non-finite stage (saving evaluations); otherwise evaluates everything like the reference.
 * Returns -1, the index of the first non-finite stage, or NONFINITE_Y; and the number of evaluations made.
 */
export async function rkStep(
  fun: OdeRhs,
  tableau: EmbeddedRkTableau,
  t: number,
  y: Float64Array,
  h: number,
  K: Float64Array[],
  yStage: Float64Array,
  yNew: Float64Array,
  stopOnNonFinite: boolean,
): Promise<{ nonFinite: number; nfev: number }> {
  const n = y.length;
  const { A, B, C, nStages } = tableau;
  let nonFinite = -1;
  let nfev = 0;
  for (let s = 1; s < nStages; s++) {
    const a = A[s];
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < s; j++) acc += K[j][i] * a[j];
      yStage[i] = y[i] + acc * h;
    }
    const r = fun(t + C[s] * h, yStage, K[s]);
    if (r !== undefined) await r;
    nfev++;
    if (nonFinite < 0 && !allFinite(K[s])) {
      nonFinite = s;
      if (stopOnNonFinite) return { nonFinite, nfev };
    }
  }
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (let j = 0; j < nStages; j++) acc += K[j][i] * B[j];
    yNew[i] = y[i] + h * acc;
  }
  if (nonFinite < 0 && !allFinite(yNew)) {
    nonFinite = NONFINITE_Y;
    if (stopOnNonFinite) return { nonFinite, nfev };
  }
  const r = fun(t + h, yNew, K[nStages]);
  if (r !== undefined) await r;
  nfev++;
  if (nonFinite < 0 && !allFinite(K[nStages])) nonFinite = nStages;
  return { nonFinite, nfev };
}

/** RMS over components of (h·Σ EⱼKⱼ) / (atol + max(|y|, |yNew|)·rtol): the scaled error of the last rkStep. */
export function estimateErrorNorm(
  tableau: EmbeddedRkTableau,
  K: Float64Array[],
  h: number,
  y: Float64Array,
  yNew: Float64Array,
  rtol: Tolerance,
  atol: Tolerance,
): number {
  const n = y.length;
  const E = tableau.E;
  const m = E.length;
  let s = 0;
  for (let i = 0; i < n; i++) {
    let acc = 0;
    // All stages, zeros included, so that a non-finite stage makes the norm NaN instead of vanishing.
    for (let j = 0; j < m; j++) acc += K[j][i] * E[j];
    const scale = tolAt(atol, i) + Math.max(Math.abs(y[i]), Math.abs(yNew[i])) * tolAt(rtol, i);
    const e = (acc * h) / scale;
    s += e * e;
  }
  return Math.sqrt(s) / Math.sqrt(n);
}

// ---------------------------------------------------------------------------------------------------------------
// Dense output

/** The interpolant of one accepted step: y(t_old + x·h) = y_old + h·Σⱼ Q[:, j]·x^(j+1), x ∈ [0, 1]. */
export class StepInterpolant {
  readonly h: number;
  readonly degree: number;

  /** Q is n × degree, row-major (component i at Q[i·degree .. i·degree + degree)). */
  constructor(
    readonly tOld: number,
    readonly t: number,
    readonly yOld: Float64Array,
    readonly Q: Float64Array,
  ) {
    this.h = t - tOld;
    this.degree = yOld.length === 0 ? 0 : Q.length / yOld.length;
  }

  /** Build from the stages of an accepted step: Q = Kᵀ·P. */
  static fromStages(tableau: EmbeddedRkTableau, tOld: number, t: number, yOld: Float64Array, K: Float64Array[]): StepInterpolant {
    const n = yOld.length;
    const P = tableau.P;
    const deg = P[0].length;
    const Q = new Float64Array(n * deg);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < deg; j++) {
        let acc = 0;
        for (let s = 0; s < P.length; s++) acc += K[s][i] * P[s][j];
        Q[i * deg + j] = acc;
      }
    }
    return new StepInterpolant(tOld, t, yOld, Q);
  }

  evaluateInto(t: number, out: Float64Array): Float64Array {
    const n = this.yOld.length;
    const deg = this.degree;
    const x = (t - this.tOld) / this.h;
    const p = new Float64Array(deg);
    let pw = x;
    for (let j = 0; j < deg; j++) {
      p[j] = pw;
      pw *= x;
    }
    const Q = this.Q;
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < deg; j++) acc += Q[i * deg + j] * p[j];
      out[i] = this.h * acc + this.yOld[i];
    }
    return out;
  }

  evaluate(t: number): Float64Array {
    return this.evaluateInto(t, new Float64Array(this.yOld.length));
  }
}

/**
 * Continuous solution over the whole solve: one interpolant per accepted step (as scipy's OdeSolution). A time on
 * a step boundary uses the step that ends there (t0 uses the first); times outside the span extrapolate the end
 * steps. Memory: (degree + 1)·n doubles per step (y_old is shared with the saved steps when those are kept).
 */
export class DenseOutput {
  /** Accepted times, in integration order; segments[k] spans ts[k] → ts[k + 1]. */
  readonly ts: number[];
  readonly segments: StepInterpolant[];
  readonly direction: 1 | -1;
  /** Used when there is no step (zero-length interval): the solution is the constant y0. */
  private readonly y0: Float64Array;

  constructor(t0: number, y0: Float64Array, direction: 1 | -1) {
    this.ts = [t0];
    this.segments = [];
    this.direction = direction;
    this.y0 = y0;
  }

  /** Append the interpolant of the next accepted step (it must start where the previous one ended). */
  push(segment: StepInterpolant): void {
    this.segments.push(segment);
    this.ts.push(segment.t);
  }

  get tMin(): number {
    return Math.min(this.ts[0], this.ts[this.ts.length - 1]);
  }

  get tMax(): number {
    return Math.max(this.ts[0], this.ts[this.ts.length - 1]);
  }

  /** Index of the segment used for time t. */
  segmentIndex(t: number): number {
    const ts = this.ts;
    const d = this.direction;
    // First k with d·(ts[k] − t) ≥ 0 (binary search: ts is monotone in the direction d).
    let lo = 0;
    let hi = ts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (d * (ts[mid] - t) >= 0) hi = mid;
      else lo = mid + 1;
    }
    return Math.min(Math.max(lo - 1, 0), this.segments.length - 1);
  }

  evaluateInto(t: number, out: Float64Array): Float64Array {
    if (this.segments.length === 0) {
      out.set(this.y0);
      return out;
    }
    return this.segments[this.segmentIndex(t)].evaluateInto(t, out);
  }

  evaluate(t: number): Float64Array {
    return this.evaluateInto(t, new Float64Array(this.y0.length));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// solveIvp

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
  /** Called after each accepted step (awaited if it returns a promise); throwing ends the solve with 'failed'. */
  onStep?: (info: StepInfo) => void | Promise<void>;
}

export type SolveIvpStatus = 'success' | 'min-step' | 'max-steps' | 'non-finite' | 'failed';

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

/** Shortest round-trip form, so a reported t can be pasted back exactly. */
function fmt(x: number): string {
  return String(x);
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
 * Solve y' = f(t, y), y(t0) = y0 from t0 to t1 (either direction) with scipy's RK45. Invalid arguments throw
 * (before any evaluation); everything after that returns a result, with the partial state and a status on failure.
 */
export async function solveIvp(
  userFun: OdeRhs,
  tSpan: readonly [number, number],
  y0: ArrayLike<number>,
  options: SolveIvpOptions = {},
): Promise<SolveIvpResult> {
  const [t0, t1] = tSpan;
  const n = y0.length;
  validateOptions(t0, t1, options);
  const { rtol, atol } = validateTolerances(options.rtol ?? 1e-3, options.atol ?? 1e-6, n);
  const maxStep = options.maxStep ?? Infinity;
  const saveSteps = options.saveSteps ?? n <= SAVE_STEPS_DEFAULT_MAX_DIM;
  const stopOnNonFinite = (options.nonFinite ?? 'fail') === 'fail';
  const tableau = RK45;
  const direction: 1 | -1 = t1 >= t0 ? 1 : -1;

  let y = Float64Array.from(y0);
  let yNew = new Float64Array(n);
  const yStage = new Float64Array(n);
  const K: Float64Array[] = [];
  for (let s = 0; s <= tableau.nStages; s++) K.push(new Float64Array(n));

  const ts: number[] = [t0];
  const ys: Float64Array[] = [];
  // The saved copy of the current state, shared with the dense output's y_old.
  let ySaved: Float64Array | null = saveSteps ? y.slice() : null;
  if (ySaved) ys.push(ySaved);
  const sol = options.denseOutput ? new DenseOutput(t0, y.slice(), direction) : undefined;
  const tEval = options.tEval;
  const yEval: Float64Array[] | undefined = tEval ? [] : undefined;
  let tFinal = t0;
  let ctrl: Rk45Controller | null = null;
  // Counted at the call, so that a call which throws is counted too.
  let nfev = 0;
  const fun: OdeRhs = (t, yy, out) => {
    nfev++;
    return userFun(t, yy, out);
  };

  const finish = (status: SolveIvpStatus, message: string, error?: unknown): SolveIvpResult => {
    const res: SolveIvpResult = {
      t: ts,
      y: ys,
      yFinal: y.slice(),
      tFinal,
      nfev,
      nSteps: ctrl ? ctrl.nAccepted : 0,
      nRejected: ctrl ? ctrl.nRejected : 0,
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
  const threw = (e: unknown, where: string): SolveIvpResult =>
    finish('failed', `${where} threw: ${e instanceof Error ? e.message : String(e)}`, e);

  if (!allFinite(y)) return finish('non-finite', `Non-finite initial state y0 at t0 = ${fmt(t0)} (step index 0)`);
  if (n === 0) {
    // Nothing to integrate: the (empty) solution exists on the whole interval.
    tFinal = t1;
    if (t1 !== t0) ts.push(t1);
    if (saveSteps && t1 !== t0) ys.push(y.slice());
    return finish('success', 'Empty state: nothing to integrate.');
  }

  try {
    const r = fun(t0, y, K[0]);
    if (r !== undefined) await r;
  } catch (e) {
    return threw(e, `f(t0, y0) at t0 = ${fmt(t0)} (step index 0)`);
  }
  if (!allFinite(K[0])) return finish('non-finite', `Non-finite f(t0, y0) at t0 = ${fmt(t0)} (step index 0)`);

  let hAbs: number;
  if (options.firstStep !== undefined) {
    hAbs = options.firstStep;
  } else {
    try {
      const sel = await selectInitialStep(fun, t0, y, K[0], t1, { rtol, atol, maxStep });
      hAbs = sel.hAbs;
      if (sel.f1 && !allFinite(sel.f1) && stopOnNonFinite) {
        return finish('non-finite', `Non-finite f during initial-step selection at t = ${fmt(sel.tProbe)} (step index 0)`);
      }
    } catch (e) {
      return threw(e, `f during initial-step selection near t0 = ${fmt(t0)} (step index 0)`);
    }
  }

  const c = new Rk45Controller({ t0, t1, hAbs, maxStep, errorEstimatorOrder: tableau.errorEstimatorOrder });
  ctrl = c;
  let tEvalIndex = 0;

  while (!c.finished) {
    const stepIndex = c.nAccepted;
    if (options.maxSteps !== undefined && stepIndex >= options.maxSteps) {
      return finish(
        'max-steps',
        `Reached maxSteps = ${options.maxSteps} accepted steps at t = ${fmt(c.t)} (step index ${stepIndex}) ` +
          `before t1 = ${fmt(t1)}.`,
      );
    }
    let trial = c.beginStep();
    let errNorm = NaN;
    while (trial) {
      let res: { nonFinite: number; nfev: number };
      try {
        res = await rkStep(fun, tableau, trial.t, y, trial.h, K, yStage, yNew, stopOnNonFinite);
      } catch (e) {
        return threw(e, `f during step index ${stepIndex} (t = ${fmt(trial.t)}, h = ${fmt(trial.h)})`);
      }
      if (res.nonFinite !== -1 && stopOnNonFinite) {
        const s = res.nonFinite;
        const where =
          s === NONFINITE_Y
            ? `the new state y at t = ${fmt(trial.tNew)}`
            : `f (stage ${s}) at t = ${fmt(s === tableau.nStages ? trial.t + trial.h : trial.t + tableau.C[s] * trial.h)}`;
        return finish(
          'non-finite',
          `Non-finite value in ${where}, during step index ${stepIndex} from t = ${fmt(trial.t)} with h = ${fmt(trial.h)}.`,
        );
      }
      errNorm = res.nonFinite === -1 ? estimateErrorNorm(tableau, K, trial.h, y, yNew, rtol, atol) : NaN;
      if (c.reportError(errNorm)) break;
      trial = c.retry();
    }
    if (!trial) {
      return finish(
        'min-step',
        `Required step size is less than spacing between numbers: at t = ${fmt(c.t)} (step index ${stepIndex}; ` +
          `rejected trials in this step: ${c.rejectionsThisStep}) |h| fell below min_step = ${fmt(c.minStep)}.`,
      );
    }

    // Accepted.
    const tOld = trial.t;
    const tNew = trial.tNew;
    const needInterp = sol !== undefined || (tEval !== undefined && tEvalIndex < tEval.length && direction * (tEval[tEvalIndex] - tNew) <= 0);
    let interp: StepInterpolant | null = null;
    if (needInterp) interp = StepInterpolant.fromStages(tableau, tOld, tNew, ySaved ?? y.slice(), K);
    if (sol && interp) sol.push(interp);
    if (tEval && yEval && interp) {
      while (tEvalIndex < tEval.length && direction * (tEval[tEvalIndex] - tNew) <= 0) {
        yEval.push(interp.evaluate(tEval[tEvalIndex]));
        tEvalIndex++;
      }
    }
    // FSAL: the last stage is the next step's first; swap buffers instead of copying.
    [y, yNew] = [yNew, y];
    [K[0], K[tableau.nStages]] = [K[tableau.nStages], K[0]];
    tFinal = tNew;
    ts.push(tNew);
    if (saveSteps) {
      ySaved = y.slice();
      ys.push(ySaved);
    }
    if (options.onStep) {
      try {
        const r = options.onStep({
          stepIndex,
          tOld,
          t: tNew,
          h: trial.h,
          y,
          f: K[0],
          errNorm,
          rejected: c.rejectionsThisStep,
          hNext: c.hAbs,
          nfev,
        });
        if (r !== undefined) await r;
      } catch (e) {
        return threw(e, `onStep after step index ${stepIndex} (t = ${fmt(tNew)})`);
      }
    }
  }
  return finish(
    'success',
    `The solver successfully reached the end of the integration interval t1 = ${fmt(t1)} ` +
      `(${c.nAccepted} steps, ${c.nRejected} rejected, ${nfev} evaluations).`,
  );
}
