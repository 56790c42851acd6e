/**
 * An explicit embedded Runge–Kutta pair as DATA: the driver (solve.ts), the state operations and the dense output
 * read only these fields, so a new method is a new constant in tableaus.ts, nothing else.
 */

/**
 * An explicit embedded RK pair in scipy's layout: K has nStages + 1 rows, the last being f(t + h, y_new) — the
 * first stage of the next step (FSAL) and a term of the error estimate.
 */
export interface EmbeddedRkTableau {
  readonly name: string;
  /** Stages of the main step (6 for Dormand–Prince 5(4), 3 for Bogacki–Shampine 3(2)). */
  readonly nStages: number;
  /** Order of the propagated solution. */
  readonly order: number;
  /** Order of the embedded error estimator; the step-size exponent is −1/(errorEstimatorOrder + 1). */
  readonly errorEstimatorOrder: number;
  /** The stage f(t + h, y_new) is the next step's first stage. The driver requires it (scipy's RK23 and RK45 are). */
  readonly fsal: true;
  readonly C: readonly number[];
  /** Strictly lower triangular: A[s] has s entries (A[0] is empty). */
  readonly A: readonly (readonly number[])[];
  readonly B: readonly number[];
  /** Error weights over all nStages + 1 stages (the last is the FSAL stage), err = h·Σ EⱼKⱼ. */
  readonly E: readonly number[];
  /** Dense-output matrix, (nStages + 1) × degree: y(t_old + x·h) = y_old + h·Σ_s K_s·Σ_j P[s][j]·x^(j+1). */
  readonly P: readonly (readonly number[])[];
}

/** Rows of K a step of this tableau uses (its stages and the FSAL stage). */
export function stageCount(tableau: EmbeddedRkTableau): number {
  return tableau.nStages + 1;
}

/** Throws a RangeError naming the tableau and the field whose shape is wrong. */
export function checkTableau(t: EmbeddedRkTableau): void {
  const fail = (what: string) => {
    throw new RangeError(`tableau ${t.name}: ${what}`);
  };
  const s = t.nStages;
  if (!(Number.isInteger(s) && s >= 1)) fail(`nStages must be a positive integer, got ${s}`);
  if (t.C.length !== s) fail(`C has ${t.C.length} entries, expected nStages = ${s}`);
  if (t.A.length !== s) fail(`A has ${t.A.length} rows, expected nStages = ${s}`);
  t.A.forEach((row, k) => {
    if (row.length !== k) fail(`A[${k}] has ${row.length} entries, expected ${k} (strictly lower triangular)`);
  });
  if (t.B.length !== s) fail(`B has ${t.B.length} entries, expected nStages = ${s}`);
  if (t.E.length !== s + 1) fail(`E has ${t.E.length} entries, expected nStages + 1 = ${s + 1}`);
  if (t.P.length !== s + 1) fail(`P has ${t.P.length} rows, expected nStages + 1 = ${s + 1}`);
  const degree = t.P[0]?.length ?? 0;
  t.P.forEach((row, k) => {
    if (row.length !== degree) fail(`P[${k}] has ${row.length} columns, P[0] has ${degree}`);
  });
  if (!t.fsal) fail('only FSAL tableaus are supported (K[nStages] = f(t + h, y_new))');
}

/** The dense-output weights w_s(x) = Σ_j P[s][j]·x^(j+1) of every stage (Horner-free, as the host interpolant). */
export function denseWeights(tableau: EmbeddedRkTableau, x: number): number[] {
  return tableau.P.map((row) => {
    let w = 0;
    let pw = x;
    for (const p of row) {
      w += p * pw;
      pw *= x;
    }
    return w;
  });
}
