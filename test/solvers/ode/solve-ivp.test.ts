import { describe, expect, it } from 'vitest';
import { solveIvp, type OdeRhs } from '../../../solvers/ode/solve-ivp.js';
import { RK23, RK45 } from '../../../solvers/ode/tableaus.js';
import { loadScipyFixtures, optionsOf, relErr, rhs } from '../../helpers/scipy-rk-fixtures.js';

const fixtures = loadScipyFixtures('rk45');

describe.each([
  { method: 'rk45' as const, tableau: RK45 },
  { method: 'rk23' as const, tableau: RK23 },
])('solveIvp reproduces scipy $method step for step', ({ method, tableau }) => {
  const file = loadScipyFixtures(method);
  for (const c of file.cases) {
    it(`${c.name} (scipy ${file.scipy})`, async () => {
      const r = await solveIvp(rhs(c.problem, c.params), c.tSpan, c.y0, { ...optionsOf(c), method: tableau });
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
