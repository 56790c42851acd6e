/**
 * The tableaus are data: their consistency conditions, and the empirical orders the driver reaches with them
 * (propagated solution, embedded error estimate, dense output) on a smooth problem, plus DETEST-style adaptive
 * runs (Hull, Enright, Fellen & Sedgwick 1972) whose global error must follow the tolerance.
 */
import { describe, expect, it } from 'vitest';
import { rkStep } from '../../../solvers/ode/rk-step.js';
import { solveIvp, type OdeRhs } from '../../../solvers/ode/solve-ivp.js';
import { checkTableau, denseWeights, type EmbeddedRkTableau } from '../../../solvers/ode/tableau.js';
import { RK23, RK45 } from '../../../solvers/ode/tableaus.js';
import { rhs } from '../../helpers/scipy-rk-fixtures.js';

const TABLEAUS = [RK45, RK23];
const sum = (xs: readonly number[]) => xs.reduce((a, x) => a + x, 0);

/** y' = y·cos t, y(0) = 1: y = exp(sin t) (smooth, non-autonomous). */
const smooth: OdeRhs = (t, y, out) => {
  out[0] = y[0] * Math.cos(t);
};
const smoothExact = (t: number) => Math.exp(Math.sin(t));

/** log2 of successive error ratios at halved h. */
function observedOrders(errs: number[]): number[] {
  return errs.slice(1).map((e, k) => Math.log2(errs[k] / e));
}

describe.each(TABLEAUS.map((t) => [t.name, t] as const))('%s as data', (_name, tab: EmbeddedRkTableau) => {
  it('is well formed and consistent: Σ A[s] = C[s], Σ B = 1, Σ E = 0, the interpolant ends at the step', () => {
    expect(() => checkTableau(tab)).not.toThrow();
    tab.A.forEach((row, s) => expect(sum(row)).toBeCloseTo(tab.C[s], 15));
    expect(sum(tab.B)).toBeCloseTo(1, 15);
    expect(sum(tab.E)).toBeCloseTo(0, 15);
    // At x = 1 the dense output is the step itself: w_s(1) = B_s, and 0 for the FSAL stage.
    const w1 = denseWeights(tab, 1);
    w1.forEach((w, s) => expect(w).toBeCloseTo(s < tab.nStages ? tab.B[s] : 0, 14));
    expect(denseWeights(tab, 0).every((w) => w === 0)).toBe(true);
  });

  it(`reaches order ${tab.order} with fixed steps (firstStep = maxStep = h, huge tolerances)`, async () => {
    const errs: number[] = [];
    const hs = tab.order >= 5 ? [1 / 4, 1 / 8, 1 / 16, 1 / 32] : [1 / 8, 1 / 16, 1 / 32, 1 / 64];
    for (const h of hs) {
      const r = await solveIvp(smooth, [0, 2], [1], { method: tab, firstStep: h, maxStep: h, rtol: 1e10, atol: 1e10 });
      expect(r.nSteps).toBe(Math.round(2 / h));
      expect(r.nRejected).toBe(0);
      // FSAL: nStages evaluations per step plus f(t0, y0).
      expect(r.nfev).toBe(1 + tab.nStages * r.nSteps);
      errs.push(Math.abs(r.yFinal[0] - smoothExact(2)));
    }
    for (const p of observedOrders(errs)) {
      expect(p).toBeGreaterThan(tab.order - 0.4);
      expect(p).toBeLessThan(tab.order + 0.6);
    }
  });

  it(`its error estimate h·Σ EⱼKⱼ is O(h^${tab.errorEstimatorOrder + 1}) (the embedded order ${tab.errorEstimatorOrder})`, async () => {
    const ests: number[] = [];
    for (const h of [0.2, 0.1, 0.05, 0.025]) {
      const K = Array.from({ length: tab.nStages + 1 }, () => new Float64Array(1));
      const y = Float64Array.of(1);
      smooth(0.3, y, K[0]);
      await rkStep(smooth, tab, 0.3, y, h, K, new Float64Array(1), new Float64Array(1), true);
      ests.push(Math.abs(h * tab.E.reduce((a, e, j) => a + e * K[j][0], 0)));
    }
    for (const p of observedOrders(ests)) {
      expect(p).toBeGreaterThan(tab.errorEstimatorOrder + 1 - 0.3);
      expect(p).toBeLessThan(tab.errorEstimatorOrder + 1 + 0.3);
    }
  });

  it('its dense output between the steps converges at the interpolant order', async () => {
    const degree = tab.P[0].length;
    const errs: number[] = [];
    for (const h of [1 / 4, 1 / 8, 1 / 16]) {
      const r = await solveIvp(smooth, [0, 2], [1], { method: tab, firstStep: h, maxStep: h, rtol: 1e10, atol: 1e10, denseOutput: true });
      let worst = 0;
      for (let k = 0; k + 1 < r.t.length; k++) {
        for (const x of [0.25, 0.5, 0.75]) {
          const t = r.t[k] + x * (r.t[k + 1] - r.t[k]);
          worst = Math.max(worst, Math.abs(r.sol!.evaluate(t)[0] - smoothExact(t)));
        }
      }
      errs.push(worst);
    }
    // The interpolant of degree d is accurate to O(h^d) between steps (RK45: 4, RK23: 3).
    for (const p of observedOrders(errs)) expect(p).toBeGreaterThan(degree - 0.5);
  });
});

describe('DETEST-style adaptive runs: the global error follows the tolerance', () => {
  const problems: { name: string; f: OdeRhs; y0: number[]; t1: number; tols: number[]; exact: (t: number) => number[] }[] = [
    { name: 'A1 (y′ = −y)', f: rhs('detest-a1', {}), y0: [1], t1: 20, tols: [1e-4, 1e-6, 1e-8], exact: (t) => [Math.exp(-t)] },
    { name: 'A2 (y′ = −y³/2)', f: rhs('detest-a2', {}), y0: [1], t1: 20, tols: [1e-4, 1e-6, 1e-8], exact: (t) => [1 / Math.sqrt(1 + t)] },
    {
      // One period: the phase error of an orbit grows with every revolution (≈ 1000·tol after three for RK45 at 1e-4).
      name: 'D1-like circular orbit (e = 0), one period',
      f: rhs('detest-d1', {}),
      y0: [1, 0, 0, 1],
      t1: 2 * Math.PI,
      tols: [1e-6, 1e-8, 1e-10],
      exact: (t) => [Math.cos(t), Math.sin(t), -Math.sin(t), Math.cos(t)],
    },
  ];
  for (const tab of TABLEAUS) {
    for (const p of problems) {
      it(`${tab.name} on ${p.name}`, async () => {
        const errs: number[] = [];
        const nfevs: number[] = [];
        for (const tol of p.tols) {
          const r = await solveIvp(p.f, [0, p.t1], p.y0, { method: tab, rtol: tol, atol: tol });
          expect(r.status).toBe('success');
          const want = p.exact(p.t1);
          const err = Math.max(...want.map((w, i) => Math.abs(r.yFinal[i] - w)));
          // Within a modest multiple of the tolerance (the controller bounds local, not global, errors).
          expect(err, `tol ${tol}`).toBeLessThan(200 * tol);
          errs.push(err);
          nfevs.push(r.nfev);
        }
        // Tighter tolerance: smaller error, more work.
        expect(errs[2]).toBeLessThan(errs[0]);
        expect(nfevs[2]).toBeGreaterThan(nfevs[1]);
        expect(nfevs[1]).toBeGreaterThan(nfevs[0]);
      });
    }
  }
});

describe('checkTableau', () => {
  it('names the tableau and the field at fault', () => {
    const bad = { ...RK23, name: 'broken', A: [[], [1 / 2], [0, 3 / 4, 1]] };
    expect(() => checkTableau(bad)).toThrow(/tableau broken: A\[2\] has 3 entries, expected 2/);
    expect(() => checkTableau({ ...RK23, name: 'short-e', E: [1, -1] })).toThrow(/tableau short-e: E has 2 entries, expected nStages \+ 1 = 4/);
  });
});
