// Float64 references for SiLU and softmax (last axis): forward, VJP, JVP and the forward-over-reverse HVP pieces
// that the fused dual GPU kernels are tested against.
import { assertShape, t64, type Dual, type HvpResult, type T64 } from './norm-types.js';

/** σ(x), evaluated so neither branch overflows exp. */
export function sigmoid(x: number): number {
  if (x >= 0) return 1 / (1 + Math.exp(-x));
  const e = Math.exp(x);
  return e / (1 + e);
}

/** silu(x) = x·σ(x) and its first two derivatives: s' = σ(1 + x(1−σ)), s'' = σ(1−σ)(2 + x(1−2σ)). */
export function siluDerivatives(x: number): { value: number; d1: number; d2: number } {
  const s = sigmoid(x);
  return { value: x * s, d1: s * (1 + x * (1 - s)), d2: s * (1 - s) * (2 + x * (1 - 2 * s)) };
}

export function siluRef(x: T64): T64 {
  const y = new Float64Array(x.data.length);
  for (let i = 0; i < y.length; i++) y[i] = x.data[i] * sigmoid(x.data[i]);
  return t64(x.shape, y);
}

export function siluVjpRef(x: T64, gy: T64): T64 {
  assertShape('siluVjp gy', gy, x.shape);
  const gx = new Float64Array(x.data.length);
  for (let i = 0; i < gx.length; i++) gx[i] = gy.data[i] * siluDerivatives(x.data[i]).d1;
  return t64(x.shape, gx);
}

export function siluJvpRef(x: T64, xDot: T64): Dual {
  assertShape('siluJvp tangent', xDot, x.shape);
  const y = new Float64Array(x.data.length);
  const yDot = new Float64Array(x.data.length);
  for (let i = 0; i < y.length; i++) {
    const d = siluDerivatives(x.data[i]);
    y[i] = d.value;
    yDot[i] = d.d1 * xDot.data[i];
  }
  return { primal: t64(x.shape, y), tangent: t64(x.shape, yDot) };
}

/** JVP of gx = silu'(x)·gy along (ẋ, ġy): ġx = silu'(x)·ġy + silu''(x)·ẋ·gy. */
export function siluHvpRef(x: T64, xDot: T64, gy: T64, gyDot: T64): HvpResult<T64> {
  assertShape('siluHvp x tangent', xDot, x.shape);
  assertShape('siluHvp gy', gy, x.shape);
  assertShape('siluHvp gy tangent', gyDot, x.shape);
  const gx = new Float64Array(x.data.length);
  const gxDot = new Float64Array(x.data.length);
  for (let i = 0; i < gx.length; i++) {
    const d = siluDerivatives(x.data[i]);
    gx[i] = d.d1 * gy.data[i];
    gxDot[i] = d.d1 * gyDot.data[i] + d.d2 * xDot.data[i] * gy.data[i];
  }
  return { grad: t64(x.shape, gx), gradDot: t64(x.shape, gxDot) };
}

function lastDim(x: T64, what: string): number {
  if (x.shape.length < 1) throw new Error(`${what}: softmax needs at least one axis`);
  return x.shape[x.shape.length - 1];
}

/** Row-wise softmax of a flat [rows, len] buffer, max-shifted so large logits do not overflow. */
function softmaxRows(x: Float64Array, len: number): Float64Array {
  const y = new Float64Array(x.length);
  for (let o = 0; o < x.length; o += len) {
    let m = -Infinity;
    for (let j = 0; j < len; j++) m = Math.max(m, x[o + j]);
    let z = 0;
    for (let j = 0; j < len; j++) {
      y[o + j] = Math.exp(x[o + j] - m);
      z += y[o + j];
    }
    for (let j = 0; j < len; j++) y[o + j] /= z;
  }
  return y;
}

/** Per row: out = y·(v − ⟨v, y⟩). The softmax Jacobian is symmetric, so this is both its JVP and its VJP. */
function softmaxJacobianApply(y: Float64Array, v: Float64Array, len: number): Float64Array {
  const out = new Float64Array(y.length);
  for (let o = 0; o < y.length; o += len) {
    let d = 0;
    for (let j = 0; j < len; j++) d += v[o + j] * y[o + j];
    for (let j = 0; j < len; j++) out[o + j] = y[o + j] * (v[o + j] - d);
  }
  return out;
}

export function softmaxRef(x: T64): T64 {
  return t64(x.shape, softmaxRows(x.data, lastDim(x, 'softmaxRef')));
}

export function softmaxVjpRef(x: T64, gy: T64): T64 {
  const len = lastDim(x, 'softmaxVjp');
  assertShape('softmaxVjp gy', gy, x.shape);
  return t64(x.shape, softmaxJacobianApply(softmaxRows(x.data, len), gy.data, len));
}

export function softmaxJvpRef(x: T64, xDot: T64): Dual {
  const len = lastDim(x, 'softmaxJvp');
  assertShape('softmaxJvp tangent', xDot, x.shape);
  const y = softmaxRows(x.data, len);
  return { primal: t64(x.shape, y), tangent: t64(x.shape, softmaxJacobianApply(y, xDot.data, len)) };
}

/**
 * JVP of gx = y·(g − ⟨g, y⟩) along (ẋ, ġ), with ẏ = y·(ẋ − ⟨ẋ, y⟩):
 * ġx = ẏ·(g − ⟨g, y⟩) + y·(ġ − ⟨ġ, y⟩ − ⟨g, ẏ⟩).
 */
export function softmaxHvpRef(x: T64, xDot: T64, gy: T64, gyDot: T64): HvpResult<T64> {
  const len = lastDim(x, 'softmaxHvp');
  assertShape('softmaxHvp x tangent', xDot, x.shape);
  assertShape('softmaxHvp gy', gy, x.shape);
  assertShape('softmaxHvp gy tangent', gyDot, x.shape);
  const y = softmaxRows(x.data, len);
  const yDot = softmaxJacobianApply(y, xDot.data, len);
  const g = gy.data;
  const gd = gyDot.data;
  const gx = new Float64Array(y.length);
  const gxDot = new Float64Array(y.length);
  for (let o = 0; o < y.length; o += len) {
    let gy0 = 0;
    let gdy = 0;
    let gyd = 0;
    for (let j = 0; j < len; j++) {
      gy0 += g[o + j] * y[o + j];
      gdy += gd[o + j] * y[o + j];
      gyd += g[o + j] * yDot[o + j];
    }
    for (let j = 0; j < len; j++) {
      gx[o + j] = y[o + j] * (g[o + j] - gy0);
      gxDot[o + j] = yDot[o + j] * (g[o + j] - gy0) + y[o + j] * (gd[o + j] - gdy - gyd);
    }
  }
  return { grad: t64(x.shape, gx), gradDot: t64(x.shape, gxDot) };
}
