import { describe, expect, it } from 'vitest';
import { StepInterpolant } from '../../../solvers/ode/dense-output.js';
import { solveIvp } from '../../../solvers/ode/solve-ivp.js';
import { loadScipyFixtures, optionsOf, relErr, rhs } from '../../helpers/scipy-rk-fixtures.js';

const fixtures = loadScipyFixtures('rk45');

describe('dense output', () => {
  it('dense output is continuous at the steps and equals the saved states there', async () => {
    const c = fixtures.cases.find((x) => x.name === 'van-der-pol-mu5')!;
    const r = await solveIvp(rhs(c.problem, c.params), c.tSpan, c.y0, { ...optionsOf(c), denseOutput: true });
    const sol = r.sol!;
    expect(sol.segments.length).toBe(r.nSteps);
    for (let k = 1; k < r.t.length; k++) {
      expect(relErr(sol.segments[k - 1].evaluate(r.t[k]), r.y[k])).toBeLessThan(1e-12);
      expect(relErr(sol.segments[k - 1].evaluate(r.t[k - 1]), r.y[k - 1])).toBe(0);
      expect(sol.segmentIndex(r.t[k])).toBe(k - 1); // a node belongs to the step that ends there
    }
    expect(sol.segmentIndex(r.t[0])).toBe(0);
    expect(sol.tMin).toBe(c.tSpan[0]);
    expect(sol.tMax).toBe(c.tSpan[1]);
  });

  it('a step interpolant evaluates to y_old at x = 0', () => {
    const yOld = Float64Array.from([1, 2]);
    const s = new StepInterpolant(0, 0.5, yOld, Float64Array.from([1, 0, 0, 0, 0, 1, 0, 0]));
    expect(Array.from(s.evaluate(0))).toEqual([1, 2]);
    // y = y_old + h·(Q·[x, x², x³, x⁴]) with x = 1.
    expect(Array.from(s.evaluate(0.5))).toEqual([1.5, 2.5]);
  });
});
