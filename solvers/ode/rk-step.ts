/**
 * One step of a tableau on a single host Float64Array state, for callers that drive a StepController by hand
 * (the driver itself goes through HostF64State, which uses the same range helpers).
 */
import type { OdeRhs } from './host-rhs.js';
import { combineRange, errorSumRange } from './state-host.js';
import { weightTerms } from './state.js';
import type { EmbeddedRkTableau } from './tableau.js';
import { allFinite, type Tolerance } from './tolerance.js';

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
    combineRange(y, K, weightTerms(A[s]), h, yStage, 0, n);
    const r = fun(t + C[s] * h, yStage, K[s]);
    if (r !== undefined) await r;
    nfev++;
    if (nonFinite < 0 && !allFinite(K[s])) {
      nonFinite = s;
      if (stopOnNonFinite) return { nonFinite, nfev };
    }
  }
  combineRange(y, K, weightTerms(B), h, yNew, 0, n);
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
  return Math.sqrt(errorSumRange(tableau.E, K, h, y, yNew, rtol, atol, 0, n, 0)) / Math.sqrt(n);
}
