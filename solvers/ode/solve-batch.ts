/**
 * A BATCH of independent ODE systems y_b' = f(t_b, y_b), b < B, each of N components, whose right-hand side runs
 * on the GPU for the whole batch at once — the one driver (solve.ts) with a choice of state and control policy:
 *
 *  - state 'gpu-f32': Y [B, N] and the stages stay on the GPU in float32 (state-gpu.ts); only 2·B floats come back
 *    per trial. Precision: f32 state (ε = 6e-8 relative) — the stage sums round at ~1e-7·|y|, so use rtol ≥ ~1e-6.
 *  - state 'host-f64': the state and the error control stay in float64 on the host (state-host.ts) and only the RHS
 *    runs on the GPU (y uploaded as f32, f downloaded each evaluation) — exactly solveIvp, SPEC §4's reference.
 *  - stepControl 'shared' (the reference): one step size for the whole batch, err_norm = RMS over all B·N
 *    components, i.e. solveIvp on the flattened batch; a failure ends the whole solve.
 *  - stepControl 'per-sample': one controller per row, lock-step rounds of one trial each; a row gets exactly the
 *    steps it would get if solved alone (its RHS must be row-local), and fails alone.
 */
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { ShapeError } from '../../engine/errors.js';
import { PRECISION_NOTE, validateBatchOptions, type BatchRhs, type BatchSolveOptions, type BatchSolveResult, type Checkpoint } from './batch-types.js';
import { scipyControl } from './control-policy.js';
import { GpuDenseOutput } from './dense-output-gpu.js';
import type { HostBatchRhs } from './host-rhs.js';
import { solve, type AcceptedRound, type SolveOptions } from './solve.js';
import { HostF64State } from './state-host.js';
import { GpuF32State } from './state-gpu.js';
import { RK45 } from './tableaus.js';

/** The batched GPU right-hand side seen from a host state: y uploaded as f32, f read back. */
class HostToGpuRhs {
  private readonly y: Tensor;
  private readonly out: Tensor;

  constructor(
    private readonly e: Engine,
    private readonly rhs: BatchRhs,
    batch: number,
    dim: number,
  ) {
    this.y = e.keep(e.empty([batch, dim], 'f32', 'host-f64.y'));
    this.out = e.keep(e.empty([batch, dim], 'f32', 'host-f64.f'));
  }

  readonly evaluate: HostBatchRhs = async (t, y, out) => {
    const y32 = Float32Array.from(y);
    this.e.write(this.y, new Uint8Array(y32.buffer));
    await this.e.scope(async () => {
      await this.rhs(t, this.y, this.out);
    });
    out.set((await this.out.read()) as Float32Array);
  };

  dispose(): void {
    this.y.dispose();
    this.out.dispose();
  }
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
  const { batch: B, dim: N } = shape;
  const [t0, t1] = tSpan;
  const v = validateBatchOptions(t0, t1, B, N, options);
  const size = 'size' in y0 ? y0.size : y0.length;
  if (size !== B * N) throw new ShapeError(`solveBatch: y0 has ${size} values, expected ${B}×${N}`);
  const y0Host = 'size' in y0 ? await y0.readF64() : Float64Array.from(y0);
  const tableau = options.method ?? RK45;
  const control = scipyControl(v.stepControl, options);
  const shared = v.stepControl === 'shared';
  const direction = t1 >= t0 ? 1 : -1;
  const checkpoints: Checkpoint[] = [];
  let dense: GpuDenseOutput | undefined;

  const rowTimes = (round?: AcceptedRound) => Float64Array.from({ length: B }, (_, b) => round?.controllers[b]?.t ?? t0);
  const progress = (round: AcceptedRound) => {
    if (!options.onProgress) return;
    // The least advanced running row (or, at the end, the rows of the last trial).
    const still = round.running;
    const ref = still.length ? still : round.trials.flatMap((tr, b) => (tr ? [b] : []));
    let tMin = Infinity;
    let hMin = Infinity;
    for (const b of ref) {
      tMin = Math.min(tMin, direction * (round.controllers[b]?.t ?? t0));
      hMin = Math.min(hMin, Math.abs(round.trials[b]?.h ?? 0));
    }
    const step = shared ? (round.controllers.find((c) => c)?.nAccepted ?? 0) : round.rounds;
    options.onProgress({ step, nfev: round.nfev, t: direction * tMin, h: hMin, running: still.length });
  };

  let host: HostToGpuRhs | undefined;
  let gpu: GpuF32State | undefined;
  try {
    let outcome;
    let yFinal: Float64Array;
    if (v.state === 'host-f64') {
      host = new HostToGpuRhs(e, rhs, B, N);
      const state = new HostF64State(tableau, y0Host, B, N, v.rtol, v.atol);
      const keep = (round?: AcceptedRound) => {
        if (v.keepSteps !== 'none') checkpoints.push({ t: rowTimes(round), y: state.y.slice() });
      };
      const hooks: SolveOptions<HostF64State> = {
        tSpan,
        callbackName: 'onProgress',
        onStart: () => keep(),
        afterCommit: (_s, round) => {
          keep(round);
          progress(round);
        },
      };
      outcome = await solve(host.evaluate, tableau, control, state, hooks);
      yFinal = await state.readY();
    } else {
      const state = new GpuF32State(e, tableau, y0Host, B, N, v.rtol, v.atol);
      gpu = state;
      const keep = (round?: AcceptedRound) => {
        if (v.keepSteps !== 'none') checkpoints.push({ t: rowTimes(round), y: e.keep(e.clone(state.y, 'rk.checkpoint')) });
      };
      outcome = await solve(rhs, tableau, control, state, {
        tSpan,
        callbackName: 'onProgress',
        onStart: (s) => {
          keep();
          if (v.keepSteps === 'stages') dense = new GpuDenseOutput(e, tableau, t0, s.y, direction);
        },
        beforeCommit: (s, round) => dense?.push(e, s.y, s.stages, s.slot, round.trials.find((tr) => tr)!),
        afterCommit: (_s, round) => {
          keep(round);
          progress(round);
        },
      });
      yFinal = await state.readY();
    }
    const rows = outcome.rows;
    const firstBad = rows.find((r) => r.status !== 'success');
    const c0 = outcome.controllers[0];
    const res: BatchSolveResult = {
      batch: B,
      dim: N,
      yFinal,
      tFinal: Float64Array.from(rows, (r) => r.t),
      status: firstBad ? firstBad.status : 'success',
      message: firstBad ? firstBad.message : rows[0].message,
      rows,
      nfev: outcome.nfev,
      nSteps: shared ? (c0?.nAccepted ?? 0) : outcome.rounds,
      nRejected: shared ? (c0?.nRejected ?? 0) : rows.reduce((a, r) => a + r.nRejected, 0),
      stepControl: v.stepControl,
      state: v.state,
      precision: PRECISION_NOTE[v.state],
      stepTimes: outcome.stepTimes,
      checkpoints,
      dispose: () => {
        for (const c of checkpoints) if (!(c.y instanceof Float64Array)) c.y.dispose();
        dense?.dispose();
      },
    };
    if (dense) res.dense = dense;
    if (outcome.error !== undefined) res.error = outcome.error;
    return res;
  } finally {
    host?.dispose();
    gpu?.dispose();
  }
}
