/**
 * float64 references of the ops whose reference is not in kernels/reference/, shared by the per-op tests
 * (reductions, embeddings, attention, elementwise, group-norm) and the op-table cases. They belong in
 * kernels/reference/ beside the others: they move there with the next change to that folder (outside test/).
 */
import type { Host64 } from './check-op.js';

export const host = (shape: number[], data: Float64Array): Host64 => ({ shape, data });

export const map2 = (a: Host64, b: Host64, f: (x: number, y: number) => number): Host64 =>
  host(a.shape, a.data.map((x, i) => f(x, b.data[i])));

/** x[n, …]·s[n]. */
export function mulPerSampleRef(x: Host64, s: Host64): Host64 {
  const len = x.data.length / s.data.length;
  return host(x.shape, x.data.map((v, i) => v * s.data[Math.floor(i / len)]));
}

/** √(mean((err/sc)²)), per sample ([N]) or over everything ([]). */
export function rmsNormRatioRef(err: Host64, sc: Host64, perSample: boolean): Host64 {
  const rows = perSample ? err.shape[0] : 1;
  const len = err.data.length / rows;
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = r * len; i < (r + 1) * len; i++) s += (err.data[i] / sc.data[i]) ** 2;
    out[r] = Math.sqrt(s / len);
  }
  return host(perSample ? [rows] : [], out);
}

/** g·exp(x − lse) along `axis`, with lse a free input (not recomputed from x). */
export function logSumExpBackwardRef(x: Host64, lse: Host64, g: Host64, axis: number): Host64 {
  const dims = x.shape;
  const ax = axis < 0 ? axis + dims.length : axis;
  const inner = dims.slice(ax + 1).reduce((u, v) => u * v, 1);
  const len = dims[ax];
  return host(
    dims,
    x.data.map((v, k) => {
      const r = Math.floor(k / (len * inner)) * inner + (k % inner);
      return g.data[r] * Math.exp(v - lse.data[r]);
    }),
  );
}

/** y·(g − ⟨g, y⟩) per row of the last axis. */
export function softmaxBackwardRef(y: Host64, g: Host64): Host64 {
  const len = y.shape[y.shape.length - 1];
  const out = new Float64Array(y.data.length);
  for (let o = 0; o < out.length; o += len) {
    let d = 0;
    for (let j = 0; j < len; j++) d += g.data[o + j] * y.data[o + j];
    for (let j = 0; j < len; j++) out[o + j] = y.data[o + j] * (g.data[o + j] - d);
  }
  return host(y.shape, out);
}

/** Σ over every axis but `axis`. */
export function channelSumRef(x: Host64, axis: number): Host64 {
  const c = x.shape[axis];
  const inner = x.shape.slice(axis + 1).reduce((p, d) => p * d, 1);
  const out = new Float64Array(c);
  x.data.forEach((v, i) => (out[Math.floor(i / inner) % c] += v));
  return host([c], out);
}

/** g[c] broadcast along `axis` of `shape`. */
export function channelBroadcastRef(g: Host64, shape: number[], axis: number): Host64 {
  const c = shape[axis];
  const inner = shape.slice(axis + 1).reduce((p, d) => p * d, 1);
  const n = shape.reduce((p, d) => p * d, 1);
  return host(shape, Float64Array.from({ length: n }, (_, i) => g.data[Math.floor(i / inner) % c]));
}

/** The m-th t-derivative of the sinusoid embedding [sin(a), cos(a)] with a = t·f·c, times s per row. */
export function sinusoidDerivRef(t: Host64, f: Host64, s: Host64 | null, m: number, c: number, dim: number): Host64 {
  const n = t.shape[0];
  const h = f.shape[0];
  const out = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < h; k++) {
      const a = t.data[i] * f.data[k] * c;
      const amp = (c * f.data[k]) ** m * (s ? s.data[i] : 1);
      out[i * dim + k] = amp * Math.sin(a + (m * Math.PI) / 2);
      out[i * dim + h + k] = amp * Math.cos(a + (m * Math.PI) / 2);
    }
  }
  return host([n, dim], out);
}

/** ⟨D_m(t), g⟩ per row. */
export function sinusoidContractRef(t: Host64, f: Host64, g: Host64, m: number, c: number, dim: number): Host64 {
  const d = sinusoidDerivRef(t, f, null, m, c, dim);
  const n = t.shape[0];
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) out[i] += d.data[i * dim + j] * g.data[i * dim + j];
  return host([n], out);
}

/** [N, C, ...] → N, C, S. */
export const ncs = (x: Host64) => ({ n: x.shape[0], c: x.shape[1], s: x.data.length / (x.shape[0] * x.shape[1]) });

/** Attention scores z[n, i, j] = α Σ_c q[n, c, i]·k[n, c, j]. */
export function attnScoresRef(q: Host64, k: Host64, alpha: number): Host64 {
  const { n, c, s } = ncs(q);
  const z = new Float64Array(n * s * s);
  for (let ni = 0; ni < n; ni++)
    for (let i = 0; i < s; i++)
      for (let j = 0; j < s; j++) {
        let acc = 0;
        for (let ci = 0; ci < c; ci++) acc += q.data[(ni * c + ci) * s + i] * k.data[(ni * c + ci) * s + j];
        z[(ni * s + i) * s + j] = alpha * acc;
      }
  return host([n, s, s], z);
}

/** a[n, c, i] = α Σ_j w[n, i, j]·v[n, c, j] (w[n, j, i] when transposed). */
export function attnMixRef(w: Host64, v: Host64, alpha: number, transposed: boolean): Host64 {
  const { n, c, s } = ncs(v);
  const a = new Float64Array(v.data.length);
  for (let ni = 0; ni < n; ni++)
    for (let ci = 0; ci < c; ci++)
      for (let i = 0; i < s; i++) {
        let acc = 0;
        for (let j = 0; j < s; j++) {
          const wij = transposed ? w.data[(ni * s + j) * s + i] : w.data[(ni * s + i) * s + j];
          acc += wij * v.data[(ni * c + ci) * s + j];
        }
        a[(ni * c + ci) * s + i] = alpha * acc;
      }
  return host(v.shape, a);
}
