/**
 * The 'host-f64' placement of solveBatch: the state and the error control stay in float64 on the host and run
 * through the reference solver solveIvp itself (SPEC §4 exactly); only the batched RHS runs on the GPU (y uploaded
 * as f32, f read back each evaluation).
 *
 *  - shared: ONE solveIvp on the flattened [B·N] batch (scipy's batch-as-one-vector).
 *  - per-sample: B concurrent solveIvp runs, one per row; a broker holds each row's RHS request until every row
 *    still integrating has asked, then evaluates them as one batched GPU call at per-row times (finished rows are
 *    re-evaluated at their last state, so the batch shape never changes) and releases them. Each row gets exactly
 *    the steps of solving it alone.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { solveIvp, type OdeRhs, type SolveIvpResult } from './dormand-prince.js';
import { PRECISION_NOTE, type BatchRhs, type BatchSolveOptions, type BatchSolveResult, type Checkpoint, type RowOutcome, type StepControl } from './batch-types.js';

type Resolved = BatchSolveOptions & { rtol: number; atol: number; stepControl: StepControl };

/** Indices of rows of a [B, N] host array holding NaN/±Inf. */
function nonFiniteRows(f: ArrayLike<number>, batch: number, dim: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < dim; i++) {
      if (!Number.isFinite(f[b * dim + i])) {
        out.push(b);
        break;
      }
    }
  }
  return out;
}

function rowList(rows: number[]): string {
  return rows.length ? ` (non-finite in row${rows.length > 1 ? 's' : ''} ${rows.slice(0, 8).join(', ')}${rows.length > 8 ? ', …' : ''})` : '';
}

/** Uploads host rows, runs the batched RHS in a scope, reads f back. */
class GpuEvaluator {
  readonly y: Tensor;
  readonly out: Tensor;
  evaluations = 0;

  constructor(
    private readonly e: Engine,
    private readonly rhs: BatchRhs,
    batch: number,
    dim: number,
  ) {
    this.y = e.keep(e.empty([batch, dim], 'f32', 'host-f64.y'));
    this.out = e.keep(e.empty([batch, dim], 'f32', 'host-f64.f'));
  }

  async evaluate(t: Float64Array, y: Float32Array): Promise<Float32Array> {
    this.evaluations++;
    this.e.write(this.y, new Uint8Array(y.buffer, y.byteOffset, y.byteLength));
    await this.e.scope(async () => {
      await this.rhs(t, this.y, this.out);
    });
    return (await this.out.read()) as Float32Array;
  }

  dispose(): void {
    this.y.dispose();
    this.out.dispose();
  }
}

export async function solveHostF64(
  e: Engine,
  rhs: BatchRhs,
  tSpan: readonly [number, number],
  y0: Float64Array,
  batch: number,
  dim: number,
  o: Resolved,
): Promise<BatchSolveResult> {
  const ev = new GpuEvaluator(e, rhs, batch, dim);
  try {
    return o.stepControl === 'shared' ? await shared(ev, tSpan, y0, batch, dim, o) : await perSample(ev, tSpan, y0, batch, dim, o);
  } finally {
    ev.dispose();
  }
}

async function shared(
  ev: GpuEvaluator,
  tSpan: readonly [number, number],
  y0: Float64Array,
  batch: number,
  dim: number,
  o: Resolved,
): Promise<BatchSolveResult> {
  const times = new Float64Array(batch);
  const y32 = new Float32Array(batch * dim);
  let badRows: number[] = [];
  const fun: OdeRhs = async (t, y, out) => {
    y32.set(y);
    times.fill(t);
    const f = await ev.evaluate(times, y32);
    out.set(f);
    badRows = nonFiniteRows(f, batch, dim);
  };
  const r = await solveIvp(fun, tSpan, y0, {
    rtol: o.rtol,
    atol: o.atol,
    maxStep: o.maxStep,
    firstStep: o.firstStep,
    maxSteps: o.maxSteps,
    saveSteps: (o.keepSteps ?? 'none') !== 'none',
    onStep: o.onProgress
      ? (s) => o.onProgress!({ step: s.stepIndex + 1, nfev: ev.evaluations, t: s.t, h: Math.abs(s.h), running: batch })
      : undefined,
  });
  if (r.status === 'non-finite') {
    r.message += rowList(badRows.length ? badRows : nonFiniteRows(r.yFinal, batch, dim));
  }
  const res = fromSolveIvp(r, batch, dim, ev.evaluations);
  return res;
}

interface Request {
  t: number;
  y: Float64Array;
  out: Float64Array;
  resolve: () => void;
  reject: (err: unknown) => void;
}

async function perSample(
  ev: GpuEvaluator,
  tSpan: readonly [number, number],
  y0: Float64Array,
  batch: number,
  dim: number,
  o: Resolved,
): Promise<BatchSolveResult> {
  const pending: Array<Request | null> = new Array(batch).fill(null);
  let nPending = 0;
  let alive = batch;
  let firing = false;
  // What each row last asked for: finished rows are evaluated there again (constant batch shape).
  const tLast = new Float64Array(batch).fill(tSpan[0]);
  const yLast = Float32Array.from(y0);
  const tAccepted = new Float64Array(batch).fill(tSpan[0]);
  const hAccepted = new Float64Array(batch).fill(Infinity);
  const done = new Uint8Array(batch);
  let acceptedSinceReport = 0;
  let rounds = 0;

  const report = () => {
    if (!o.onProgress || acceptedSinceReport === 0) return;
    acceptedSinceReport = 0;
    const d = tSpan[1] >= tSpan[0] ? 1 : -1;
    let t = Infinity;
    let h = Infinity;
    for (let b = 0; b < batch; b++) {
      if (done[b]) continue;
      t = Math.min(t, d * tAccepted[b]);
      h = Math.min(h, hAccepted[b]);
    }
    o.onProgress({ step: rounds, nfev: ev.evaluations, t: d * t, h, running: alive });
  };

  const fire = async () => {
    firing = true;
    const reqs = pending.slice();
    pending.fill(null);
    nPending = 0;
    report();
    let f: Float32Array | null = null;
    let error: unknown = null;
    try {
      reqs.forEach((r, b) => {
        if (!r) return;
        tLast[b] = r.t;
        yLast.set(r.y, b * dim);
      });
      f = await ev.evaluate(tLast, yLast);
    } catch (err) {
      error = err ?? new Error('the right-hand side failed');
    }
    firing = false;
    reqs.forEach((r, b) => {
      if (!r) return;
      if (f) {
        r.out.set(f.subarray(b * dim, (b + 1) * dim));
        r.resolve();
      } else {
        r.reject(error);
      }
    });
  };
  const maybeFire = () => {
    if (!firing && nPending > 0 && nPending === alive) void fire();
  };

  const solves: Array<Promise<SolveIvpResult>> = [];
  for (let b = 0; b < batch; b++) {
    const fun: OdeRhs = (t, y, out) =>
      new Promise<void>((resolve, reject) => {
        pending[b] = { t, y, out, resolve, reject };
        nPending++;
        maybeFire();
      });
    const p = solveIvp(fun, tSpan, y0.subarray(b * dim, (b + 1) * dim), {
      rtol: o.rtol,
      atol: o.atol,
      maxStep: o.maxStep,
      firstStep: o.firstStep,
      maxSteps: o.maxSteps,
      saveSteps: false,
      onStep: (s) => {
        tAccepted[b] = s.t;
        hAccepted[b] = Math.abs(s.h);
        rounds = Math.max(rounds, s.stepIndex + 1);
        acceptedSinceReport++;
      },
    }).finally(() => {
      done[b] = 1;
      alive--;
      maybeFire();
    });
    solves.push(p);
  }
  const results = await Promise.all(solves);

  const yFinal = new Float64Array(batch * dim);
  const rows: RowOutcome[] = results.map((r, b) => {
    yFinal.set(r.yFinal, b * dim);
    const message = r.status === 'success' ? r.message : `${r.message} (row ${b})`;
    return { status: r.status, message, t: r.tFinal, nSteps: r.nSteps, nRejected: r.nRejected, nfev: r.nfev };
  });
  const firstBad = rows.find((r) => r.status !== 'success');
  return {
    batch,
    dim,
    yFinal,
    tFinal: Float64Array.from(rows, (r) => r.t),
    status: firstBad ? firstBad.status : 'success',
    message: firstBad ? firstBad.message : rows[0].message,
    rows,
    nfev: ev.evaluations,
    nSteps: Math.max(...results.map((r) => r.nSteps + r.nRejected)),
    nRejected: results.reduce((a, r) => a + r.nRejected, 0),
    stepControl: 'per-sample',
    state: 'host-f64',
    precision: PRECISION_NOTE['host-f64'],
    stepTimes: results.map((r) => r.t),
    checkpoints: [],
    dispose: () => undefined,
  };
}

/** Host float64 results of the reference solver, reshaped into a BatchSolveResult (shared control). */
function fromSolveIvp(r: SolveIvpResult, batch: number, dim: number, nfevBatched: number): BatchSolveResult {
  const row: RowOutcome = { status: r.status, message: r.message, t: r.tFinal, nSteps: r.nSteps, nRejected: r.nRejected, nfev: r.nfev };
  const checkpoints: Checkpoint[] = r.y.map((y, k) => ({ t: new Float64Array(batch).fill(r.t[k]), y }));
  return {
    batch,
    dim,
    yFinal: r.yFinal,
    tFinal: new Float64Array(batch).fill(r.tFinal),
    status: r.status,
    message: r.message,
    rows: Array.from({ length: batch }, () => ({ ...row })),
    nfev: nfevBatched,
    nSteps: r.nSteps,
    nRejected: r.nRejected,
    stepControl: 'shared',
    state: 'host-f64',
    precision: PRECISION_NOTE['host-f64'],
    stepTimes: Array.from({ length: batch }, () => r.t.slice()),
    checkpoints,
    dispose: () => undefined,
  };
}
