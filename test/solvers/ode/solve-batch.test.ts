import { describe, expect, it } from 'vitest';
import type { Engine } from '../../../engine/engine.js';
import type { Tensor } from '../../../engine/tensor.js';
import { reads, u32s, writes } from '../../../engine/kernel.js';
import { grid } from '../../../engine/wgsl.js';
import { solveIvp } from '../../../solvers/ode/solve-ivp.js';
import type { BatchRhs, BatchSolveOptions } from '../../../solvers/ode/batch-types.js';
import { solveBatch } from '../../../solvers/ode/solve-batch.js';
import { RK23 } from '../../../solvers/ode/tableaus.js';
import { useEngine } from '../../helpers/engine.js';
import { flatTestProgram } from '../../helpers/flat-program.js';

/**
 * Test problem, row b of N (even) components in pairs (2j, 2j+1): a damped rotation with a time-dependent rate,
 *   y' = −k_b(1 + t)·y + w_b·J·y,  J = [[0, 1], [−1, 0]] per pair,
 * whose solution is y(t) = exp(−k_b(t − t0 + (t² − t0²)/2))·R(w_b(t − t0))·y(t0). Rows differ in stiffness k_b.
 * It is row-local and evaluated on the GPU at per-row times, as a probability-flow RHS is.
 */
const DAMPED_ROTATION = flatTestProgram(
  'test.dampedRotation',
  [...reads('y', 'tt', 'kk', 'ww'), ...writes('out')],
  u32s('n', 'N'),
  `  let b = i / params.N;
  let j = i - b * params.N;
  let rate = kk[b] * (1.0 + tt[b]);
  var rot = 0.0;
  if ((j & 1u) == 0u) { rot = y[i + 1u]; } else { rot = -y[i - 1u]; }
  out[i] = -rate * y[i] + ww[b] * rot;`,
);

/** y' = y² per component. */
const SQUARE = flatTestProgram('test.square', [...reads('y'), ...writes('out')], u32s('n'), '  out[i] = y[i] * y[i];');

function dampedRotation(e: Engine, k: number[], w: number[], dim: number): BatchRhs {
  const B = k.length;
  const kT = e.keep(e.tensor(Float32Array.from(k), [B]));
  const wT = e.keep(e.tensor(Float32Array.from(w), [B]));
  return (t: Float64Array, y: Tensor, out: Tensor) => {
    const tt = e.tensor(Float32Array.from(t), [B]);
    e.run(DAMPED_ROTATION, {}, { y, tt, kk: kT, ww: wT, out }, { n: B * dim, N: dim }, grid(e, B * dim, 64));
  };
}

function exact(y0: ArrayLike<number>, k: number, w: number, t0: number, t: number): Float64Array {
  const decay = Math.exp(-k * (t - t0 + (t * t - t0 * t0) / 2));
  const c = Math.cos(w * (t - t0));
  const s = Math.sin(w * (t - t0));
  const out = new Float64Array(y0.length);
  for (let j = 0; j < y0.length; j += 2) {
    out[j] = decay * (c * y0[j] + s * y0[j + 1]);
    out[j + 1] = decay * (-s * y0[j] + c * y0[j + 1]);
  }
  return out;
}

function initial(B: number, N: number): Float64Array {
  return Float64Array.from({ length: B * N }, (_, i) => Math.cos(1.3 * i + 0.2) + 0.1 * (i % 3));
}

/** solveIvp on row `b` alone with the SAME f32 GPU right-hand side (batch of 1): the exact reference. */
async function referenceRow(e: Engine, k: number, w: number, y0: Float64Array, tSpan: [number, number], opts: BatchSolveOptions) {
  const N = y0.length;
  const rhs = dampedRotation(e, [k], [w], N);
  const yT = e.keep(e.empty([1, N]));
  const outT = e.keep(e.empty([1, N]));
  const r = await solveIvp(
    async (t, y, out) => {
      e.write(yT, new Uint8Array(Float32Array.from(y).buffer));
      await e.scope(() => rhs(Float64Array.of(t), yT, outT));
      out.set((await outT.read()) as Float32Array);
    },
    tSpan,
    y0,
    { rtol: opts.rtol, atol: opts.atol },
  );
  yT.dispose();
  outT.dispose();
  return r;
}

describe('solveBatch (batched RK45 with GPU right-hand side)', () => {
  const engine = useEngine();
  const k = [0.5, 3, 20, 1];
  const w = [1, 4, 2, 10];
  const N = 6;
  const B = k.length;
  const tSpan: [number, number] = [0.1, 2];

  /** The batch problem on the test's engine: its RHS, initial states, and a solve of it with the given options. */
  function problem() {
    const e = engine();
    const rhs = dampedRotation(e, k, w, N);
    const y0 = initial(B, N);
    return { e, rhs, y0, solve: (opts: BatchSolveOptions) => solveBatch(e, rhs, tSpan, y0, { batch: B, dim: N }, opts) };
  }

  it('host-f64 shared: exactly solveIvp on the flattened batch (same steps, same states)', async () => {
    const { e, rhs, y0, solve } = problem();
    const opts = { rtol: 1e-6, atol: 1e-9 };
    const got = await solve({ ...opts, state: 'host-f64', stepControl: 'shared' });
    const yT = e.keep(e.empty([B, N]));
    const outT = e.keep(e.empty([B, N]));
    const ref = await solveIvp(
      async (t, y, out) => {
        e.write(yT, new Uint8Array(Float32Array.from(y).buffer));
        await e.scope(() => rhs(new Float64Array(B).fill(t), yT, outT));
        out.set((await outT.read()) as Float32Array);
      },
      tSpan,
      y0,
      opts,
    );
    expect(got.status).toBe('success');
    expect(got.stepTimes[0]).toEqual(ref.t);
    expect(got.nfev).toBe(ref.nfev);
    expect(Array.from(got.yFinal)).toEqual(Array.from(ref.yFinal));
  });

  it('host-f64 per-sample: every row exactly as solved alone (batched broker)', async () => {
    const { e, y0, solve } = problem();
    const opts = { rtol: 1e-5, atol: 1e-8 };
    const got = await solve({ ...opts, state: 'host-f64', stepControl: 'per-sample' });
    expect(got.status).toBe('success');
    for (let b = 0; b < B; b++) {
      const ref = await referenceRow(e, k[b], w[b], y0.slice(b * N, (b + 1) * N), tSpan, opts);
      expect(got.stepTimes[b]).toEqual(ref.t);
      expect(got.rows[b].nfev).toBe(ref.nfev);
      expect(Array.from(got.yFinal.subarray(b * N, (b + 1) * N))).toEqual(Array.from(ref.yFinal));
    }
    // Stiffer rows take more steps: per-row control matters here.
    expect(got.rows[2].nSteps).toBeGreaterThan(got.rows[0].nSteps);
  });

  it('gpu-f32 shared: same steps as the float64 host at rtol 1e-3, closed form within the tolerance', async () => {
    const { y0, solve } = problem();
    const opts = { rtol: 1e-3, atol: 1e-6 };
    const host = await solve({ ...opts, state: 'host-f64' });
    const gpu = await solve({ ...opts, state: 'gpu-f32' });
    expect(gpu.status).toBe('success');
    expect(gpu.nSteps).toBe(host.nSteps);
    expect(gpu.nRejected).toBe(host.nRejected);
    expect(gpu.nfev).toBe(host.nfev);
    // Step times agree to f32 rounding of the error norms (the decisions are the same, the factors move ~1e-6).
    for (let i = 0; i < host.stepTimes[0].length; i++) expect(gpu.stepTimes[0][i]).toBeCloseTo(host.stepTimes[0][i], 4);
    let errHostGpu = 0;
    for (let i = 0; i < B * N; i++) errHostGpu = Math.max(errHostGpu, Math.abs(gpu.yFinal[i] - host.yFinal[i]));
    // Different f32 rounding of the state, amplified by nothing (contracting problem): ~1e-6 absolute.
    expect(errHostGpu).toBeLessThan(1e-5);
    for (let b = 0; b < B; b++) {
      const want = exact(y0.subarray(b * N, (b + 1) * N), k[b], w[b], tSpan[0], tSpan[1]);
      for (let i = 0; i < N; i++) {
        // Global error of RK45 at rtol 1e-3: well below 1e-2 absolute at |y| ≤ 1.3.
        expect(Math.abs(gpu.yFinal[b * N + i] - want[i])).toBeLessThan(1e-2);
      }
    }
  });

  it('gpu-f32 per-sample: batch-invariant (each row = that row solved alone), stiff rows take more steps', async () => {
    const { e, y0, solve } = problem();
    const opts: BatchSolveOptions = { rtol: 1e-5, atol: 1e-8, stepControl: 'per-sample', state: 'gpu-f32' };
    const all = await solve(opts);
    expect(all.status).toBe('success');
    for (let b = 0; b < B; b++) {
      const alone = await solveBatch(e, dampedRotation(e, [k[b]], [w[b]], N), tSpan, y0.slice(b * N, (b + 1) * N), { batch: 1, dim: N }, opts);
      expect(all.stepTimes[b]).toEqual(alone.stepTimes[0]);
      expect(all.rows[b].nfev).toBe(alone.rows[0].nfev);
      // Bit-identical: every kernel is row-local with a batch-independent summation order.
      expect(Array.from(all.yFinal.subarray(b * N, (b + 1) * N))).toEqual(Array.from(alone.yFinal));
      const want = exact(y0.subarray(b * N, (b + 1) * N), k[b], w[b], tSpan[0], tSpan[1]);
      // rtol 1e-5 global error plus f32 state rounding (~1e-7 per step, a few hundred steps).
      for (let i = 0; i < N; i++) expect(Math.abs(all.yFinal[b * N + i] - want[i])).toBeLessThan(2e-5);
    }
    expect(all.rows[2].nSteps).toBeGreaterThan(2 * all.rows[0].nSteps);
    expect(all.nSteps).toBe(Math.max(...all.rows.map((r) => r.nSteps + r.nRejected)));
  });

  it('another tableau by data alone: RK23 on the GPU (4 stage slots) takes the float64 host steps; its dense output hits the states', async () => {
    const { e, y0, solve } = problem();
    const opts: BatchSolveOptions = { rtol: 1e-3, atol: 1e-6, method: RK23 };
    const host = await solve({ ...opts, state: 'host-f64' });
    const gpu = await solve({ ...opts, state: 'gpu-f32', keepSteps: 'stages' });
    expect(gpu.status).toBe('success');
    expect(gpu.nSteps).toBe(host.nSteps);
    expect(gpu.nRejected).toBe(host.nRejected);
    // FSAL with 3 stages: f(t0), the initial-step probe, then 3 evaluations per trial.
    expect(gpu.nfev).toBe(2 + 3 * (gpu.nSteps + gpu.nRejected));
    for (let i = 0; i < host.stepTimes[0].length; i++) expect(gpu.stepTimes[0][i]).toBeCloseTo(host.stepTimes[0][i], 4);
    for (let b = 0; b < B; b++) {
      const want = exact(y0.subarray(b * N, (b + 1) * N), k[b], w[b], tSpan[0], tSpan[1]);
      for (let i = 0; i < N; i++) expect(Math.abs(gpu.yFinal[b * N + i] - want[i])).toBeLessThan(1e-2);
    }
    const at = await gpu.dense!.evaluate(e, gpu.stepTimes[0][4]).readF64();
    const c4 = await (gpu.checkpoints[4].y as Tensor).readF64();
    for (let i = 0; i < B * N; i++) expect(at[i]).toBeCloseTo(c4[i], 5);
    gpu.dispose();
    // Per-sample control with RK23: each row as solved alone.
    const per = await solve({ ...opts, stepControl: 'per-sample' });
    const alone = await solveBatch(e, dampedRotation(e, [k[2]], [w[2]], N), tSpan, y0.slice(2 * N, 3 * N), { batch: 1, dim: N }, { ...opts, stepControl: 'per-sample' });
    expect(per.stepTimes[2]).toEqual(alone.stepTimes[0]);
    expect(Array.from(per.yFinal.subarray(2 * N, 3 * N))).toEqual(Array.from(alone.yFinal));
  });

  it('per-sample: a NaN in one row fails only that row, with its index, time and step; the others finish', async () => {
    const e = engine();
    const y0 = initial(B, N);
    const base = dampedRotation(e, k, w, N);
    // Row 1's RHS turns NaN once t > 0.7.
    const nanRow: BatchRhs = (t, y, out) => {
      base(t, y, out);
      if (t[1] > 0.7) {
        const bad = e.tensor(new Float32Array(N).fill(NaN), [N]);
        const view = out.reshape([B * N]);
        const rowView = view.slice0(N, 2 * N);
        e.copy(bad, rowView);
        rowView.dispose();
        view.dispose();
      }
    };
    for (const state of ['gpu-f32', 'host-f64'] as const) {
      const r = await solveBatch(e, nanRow, tSpan, y0, { batch: B, dim: N }, { rtol: 1e-4, atol: 1e-7, stepControl: 'per-sample', state });
      expect(r.rows[1].status, state).toBe('non-finite');
      expect(r.rows[1].message).toMatch(/row 1/);
      expect(r.rows[1].t).toBeGreaterThan(0.5);
      expect(r.rows[1].t).toBeLessThanOrEqual(0.7);
      expect(r.status).toBe('non-finite');
      for (const b of [0, 2, 3]) expect(r.rows[b].status, `${state} row ${b}`).toBe('success');
      // The failed row keeps its last finite state.
      expect(r.yFinal.subarray(N, 2 * N).every(Number.isFinite)).toBe(true);
    }
    // Shared control: the whole solve stops and names the row.
    const s = await solveBatch(e, nanRow, tSpan, y0, { batch: B, dim: N }, { rtol: 1e-4, atol: 1e-7 });
    expect(s.status).toBe('non-finite');
    expect(s.message).toMatch(/row 1\b/);
    expect(s.rows.every((r) => r.status === 'non-finite')).toBe(true);
  });

  it('max-steps and min-step end the solve with partial states; progress is reported per step', async () => {
    const e = engine();
    const y0 = initial(B, N);
    const progress: number[] = [];
    const r = await solveBatch(e, dampedRotation(e, k, w, N), tSpan, y0, { batch: B, dim: N }, {
      rtol: 1e-6,
      maxSteps: 5,
      onProgress: (p) => progress.push(p.nfev),
    });
    expect(r.status).toBe('max-steps');
    expect(r.message).toMatch(/maxSteps = 5/);
    expect(r.nSteps).toBe(5);
    expect(progress.length).toBe(5);
    expect(progress[4]).toBe(r.nfev);
    expect(r.yFinal.every(Number.isFinite)).toBe(true);
    // A blow-up to ∞ in finite time (y' = y², y(0) = 1, singular at t = 1): min-step before t = 1, no hang.
    const N1 = 1;
    const sq: BatchRhs = (_t, y, out) => e.run(SQUARE, {}, { y, out }, { n: 2 }, [1]);
    const m = await solveBatch(e, sq, [0, 2], [1, 0.25], { batch: 2, dim: N1 }, { rtol: 1e-3, stepControl: 'per-sample' });
    expect(['min-step', 'non-finite']).toContain(m.rows[0].status);
    expect(m.rows[0].t).toBeLessThan(1);
    expect(m.rows[0].t).toBeGreaterThan(0.99);
    // Row 1 (y0 = 1/4, singular at t = 4) is unaffected and reaches t = 2: y = 1/(4 − t) = 0.5.
    expect(m.rows[1].status).toBe('success');
    expect(m.yFinal[1]).toBeCloseTo(0.5, 3);
  });

  it('keepSteps: checkpoints per accepted step; GPU dense output hits the stored states and follows the solution', async () => {
    const e = engine();
    const y0 = initial(B, N);
    const rhs = dampedRotation(e, k, w, N);
    const r = await solveBatch(e, rhs, tSpan, y0, { batch: B, dim: N }, { rtol: 1e-4, atol: 1e-7, keepSteps: 'stages' });
    expect(r.status).toBe('success');
    expect(r.checkpoints.length).toBe(r.nSteps + 1);
    const last = await (r.checkpoints[r.checkpoints.length - 1].y as Tensor).readF64();
    expect(Array.from(last)).toEqual(Array.from(r.yFinal));
    const dense = r.dense!;
    expect(dense.steps).toBe(r.nSteps);
    // At a step boundary the interpolant reproduces the stored state; in between it follows the solution to
    // the step's local error (interpolant order 4).
    const k3 = await dense.evaluate(e, r.stepTimes[0][3]).readF64();
    const c3 = await (r.checkpoints[3].y as Tensor).readF64();
    for (let i = 0; i < B * N; i++) expect(k3[i]).toBeCloseTo(c3[i], 5);
    const tMid = 0.5 * (r.stepTimes[0][5] + r.stepTimes[0][6]);
    const mid = await dense.evaluate(e, tMid).readF64();
    for (let b = 0; b < B; b++) {
      const want = exact(y0.subarray(b * N, (b + 1) * N), k[b], w[b], tSpan[0], tMid);
      for (let i = 0; i < N; i++) expect(Math.abs(mid[b * N + i] - want[i])).toBeLessThan(1e-3);
    }
    r.dispose();
  });

  it('integrates backward in time from a GPU tensor y0, per-sample progress, no tensors left behind', async () => {
    const e = engine();
    const y1 = initial(B, N);
    const rhs = dampedRotation(e, k, w, N);
    const before = e.memory().liveTensors;
    const y1T = e.tensor(Float32Array.from(y1), [B, N]);
    const back: [number, number] = [2, 0.1];
    const progress: Array<{ t: number; running: number }> = [];
    for (const stepControl of ['shared', 'per-sample'] as const) {
      const r = await solveBatch(e, rhs, back, y1T, { batch: B, dim: N }, {
        rtol: 1e-6,
        atol: 1e-9,
        stepControl,
        keepSteps: 'states',
        onProgress: (p) => progress.push({ t: p.t, running: p.running }),
      });
      expect(r.status).toBe('success');
      expect(r.stepTimes[2][r.stepTimes[2].length - 1]).toBe(0.1);
      for (let b = 0; b < B; b++) {
        const want = exact(Float32Array.from(y1).subarray(b * N, (b + 1) * N), k[b], w[b], 2, 0.1);
        // Backward the damping amplifies (×e^{58} for k = 20): compare relative to the row's size. The f32 state
        // rounds by ~6e-8 relative per step and the stiff row takes ~300 steps: budget 1e-4 (measured 2.3e-5).
        const scale = Math.max(...want.map(Math.abs));
        for (let i = 0; i < N; i++) expect(Math.abs(r.yFinal[b * N + i] - want[i]) / scale, `${stepControl} row ${b}`).toBeLessThan(1e-4);
      }
      r.dispose();
    }
    // Progress reports the least advanced running row; times decrease going backward.
    expect(progress.length).toBeGreaterThan(10);
    expect(progress[progress.length - 1].running).toBe(0);
    y1T.dispose();
    expect(e.memory().liveTensors).toBe(before);
  });
});
