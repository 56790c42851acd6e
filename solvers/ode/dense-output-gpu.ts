/**
 * Dense output of a GPU-resident batch solve with shared steps: y(t_old + x·h) = y_old + h·Σ_s K_s·w_s(x),
 * w_s(x) = Σ_j P[s][j]·x^(j+1) (the tableau's interpolant, as the host StepInterpolant) — a stage combination
 * over every stage, so the same fused kernel evaluates it. Costs (stages + 1) state copies per accepted step.
 */
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { StageBuffer, combineStages, type StageTerm } from '../state-kernels.js';
import type { StepTrial } from './controller.js';
import { denseWeights, type EmbeddedRkTableau } from './tableau.js';

interface DenseSegment {
  tOld: number;
  t: number;
  h: number;
  yOld: Tensor;
  stages: StageBuffer;
  /** Physical slot of each logical stage when the step was taken. */
  slot: number[];
}

export class GpuDenseOutput {
  readonly ts: number[];
  private readonly segments: DenseSegment[] = [];
  private readonly y0: Tensor;

  constructor(
    e: Engine,
    private readonly tableau: EmbeddedRkTableau,
    t0: number,
    y0: Tensor,
    readonly direction: 1 | -1,
  ) {
    this.ts = [t0];
    this.y0 = e.keep(e.clone(y0, 'rk.dense.y0'));
  }

  /** Record the accepted step from the current y and stages (before the FSAL swap). */
  push(e: Engine, y: Tensor, stages: StageBuffer, slot: readonly number[], trial: StepTrial): void {
    const copy = new StageBuffer(e, stages.batch, stages.dim, stages.slots);
    for (const t of [copy.buffer, ...copy.views]) e.keep(t);
    e.copy(stages.buffer, copy.buffer);
    this.segments.push({
      tOld: trial.t,
      t: trial.tNew,
      h: trial.tNew - trial.t,
      yOld: e.keep(e.clone(y, 'rk.dense.yOld')),
      stages: copy,
      slot: slot.slice(),
    });
    this.ts.push(trial.tNew);
  }

  get steps(): number {
    return this.segments.length;
  }

  /** The state at time t as a new [B, N] tensor (extrapolates the end segments outside the span). */
  evaluate(e: Engine, t: number): Tensor {
    if (this.segments.length === 0) return e.clone(this.y0);
    const d = this.direction;
    let lo = 0;
    let hi = this.ts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (d * (this.ts[mid] - t) >= 0) hi = mid;
      else lo = mid + 1;
    }
    const seg = this.segments[Math.min(Math.max(lo - 1, 0), this.segments.length - 1)];
    const x = (t - seg.tOld) / seg.h;
    const terms: StageTerm[] = denseWeights(this.tableau, x).map((w, s) => ({ slot: seg.slot[s], coef: w }));
    const { batch, dim } = seg.stages;
    const hT = e.tensor(new Float32Array(batch).fill(seg.h), [batch], 'f32', 'rk.dense.h');
    const out = e.empty([batch, dim], 'f32', 'rk.dense');
    combineStages(e, seg.yOld, seg.stages, terms, hT, out);
    hT.dispose();
    return out;
  }

  dispose(): void {
    this.y0.dispose();
    for (const s of this.segments) {
      s.yOld.dispose();
      s.stages.dispose();
    }
    this.segments.length = 0;
  }
}
