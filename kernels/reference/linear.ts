// Dense layers in float64: matmul and y = x·Wᵀ + b with PyTorch's nn.Linear layout (W is [out, in]), so score_sde
// state-dict weights are used without transposing.

import { type T64, t64, addTangentTerm, assertRank, assertShape } from './tensor64.js';

// ---- matmul: a [M, K] · b [K, N] -> [M, N] ----

export function matmulRef(a: T64, b: T64): T64 {
  assertRank(a, 2, 'matmul a');
  assertRank(b, 2, 'matmul b');
  const [M, K] = a.shape;
  const [K2, N] = b.shape;
  if (K !== K2) throw new Error(`matmul: inner dimensions ${K} and ${K2} differ`);
  const y = t64([M, N]);
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) {
      const av = a.data[m * K + k];
      if (av === 0) continue;
      for (let n = 0; n < N; n++) y.data[m * N + n] += av * b.data[k * N + n];
    }
  }
  return y;
}

export function transpose2dRef(a: T64): T64 {
  assertRank(a, 2, 'transpose a');
  const [R, C] = a.shape;
  const y = t64([C, R]);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) y.data[c * R + r] = a.data[r * C + c];
  return y;
}

/** Gradients of ⟨gy, a·b⟩: ga = gy·bᵀ, gb = aᵀ·gy. */
export function matmulVjpRef(a: T64, b: T64, gy: T64): { ga: T64; gb: T64 } {
  assertShape(gy, [a.shape[0], b.shape[1]], 'matmul gy');
  return { ga: matmulRef(gy, transpose2dRef(b)), gb: matmulRef(transpose2dRef(a), gy) };
}

/** Product rule: ta·b + a·tb; an absent tangent is zero. */
export function matmulJvpRef(a: T64, b: T64, t: { a?: T64; b?: T64 }): T64 {
  const y = t64([a.shape[0], b.shape[1]]);
  addTangentTerm(y, t.a, a.shape, 'matmul tangent a', (ta) => matmulRef(ta, b));
  addTangentTerm(y, t.b, b.shape, 'matmul tangent b', (tb) => matmulRef(a, tb));
  return y;
}

// ---- linear: x [N, in], W [out, in], b [out] -> [N, out] ----

function checkLinear(x: T64, w: T64, b: T64 | null | undefined): { N: number; I: number; O: number } {
  assertRank(x, 2, 'linear x');
  assertRank(w, 2, 'linear W');
  const [N, I] = x.shape;
  const [O, I2] = w.shape;
  if (I !== I2) throw new Error(`linear: x has ${I} features, W expects ${I2}`);
  if (b) assertShape(b, [O], 'linear b');
  return { N, I, O };
}

export function linearRef(x: T64, w: T64, b?: T64 | null): T64 {
  const { N, I, O } = checkLinear(x, w, b);
  const y = t64([N, O]);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      let s = b ? b.data[o] : 0;
      for (let i = 0; i < I; i++) s += x.data[n * I + i] * w.data[o * I + i];
      y.data[n * O + o] = s;
    }
  }
  return y;
}

/**
 * Gradients of ⟨gy, x·Wᵀ + b⟩: gx = gy·W, gW = gyᵀ·x, gb = Σ_n gy. gb is returned whether or not the layer has a
 * bias (it does not depend on b's value); a caller without a bias ignores it.
 */
export function linearVjpRef(x: T64, w: T64, gy: T64): { gx: T64; gw: T64; gb: T64 } {
  const { N, O } = checkLinear(x, w, null);
  assertShape(gy, [N, O], 'linear gy');
  const gx = matmulRef(gy, w);
  const gw = matmulRef(transpose2dRef(gy), x);
  const gb = t64([O]);
  for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) gb.data[o] += gy.data[n * O + o];
  return { gx, gw, gb };
}

/** tx·Wᵀ + x·tWᵀ + tb; absent tangents are zero. */
export function linearJvpRef(x: T64, w: T64, t: { x?: T64; w?: T64; b?: T64 }): T64 {
  const { N, O } = checkLinear(x, w, null);
  const y = t64([N, O]);
  addTangentTerm(y, t.x, x.shape, 'linear tangent x', (tx) => linearRef(tx, w));
  addTangentTerm(y, t.w, w.shape, 'linear tangent W', (tw) => linearRef(x, tw));
  if (t.b) {
    assertShape(t.b, [O], 'linear tangent b');
    for (let n = 0; n < N; n++) for (let o = 0; o < O; o++) y.data[n * O + o] += t.b.data[o];
  }
  return y;
}
