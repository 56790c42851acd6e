import { describe, expect, it } from 'vitest';
import { Rk45Controller } from '../../../solvers/ode/controller.js';
import { estimateErrorNorm, rkStep } from '../../../solvers/ode/rk-step.js';
import { solveIvp } from '../../../solvers/ode/solve-ivp.js';
import { initialStepFinal, initialStepGuess, selectInitialStep } from '../../../solvers/ode/step-size.js';
import { RK45 } from '../../../solvers/ode/tableaus.js';
import { rmsNorm } from '../../../solvers/ode/tolerance.js';
import { loadScipyFixtures, rhs } from '../../helpers/scipy-rk-fixtures.js';

const fixtures = loadScipyFixtures('rk45');

describe('the step controller, driven by hand (as a GPU-resident state would)', () => {
  it('driving Rk45Controller with rkStep + scalar error norms reproduces solveIvp', async () => {
    const c = fixtures.cases.find((x) => x.name === 'van-der-pol-mu1')!;
    const fun = rhs(c.problem, c.params);
    const rtol = c.options.rtol!;
    const atol = c.options.atol as number;
    const [t0, t1] = c.tSpan;
    const n = c.y0.length;
    let y = Float64Array.from(c.y0);
    let yNew = new Float64Array(n);
    const K = Array.from({ length: 7 }, () => new Float64Array(n));
    fun(t0, y, K[0]);
    // The initial step from the norms alone, as a GPU caller would compute them.
    const scale = y.map((v) => atol + Math.abs(v) * rtol);
    const d0 = rmsNorm(y.map((v, i) => v / scale[i]));
    const d1 = rmsNorm(K[0].map((v, i) => v / scale[i]));
    const h0 = initialStepGuess(d0, d1, t1 - t0);
    const y1 = y.map((v, i) => v + h0 * K[0][i]);
    const f1 = new Float64Array(n);
    fun(t0 + h0, y1, f1);
    const d2 = rmsNorm(f1.map((v, i) => (v - K[0][i]) / scale[i])) / h0;
    const hAbs = initialStepFinal(h0, d1, d2, t1 - t0, Infinity);
    const sel = await selectInitialStep(fun, t0, y, K[0], t1, { rtol, atol });
    expect(hAbs).toBe(sel.hAbs);

    const ctrl = new Rk45Controller({ t0, t1, hAbs });
    const ts = [t0];
    const scratch = new Float64Array(n);
    while (!ctrl.finished) {
      let trial = ctrl.beginStep();
      while (trial) {
        await rkStep(fun, RK45, trial.t, y, trial.h, K, scratch, yNew, true);
        if (ctrl.reportError(estimateErrorNorm(RK45, K, trial.h, y, yNew, rtol, atol))) break;
        trial = ctrl.retry();
      }
      expect(trial).not.toBeNull();
      [y, yNew] = [yNew, y];
      [K[0], K[6]] = [K[6], K[0]];
      ts.push(ctrl.t);
    }
    const ref = await solveIvp(fun, c.tSpan, c.y0, { rtol, atol });
    expect(ts).toEqual(ref.t);
    expect(ctrl.nRejected).toBe(ref.nRejected);
    expect(Array.from(y)).toEqual(Array.from(ref.yFinal));
  });

  it('controller factors follow SPEC §4', () => {
    const c = new Rk45Controller({ t0: 0, t1: 1, hAbs: 0.1 });
    expect(c.errorNormToFactor(0, false)).toBe(10);
    expect(c.errorNormToFactor(1e-9, false)).toBe(10);
    expect(c.errorNormToFactor(0.5, false)).toBeCloseTo(0.9 * 0.5 ** -0.2, 15);
    expect(c.errorNormToFactor(0.5, true)).toBe(1);
    expect(c.errorNormToFactor(0.99, true)).toBeCloseTo(0.9 * 0.99 ** -0.2, 15);
    expect(c.errorNormToFactor(2, false)).toBeCloseTo(0.9 * 2 ** -0.2, 15);
    expect(c.errorNormToFactor(1e6, false)).toBe(0.2);
    expect(c.errorNormToFactor(NaN, false)).toBe(0.2);
    expect(c.errorNormToFactor(Infinity, false)).toBe(0.2);
    expect(c.accepts(0.999)).toBe(true);
    expect(c.accepts(1)).toBe(false);
    // The last step is clipped to t1, and a proposal above maxStep is cut.
    const d = new Rk45Controller({ t0: 0, t1: 1, hAbs: 5, maxStep: 0.75 });
    expect(d.beginStep()).toEqual({ t: 0, h: 0.75, tNew: 0.75 });
    expect(d.reportError(0)).toBe(true);
    expect(d.beginStep()).toEqual({ t: 0.75, h: 0.25, tNew: 1 });
    expect(d.reportError(0.1)).toBe(true);
    expect(d.finished).toBe(true);
    // Backward.
    const b = new Rk45Controller({ t0: 1, t1: -1, hAbs: 0.5 });
    expect(b.direction).toBe(-1);
    expect(b.beginStep()).toEqual({ t: 1, h: -0.5, tNew: 0.5 });
    expect(b.reportError(4)).toBe(false);
    expect(b.retry()!.h).toBeCloseTo(-0.5 * 0.9 * 4 ** -0.2, 15);
    expect(b.nRejected).toBe(1);
  });
});
