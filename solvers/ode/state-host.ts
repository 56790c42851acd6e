/**
 * The host float64 state of the driver: rows of a Float64Array, scipy's operation order throughout (a stage is
 * y + (Σ Kⱼaⱼ)·h, the new state y + h·Σ KⱼBⱼ, sums left to right), so that solveIvp stays bit-identical to scipy
 * with an unfused BLAS kernel on the fixtures.
 */
import type { HostBatchRhs } from './host-rhs.js';
import type { MaybePromise, RkState, RowFlags, StageTerm, StateNorms } from './state.js';
import { stageCount, type EmbeddedRkTableau } from './tableau.js';
import { tolAt, type Tolerance } from './tolerance.js';

/** out[from..to) = y + (Σⱼ K[stageⱼ]·coefⱼ)·h over components from..to. */
export function combineRange(
  y: Float64Array,
  K: readonly Float64Array[],
  terms: readonly StageTerm[],
  h: number,
  out: Float64Array,
  from: number,
  to: number,
): void {
  for (let i = from; i < to; i++) {
    let acc = 0;
    for (const { stage, coef } of terms) acc += K[stage][i] * coef;
    out[i] = y[i] + acc * h;
  }
}

/**
 * Σ over components from..to of ((h·Σ EⱼKⱼ) / (atol + max(|y|, |y_new|)·rtol))², added to `s` left to right.
 * All stages, zeros included, so that a non-finite stage makes the sum NaN instead of vanishing.
 */
export function errorSumRange(
  E: readonly number[],
  K: readonly Float64Array[],
  h: number,
  y: Float64Array,
  yNew: Float64Array,
  rtol: Tolerance,
  atol: Tolerance,
  from: number,
  to: number,
  s: number,
): number {
  const m = E.length;
  for (let i = from; i < to; i++) {
    let acc = 0;
    for (let j = 0; j < m; j++) acc += K[j][i] * E[j];
    const c = i - from;
    const scale = tolAt(atol, c) + Math.max(Math.abs(y[i]), Math.abs(yNew[i])) * tolAt(rtol, c);
    const e = (acc * h) / scale;
    s += e * e;
  }
  return s;
}

function finiteRange(x: Float64Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (!Number.isFinite(x[i])) return false;
  return true;
}

export class HostF64State implements RkState<HostBatchRhs> {
  /** Current states [rows, dim]; swapped with yNew on a pooled commit (read it after each commit). */
  y: Float64Array;
  yNew: Float64Array;
  readonly yStage: Float64Array;
  /** K₀ … K_nStages (the last is the FSAL stage); K₀ and K_last are swapped on a pooled commit. */
  readonly K: Float64Array[];
  private readonly h: Float64Array;

  constructor(
    readonly tableau: EmbeddedRkTableau,
    y0: ArrayLike<number>,
    readonly rows: number,
    readonly dim: number,
    private readonly rtol: Tolerance,
    private readonly atol: Tolerance,
  ) {
    const n = rows * dim;
    this.y = Float64Array.from(y0);
    this.yNew = new Float64Array(n);
    this.yStage = new Float64Array(n);
    this.K = Array.from({ length: stageCount(tableau) }, () => new Float64Array(n));
    this.h = new Float64Array(rows);
  }

  private flagRows(x: Float64Array, rows: readonly number[]): RowFlags | null {
    let flags: RowFlags | null = null;
    for (const b of rows) {
      if (finiteRange(x, b * this.dim, (b + 1) * this.dim)) continue;
      flags ??= new Uint8Array(this.rows);
      flags[b] = 1;
    }
    return flags;
  }

  private allRows(): number[] {
    return Array.from({ length: this.rows }, (_, b) => b);
  }

  nonFiniteInitialRows(): RowFlags {
    return this.flagRows(this.y, this.allRows()) ?? new Uint8Array(this.rows);
  }

  setStep(h: Float64Array): void {
    this.h.set(h);
  }

  combine(terms: readonly StageTerm[], into: 'stage' | 'new', live: readonly number[]): RowFlags | null {
    const out = into === 'stage' ? this.yStage : this.yNew;
    const N = this.dim;
    for (let b = 0; b < this.rows; b++) {
      if (this.h[b] === 0) out.set(this.y.subarray(b * N, (b + 1) * N), b * N);
      else combineRange(this.y, this.K, terms, this.h[b], out, b * N, (b + 1) * N);
    }
    return into === 'new' ? this.flagRows(out, live) : null;
  }

  evaluate(term: HostBatchRhs, stage: number, source: 'y' | 'stage' | 'new', times: Float64Array, live: readonly number[]): MaybePromise<RowFlags | null> {
    const src = source === 'y' ? this.y : source === 'stage' ? this.yStage : this.yNew;
    const r = term(times, src, this.K[stage]);
    // A synchronous right-hand side is answered synchronously (the reference awaits only promises too).
    if (r !== undefined) return r.then(() => this.flagRows(this.K[stage], live));
    return this.flagRows(this.K[stage], live);
  }

  initialNorms(of: 'y' | 'f0' | 'probe', pooled: boolean): StateNorms {
    const { y, K, dim: N, rows } = this;
    const [K0, K1] = K;
    const norms = new Float64Array(rows);
    let s = 0;
    for (let b = 0; b < rows; b++) {
      if (!pooled) s = 0;
      for (let c = 0; c < N; c++) {
        const i = b * N + c;
        const scale = tolAt(this.atol, c) + Math.abs(y[i]) * tolAt(this.rtol, c);
        const v = of === 'y' ? y[i] : of === 'f0' ? K0[i] : K1[i] - K0[i];
        const r = v / scale;
        s += r * r;
      }
      if (!pooled) norms[b] = Math.sqrt(s) / Math.sqrt(N);
    }
    if (pooled) norms.fill(Math.sqrt(s) / Math.sqrt(rows * N));
    const checked = of === 'y' ? y : of === 'f0' ? K0 : K1;
    return { norms, bad: this.flagRows(checked, this.allRows()) };
  }

  errorNorms(pooled: boolean): StateNorms {
    const { dim: N, rows } = this;
    const norms = new Float64Array(rows);
    let s = 0;
    for (let b = 0; b < rows; b++) {
      s = errorSumRange(this.tableau.E, this.K, this.h[b], this.y, this.yNew, this.rtol, this.atol, b * N, (b + 1) * N, pooled ? s : 0);
      if (!pooled) norms[b] = Math.sqrt(s) / Math.sqrt(N);
    }
    if (pooled) norms.fill(Math.sqrt(s) / Math.sqrt(rows * N));
    // Non-finite stages and states were reported by combine/evaluate already.
    return { norms, bad: null };
  }

  commit(accepted: RowFlags, pooled: boolean): void {
    const last = this.tableau.nStages;
    if (pooled) {
      // FSAL: the last stage is the next step's first; swap buffers instead of copying.
      [this.y, this.yNew] = [this.yNew, this.y];
      [this.K[0], this.K[last]] = [this.K[last], this.K[0]];
      return;
    }
    const N = this.dim;
    accepted.forEach((a, b) => {
      if (!a) return;
      this.y.set(this.yNew.subarray(b * N, (b + 1) * N), b * N);
      this.K[0].set(this.K[last].subarray(b * N, (b + 1) * N), b * N);
    });
  }

  async readY(): Promise<Float64Array> {
    return this.y.slice();
  }
}
