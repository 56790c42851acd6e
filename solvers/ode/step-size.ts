/**
 * Step-size arithmetic shared by every state: the spacing of floats (min_step), Python's min/max, and the initial
 * step of Hairer, Nørsett & Wanner I, II.4 split so that a state which only reports norms (the GPU) can use it.
 */
import { powCorrectlyRounded } from './pow-correctly-rounded.js';
import { rmsNorm, tolAt, type Tolerance } from './tolerance.js';
import type { OdeRhs } from './host-rhs.js';
import { RK45 } from './tableaus.js';

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

/** 10·|nextafter(t, direction·∞) − t|: below this, t + h cannot be told apart from t reliably. */
export function minStepAt(t: number, direction: 1 | -1): number {
  return 10 * Math.abs(nextAfter(t, direction > 0) - t);
}

// Python's min/max keep the earliest argument unless a later one compares strictly smaller/larger, so a NaN
// argument is skipped (Math.min/max would return NaN); used where the reference calls them.
export function pyMin(...xs: number[]): number {
  let m = xs[0];
  for (let i = 1; i < xs.length; i++) if (xs[i] < m) m = xs[i];
  return m;
}
export function pyMax(...xs: number[]): number {
  let m = xs[0];
  for (let i = 1; i < xs.length; i++) if (xs[i] > m) m = xs[i];
  return m;
}

/** First guess h0 from d0 = RMS(y0/scale), d1 = RMS(f0/scale); never beyond the interval (scipy ≥ 1.15). */
export function initialStepGuess(d0: number, d1: number, intervalLength: number): number {
  const h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : (0.01 * d0) / d1;
  return pyMin(h0, intervalLength);
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
 * Initial |h| for a host state, as scipy's `select_initial_step` (a standalone helper; the driver computes the
 * same norms through its state). Costs one evaluation of `fun` (returned in `nfev`, its value in `f1`, its time in
 * `tProbe`), none for an empty state or a zero-length interval.
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
