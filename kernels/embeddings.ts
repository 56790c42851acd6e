/**
 * Time embeddings of score_sde (layers.get_timestep_embedding, layerspp.GaussianFourierProjection) and the
 * one-hot class labels of the conditional network.
 *
 * Both embeddings are E(t)[n] = [sin(a_n,k) …, cos(a_n,k) …, 0 if dim is odd] with angles a_n,k = (t_n·f_k)·c,
 * evaluated in the order score_sde does in f32: get_timestep_embedding has c = 1 and f_k = exp(−k·ln(10000)/(h−1));
 * GaussianFourierProjection has f = W (fixed, already scaled) and c = 2π. Their derivatives in t are again such
 * sinusoids: ∂ᵐE/∂tᵐ[k] = (c f_k)ᵐ sin(a + mπ/2), so two ops of any order m close the family under differentiation:
 *   sinusoidEmbed    D_m(t, s)[n, :] = s_n · ∂ᵐE/∂tᵐ(t_n)     (s absent ≡ 1; D_0 is the embedding)
 *   sinusoidContract R_m(t, g)[n]    = ⟨g[n, :], ∂ᵐE/∂tᵐ(t_n)⟩ (the VJP of D_m in s)
 * with JVP(D_m) = D_m(t, ṡ) + D_{m+1}(t, s ṫ) and VJP(D_m) = (s ⊙ R_{m+1}(t, g), R_m(t, g)), and likewise for R_m.
 * Frequencies are constants (score_sde's W has requires_grad=False): VJPs give them no gradient (null, so a tape
 * watching every parameter still works) and JVPs reject a tangent on them rather than drop it.
 *
 * sin/cos use our own Cody–Waite reduction by π/2 and Cephes' minimax polynomials: WGSL's built-ins only promise
 * 2⁻¹¹ absolute error inside [−π, π] and nothing outside, while angles reach ~1000 (999·t). Accurate (≈1 ulp of
 * the reduced angle) for |a| < 2048·π/2 ≈ 3200, and identical on every device up to FMA contraction.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { randomTensor, type Seed } from '../engine/rng.js';
import { defineFixedProgram, defineProgram } from '../engine/program.js';
import { reads, u32s, writes } from '../engine/kernel.js';
import { flatMain, grid } from '../engine/wgsl.js';
import { DTypeError, SbgcError, ShapeError } from '../engine/errors.js';
import { addMaybe, mul, scale } from './elementwise.js';

const WG = 64;

export interface SinusoidParams {
  /** Derivative order m in t (0 = the embedding itself). */
  order: number;
  /** c in a = (t·f)·c: 1 for the timestep embedding, fround(2π) for Gaussian Fourier features. */
  angleScale: number;
  /** Output width: 2·len(f), or 2·len(f) + 1 with a zero last column. */
  dim: number;
}

/** sincos(x) = (sin x, cos x) from a Cody–Waite reduction to r ∈ [−π/4, π/4] and quadrant q (mod 4). */
const SINCOS_WGSL = /* wgsl */ `
fn reduced(x: f32) -> vec3<f32> {
  let j = round(x * 0.6366197723675814);
  // π/2 = 1.5703125 + 4.837512969970703125e-4 + 7.54978995489188216e-8 (8 + 13 + 24 bits): j·part exact, |j| < 2048.
  let r = ((x - j * 1.5703125) - j * 4.837512969970703125e-4) - j * 7.54978995489188216e-8;
  let z = r * r;
  let s = r + r * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
  let c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
  return vec3<f32>(s, c, j);
}
/** (sin(x + mπ/2), cos(x + mπ/2)). */
fn sincosShifted(x: f32, m: u32) -> vec2<f32> {
  let v = reduced(x);
  let q = (u32(i32(v.z) & 3) + m) & 3u;
  switch q {
    case 0u: { return vec2<f32>(v.x, v.y); }
    case 1u: { return vec2<f32>(v.y, -v.x); }
    case 2u: { return vec2<f32>(-v.x, -v.y); }
    default: { return vec2<f32>(-v.y, v.x); }
  }
}
/** (c·f)^m. */
fn freqPower(cf: f32, m: u32) -> f32 {
  var p = 1.0;
  for (var k = 0u; k < m; k++) { p *= cf; }
  return p;
}`;

/** D_m: one invocation per (n, k) writes the sin and cos columns; `scaled` multiplies by s[n]. */
const SINUSOID_EMBED = defineProgram<{ scaled: boolean }>({
  name: 'embedding.sinusoid',
  spec: { scaled: true },
  build: ({ scaled }) => ({
    name: `embedding.sinusoid${scaled ? '.scaled' : ''}`,
    buffers: [...reads('t', 'f', ...(scaled ? ['s'] : [])), ...writes('out')],
    uniforms: [...u32s('total', 'half', 'dim', 'order'), ['c', 'f32']],
    workgroupSize: [WG],
    body: `${SINCOS_WGSL}
${flatMain({
  wg: WG,
  count: 'params.total',
  body: `  let n = i / params.half;
  let k = i % params.half;
  let a = (t[n] * f[k]) * params.c;
  let amp = freqPower(f[k] * params.c, params.order)${scaled ? ' * s[n]' : ''};
  let sc = sincosShifted(a, params.order);
  let row = n * params.dim;
  out[row + k] = amp * sc.x;
  out[row + params.half + k] = amp * sc.y;
  if (k == 0u && params.dim > 2u * params.half) { out[row + params.dim - 1u] = 0.0; }`,
})}`,
  }),
});

/** R_m: one invocation per row n sums over the h frequencies. */
const SINUSOID_CONTRACT = defineFixedProgram({
  name: 'embedding.sinusoidContract',
  buffers: [...reads('t', 'f', 'g'), ...writes('out')],
  uniforms: [...u32s('rows', 'half', 'dim', 'order'), ['c', 'f32']],
  workgroupSize: [WG],
  body: `${SINCOS_WGSL}
${flatMain({
  wg: WG,
  count: 'params.rows',
  index: 'n',
  body: `  let tn = t[n];
  let row = n * params.dim;
  var acc = 0.0;
  for (var k = 0u; k < params.half; k++) {
    let sc = sincosShifted((tn * f[k]) * params.c, params.order);
    let amp = freqPower(f[k] * params.c, params.order);
    acc += amp * (sc.x * g[row + k] + sc.y * g[row + params.half + k]);
  }
  out[n] = acc;`,
})}`,
});

const ONE_HOT_WG = 256;

/** One invocation per output element; an out-of-range label gives a NaN row. */
const ONE_HOT = defineFixedProgram({
  name: 'embedding.oneHot',
  buffers: [{ name: 'labels', type: 'u32' }, ...writes('out')],
  uniforms: u32s('total', 'classes', 'nan_bits'),
  workgroupSize: [ONE_HOT_WG],
  body: flatMain({
    wg: ONE_HOT_WG,
    count: 'params.total',
    body: `  let label = labels[i / params.classes];
  let hit = select(0.0, 1.0, label == i % params.classes);
  // NaN from a uniform: a NaN constant expression is a shader-creation error.
  out[i] = select(bitcast<f32>(params.nan_bits), hit, label < params.classes);`,
  }),
});

/** Checks params and t [N], f [h] (dim = 2h or 2h + 1) and returns [N, h]; errors start with `what`. */
function sinusoidSizes(what: string, t: Tensor, f: Tensor, p: SinusoidParams): [number, number] {
  if (!Number.isInteger(p.order) || p.order < 0) throw new SbgcError(`${what}: order must be an integer ≥ 0, got ${p.order}`);
  if (!Number.isFinite(p.angleScale)) throw new SbgcError(`${what}: angleScale must be finite, got ${p.angleScale}`);
  if (t.rank !== 1) throw new ShapeError(`${what}: t ${t.describe()} must be 1-D [N]`);
  if (f.rank !== 1) throw new ShapeError(`${what}: frequencies ${f.describe()} must be 1-D`);
  const h = f.shape[0];
  if (p.dim !== 2 * h && p.dim !== 2 * h + 1) {
    throw new ShapeError(`${what}: dim ${p.dim} must be 2·${h} or 2·${h}+1 for frequencies ${f.describe()}`);
  }
  return [t.shape[0], h];
}

/** A tangent on the frequencies is an error (never silently dropped); VJPs give them no gradient (null). */
function constantFrequencies(tangent: MaybeTensor, what: string): void {
  if (tangent) throw new SbgcError(`${what}: the frequencies (W) are constants and cannot be differentiated`);
}

/** D_m(t, s): inputs [t [N], f [h], s [N] | null] → [N, dim]. */
export const sinusoidEmbed: Op<SinusoidParams> = defineOp({
  name: 'embedding.sinusoid',
  inputs: ['t', 'f', 's?'],
  forward(e, [t, f, s], p) {
    const [n, h] = sinusoidSizes('sinusoidEmbed', t, f, p);
    if (s) s.assertShape([n], 'sinusoidEmbed s');
    const out = e.empty([n, p.dim], 'f32', 'sinusoidEmbed');
    if (n * h === 0) {
      if (out.size > 0) e.write(out, new Uint8Array(out.byteLength)); // dim 1: only the zero column
      return out;
    }
    const bindings: Record<string, Tensor> = s ? { t, f, s, out } : { t, f, out };
    const uniforms = { total: n * h, half: h, dim: p.dim, order: p.order, c: p.angleScale };
    e.run(SINUSOID_EMBED, { scaled: !!s }, bindings, uniforms, grid(e, n * h, WG));
    return out;
  },
  vjp(e, { inputs: [t, f, s], params }, ct, needs) {
    const up = { ...params, order: params.order + 1 };
    let gt: MaybeTensor = null;
    if (needs[0]) {
      const r = sinusoidContract(e, [t, f, ct], up);
      gt = s ? mul(e, [s, r], {}) : r;
    }
    return [gt, null, needs[2] ? sinusoidContract(e, [t, f, ct], params) : null];
  },
  jvp(e, { inputs: [t, f, s], params }, [tt, tf, ts]) {
    constantFrequencies(tf, 'sinusoidEmbed jvp');
    const up = { ...params, order: params.order + 1 };
    const fromT = tt ? sinusoidEmbed(e, [t, f, s ? mul(e, [s, tt], {}) : tt], up) : null;
    return addMaybe(e, fromT, ts ? sinusoidEmbed(e, [t, f, ts], params) : null);
  },
});

/** R_m(t, g): inputs [t [N], f [h], g [N, dim]] → [N]. */
export const sinusoidContract: Op<SinusoidParams> = defineOp({
  name: 'embedding.sinusoidContract',
  inputs: ['t', 'f', 'g'],
  forward(e, [t, f, g], p) {
    const [n, h] = sinusoidSizes('sinusoidContract', t, f, p);
    g.assertShape([n, p.dim], 'sinusoidContract g');
    const out = e.zeros([n], 'f32', 'sinusoidContract');
    if (n === 0 || h === 0) return out;
    const uniforms = { rows: n, half: h, dim: p.dim, order: p.order, c: p.angleScale };
    e.run(SINUSOID_CONTRACT, {}, { t, f, g, out }, uniforms, grid(e, n, WG));
    return out;
  },
  vjp(e, { inputs: [t, f, g], params }, ct, needs) {
    const up = { ...params, order: params.order + 1 };
    return [
      needs[0] ? mul(e, [ct, sinusoidContract(e, [t, f, g], up)], {}) : null,
      null,
      needs[2] ? sinusoidEmbed(e, [t, f, ct], params) : null,
    ];
  },
  jvp(e, { inputs: [t, f, g], params }, [tt, tf, tg]) {
    constantFrequencies(tf, 'sinusoidContract jvp');
    const up = { ...params, order: params.order + 1 };
    const fromT = tt ? mul(e, [tt, sinusoidContract(e, [t, f, g], up)], {}) : null;
    return addMaybe(e, fromT, tg ? sinusoidContract(e, [t, f, tg], params) : null);
  },
});

// ---------------------------------------------------------------- public embeddings

/** f_k = exp(−k·ln(maxPositions)/(h − 1)), k < h = ⌊dim/2⌋, rounded once to f32 (score_sde computes it in f32). */
export function timestepFrequencies(dim: number, maxPositions = 10000): Float32Array {
  const h = Math.floor(dim / 2);
  if (!Number.isInteger(dim) || h < 2) throw new ShapeError(`timestepEmbedding: dim must be an integer ≥ 4, got ${dim}`);
  if (!(maxPositions > 0)) throw new SbgcError(`timestepEmbedding: maxPositions must be > 0, got ${maxPositions}`);
  const step = Math.log(maxPositions) / (h - 1);
  return Float32Array.from({ length: h }, (_, k) => Math.exp(-step * k));
}

const frequencyCache = new WeakMap<Engine, Map<string, Tensor>>();

/** The frequency table as a device tensor, uploaded once per engine and kept outside every scope. */
function timestepFrequencyTensor(e: Engine, dim: number, maxPositions: number): Tensor {
  let cache = frequencyCache.get(e);
  if (!cache) frequencyCache.set(e, (cache = new Map()));
  const key = `${Math.floor(dim / 2)}:${maxPositions}`;
  let f = cache.get(key);
  if (!f || f.disposed) {
    f = e.keep(e.tensor(timestepFrequencies(dim, maxPositions), [Math.floor(dim / 2)], 'f32', 'timestep frequencies'));
    cache.set(key, f);
  }
  return f;
}

/** score_sde get_timestep_embedding(t, dim, maxPositions): t [N] → [N, dim]; differentiable in t. */
export function timestepEmbedding(e: Engine, t: Tensor, dim: number, maxPositions = 10000): Tensor {
  const f = timestepFrequencyTensor(e, dim, maxPositions);
  return sinusoidEmbed(e, [t, f, null], { order: 0, angleScale: 1, dim });
}

const TWO_PI_F32 = Math.fround(2 * Math.PI);

/** GaussianFourierProjection: t [N], W [m] (already ·scale) → [N, 2m] = [sin(2π t W), cos(2π t W)]; in t only. */
export function gaussianFourierProjection(e: Engine, t: Tensor, W: Tensor): Tensor {
  if (W.rank !== 1) throw new ShapeError(`gaussianFourierProjection: W ${W.describe()} must be 1-D`);
  return sinusoidEmbed(e, [t, W, null], { order: 0, angleScale: TWO_PI_F32, dim: 2 * W.shape[0] });
}

/** Fresh GaussianFourierProjection weights W = scale·N(0, 1) of length embeddingSize (checkpoints bring their own). */
export function gaussianFourierWeights(e: Engine, embeddingSize: number, scaleFactor: number, seed: Seed): Tensor {
  const z = randomTensor(e, [embeddingSize], 'normal', { seed, stream: 0x46465057 /* 'FFPW' */ });
  const w = scale(e, [z], { alpha: scaleFactor });
  z.dispose();
  return w;
}

// ---------------------------------------------------------------- one-hot labels

/**
 * labels (u32 [N], or host integers) → f32 [N, numClasses]. Host labels are validated here (the error names the
 * index); device labels cannot be checked without a read-back, so an out-of-range label yields a NaN row — loud
 * downstream, and never a write outside the output.
 */
export function oneHot(e: Engine, labels: Tensor | ArrayLike<number>, numClasses: number): Tensor {
  if (!Number.isInteger(numClasses) || numClasses < 1) {
    throw new ShapeError(`oneHot: numClasses must be a positive integer, got ${numClasses}`);
  }
  let lab: Tensor;
  let owned = false;
  if (isTensor(labels)) {
    if (labels.dtype !== 'u32') throw new DTypeError(`oneHot: labels ${labels.describe()} must be u32`);
    if (labels.rank !== 1) throw new ShapeError(`oneHot: labels ${labels.describe()} must be 1-D [N]`);
    lab = labels;
  } else {
    for (let i = 0; i < labels.length; i++) {
      const v = labels[i];
      if (!Number.isInteger(v) || v < 0 || v >= numClasses) {
        throw new ShapeError(`oneHot: label ${i} is ${v}, outside [0, ${numClasses})`);
      }
    }
    lab = e.tensor(Uint32Array.from(labels), [labels.length], 'u32', 'labels');
    owned = true;
  }
  const n = lab.shape[0];
  const out = e.empty([n, numClasses], 'f32', 'oneHot');
  if (out.size > 0) {
    const uniforms = { total: out.size, classes: numClasses, nan_bits: 0x7fc00000 };
    e.run(ONE_HOT, {}, { labels: lab, out }, uniforms, grid(e, out.size, ONE_HOT_WG));
  }
  if (owned) lab.dispose(); // the dispatch holds the buffer until the batch is submitted
  return out;
}

function isTensor(x: Tensor | ArrayLike<number>): x is Tensor {
  return typeof (x as Tensor).describe === 'function';
}
