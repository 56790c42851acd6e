/**
 * scipy's RK45 (SPEC §4) on a BATCH of independent ODE systems y_b' = f(t_b, y_b), b < B, each of N components,
 * whose right-hand side runs on the GPU for the whole batch at once. The step logic is NOT re-implemented: the
 * accept/reject/step-size decisions are dormand-prince.ts's `Rk45Controller`, `initialStepGuess` and
 * `initialStepFinal`, fed with scalar error norms.
 *
 * Two places for the state (`state`):
 *  - 'gpu-f32': Y [B, N] stays on the GPU in float32 with the stages K₀…K₆; each stage combination is one fused
 *    dispatch, the error estimate + scale + per-row sum of squares one fused reduction, and only 2·B floats (per-row
 *    sums and non-finite flags) are read back per step. Precision: f32 state (ε = 6e-8 relative) — tolerances below
 *    ~1e-6 relative are meaningless; the stage sums themselves round at ~1e-7·|y|, so use rtol ≥ ~1e-6.
 *  - 'host-f64': the state and the error control stay in float64 on the host and only the RHS runs on the GPU (y
 *    uploaded as f32, f downloaded each evaluation) — exactly solveIvp, the reference behaviour of SPEC §4.
 *
 * Two step controls (`stepControl`):
 *  - 'shared' (the reference): one step size for the whole batch, err_norm = RMS over all B·N components, i.e.
 *    solveIvp on the flattened batch. A failure (non-finite, min-step, max-steps) ends the whole solve.
 *  - 'per-sample': one controller per row (its own t, h, accept/reject); rows advance in lock-step ROUNDS of one
 *    trial each, with per-row h (a [B] tensor) and per-row stage times; finished or failed rows are frozen (their
 *    rows are not updated) while the RHS keeps being evaluated for the whole batch. A row gets exactly the steps it
 *    would get if solved alone (its RHS must be row-local). In 'host-f64' this is B concurrent solveIvp runs whose
 *    RHS calls are batched into one GPU evaluation.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { ShapeError } from '../engine/errors.js';
import {
  RK45,
  Rk45Controller,
  initialStepFinal,
  initialStepGuess,
  type SolveIvpStatus,
  type StepTrial,
} from './dormand-prince.js';
import { StageBuffer, combineStages, commitRows, errorSumSquares, scaledSumSquares, type StageTerm } from './state-kernels.js';
import { solveHostF64 } from './host-batch.js';
import { GpuDenseOutput } from './gpu-dense-output.js';
import {
  PRECISION_NOTE,
  validateBatchOptions,
  type BatchRhs,
  type BatchSolveOptions,
  type BatchSolveResult,
  type Checkpoint,
  type RowOutcome,
} from './batch-types.js';

export * from './batch-types.js';
export { GpuDenseOutput } from './gpu-dense-output.js';

/** Shortest round-trip form, so a reported t can be pasted back exactly. */
function fmt(x: number): string {
  return String(x);
}

/**
 * Solve the batch y_b(t0) = y0_b from t0 to t1. `y0` is row-major [B, N] (host numbers or an f32 tensor).
 * Invalid arguments throw; everything after the first evaluation returns a result with per-row statuses.
 */
export async function solveBatch(
  e: Engine,
  rhs: BatchRhs,
  tSpan: readonly [number, number],
  y0: ArrayLike<number> | Tensor,
  shape: { batch: number; dim: number },
  options: BatchSolveOptions = {},
): Promise<BatchSolveResult> {
  const { batch, dim } = shape;
  const [t0, t1] = tSpan;
  const v = validateBatchOptions(t0, t1, batch, dim, options);
  const size = 'size' in y0 ? y0.size : y0.length;
  if (size !== batch * dim) throw new ShapeError(`solveBatch: y0 has ${size} values, expected ${batch}×${dim}`);
  const y0Host = 'size' in y0 ? await y0.readF64() : Float64Array.from(y0);
  if (v.state === 'host-f64') return solveHostF64(e, rhs, [t0, t1], y0Host, batch, dim, { ...options, ...v });
  return new GpuRk45(e, rhs, t0, t1, batch, dim, options, v).run(y0Host);
}

// ---------------------------------------------------------------------------------------------------------------
// GPU-resident state

const FIRST = 0;
const LAST = RK45.nStages;

interface RowState {
  ctrl: Rk45Controller | null;
  outcome: RowOutcome | null;
  trial: StepTrial | null;
  /** The next trial starts a new step (else it retries after a rejection). */
  fresh: boolean;
  /** RHS evaluations charged to this row (initial ones + 6 per trial). */
  nfev: number;
  times: number[];
}

class GpuRk45 {
  private readonly shared: boolean;
  private readonly direction: 1 | -1;
  private readonly rows: RowState[] = [];
  private nfev = 0;
  private rounds = 0;
  private readonly checkpoints: Checkpoint[] = [];
  private dense: GpuDenseOutput | undefined;
  /** What the RHS threw, if it did (the solve then ends with status 'failed'). */
  private error: unknown;
  // Physical slot of each logical stage (FSAL swaps slots 0 and 6 in shared mode).
  private slot = [0, 1, 2, 3, 4, 5, 6];
  private y!: Tensor;
  private yNew!: Tensor;
  private yStage!: Tensor;
  private stages!: StageBuffer;
  private hT!: Tensor;
  private sums!: Tensor;

  constructor(
    private readonly e: Engine,
    private readonly rhs: BatchRhs,
    private readonly t0: number,
    private readonly t1: number,
    private readonly B: number,
    private readonly N: number,
    private readonly o: BatchSolveOptions,
    private readonly v: ReturnType<typeof validateBatchOptions>,
  ) {
    this.shared = v.stepControl === 'shared';
    this.direction = t1 >= t0 ? 1 : -1;
    for (let b = 0; b < B; b++) this.rows.push({ ctrl: null, outcome: null, trial: null, fresh: true, nfev: 0, times: [t0] });
  }

  private get running(): number[] {
    const out: number[] = [];
    this.rows.forEach((r, b) => {
      if (!r.outcome) out.push(b);
    });
    return out;
  }

  private rowT(b: number): number {
    return this.rows[b].ctrl?.t ?? this.t0;
  }

  private fail(b: number, status: SolveIvpStatus, message: string): void {
    const r = this.rows[b];
    r.outcome = {
      status,
      message,
      t: this.rowT(b),
      nSteps: r.ctrl?.nAccepted ?? 0,
      nRejected: r.ctrl?.nRejected ?? 0,
      nfev: r.nfev,
    };
  }

  /** Fail every running row (shared control, or an exception). */
  private failAll(status: SolveIvpStatus, message: string): void {
    for (const b of this.running) this.fail(b, status, message);
  }

  private async evaluate(times: Float64Array, y: Tensor, slot: number): Promise<void> {
    this.nfev++;
    for (const b of this.running) this.rows[b].nfev++;
    const out = this.stages.views[slot];
    await this.e.scope(async () => {
      await this.rhs(times, y, out);
    });
  }

  private writeH(h: Float64Array): void {
    this.e.write(this.hT, new Uint8Array(Float32Array.from(h).buffer));
  }

  private async readSums(): Promise<{ s: Float64Array; bad: Uint8Array }> {
    const raw = (await this.sums.read()) as Float32Array;
    const s = Float64Array.from(raw.subarray(0, this.B));
    const bad = Uint8Array.from(raw.subarray(this.B), (f) => (f !== 0 ? 1 : 0));
    return { s, bad };
  }

  /** Per-row RMS (per-sample) or the RMS over the batch (shared) from per-row sums of squares. */
  private norms(s: Float64Array): Float64Array {
    if (!this.shared) return s.map((x) => Math.sqrt(x) / Math.sqrt(this.N));
    let tot = 0;
    for (const x of s) tot += x;
    return new Float64Array(this.B).fill(Math.sqrt(tot) / Math.sqrt(this.B * this.N));
  }

  private badRowsMessage(bad: Uint8Array): string {
    const idx: number[] = [];
    bad.forEach((f, b) => f && idx.push(b));
    return idx.length ? ` (non-finite in row${idx.length > 1 ? 's' : ''} ${idx.slice(0, 8).join(', ')}${idx.length > 8 ? ', …' : ''})` : '';
  }

  async run(y0: Float64Array): Promise<BatchSolveResult> {
    const e = this.e;
    const { B, N } = this;
    this.y = e.keep(e.tensor(Float32Array.from(y0), [B, N], 'f32', 'rk.y'));
    this.yNew = e.keep(e.empty([B, N], 'f32', 'rk.yNew'));
    this.yStage = e.keep(e.empty([B, N], 'f32', 'rk.yStage'));
    this.stages = new StageBuffer(e, B, N);
    for (const t of [this.stages.buffer, ...this.stages.views]) e.keep(t);
    this.hT = e.keep(e.empty([B], 'f32', 'rk.h'));
    this.sums = e.keep(e.empty([2 * B], 'f32', 'rk.sums'));
    try {
      await this.integrate(y0);
    } catch (err) {
      this.failAll('failed', `the right-hand side threw: ${err instanceof Error ? err.message : String(err)}`);
      this.error = err;
    }
    const yFinal = await this.y.readF64();
    for (const t of [this.y, this.yNew, this.yStage, this.hT, this.sums]) t.dispose();
    this.stages.dispose();
    return this.result(yFinal);
  }

  private keepCheckpoint(): void {
    if (this.v.keepSteps === 'none') return;
    const t = Float64Array.from(this.rows, (_, b) => this.rowT(b));
    this.checkpoints.push({ t, y: this.e.keep(this.e.clone(this.y, 'rk.checkpoint')) });
  }

  private async integrate(y0: Float64Array): Promise<void> {
    const { B, N, e } = this;
    const { rtol, atol } = this.v;
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < N; i++) {
        if (!Number.isFinite(y0[b * N + i])) {
          const msg = `Non-finite initial state y0 in row ${b} at t0 = ${fmt(this.t0)} (step index 0)`;
          if (this.shared) return this.failAll('non-finite', msg);
          this.fail(b, 'non-finite', msg);
          break;
        }
      }
    }
    if (this.running.length === 0) return;
    this.keepCheckpoint();
    if (this.v.keepSteps === 'stages') this.dense = new GpuDenseOutput(e, this.t0, this.y, this.direction);

    const t0s = new Float64Array(B).fill(this.t0);
    await this.evaluate(t0s, this.y, this.slot[FIRST]);
    // d0, d1 (and the non-finite check of f0) from per-row scaled sums of squares.
    const s0 = e.empty([2 * B], 'f32', 'rk.d0');
    scaledSumSquares(e, this.y, null, this.y, B, N, rtol, atol, s0);
    scaledSumSquares(e, this.stages.views[this.slot[FIRST]], null, this.y, B, N, rtol, atol, this.sums);
    const d0raw = (await s0.read()) as Float32Array;
    s0.dispose();
    const f0 = await this.readSums();
    for (const b of this.running) {
      if (f0.bad[b]) {
        const msg = `Non-finite f(t0, y0) at t0 = ${fmt(this.t0)} (step index 0)${this.badRowsMessage(f0.bad)}`;
        if (this.shared) return this.failAll('non-finite', msg);
        this.fail(b, 'non-finite', msg);
      }
    }
    const L = Math.abs(this.t1 - this.t0);
    const maxStep = this.o.maxStep ?? Infinity;
    let hAbs: Float64Array;
    if (this.o.firstStep !== undefined) {
      hAbs = new Float64Array(B).fill(this.o.firstStep);
    } else if (L === 0) {
      hAbs = new Float64Array(B);
    } else {
      const d0 = this.norms(Float64Array.from(d0raw.subarray(0, B)));
      const d1 = this.norms(f0.s);
      const h0 = new Float64Array(B);
      const hd = new Float64Array(B);
      const tProbe = new Float64Array(B);
      for (let b = 0; b < B; b++) {
        h0[b] = initialStepGuess(d0[b], d1[b], L);
        hd[b] = this.rows[b].outcome ? 0 : h0[b] * this.direction;
        tProbe[b] = this.t0 + hd[b];
      }
      this.writeH(hd);
      combineStages(e, this.y, this.stages, [{ slot: this.slot[FIRST], coef: 1 }], this.hT, this.yStage);
      const probeSlot = this.slot[1];
      await this.evaluate(tProbe, this.yStage, probeSlot);
      scaledSumSquares(e, this.stages.views[probeSlot], this.stages.views[this.slot[FIRST]], this.y, B, N, rtol, atol, this.sums);
      const f1 = await this.readSums();
      const d2 = this.norms(f1.s);
      hAbs = new Float64Array(B);
      for (const b of this.running) {
        if (f1.bad[b]) {
          const msg = `Non-finite f during initial-step selection at t = ${fmt(tProbe[b])} (step index 0)${this.badRowsMessage(f1.bad)}`;
          if (this.shared) return this.failAll('non-finite', msg);
          this.fail(b, 'non-finite', msg);
          continue;
        }
        hAbs[b] = initialStepFinal(h0[b], d1[b], d2[b] / h0[b], L, maxStep, RK45.errorEstimatorOrder);
      }
    }
    if (this.shared) {
      const ctrl = new Rk45Controller({ t0: this.t0, t1: this.t1, hAbs: hAbs[0], maxStep });
      for (const r of this.rows) r.ctrl = ctrl;
    } else {
      for (const b of this.running) this.rows[b].ctrl = new Rk45Controller({ t0: this.t0, t1: this.t1, hAbs: hAbs[b], maxStep });
    }
    for (const b of this.running) if (this.rows[b].ctrl!.finished) this.succeed(b);

    while (this.running.length > 0) await this.round();
  }

  private succeed(b: number): void {
    const r = this.rows[b];
    const c = r.ctrl!;
    r.outcome = {
      status: 'success',
      message:
        `The solver successfully reached the end of the integration interval t1 = ${fmt(this.t1)} ` +
        `(${c.nAccepted} steps, ${c.nRejected} rejected, ${r.nfev} evaluations).`,
      t: c.t,
      nSteps: c.nAccepted,
      nRejected: c.nRejected,
      nfev: r.nfev,
    };
  }

  /** One trial for every running row: all stages for the batch, one fused error reduction, one read-back. */
  private async round(): Promise<void> {
    const { B, N, e } = this;
    const { A, B: weights, C, E, nStages } = RK45;
    // Pick the trial of each running row (shared: all rows share one controller and one trial).
    const candidates = this.running;
    const sharedCtrl = this.shared ? this.rows[candidates[0]].ctrl! : null;
    let sharedTrial: StepTrial | null = null;
    for (const b of candidates) {
      const r = this.rows[b];
      const c = r.ctrl!;
      if (sharedCtrl && b !== candidates[0]) {
        r.trial = sharedTrial;
        continue;
      }
      if (r.fresh && this.o.maxSteps !== undefined && c.nAccepted >= this.o.maxSteps) {
        const msg = `Reached maxSteps = ${this.o.maxSteps} accepted steps at t = ${fmt(c.t)} (step index ${c.nAccepted}) before t1 = ${fmt(this.t1)}.`;
        if (this.shared) return this.failAll('max-steps', msg);
        this.fail(b, 'max-steps', msg);
        continue;
      }
      r.trial = r.fresh ? c.beginStep() : c.retry();
      if (!r.trial) {
        const msg =
          `Required step size is less than spacing between numbers: at t = ${fmt(c.t)} (step index ${c.nAccepted}; ` +
          `rejected trials in this step: ${c.rejectionsThisStep}) |h| fell below min_step = ${fmt(c.minStep)}` +
          (this.shared ? '.' : ` (row ${b}).`);
        if (this.shared) return this.failAll('min-step', msg);
        this.fail(b, 'min-step', msg);
        continue;
      }
      if (sharedCtrl) sharedTrial = r.trial;
    }
    const live = this.running;
    if (live.length === 0) return;
    this.rounds++;

    const h = new Float64Array(B);
    const tRow = new Float64Array(B);
    for (let b = 0; b < B; b++) tRow[b] = this.rowT(b);
    for (const b of live) h[b] = this.rows[b].trial!.h;
    this.writeH(h);
    const slot = this.slot;
    const stageTimes = (c: number) => Float64Array.from(tRow, (t, b) => t + c * h[b]);
    for (let s = 1; s < nStages; s++) {
      const terms: StageTerm[] = A[s].map((a, j) => ({ slot: slot[j], coef: a }));
      combineStages(e, this.y, this.stages, terms, this.hT, this.yStage);
      await this.evaluate(stageTimes(C[s]), this.yStage, slot[s]);
    }
    combineStages(e, this.y, this.stages, weights.map((w, j) => ({ slot: slot[j], coef: w })), this.hT, this.yNew);
    await this.evaluate(Float64Array.from(tRow, (t, b) => t + h[b]), this.yNew, slot[nStages]);
    const eTerms: StageTerm[] = E.map((w, j) => ({ slot: slot[j], coef: w }));
    errorSumSquares(e, this.y, this.yNew, this.stages, eTerms, this.hT, this.v.rtol, this.v.atol, this.sums);
    const { s, bad } = await this.readSums();

    const accepted = new Uint8Array(B);
    if (this.shared) {
      const trial = sharedTrial!;
      const c = sharedCtrl!;
      const anyBad = live.some((b) => bad[b]);
      if (anyBad) {
        return this.failAll(
          'non-finite',
          `Non-finite value in the stages or the new state, during step index ${c.nAccepted} from t = ${fmt(trial.t)} ` +
            `with h = ${fmt(trial.h)}${this.badRowsMessage(bad)}.`,
        );
      }
      if (c.reportError(this.norms(s)[0])) for (const b of live) accepted[b] = 1;
      for (const b of live) this.rows[b].fresh = accepted[b] === 1;
    } else {
      const errNorm = this.norms(s);
      for (const b of live) {
        const r = this.rows[b];
        if (bad[b]) {
          this.fail(
            b,
            'non-finite',
            `Non-finite value in the stages or the new state of row ${b}, during step index ${r.ctrl!.nAccepted} ` +
              `from t = ${fmt(r.trial!.t)} with h = ${fmt(r.trial!.h)}.`,
          );
          continue;
        }
        accepted[b] = r.ctrl!.reportError(errNorm[b]) ? 1 : 0;
        r.fresh = accepted[b] === 1;
      }
    }
    const nAcc = accepted.reduce((a, x) => a + x, 0);
    if (nAcc === 0) return;

    if (this.dense) this.dense.push(this.e, this.y, this.stages, slot, sharedTrial!);
    if (this.shared) {
      [this.y, this.yNew] = [this.yNew, this.y];
      [slot[FIRST], slot[LAST]] = [slot[LAST], slot[FIRST]];
    } else {
      const mask = e.tensor(Float32Array.from(accepted), [B], 'f32', 'rk.accept');
      commitRows(e, this.y, this.yNew, this.stages, slot[FIRST], slot[LAST], mask);
      mask.dispose();
    }
    for (const b of live) {
      if (!accepted[b]) continue;
      const r = this.rows[b];
      r.times.push(r.ctrl!.t);
      if (r.ctrl!.finished) this.succeed(b);
    }
    this.keepCheckpoint();
    if (this.o.onProgress) {
      const still = this.running;
      const ref = still.length ? still : live;
      let tMin = Infinity;
      let hMin = Infinity;
      for (const b of ref) {
        tMin = Math.min(tMin, this.direction * this.rowT(b));
        hMin = Math.min(hMin, Math.abs(h[b]));
      }
      this.o.onProgress({
        step: this.shared ? sharedCtrl!.nAccepted : this.rounds,
        nfev: this.nfev,
        t: this.direction * tMin,
        h: hMin,
        running: still.length,
      });
    }
  }

  private result(yFinal: Float64Array): BatchSolveResult {
    const rows = this.rows.map((r) => r.outcome!);
    const firstBad = rows.find((r) => r.status !== 'success');
    const checkpoints = this.checkpoints;
    const dense = this.dense;
    const c0 = this.rows[0].ctrl;
    const res: BatchSolveResult = {
      batch: this.B,
      dim: this.N,
      yFinal,
      tFinal: Float64Array.from(rows, (r) => r.t),
      status: firstBad ? firstBad.status : 'success',
      message: firstBad ? firstBad.message : rows[0].message,
      rows,
      nfev: this.nfev,
      nSteps: this.shared ? (c0?.nAccepted ?? 0) : this.rounds,
      nRejected: this.shared ? (c0?.nRejected ?? 0) : rows.reduce((a, r) => a + r.nRejected, 0),
      stepControl: this.v.stepControl,
      state: 'gpu-f32',
      precision: PRECISION_NOTE['gpu-f32'],
      stepTimes: this.rows.map((r) => r.times),
      checkpoints,
      dispose: () => {
        for (const c of checkpoints) if (!(c.y instanceof Float64Array)) c.y.dispose();
        dense?.dispose();
      },
    };
    if (dense) res.dense = dense;
    if (this.error !== undefined) (res as BatchSolveResult & { error?: unknown }).error = this.error;
    return res;
  }
}
