/**
 * The GPU float32 state of the driver: Y [B, N] and the tableau's stages stay on the GPU (solvers/state-kernels.ts);
 * each stage combination is one fused dispatch, the error estimate + scale + per-row sum of squares one fused
 * reduction, and only 2·B floats (per-row sums and non-finite flags) come back per trial.
 */
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { StageBuffer, combineStages, commitRows, errorSumSquares, scaledSumSquares, type StageTerm as SlotTerm } from '../state-kernels.js';
import type { BatchRhs } from './batch-types.js';
import { weightTerms, type RkState, type RowFlags, type StageTerm, type StateNorms } from './state.js';
import { stageCount, type EmbeddedRkTableau } from './tableau.js';

export class GpuF32State implements RkState<BatchRhs> {
  y: Tensor;
  yNew: Tensor;
  readonly yStage: Tensor;
  readonly stages: StageBuffer;
  /** Physical slot of each logical stage (a pooled commit swaps the first and the last instead of copying). */
  readonly slot: number[];
  private readonly hT: Tensor;
  private readonly sums: Tensor;
  private readonly y0: Float64Array;
  /** The error estimate's nonzero weights by stage (fixed per tableau; only the stages' slots move). */
  private readonly errorTerms: StageTerm[];

  constructor(
    private readonly e: Engine,
    readonly tableau: EmbeddedRkTableau,
    y0: Float64Array,
    readonly rows: number,
    readonly dim: number,
    private readonly rtol: number,
    private readonly atol: number,
  ) {
    const [B, N] = [rows, dim];
    this.y0 = y0;
    this.errorTerms = weightTerms(tableau.E);
    this.y = e.keep(e.tensor(Float32Array.from(y0), [B, N], 'f32', 'rk.y'));
    this.yNew = e.keep(e.empty([B, N], 'f32', 'rk.yNew'));
    this.yStage = e.keep(e.empty([B, N], 'f32', 'rk.yStage'));
    const slots = stageCount(tableau);
    this.stages = new StageBuffer(e, B, N, slots);
    for (const t of [this.stages.buffer, ...this.stages.views]) e.keep(t);
    this.slot = Array.from({ length: slots }, (_, s) => s);
    this.hT = e.keep(e.empty([B], 'f32', 'rk.h'));
    this.sums = e.keep(e.empty([2 * B], 'f32', 'rk.sums'));
  }

  private slotTerms(terms: readonly StageTerm[]): SlotTerm[] {
    return terms.map((t) => ({ slot: this.slot[t.stage], coef: t.coef }));
  }

  /** The initial state is checked on the host copy it came from (no read-back). */
  nonFiniteInitialRows(): RowFlags {
    const flags = new Uint8Array(this.rows);
    for (let b = 0; b < this.rows; b++) {
      for (let i = 0; i < this.dim; i++) {
        if (!Number.isFinite(this.y0[b * this.dim + i])) {
          flags[b] = 1;
          break;
        }
      }
    }
    return flags;
  }

  setStep(h: Float64Array): void {
    this.e.write(this.hT, new Uint8Array(Float32Array.from(h).buffer));
  }

  combine(terms: readonly StageTerm[], into: 'stage' | 'new'): RowFlags | null {
    combineStages(this.e, this.y, this.stages, this.slotTerms(terms), this.hT, into === 'stage' ? this.yStage : this.yNew);
    return null;
  }

  async evaluate(rhs: BatchRhs, stage: number, source: 'y' | 'stage' | 'new', times: Float64Array): Promise<RowFlags | null> {
    const y = source === 'y' ? this.y : source === 'stage' ? this.yStage : this.yNew;
    const out = this.stages.views[this.slot[stage]];
    await this.e.scope(async () => {
      await rhs(times, y, out);
    });
    return null;
  }

  /** Per-row RMS (or the RMS over the batch, pooled) from the per-row sums of squares in `sums`. */
  private async readNorms(pooled: boolean): Promise<StateNorms> {
    const { rows: B, dim: N } = this;
    const raw = (await this.sums.read()) as Float32Array;
    const s = Float64Array.from(raw.subarray(0, B));
    let bad: RowFlags | null = null;
    for (let b = 0; b < B; b++) {
      if (raw[B + b] === 0) continue;
      bad ??= new Uint8Array(B);
      bad[b] = 1;
    }
    if (!pooled) return { norms: s.map((x) => Math.sqrt(x) / Math.sqrt(N)), bad };
    let tot = 0;
    for (const x of s) tot += x;
    return { norms: new Float64Array(B).fill(Math.sqrt(tot) / Math.sqrt(B * N)), bad };
  }

  async initialNorms(of: 'y' | 'f0' | 'probe', pooled: boolean): Promise<StateNorms> {
    const { e, rows: B, dim: N } = this;
    const [k0, k1] = [this.stages.views[this.slot[0]], this.stages.views[this.slot[1]]];
    const a = of === 'y' ? this.y : of === 'f0' ? k0 : k1;
    scaledSumSquares(e, a, of === 'probe' ? k0 : null, this.y, B, N, this.rtol, this.atol, this.sums);
    return this.readNorms(pooled);
  }

  async errorNorms(pooled: boolean): Promise<StateNorms> {
    const terms = this.slotTerms(this.errorTerms);
    errorSumSquares(this.e, this.y, this.yNew, this.stages, terms, this.hT, this.rtol, this.atol, this.sums);
    return this.readNorms(pooled);
  }

  commit(accepted: RowFlags, pooled: boolean): void {
    const last = this.tableau.nStages;
    if (pooled) {
      [this.y, this.yNew] = [this.yNew, this.y];
      [this.slot[0], this.slot[last]] = [this.slot[last], this.slot[0]];
      return;
    }
    const mask = this.e.tensor(Float32Array.from(accepted), [this.rows], 'f32', 'rk.accept');
    commitRows(this.e, this.y, this.yNew, this.stages, this.slot[0], this.slot[last], mask);
    mask.dispose();
  }

  async readY(): Promise<Float64Array> {
    return this.y.readF64();
  }

  dispose(): void {
    for (const t of [this.y, this.yNew, this.yStage, this.hT, this.sums]) t.dispose();
    this.stages.dispose();
  }
}
