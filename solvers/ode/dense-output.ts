/**
 * Host dense output: the interpolant of an accepted step from the tableau's P (Q = Kᵀ·P), and the continuous
 * solution over a whole solve (as scipy's OdeSolution).
 */
import type { EmbeddedRkTableau } from './tableau.js';

/** The interpolant of one accepted step: y(t_old + x·h) = y_old + h·Σⱼ Q[:, j]·x^(j+1), x ∈ [0, 1]. */
export class StepInterpolant {
  readonly h: number;
  readonly degree: number;

  /** Q is n × degree, row-major (component i at Q[i·degree .. i·degree + degree)). */
  constructor(
    readonly tOld: number,
    readonly t: number,
    readonly yOld: Float64Array,
    readonly Q: Float64Array,
  ) {
    this.h = t - tOld;
    this.degree = yOld.length === 0 ? 0 : Q.length / yOld.length;
  }

  /** Build from the stages of an accepted step: Q = Kᵀ·P. */
  static fromStages(tableau: EmbeddedRkTableau, tOld: number, t: number, yOld: Float64Array, K: Float64Array[]): StepInterpolant {
    const n = yOld.length;
    const P = tableau.P;
    const deg = P[0].length;
    const Q = new Float64Array(n * deg);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < deg; j++) {
        let acc = 0;
        for (let s = 0; s < P.length; s++) acc += K[s][i] * P[s][j];
        Q[i * deg + j] = acc;
      }
    }
    return new StepInterpolant(tOld, t, yOld, Q);
  }

  evaluateInto(t: number, out: Float64Array): Float64Array {
    const n = this.yOld.length;
    const deg = this.degree;
    const x = (t - this.tOld) / this.h;
    const p = new Float64Array(deg);
    let pw = x;
    for (let j = 0; j < deg; j++) {
      p[j] = pw;
      pw *= x;
    }
    const Q = this.Q;
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let j = 0; j < deg; j++) acc += Q[i * deg + j] * p[j];
      out[i] = this.h * acc + this.yOld[i];
    }
    return out;
  }

  evaluate(t: number): Float64Array {
    return this.evaluateInto(t, new Float64Array(this.yOld.length));
  }
}

/**
 * Continuous solution over the whole solve: one interpolant per accepted step (as scipy's OdeSolution). A time on
 * a step boundary uses the step that ends there (t0 uses the first); times outside the span extrapolate the end
 * steps. Memory: (degree + 1)·n doubles per step (y_old is shared with the saved steps when those are kept).
 */
export class DenseOutput {
  /** Accepted times, in integration order; segments[k] spans ts[k] → ts[k + 1]. */
  readonly ts: number[];
  readonly segments: StepInterpolant[];
  readonly direction: 1 | -1;
  /** Used when there is no step (zero-length interval): the solution is the constant y0. */
  private readonly y0: Float64Array;

  constructor(t0: number, y0: Float64Array, direction: 1 | -1) {
    this.ts = [t0];
    this.segments = [];
    this.direction = direction;
    this.y0 = y0;
  }

  /** Append the interpolant of the next accepted step (it must start where the previous one ended). */
  push(segment: StepInterpolant): void {
    this.segments.push(segment);
    this.ts.push(segment.t);
  }

  get tMin(): number {
    return Math.min(this.ts[0], this.ts[this.ts.length - 1]);
  }

  get tMax(): number {
    return Math.max(this.ts[0], this.ts[this.ts.length - 1]);
  }

  /** Index of the segment used for time t. */
  segmentIndex(t: number): number {
    const ts = this.ts;
    const d = this.direction;
    // First k with d·(ts[k] − t) ≥ 0 (binary search: ts is monotone in the direction d).
    let lo = 0;
    let hi = ts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (d * (ts[mid] - t) >= 0) hi = mid;
      else lo = mid + 1;
    }
    return Math.min(Math.max(lo - 1, 0), this.segments.length - 1);
  }

  evaluateInto(t: number, out: Float64Array): Float64Array {
    if (this.segments.length === 0) {
      out.set(this.y0);
      return out;
    }
    return this.segments[this.segmentIndex(t)].evaluateInto(t, out);
  }

  evaluate(t: number): Float64Array {
    return this.evaluateInto(t, new Float64Array(this.y0.length));
  }
}
