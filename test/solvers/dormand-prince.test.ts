import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  RK45,
  Rk45Controller,
  StepInterpolant,
  estimateErrorNorm,
  initialStepFinal,
  initialStepGuess,
  minStepAt,
  nextAfter,
  powCorrectlyRounded,
  rkStep,
  rmsNorm,
  selectInitialStep,
  solveIvp,
  type OdeRhs,
  type SolveIvpOptions,
} from '../../solvers/dormand-prince';

interface FixtureCase {
  name: string;
  problem: string;
  params: Record<string, number>;
  y0: number[];
  tSpan: [number, number];
  options: { rtol?: number; atol?: number | number[]; maxStep?: number; firstStep?: number; tEval?: number[] };
  expected: {
    t: number[];
    nfev: number;
    nAccepted: number;
    nRejected: number;
    status: number;
    message: string;
    yFinal: number[];
    denseT: number[];
    denseY: number[][];
    tEval?: number[];
    yEval?: number[][];
  };
}

const fixtures = JSON.parse(readFileSync(new URL('../fixtures/rk45-scipy.json', import.meta.url), 'utf8')) as {
  scipy: string;
  cases: FixtureCase[];
};

/** The fixture problems, written with the same operation order as scripts/fixtures/make_rk45_fixtures.py. */
function rhs(problem: string, p: Record<string, number>): OdeRhs {
  switch (problem) {
    case 'exp-decay':
      return (_t, y, out) => {
        for (let i = 0; i < y.length; i++) out[i] = -p.k * y[i];
      };
    case 'rotation':
      return (_t, y, out) => {
        out[0] = p.w * y[1];
        out[1] = -p.w * y[0];
      };
    case 'van-der-pol':
      return (_t, y, out) => {
        out[0] = y[1];
        out[1] = p.mu * (1 - y[0] * y[0]) * y[1] - y[0];
      };
    case 'detest-a1':
      return (_t, y, out) => {
        out[0] = -y[0];
      };
    case 'detest-a2':
      return (_t, y, out) => {
        out[0] = (-y[0] * y[0] * y[0]) / 2;
      };
    case 'detest-b1':
      return (_t, y, out) => {
        out[0] = 2 * (y[0] - y[0] * y[1]);
        out[1] = -(y[1] - y[0] * y[1]);
      };
    case 'detest-b5':
      return (_t, y, out) => {
        out[0] = y[1] * y[2];
        out[1] = -y[0] * y[2];
        out[2] = -0.51 * y[0] * y[1];
      };
    case 'detest-c1':
      return (_t, y, out) => {
        const n = y.length;
        out[0] = -y[0];
        for (let i = 1; i < n - 1; i++) out[i] = y[i - 1] - y[i];
        out[n - 1] = y[n - 2];
      };
    case 'detest-d1':
      return (_t, y, out) => {
        const r2 = y[0] * y[0] + y[1] * y[1];
        const r3 = r2 * Math.sqrt(r2);
        out[0] = y[2];
        out[1] = y[3];
        out[2] = -y[0] / r3;
        out[3] = -y[1] / r3;
      };
    case 'blow-up':
      return (_t, y, out) => {
        out[0] = y[0] * y[0];
      };
    default:
      throw new Error(`unknown fixture problem ${problem}`);
  }
}

function optionsOf(c: FixtureCase): SolveIvpOptions {
  const o = c.options;
  const opts: SolveIvpOptions = { denseOutput: true };
  if (o.rtol !== undefined) opts.rtol = o.rtol;
  if (o.atol !== undefined) opts.atol = typeof o.atol === 'number' ? o.atol : Float64Array.from(o.atol);
  if (o.maxStep !== undefined) opts.maxStep = o.maxStep;
  if (o.firstStep !== undefined) opts.firstStep = o.firstStep;
  if (o.tEval !== undefined) opts.tEval = o.tEval;
  return opts;
}

/** max_i |a_i − b_i| / max(|b_i|, floor): relative, with a floor from the vector's size for components near 0. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let worst = 0;
  for (let i = 0; i < b.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), 1e-3 * scale, 1e-300));
  }
  return worst;
}

describe('solveIvp reproduces scipy RK45 (fixtures from scipy ' + fixtures.scipy + ')', () => {
  for (const c of fixtures.cases) {
    it(c.name, async () => {
      const r = await solveIvp(rhs(c.problem, c.params), c.tSpan, c.y0, optionsOf(c));
      const e = c.expected;
      expect(r.status).toBe(e.status === 0 ? 'success' : 'min-step');
      expect(r.nSteps).toBe(e.nAccepted);
      expect(r.nRejected).toBe(e.nRejected);
      expect(r.nfev).toBe(e.nfev);
      expect(r.t.length).toBe(e.t.length);
      const span = Math.max(Math.abs(c.tSpan[0]), Math.abs(c.tSpan[1]));
      let worstT = 0;
      for (let k = 0; k < e.t.length; k++) worstT = Math.max(worstT, Math.abs(r.t[k] - e.t[k]) / Math.max(Math.abs(e.t[k]), 1e-3 * span));
      expect(worstT).toBeLessThan(1e-12);
      expect(r.tFinal).toBe(r.t[r.t.length - 1]);
      expect(relErr(r.yFinal, e.yFinal)).toBeLessThan(1e-12);
      e.denseT.forEach((tq, k) => expect(relErr(r.sol!.evaluate(tq), e.denseY[k])).toBeLessThan(1e-12));
      if (e.tEval) {
        expect(r.tEval).toEqual(e.tEval);
        expect(r.yEval!.length).toBe(e.yEval!.length);
        r.yEval!.forEach((yv, k) => expect(relErr(yv, e.yEval![k])).toBeLessThan(1e-12));
      }
      if (e.status !== 0) {
        expect(r.message).toContain('Required step size is less than spacing between numbers');
        expect(r.message).toContain(`step index ${e.nAccepted}`);
      }
    });
  }
});

describe('accuracy and order', () => {
  it('exponential decay and the harmonic oscillator match their closed forms, forward and backward', async () => {
    const decay: OdeRhs = (_t, y, out) => {
      out[0] = -y[0];
    };
    const fwd = await solveIvp(decay, [0, 5], [1], { rtol: 1e-9, atol: 1e-13 });
    expect(fwd.status).toBe('success');
    expect(Math.abs(fwd.yFinal[0] - Math.exp(-5)) / Math.exp(-5)).toBeLessThan(1e-8);
    const bwd = await solveIvp(decay, [5, 0], [Math.exp(-5)], { rtol: 1e-9, atol: 1e-13 });
    expect(bwd.tFinal).toBe(0);
    expect(Math.abs(bwd.yFinal[0] - 1)).toBeLessThan(1e-8);

    const osc: OdeRhs = (_t, y, out) => {
      out[0] = y[1];
      out[1] = -y[0];
    };
    const T = 6 * Math.PI;
    const r = await solveIvp(osc, [0, T], [1, 0], { rtol: 1e-10, atol: 1e-12, denseOutput: true });
    expect(Math.abs(r.yFinal[0] - Math.cos(T))).toBeLessThan(1e-8);
    expect(Math.abs(r.yFinal[1] + Math.sin(T))).toBeLessThan(1e-8);
    // The 4th-order interpolant between steps is accurate to about the tolerance too.
    for (const tq of [0.1, 1.234, 7.5, 17.9]) {
      const y = r.sol!.evaluate(tq);
      expect(Math.abs(y[0] - Math.cos(tq))).toBeLessThan(1e-7);
      expect(Math.abs(y[1] + Math.sin(tq))).toBeLessThan(1e-7);
    }
    // Each saved state matches the closed form at its own time.
    r.t.forEach((tk, k) => expect(Math.abs(r.y[k][0] - Math.cos(tk))).toBeLessThan(1e-8));
  });

  it('has empirical order 5 with fixed steps (firstStep = maxStep = h, huge tolerances)', async () => {
    const f: OdeRhs = (t, y, out) => {
      out[0] = y[0] * Math.cos(t);
    };
    const errs: number[] = [];
    for (const h of [1 / 4, 1 / 8, 1 / 16, 1 / 32]) {
      const r = await solveIvp(f, [0, 2], [1], { firstStep: h, maxStep: h, rtol: 1e10, atol: 1e10 });
      expect(r.nSteps).toBe(Math.round(2 / h));
      expect(r.nRejected).toBe(0);
      for (let k = 1; k < r.t.length; k++) expect(r.t[k] - r.t[k - 1]).toBeCloseTo(h, 14);
      errs.push(Math.abs(r.yFinal[0] - Math.exp(Math.sin(2))));
    }
    for (let k = 1; k < errs.length; k++) {
      const order = Math.log2(errs[k - 1] / errs[k]);
      expect(order).toBeGreaterThan(4.6);
      expect(order).toBeLessThan(5.6);
    }
  });

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
});

describe('statuses and messages', () => {
  const vdp = rhs('van-der-pol', { mu: 1 });

  it('max-steps returns the partial solution', async () => {
    const r = await solveIvp(vdp, [0, 20], [2, 0], { maxSteps: 5, rtol: 1e-6 });
    expect(r.status).toBe('max-steps');
    expect(r.nSteps).toBe(5);
    expect(r.t.length).toBe(6);
    expect(r.tFinal).toBe(r.t[5]);
    expect(Array.from(r.yFinal)).toEqual(Array.from(r.y[5]));
    expect(r.message).toContain('maxSteps = 5');
    expect(r.message).toContain(`t = ${r.tFinal}`);
    // The same first steps as an unlimited solve.
    const full = await solveIvp(vdp, [0, 20], [2, 0], { rtol: 1e-6 });
    expect(full.t.slice(0, 6)).toEqual(r.t);
  });

  it('non-finite f stops with status non-finite, naming t and the step', async () => {
    const f: OdeRhs = (t, y, out) => {
      out[0] = t > 1 ? NaN : -y[0];
    };
    const r = await solveIvp(f, [0, 3], [1], { saveSteps: true });
    expect(r.status).toBe('non-finite');
    expect(r.tFinal).toBeLessThanOrEqual(1);
    expect(r.tFinal).toBe(r.t[r.t.length - 1]);
    expect(r.yFinal[0]).toBeCloseTo(Math.exp(-r.tFinal), 5);
    expect(r.message).toMatch(/Non-finite value in f \(stage \d\) at t = [\d.e+-]+, during step index \d+ from t = /);
    expect(r.message).toContain(`step index ${r.nSteps}`);
  });

  it('non-finite initial values are reported at step index 0', async () => {
    const ok: OdeRhs = (_t, y, out) => out.set(y);
    const a = await solveIvp(ok, [0, 1], [1, NaN]);
    expect(a.status).toBe('non-finite');
    expect(a.nfev).toBe(0);
    expect(a.message).toContain('initial state');
    const b = await solveIvp((_t, _y, out) => void out.fill(Infinity), [0, 1], [1]);
    expect(b.status).toBe('non-finite');
    expect(b.message).toContain('f(t0, y0) at t0 = 0 (step index 0)');
  });

  it("nonFinite: 'reject' shrinks the step like scipy and ends at min-step", async () => {
    const f: OdeRhs = (t, y, out) => {
      out[0] = t > 1 ? NaN : -y[0];
    };
    const r = await solveIvp(f, [0, 3], [1], { nonFinite: 'reject' });
    expect(r.status).toBe('min-step');
    expect(r.tFinal).toBeLessThanOrEqual(1);
    expect(r.tFinal).toBeGreaterThan(1 - 1e-12);
  });

  it('a throwing RHS gives status failed with the partial state and the error', async () => {
    const boom = new Error('device lost');
    const f: OdeRhs = (t, y, out) => {
      if (t > 0.5) throw boom;
      out[0] = -y[0];
    };
    const r = await solveIvp(f, [0, 1], [1]);
    expect(r.status).toBe('failed');
    expect(r.error).toBe(boom);
    expect(r.message).toContain('device lost');
    expect(r.message).toContain('step index');
    expect(r.tFinal).toBeLessThanOrEqual(0.5);
    expect(r.nSteps).toBe(r.t.length - 1);
  });

  it('invalid arguments throw before any evaluation', async () => {
    let calls = 0;
    const f: OdeRhs = (_t, y, out) => {
      calls++;
      out.set(y);
    };
    await expect(solveIvp(f, [0, 1], [1], { firstStep: 2 })).rejects.toThrow(/firstStep/);
    await expect(solveIvp(f, [0, 1], [1], { maxStep: 0 })).rejects.toThrow(/maxStep/);
    await expect(solveIvp(f, [1, 0], [1], { tEval: [0.2, 0.5] })).rejects.toThrow(/decreasing/);
    await expect(solveIvp(f, [0, 1], [1], { tEval: [2] })).rejects.toThrow(/within/);
    await expect(solveIvp(f, [0, 1], [1, 2], { atol: new Float64Array(3) })).rejects.toThrow(/atol/);
    await expect(solveIvp(f, [0, 1], [1], { rtol: -1 })).rejects.toThrow(/rtol/);
    expect(calls).toBe(0);
  });

  it('a zero-length interval succeeds with no step', async () => {
    const r = await solveIvp((_t, y, out) => out.set(y), [2, 2], [3], { denseOutput: true });
    expect(r.status).toBe('success');
    expect(r.t).toEqual([2]);
    expect(r.nfev).toBe(1);
    expect(r.sol!.evaluate(2)[0]).toBe(3);
  });
});

describe('async RHS, callbacks, storage', () => {
  it('an async RHS gives exactly the same solve as the sync one', async () => {
    const c = fixtures.cases.find((x) => x.name === 'rotation-backward-vector-atol')!;
    const sync = rhs(c.problem, c.params);
    let k = 0;
    const asyncFun: OdeRhs = async (t, y, out) => {
      // Alternate microtask and macrotask waits, as a GPU readback would.
      if (k++ % 50 === 0) await new Promise((res) => setImmediate(res));
      else await Promise.resolve();
      sync(t, y, out);
    };
    const a = await solveIvp(sync, c.tSpan, c.y0, optionsOf(c));
    const b = await solveIvp(asyncFun, c.tSpan, c.y0, optionsOf(c));
    expect(b.status).toBe('success');
    expect(b.t).toEqual(a.t);
    expect(b.nfev).toBe(a.nfev);
    expect(Array.from(b.yFinal)).toEqual(Array.from(a.yFinal));
  });

  it('onStep sees every accepted step in order', async () => {
    const seen: { i: number; t: number; y0: number; rejected: number }[] = [];
    const r = await solveIvp(rhs('van-der-pol', { mu: 5 }), [0, 10], [2, 0], {
      onStep: async (info) => {
        await Promise.resolve();
        seen.push({ i: info.stepIndex, t: info.t, y0: info.y[0], rejected: info.rejected });
        expect(info.h).toBeCloseTo(info.t - info.tOld, 15);
        expect(info.errNorm).toBeLessThan(1);
      },
    });
    expect(seen.map((s) => s.i)).toEqual(r.t.slice(1).map((_, k) => k));
    expect(seen.map((s) => s.t)).toEqual(r.t.slice(1));
    expect(seen.map((s) => s.y0)).toEqual(r.y.slice(1).map((y) => y[0]));
    expect(seen.reduce((a, s) => a + s.rejected, 0)).toBe(r.nRejected);
  });

  it('large states do not keep every step by default', async () => {
    const n = 2048;
    const y0 = new Float64Array(n).fill(1);
    const r = await solveIvp((_t, y, out) => {
      for (let i = 0; i < n; i++) out[i] = -y[i];
    }, [0, 1], y0);
    expect(r.y).toEqual([]);
    expect(r.t.length).toBe(r.nSteps + 1);
    expect(r.yFinal[n - 1]).toBeCloseTo(Math.exp(-1), 3);
    const kept = await solveIvp((_t, y, out) => out.set(y), [0, 1], [1], { saveSteps: false });
    expect(kept.y).toEqual([]);
  });
});

describe('low-level pieces (for a GPU-resident state)', () => {
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

  it('powCorrectlyRounded gives the correctly rounded x^e where V8 and glibc disagree', () => {
    // Values where V8's `**` is off by an ulp; the expected results are the correctly rounded ones (mpmath).
    const cases: [number, number, number][] = [
      [0.32581778583239884, -0.2, 1.2514256214594102],
      [0.3448568045312579, -0.2, 1.2372921001746542],
      [0.10294705594464852, -0.2, 1.5757133471593938],
      [0.14142880958237292, -0.2, 1.4787420500963908],
    ];
    for (const [x, e, want] of cases) expect(powCorrectlyRounded(x, e)).toBe(want);
    expect(powCorrectlyRounded(32, 0.2)).toBe(2);
    expect(powCorrectlyRounded(1, -0.2)).toBe(1);
    expect(powCorrectlyRounded(0, -0.2)).toBe(Infinity);
    expect(powCorrectlyRounded(Infinity, -0.2)).toBe(0);
    expect(powCorrectlyRounded(NaN, -0.2)).toBeNaN();
  });

  it('min_step and nextAfter', () => {
    expect(nextAfter(1, true)).toBe(1 + Number.EPSILON);
    expect(nextAfter(1, false)).toBe(1 - Number.EPSILON / 2);
    expect(nextAfter(-1, true)).toBe(-1 + Number.EPSILON / 2);
    expect(nextAfter(0, true)).toBe(Number.MIN_VALUE);
    expect(minStepAt(1, 1)).toBe(10 * Number.EPSILON);
    expect(minStepAt(1, -1)).toBe(5 * Number.EPSILON);
  });

  it('a step interpolant evaluates to y_old at x = 0', () => {
    const yOld = Float64Array.from([1, 2]);
    const s = new StepInterpolant(0, 0.5, yOld, Float64Array.from([1, 0, 0, 0, 0, 1, 0, 0]));
    expect(Array.from(s.evaluate(0))).toEqual([1, 2]);
    // y = y_old + h·(Q·[x, x², x³, x⁴]) with x = 1.
    expect(Array.from(s.evaluate(0.5))).toEqual([1.5, 2.5]);
  });
});
