/**
 * The one loop with the host float64 state and a host right-hand side (no GPU): the control policy decides what a
 * row shares, the failure statuses are the same for every policy, and the state must hold the tableau's stages.
 */
import { describe, expect, it } from 'vitest';
import { scipyControl } from '../../../solvers/ode/control-policy.js';
import type { HostBatchRhs } from '../../../solvers/ode/host-rhs.js';
import { solve } from '../../../solvers/ode/solve.js';
import { solveIvp } from '../../../solvers/ode/solve-ivp.js';
import { HostF64State } from '../../../solvers/ode/state-host.js';
import { RK23, RK45 } from '../../../solvers/ode/tableaus.js';

const DIM = 2;
const RATES = [0.5, 4, 30];

/** Row b: a damped rotation y' = −k_b(1 + t)·y + J·y, row-local, at per-row times. */
const rows: HostBatchRhs = (t, y, out) => {
  for (let b = 0; b < t.length; b++) {
    const k = RATES[b % RATES.length] * (1 + t[b]);
    const i = b * DIM;
    out[i] = -k * y[i] + y[i + 1];
    out[i + 1] = -k * y[i + 1] - y[i];
  }
};
const y0 = Float64Array.from({ length: RATES.length * DIM }, (_, i) => Math.cos(i + 0.3));

describe('solve: one loop, the policy decides', () => {
  for (const tableau of [RK45, RK23]) {
    it(`${tableau.name} per-sample on a host batch: every row exactly as solveIvp alone`, async () => {
      const state = new HostF64State(tableau, y0, RATES.length, DIM, 1e-7, 1e-9);
      const out = await solve(rows, tableau, scipyControl('per-sample'), state, { tSpan: [0, 2] });
      const yFinal = await state.readY();
      for (let b = 0; b < RATES.length; b++) {
        // Row b's system alone (its own rate), through solveIvp.
        const ref = await solveIvp(
          (t, y, f) => {
            const k = RATES[b] * (1 + t);
            f[0] = -k * y[0] + y[1];
            f[1] = -k * y[1] - y[0];
          },
          [0, 2],
          y0.slice(b * DIM, (b + 1) * DIM),
          { method: tableau, rtol: 1e-7, atol: 1e-9 },
        );
        expect(out.stepTimes[b]).toEqual(ref.t);
        expect(out.rows[b].nfev).toBe(ref.nfev);
        expect(out.rows[b].nRejected).toBe(ref.nRejected);
        expect(out.rows[b].message).toBe(ref.message);
        expect(Array.from(yFinal.subarray(b * DIM, (b + 1) * DIM))).toEqual(Array.from(ref.yFinal));
      }
      // The stiffest row sets the number of rounds.
      expect(out.rounds).toBe(out.rows[2].nSteps + out.rows[2].nRejected);
    });
  }

  it('shared on a host batch: solveIvp on the flattened vector, bit for bit', async () => {
    const state = new HostF64State(RK45, y0, RATES.length, DIM, 1e-6, 1e-9);
    const out = await solve(rows, RK45, scipyControl('shared'), state, { tSpan: [0, 2] });
    const R = RATES.length;
    const ref = await solveIvp((t, y, f) => rows(new Float64Array(R).fill(t), y, f), [0, 2], y0, { rtol: 1e-6, atol: 1e-9 });
    expect(out.controllers.every((c) => c === out.controllers[0])).toBe(true);
    for (let b = 0; b < R; b++) expect(out.stepTimes[b]).toEqual(ref.t);
    expect(out.nfev).toBe(ref.nfev);
    expect(Array.from(await state.readY())).toEqual(Array.from(ref.yFinal));
  });

  it('a non-finite row fails alone per-sample (naming the row) and ends every row under shared control', async () => {
    const bad = y0.slice();
    bad[DIM] = NaN;
    const per = await solve(rows, RK45, scipyControl('per-sample'), new HostF64State(RK45, bad, RATES.length, DIM, 1e-6, 1e-9), { tSpan: [0, 1] });
    expect(per.rows.map((r) => r.status)).toEqual(['success', 'non-finite', 'success']);
    expect(per.rows[1].message).toBe('Non-finite initial state y0 at t0 = 0 (step index 0) (row 1)');
    expect(per.rows[1].nfev).toBe(0);
    const shared = await solve(rows, RK45, scipyControl('shared'), new HostF64State(RK45, bad, RATES.length, DIM, 1e-6, 1e-9), { tSpan: [0, 1] });
    expect(shared.rows.every((r) => r.status === 'non-finite')).toBe(true);
    expect(shared.rows[0].message).toBe('Non-finite initial state y0 at t0 = 0 (step index 0) (non-finite in row 1)');
    expect(shared.nfev).toBe(0);
  });

  it('max-steps per controller, and a throwing callback ends every row with the error', async () => {
    const state = new HostF64State(RK45, y0, RATES.length, DIM, 1e-6, 1e-9);
    const out = await solve(rows, RK45, scipyControl('per-sample', { maxSteps: 3 }), state, { tSpan: [0, 2] });
    expect(out.rows.every((r) => r.status === 'max-steps' && r.nSteps === 3)).toBe(true);
    expect(out.rows[2].message).toMatch(/^Reached maxSteps = 3 accepted steps at t = [\d.e+-]+ \(step index 3\) before t1 = 2 \(row 2\)\.$/);
    const boom = new Error('callback failed');
    const thrown = await solve(rows, RK45, scipyControl('shared'), new HostF64State(RK45, y0, RATES.length, DIM, 1e-6, 1e-9), {
      tSpan: [0, 2],
      callbackName: 'onStep',
      afterCommit: (_s, round) => {
        if (round.controllers[0]!.nAccepted === 2) throw boom;
      },
    });
    expect(thrown.error).toBe(boom);
    expect(thrown.rows.every((r) => r.status === 'failed' && r.nSteps === 2)).toBe(true);
    expect(thrown.rows[0].message).toMatch(/^onStep after step index 1 \(t = [\d.e+-]+\) threw: callback failed$/);
  });

  it('a failing state operation ends the solve with status failed, keeping the last accepted state', async () => {
    const lost = new Error('read-back lost');
    class LosesDevice extends HostF64State {
      override errorNorms(): never {
        throw lost;
      }
    }
    const state = new LosesDevice(RK45, y0, RATES.length, DIM, 1e-6, 1e-9);
    const out = await solve(rows, RK45, scipyControl('per-sample'), state, { tSpan: [0, 1] });
    expect(out.error).toBe(lost);
    expect(out.rows.every((r) => r.status === 'failed' && r.nSteps === 0 && r.t === 0)).toBe(true);
    expect(out.rows[1].message).toBe('a state operation (stage combination, error norm or commit) threw: read-back lost (row 1)');
    expect(Array.from(await state.readY())).toEqual(Array.from(y0));
  });

  it('refuses a state that holds the stages of another tableau', async () => {
    const state = new HostF64State(RK23, y0, RATES.length, DIM, 1e-6, 1e-9);
    await expect(solve(rows, RK45, scipyControl('shared'), state, { tSpan: [0, 1] })).rejects.toThrow(/state holds stages of RK23, not RK45/);
  });
});
