/** Tolerances and norms of the host float64 state, with scipy's conventions. */

/** A tolerance: one value for every component, or one per component. */
export type Tolerance = number | Float64Array;

/** scipy raises rtol below 100·eps to 100·eps (with a warning); we do the same silently. */
export const MIN_RTOL = 100 * Number.EPSILON;

/** The tolerance of component i. */
export function tolAt(tol: Tolerance, i: number): number {
  return typeof tol === 'number' ? tol : tol[i];
}

/** RMS norm √(Σx²)/√n, as scipy's `norm` (np.linalg.norm(x)/√n). Infinity on overflow, like the reference. */
export function rmsNorm(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s) / Math.sqrt(x.length);
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
