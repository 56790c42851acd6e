// Float64 references for score_sde's time embeddings, differentiated with respect to t:
// get_timestep_embedding (sinusoidal, DDPM++ "positional") and GaussianFourierProjection (NCSN++ "fourier").
// Both are y = [sin(t·f_k) …, cos(t·f_k) …] for a fixed frequency vector f, so they share one implementation.
import { assertShape, t64, type Dual, type T64 } from './norm-types.js';

function assertTimes(t: T64, what: string): number {
  if (t.shape.length !== 1) throw new Error(`${what}: t must be 1-D [N], got [${t.shape.join(', ')}]`);
  return t.shape[0];
}

/** [N, dim] table whose row i, columns (k, h + k) are entry(a, i, k) at angle a = t_i·f_k; an odd dim pads with 0. */
function sinCosTable(t: T64, f: Float64Array, dim: number, entry: (a: number, i: number, k: number) => [number, number]): T64 {
  const n = t.shape[0];
  const h = f.length;
  const y = new Float64Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < h; k++) [y[i * dim + k], y[i * dim + h + k]] = entry(t.data[i] * f[k], i, k);
  }
  return t64([n, dim], y);
}

/** y[n] = [sin(t_n f), cos(t_n f), 0 if dim is odd]; the padding column is constant, so its derivatives are 0. */
function sinCos(t: T64, f: Float64Array, dim: number): T64 {
  return sinCosTable(t, f, dim, (a) => [Math.sin(a), Math.cos(a)]);
}

/** dt_n = Σ_k f_k·(cos(t_n f_k)·g[n,k] − sin(t_n f_k)·g[n,h+k]). */
function sinCosVjp(t: T64, f: Float64Array, gy: T64): T64 {
  const n = t.shape[0];
  const dim = gy.shape[1];
  const h = f.length;
  const gt = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (let k = 0; k < h; k++) {
      const a = t.data[i] * f[k];
      acc += f[k] * (Math.cos(a) * gy.data[i * dim + k] - Math.sin(a) * gy.data[i * dim + h + k]);
    }
    gt[i] = acc;
  }
  return t64([n], gt);
}

function sinCosJvp(t: T64, f: Float64Array, dim: number, tDot: T64): Dual {
  const tangent = sinCosTable(t, f, dim, (a, i, k) => [f[k] * Math.cos(a) * tDot.data[i], -f[k] * Math.sin(a) * tDot.data[i]]);
  return { primal: sinCos(t, f, dim), tangent };
}

/**
 * Frequencies of get_timestep_embedding: f_k = exp(−k·log(maxPositions)/(half − 1)), k < half = ⌊dim/2⌋.
 * score_sde divides by half − 1, so dim < 4 has no defined embedding.
 */
export function timestepFrequencies(dim: number, maxPositions = 10000): Float64Array {
  const half = Math.floor(dim / 2);
  if (!Number.isInteger(dim) || half < 2) throw new Error(`timestepEmbedding: dim must be an integer ≥ 4, got ${dim}`);
  const step = Math.log(maxPositions) / (half - 1);
  const f = new Float64Array(half);
  for (let k = 0; k < half; k++) f[k] = Math.exp(-step * k);
  return f;
}

/** get_timestep_embedding(t, dim, maxPositions): [N] → [N, dim]. */
export function timestepEmbeddingRef(t: T64, dim: number, maxPositions = 10000): T64 {
  assertTimes(t, 'timestepEmbedding');
  return sinCos(t, timestepFrequencies(dim, maxPositions), dim);
}

/** Gradient w.r.t. t of ⟨gy, timestepEmbedding(t)⟩; dim comes from gy's shape [N, dim]. */
export function timestepEmbeddingVjpRef(t: T64, gy: T64, maxPositions = 10000): T64 {
  const n = assertTimes(t, 'timestepEmbeddingVjp');
  if (gy.shape.length !== 2) throw new Error(`timestepEmbeddingVjp: gy must be [N, dim], got [${gy.shape.join(', ')}]`);
  assertShape('timestepEmbeddingVjp gy', gy, [n, gy.shape[1]]);
  return sinCosVjp(t, timestepFrequencies(gy.shape[1], maxPositions), gy);
}

export function timestepEmbeddingJvpRef(t: T64, tDot: T64, dim: number, maxPositions = 10000): Dual {
  assertTimes(t, 'timestepEmbeddingJvp');
  assertShape('timestepEmbeddingJvp tangent', tDot, t.shape);
  return sinCosJvp(t, timestepFrequencies(dim, maxPositions), dim, tDot);
}

/** GaussianFourierProjection's fixed weights: W_k = scale·N(0, 1), k < embeddingSize (the output has 2× that). */
export function gaussianFourierWeights(embeddingSize: number, scale: number, randn: () => number): T64 {
  const w = new Float64Array(embeddingSize);
  for (let k = 0; k < embeddingSize; k++) w[k] = scale * randn();
  return t64([embeddingSize], w);
}

function fourierFrequencies(W: T64): Float64Array {
  if (W.shape.length !== 1) throw new Error(`gaussianFourier: W must be 1-D, got [${W.shape.join(', ')}]`);
  const f = new Float64Array(W.data.length);
  for (let k = 0; k < f.length; k++) f[k] = 2 * Math.PI * W.data[k];
  return f;
}

/** GaussianFourierProjection: [N] → [N, 2m] = [sin(2π t W), cos(2π t W)] for W of length m (scale already in W). */
export function gaussianFourierRef(t: T64, W: T64): T64 {
  assertTimes(t, 'gaussianFourier');
  return sinCos(t, fourierFrequencies(W), 2 * W.data.length);
}

export function gaussianFourierVjpRef(t: T64, W: T64, gy: T64): T64 {
  const n = assertTimes(t, 'gaussianFourierVjp');
  assertShape('gaussianFourierVjp gy', gy, [n, 2 * W.data.length]);
  return sinCosVjp(t, fourierFrequencies(W), gy);
}

export function gaussianFourierJvpRef(t: T64, W: T64, tDot: T64): Dual {
  assertTimes(t, 'gaussianFourierJvp');
  assertShape('gaussianFourierJvp tangent', tDot, t.shape);
  return sinCosJvp(t, fourierFrequencies(W), 2 * W.data.length, tDot);
}
