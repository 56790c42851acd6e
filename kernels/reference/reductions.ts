// Float64 references for the reductions the solvers and likelihood code use: per-sample dot, sum and sum of
// squares over all non-batch dims ([N, ...] → [N]), and a max-shifted logsumexp over one axis.
import { assertShape, t64, type Dual, type HvpResult, type T64 } from './norm-types.js';

/** Batch size and per-sample length of an [N, ...] tensor. */
function perSample(x: T64, what: string): { n: number; len: number } {
  if (x.shape.length < 1) throw new Error(`${what}: needs a batch axis, got a scalar`);
  const n = x.shape[0];
  return { n, len: n === 0 ? 0 : x.data.length / n };
}

function dotRows(a: Float64Array, b: Float64Array, n: number, len: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (let j = i * len; j < (i + 1) * len; j++) acc += a[j] * b[j];
    out[i] = acc;
  }
  return out;
}

/** out[i·len + j] = g[i]·v[i·len + j]: broadcasts a per-sample scalar over its sample. */
function scaleRows(g: Float64Array, v: Float64Array | null, len: number, k = 1): Float64Array {
  const out = new Float64Array(g.length * len);
  for (let i = 0; i < g.length; i++) {
    for (let j = i * len; j < (i + 1) * len; j++) out[j] = k * g[i] * (v === null ? 1 : v[j]);
  }
  return out;
}

// --- per-sample dot ⟨a_n, b_n⟩ ---------------------------------------------------------------------------------

export function perSampleDotRef(a: T64, b: T64): T64 {
  const { n, len } = perSample(a, 'perSampleDot');
  assertShape('perSampleDot b', b, a.shape);
  return t64([n], dotRows(a.data, b.data, n, len));
}

export function perSampleDotVjpRef(a: T64, b: T64, g: T64): { a: T64; b: T64 } {
  const { n, len } = perSample(a, 'perSampleDotVjp');
  assertShape('perSampleDotVjp b', b, a.shape);
  assertShape('perSampleDotVjp g', g, [n]);
  return { a: t64(a.shape, scaleRows(g.data, b.data, len)), b: t64(a.shape, scaleRows(g.data, a.data, len)) };
}

export function perSampleDotJvpRef(a: T64, b: T64, aDot: T64, bDot: T64): Dual {
  const { n, len } = perSample(a, 'perSampleDotJvp');
  assertShape('perSampleDotJvp b', b, a.shape);
  assertShape('perSampleDotJvp a tangent', aDot, a.shape);
  assertShape('perSampleDotJvp b tangent', bDot, a.shape);
  const t1 = dotRows(aDot.data, b.data, n, len);
  const t2 = dotRows(a.data, bDot.data, n, len);
  for (let i = 0; i < n; i++) t1[i] += t2[i];
  return { primal: t64([n], dotRows(a.data, b.data, n, len)), tangent: t64([n], t1) };
}

/** JVP of (ga, gb) = (g·b, g·a) along (ȧ, ḃ, ġ): (ġ·b + g·ḃ, ġ·a + g·ȧ). */
export function perSampleDotHvpRef(
  a: T64,
  b: T64,
  aDot: T64,
  bDot: T64,
  g: T64,
  gDot: T64,
): HvpResult<{ a: T64; b: T64 }> {
  const { len } = perSample(a, 'perSampleDotHvp');
  assertShape('perSampleDotHvp a tangent', aDot, a.shape);
  assertShape('perSampleDotHvp b tangent', bDot, a.shape);
  assertShape('perSampleDotHvp g tangent', gDot, g.shape);
  const grad = perSampleDotVjpRef(a, b, g);
  const ga = scaleRows(gDot.data, b.data, len);
  const gb = scaleRows(gDot.data, a.data, len);
  const ga2 = scaleRows(g.data, bDot.data, len);
  const gb2 = scaleRows(g.data, aDot.data, len);
  for (let i = 0; i < ga.length; i++) {
    ga[i] += ga2[i];
    gb[i] += gb2[i];
  }
  return { grad, gradDot: { a: t64(a.shape, ga), b: t64(a.shape, gb) } };
}

// --- per-sample sum ------------------------------------------------------------------------------------------------

export function perSampleSumRef(x: T64): T64 {
  const { n, len } = perSample(x, 'perSampleSum');
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) for (let j = i * len; j < (i + 1) * len; j++) out[i] += x.data[j];
  return t64([n], out);
}

/** The VJP only needs x's shape; x is taken for a uniform signature. */
export function perSampleSumVjpRef(x: T64, g: T64): T64 {
  const { n, len } = perSample(x, 'perSampleSumVjp');
  assertShape('perSampleSumVjp g', g, [n]);
  return t64(x.shape, scaleRows(g.data, null, len));
}

export function perSampleSumJvpRef(x: T64, xDot: T64): Dual {
  assertShape('perSampleSumJvp tangent', xDot, x.shape);
  return { primal: perSampleSumRef(x), tangent: perSampleSumRef(xDot) };
}

// --- per-sample sum of squares ‖x_n‖² --------------------------------------------------------------------------

export function perSampleSumSqRef(x: T64): T64 {
  const { n, len } = perSample(x, 'perSampleSumSq');
  return t64([n], dotRows(x.data, x.data, n, len));
}

export function perSampleSumSqVjpRef(x: T64, g: T64): T64 {
  const { n, len } = perSample(x, 'perSampleSumSqVjp');
  assertShape('perSampleSumSqVjp g', g, [n]);
  return t64(x.shape, scaleRows(g.data, x.data, len, 2));
}

export function perSampleSumSqJvpRef(x: T64, xDot: T64): Dual {
  const { n, len } = perSample(x, 'perSampleSumSqJvp');
  assertShape('perSampleSumSqJvp tangent', xDot, x.shape);
  const t = dotRows(x.data, xDot.data, n, len);
  for (let i = 0; i < n; i++) t[i] *= 2;
  return { primal: t64([n], dotRows(x.data, x.data, n, len)), tangent: t64([n], t) };
}

/** JVP of gx = 2·g·x: ġx = 2·(ġ·x + g·ẋ). */
export function perSampleSumSqHvpRef(x: T64, xDot: T64, g: T64, gDot: T64): HvpResult<T64> {
  const { n, len } = perSample(x, 'perSampleSumSqHvp');
  assertShape('perSampleSumSqHvp tangent', xDot, x.shape);
  assertShape('perSampleSumSqHvp g', g, [n]);
  assertShape('perSampleSumSqHvp g tangent', gDot, [n]);
  const a = scaleRows(gDot.data, x.data, len, 2);
  const b = scaleRows(g.data, xDot.data, len, 2);
  for (let i = 0; i < a.length; i++) a[i] += b[i];
  return { grad: t64(x.shape, scaleRows(g.data, x.data, len, 2)), gradDot: t64(x.shape, a) };
}

// --- logsumexp over one axis (the axis is removed) --------------------------------------------------------------

interface AxisLayout {
  outer: number;
  len: number;
  inner: number;
  outShape: number[];
}

function axisLayout(x: T64, axis: number, what: string): AxisLayout {
  const r = x.shape.length;
  const ax = axis < 0 ? axis + r : axis;
  if (!Number.isInteger(ax) || ax < 0 || ax >= r) throw new Error(`${what}: axis ${axis} out of range for rank ${r}`);
  const outer = x.shape.slice(0, ax).reduce((p, d) => p * d, 1);
  const inner = x.shape.slice(ax + 1).reduce((p, d) => p * d, 1);
  return { outer, len: x.shape[ax], inner, outShape: x.shape.filter((_, i) => i !== ax) };
}

/** lse per output element, and the softmax weights p along the axis (p = exp(x − lse)). */
function lseAndWeights(x: Float64Array, L: AxisLayout): { lse: Float64Array; p: Float64Array } {
  const lse = new Float64Array(L.outer * L.inner);
  const p = new Float64Array(x.length);
  for (let o = 0; o < L.outer; o++) {
    for (let i = 0; i < L.inner; i++) {
      const at = (l: number): number => (o * L.len + l) * L.inner + i;
      let m = -Infinity;
      for (let l = 0; l < L.len; l++) m = Math.max(m, x[at(l)]);
      // All −∞ (or an empty axis): lse = −∞ and no weight anywhere, instead of NaN from (−∞) − (−∞).
      if (m === -Infinity) {
        lse[o * L.inner + i] = -Infinity;
        continue;
      }
      let z = 0;
      for (let l = 0; l < L.len; l++) z += Math.exp(x[at(l)] - m);
      const v = m + Math.log(z);
      lse[o * L.inner + i] = v;
      for (let l = 0; l < L.len; l++) p[at(l)] = Math.exp(x[at(l)] - v);
    }
  }
  return { lse, p };
}

export function logSumExpRef(x: T64, axis: number): T64 {
  const L = axisLayout(x, axis, 'logSumExp');
  return t64(L.outShape, lseAndWeights(x.data, L).lse);
}

export function logSumExpVjpRef(x: T64, axis: number, g: T64): T64 {
  const L = axisLayout(x, axis, 'logSumExpVjp');
  assertShape('logSumExpVjp g', g, L.outShape);
  const { p } = lseAndWeights(x.data, L);
  const gx = new Float64Array(x.data.length);
  for (let o = 0; o < L.outer; o++) {
    for (let l = 0; l < L.len; l++) {
      for (let i = 0; i < L.inner; i++) {
        const k = (o * L.len + l) * L.inner + i;
        gx[k] = g.data[o * L.inner + i] * p[k];
      }
    }
  }
  return t64(x.shape, gx);
}

/** ⟨p, v⟩ along the axis for every output element. */
function weightedAlongAxis(p: Float64Array, v: Float64Array, L: AxisLayout): Float64Array {
  const out = new Float64Array(L.outer * L.inner);
  for (let o = 0; o < L.outer; o++) {
    for (let l = 0; l < L.len; l++) {
      for (let i = 0; i < L.inner; i++) {
        const k = (o * L.len + l) * L.inner + i;
        out[o * L.inner + i] += p[k] * v[k];
      }
    }
  }
  return out;
}

export function logSumExpJvpRef(x: T64, axis: number, xDot: T64): Dual {
  const L = axisLayout(x, axis, 'logSumExpJvp');
  assertShape('logSumExpJvp tangent', xDot, x.shape);
  const { lse, p } = lseAndWeights(x.data, L);
  return { primal: t64(L.outShape, lse), tangent: t64(L.outShape, weightedAlongAxis(p, xDot.data, L)) };
}

/** JVP of gx = g·p along (ẋ, ġ), with ṗ = p·(ẋ − ⟨p, ẋ⟩): ġx = ġ·p + g·ṗ. */
export function logSumExpHvpRef(x: T64, axis: number, xDot: T64, g: T64, gDot: T64): HvpResult<T64> {
  const L = axisLayout(x, axis, 'logSumExpHvp');
  assertShape('logSumExpHvp tangent', xDot, x.shape);
  assertShape('logSumExpHvp g', g, L.outShape);
  assertShape('logSumExpHvp g tangent', gDot, L.outShape);
  const { p } = lseAndWeights(x.data, L);
  const mean = weightedAlongAxis(p, xDot.data, L);
  const gx = new Float64Array(x.data.length);
  const gxDot = new Float64Array(x.data.length);
  for (let o = 0; o < L.outer; o++) {
    for (let l = 0; l < L.len; l++) {
      for (let i = 0; i < L.inner; i++) {
        const k = (o * L.len + l) * L.inner + i;
        const r = o * L.inner + i;
        const pDot = p[k] * (xDot.data[k] - mean[r]);
        gx[k] = g.data[r] * p[k];
        gxDot[k] = gDot.data[r] * p[k] + g.data[r] * pDot;
      }
    }
  }
  return { grad: t64(x.shape, gx), gradDot: t64(x.shape, gxDot) };
}
