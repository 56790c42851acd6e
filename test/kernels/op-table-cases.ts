/**
 * One case per op of KERNEL_OPS, typed by the table: a new op without a case, or a case whose params do not fit
 * its op, is a compile error. Shapes, params, references and tolerances are those of the op's own test
 * (test/kernels/<file>.test.ts), which justifies each tolerance; the smallest representative shape is taken so the
 * whole table runs in seconds on lavapipe.
 */
import { randomHost, roundF32, type Host64, type Tolerances } from '../helpers/check-op.js';
import type { OpCase } from '../helpers/op-case.js';
import {
  attnMixRef,
  attnScoresRef,
  channelBroadcastRef,
  channelSumRef,
  host,
  logSumExpBackwardRef,
  map2,
  mulPerSampleRef,
  rmsNormRatioRef,
  sinusoidContractRef,
  sinusoidDerivRef,
  softmaxBackwardRef,
} from '../helpers/op-references.js';
import type { KERNEL_OPS, OpName, OpParams } from '../../kernels/op-table.js';
import { convGeometry } from '../../kernels/conv2d.js';
import { dropoutKeepMask } from '../../kernels/dropout.js';
import { timestepFrequencies } from '../../kernels/embeddings.js';
import { siluRef, softmaxRef } from '../../kernels/reference/activations.js';
import { ninRef, ninVjpRef } from '../../kernels/reference/attention.js';
import { addRef, concatChannelsRef, reduceToPrefixRef, scaleRef, splitChannelsRef } from '../../kernels/reference/channels.js';
import { conv2dInputVjpRef, conv2dRef, conv2dWeightVjpRef } from '../../kernels/reference/conv2d.js';
import { timestepEmbeddingRef } from '../../kernels/reference/embeddings.js';
import { groupNormRef, groupNormVjpRef } from '../../kernels/reference/group-norm.js';
import { linearRef, matmulRef, transpose2dRef } from '../../kernels/reference/linear.js';
import { logSumExpRef, perSampleDotRef, perSampleSumRef, perSampleSumSqRef } from '../../kernels/reference/reductions.js';
import { avgPool2xRef, firUpsample2dRef } from '../../kernels/reference/resample.js';

export type KernelOpCases = { readonly [K in OpName]: OpCase<OpParams<typeof KERNEL_OPS, K>> };

// Tolerances, as their per-op tests justify them (relative to the max-norm of the reference quantity).
/** elementwise.test.ts: 1–2 ulp per element (exp ≤ 3 ulp on lavapipe). */
const ELEMENTWISE: Tolerances = { forward: 2e-6, jvp: 5e-6, vjp: 5e-6 };
/** channels.test.ts: bit-exact copies, derivatives of a linear float64 map exact to ~1e-11. */
const COPY: Tolerances = { forward: 0, jvp: 1e-9, vjp: 1e-9 };
/** channels.test.ts: one or two roundings per element; bias VJP a sum of ≤ 72 terms. */
const CHANNEL_ELEM: Tolerances = { forward: 2.5e-7, jvp: 2.5e-7, vjp: 2e-6 };
/** channels.test.ts: row reductions of ≤ 200 terms. */
const CHANNEL_REDUCE: Tolerances = { forward: 2e-6, jvp: 2e-6, vjp: 2e-6 };
/** reductions.test.ts: per-sample reductions (measured ≤ 3e-7). */
const REDUCE: Tolerances = { forward: 1e-6, jvp: 1e-6, vjp: 1e-6 };
/** reductions.test.ts: mulPerSample, one rounding per element; its VJP in s a perSampleDot. */
const MUL_PER_SAMPLE: Tolerances = { forward: 2.5e-7, jvp: 2.5e-7, vjp: 1e-6 };
/** group-norm.test.ts: group sums of ≤ 300 terms, a second layer for tangents and gradients. */
const GROUP_NORM: Tolerances = { forward: 1e-6, jvp: 2e-6, vjp: 2e-6 };
/** matmul.test.ts / conv2d.test.ts: f32 dot products of ≤ 130 terms. */
const LINEAR: Tolerances = { forward: 1e-5, jvp: 1e-5, vjp: 1e-5 };
/** resample.test.ts. */
const RESAMPLE: Tolerances = { forward: 2e-6, jvp: 2e-6, vjp: 2e-6 };
/** attention.test.ts: products, softmax. */
const PRODUCT: Tolerances = { forward: 1e-6, jvp: 1e-6, vjp: 1e-6 };
/** attention.test.ts: the attention core. */
const BLOCK: Tolerances = { forward: 1e-6, jvp: 2e-6, vjp: 2e-6 };

const map = (a: Host64, f: (v: number) => number): Host64 => host(a.shape, a.data.map(f));
const zeros = (n: number): Host64 => host([n], new Float64Array(n));
const sig = (x: number) => 1 / (1 + Math.exp(-x));
const dsilu = (x: number) => sig(x) * (1 + x * (1 - sig(x)));

// elementwise.test.ts
const a357 = randomHost([3, 5, 7], 1);
const b357 = randomHost([3, 5, 7], 2);
const positive = map(randomHost([3, 17], 10), (v) => 0.5 + Math.abs(v));
const siluX = randomHost([4, 33], 5, 4);

// reductions.test.ts
const perSampleG = randomHost([3], 3);
const rmsScale = map(randomHost([2, 3, 9, 9], 9), (v) => 0.5 + Math.abs(v));
const lseX = roundF32(randomHost([3, 5, 7], 5, 4));
const lse = logSumExpRef(lseX, 1);

// channels.test.ts
const concatParts = [3, 5, 1].map((c, k) => randomHost([2, c, 4, 4], 20 + k));
const concatWhole = concatChannelsRef(concatParts);
const biasX = randomHost([2, 5, 3, 7], 31);
const biasV = randomHost([2, 5], 32);

// group-norm.test.ts: [1, 8, 7, 5], 2 groups.
const gn = { groups: 2, eps: 1e-6 };
const gnX = randomHost([1, 8, 7, 5], 11, 2);
const gnGamma = randomHost([8], 12);
const gnGy = randomHost([1, 8, 7, 5], 14);

// conv2d.test.ts: 3×3 pad 1, batch 1, odd 7×9, with bias.
const conv = { x: [1, 3, 7, 9], w: [4, 3, 3, 3], p: { padding: 1 } };
const convG = convGeometry('op-table', conv.x, conv.w, conv.p);
const convGy = [convG.N, convG.Cout, convG.OH, convG.OW];

// dropout.test.ts
const dropoutParams = { rate: 0.1, seed: 1234, stream: 3 };
const dropoutKeep = dropoutKeepMask(30, dropoutParams);

// embeddings.test.ts
const freqs = (dim: number) => host([Math.floor(dim / 2)], Float64Array.from(timestepFrequencies(dim)));

// attention.test.ts
const softmaxY = softmaxRef(roundF32(randomHost([3, 7], 1, 3)));
const attnQ = randomHost([1, 4, 3, 3], 5);
const attnAlpha = 1 / Math.sqrt(8);

export const KERNEL_OP_CASES: KernelOpCases = {
  add: { params: {}, inputs: [a357, b357], reference: ([x, y]) => map2(x!, y!, (p, q) => p + q), tol: ELEMENTWISE },
  sub: { params: {}, inputs: [a357, b357], reference: ([x, y]) => map2(x!, y!, (p, q) => p - q), tol: ELEMENTWISE },
  mul: { params: {}, inputs: [a357, b357], reference: ([x, y]) => map2(x!, y!, (p, q) => p * q), tol: ELEMENTWISE },
  scale: { params: { alpha: -2.5 }, inputs: [a357], reference: ([x]) => map(x!, (p) => Math.fround(-2.5) * p), tol: ELEMENTWISE },
  affine: {
    params: { alpha: 2, beta: -1.3 },
    inputs: [a357],
    reference: ([x]) => map(x!, (p) => 2 * p + Math.fround(-1.3)),
    tol: ELEMENTWISE,
  },
  axpy: { params: { alpha: 0.75 }, inputs: [a357, b357], reference: ([x, y]) => map2(x!, y!, (p, q) => 0.75 * p + q), tol: ELEMENTWISE },
  divide: {
    params: {},
    inputs: [randomHost([3, 17], 9), positive],
    reference: ([x, y]) => map2(x!, y!, (p, q) => p / q),
    tol: ELEMENTWISE,
  },
  log: { params: {}, inputs: [positive], reference: ([x]) => map(x!, Math.log), tol: ELEMENTWISE },
  silu: { params: {}, inputs: [siluX], reference: ([x]) => map(x!, (p) => p * sig(p)), tol: ELEMENTWISE },
  'silu.backward': {
    params: {},
    inputs: [siluX, randomHost([4, 33], 6)],
    reference: ([x, g]) => map2(x!, g!, (p, q) => q * dsilu(p)),
    tol: { forward: 2e-6, jvp: 1e-5, vjp: 1e-5 },
  },

  // reshape.test.ts
  reshape: { params: { shape: [6, 4] }, inputs: [randomHost([2, 3, 4], 3)], reference: ([x]) => host([6, 4], x!.data), tol: COPY },

  perSampleDot: { params: {}, inputs: [a357, b357], reference: ([x, y]) => perSampleDotRef(x!, y!), tol: REDUCE },
  mulPerSample: {
    params: {},
    inputs: [b357, perSampleG],
    reference: ([x, s]) => mulPerSampleRef(x!, s!),
    tol: MUL_PER_SAMPLE,
  },
  perSampleSum: { params: {}, inputs: [a357], reference: ([x]) => perSampleSumRef(x!), tol: REDUCE },
  rowBroadcast: {
    params: { shape: [3, 5, 7] },
    inputs: [perSampleG],
    reference: ([s]) => mulPerSampleRef(host([3, 5, 7], new Float64Array(105).fill(1)), s!),
    tol: REDUCE,
  },
  perSampleSumSq: { params: {}, inputs: [a357], reference: ([x]) => perSampleSumSqRef(x!), tol: REDUCE },
  sumAll: { params: {}, inputs: [a357], reference: ([x]) => host([], Float64Array.of(x!.data.reduce((p, q) => p + q, 0))), tol: REDUCE },
  rmsNormRatio: {
    params: { perSample: true },
    inputs: [randomHost([2, 3, 9, 9], 8), rmsScale],
    reference: ([err, sc]) => rmsNormRatioRef(err!, sc!, true),
    tol: { forward: 1e-6, jvp: 1e-5, vjp: 1e-5 },
  },
  logSumExp: {
    params: { axis: 1 },
    inputs: [lseX],
    reference: ([x]) => logSumExpRef(x!, 1),
    tol: { forward: 1e-6, jvp: 4e-6, vjp: 4e-6 },
  },
  logSumExpBackward: {
    params: { axis: 1 },
    inputs: [lseX, lse, randomHost(lse.shape, 6)],
    reference: ([x, l, g]) => logSumExpBackwardRef(x!, l!, g!, 1),
    tol: { forward: 1e-6, jvp: 2e-6, vjp: 2e-6 },
  },

  'channels.slice': {
    params: { start: 3, count: 5 },
    inputs: [concatWhole],
    reference: ([x]) => splitChannelsRef(x!, [3, 5, 1])[1],
    tol: COPY,
  },
  'channels.concat': { params: {}, inputs: concatParts, reference: (xs) => concatChannelsRef(xs.map((x) => x!)), tol: COPY },
  'channels.sumInner': {
    params: {},
    inputs: [randomHost([2, 3, 6, 11], 41)],
    reference: ([x]) => reduceToPrefixRef(x!, x!.shape.slice(0, 2)),
    tol: CHANNEL_REDUCE,
  },
  'channels.broadcast': {
    params: { inner: [3, 7] },
    inputs: [biasV],
    reference: ([v]) => addRef(host([2, 5, 3, 7], new Float64Array(210)), v!),
    tol: { ...COPY, vjp: CHANNEL_ELEM.vjp }, // a copy whose VJP is an f32 spatial sum
  },
  'channels.addBias': { params: {}, inputs: [biasX, biasV], reference: ([x, v]) => addRef(x!, v!), tol: CHANNEL_ELEM },
  'channels.addScaled': {
    params: { scale: Math.SQRT1_2 },
    inputs: [a357, b357],
    reference: ([p, q]) => scaleRef(addRef(p!, q!), Math.fround(Math.SQRT1_2)),
    tol: CHANNEL_ELEM,
  },
  // matmul.test.ts: sums of ≤ 300 terms.
  channelSum: {
    params: { axis: 1 },
    inputs: [randomHost([3, 5, 20], 4)],
    reference: ([x]) => channelSumRef(x!, 1),
    tol: { forward: 2e-6, jvp: 2e-6, vjp: 2e-6 },
  },
  channelBroadcast: {
    params: { shape: [2, 3, 4], axis: 1 },
    inputs: [randomHost([3], 5)],
    reference: ([g]) => channelBroadcastRef(g!, [2, 3, 4], 1),
    tol: { forward: 0, jvp: 1e-6, vjp: 1e-6 },
  },

  groupNorm: {
    params: gn,
    inputs: [gnX, gnGamma, randomHost([8], 13)],
    reference: ([x, g, b]) => groupNormRef(x!, g!, b!, gn),
    tol: GROUP_NORM,
  },
  groupNormSilu: {
    params: gn,
    inputs: [gnX, gnGamma, randomHost([8], 13)],
    reference: ([x, g, b]) => siluRef(groupNormRef(x!, g!, b!, gn)),
    tol: GROUP_NORM,
  },
  groupNormBackward: {
    params: gn,
    inputs: [gnX, gnGamma, gnGy],
    reference: ([x, g, t]) => groupNormVjpRef(x!, g!, zeros(8), t!, gn).x,
    tol: GROUP_NORM,
  },
  groupNormGammaGrad: {
    params: gn,
    inputs: [gnX, gnGy],
    reference: ([x, t]) => groupNormVjpRef(x!, gnGamma, zeros(8), t!, gn).gamma,
    tol: GROUP_NORM,
  },
  // matmul.test.ts: [M, N, K] = [9, 12, 8] (the vec4 paths), B transposed, with bias.
  matmul: {
    params: { transB: true },
    inputs: [randomHost([9, 8], 1), randomHost([12, 8], 2), randomHost([12], 3)],
    reference: ([a, b, bias]) => {
      const y = matmulRef(a!, transpose2dRef(b!));
      return host(y.shape, y.data.map((v, i) => v + bias!.data[i % 12]));
    },
    tol: LINEAR,
  },
  dense: {
    params: {},
    inputs: [randomHost([6, 32], 11), randomHost([20, 32], 12), randomHost([20], 13)],
    reference: ([x, w, b]) => linearRef(x!, w!, b),
    tol: LINEAR,
  },
  conv2d: {
    params: conv.p,
    inputs: [randomHost(conv.x, 1), randomHost(conv.w, 2), randomHost([4], 3)],
    reference: ([x, w, b]) => conv2dRef(x!, w!, b, conv.p),
    tol: LINEAR,
  },
  conv2dInputGrad: {
    params: { ...conv.p, inputSize: [convG.H, convG.W] },
    inputs: [randomHost(convGy, 50), randomHost(conv.w, 51)],
    reference: ([gy, w]) => conv2dInputVjpRef(gy!, w!, conv.x, conv.p),
    tol: LINEAR,
  },
  conv2dWeightGrad: {
    params: { ...conv.p, kernelSize: [convG.KH, convG.KW] },
    inputs: [randomHost(conv.x, 52), randomHost(convGy, 53)],
    reference: ([x, gy]) => conv2dWeightVjpRef(x!, gy!, conv.w, conv.p),
    tol: LINEAR,
  },

  // dropout.test.ts: the mask is the host twin's.
  dropout: {
    params: dropoutParams,
    inputs: [randomHost([2, 3, 5], 6)],
    reference: ([x]) => host(x!.shape, x!.data.map((v, i) => (dropoutKeep[i] ? v * Math.fround(1 / (1 - dropoutParams.rate)) : 0))),
    tol: { forward: 1.2e-7, jvp: 1.2e-7, vjp: 1.2e-7 },
  },
  // embeddings.test.ts: odd dim 7 (zero last column); t only is differentiable.
  'embedding.sinusoid': {
    params: { order: 0, angleScale: 1, dim: 7 },
    inputs: [randomHost([3], 73), freqs(7), null],
    differentiable: [true, false, false],
    reference: ([t]) => timestepEmbeddingRef(t!, 7),
    tol: { forward: 3e-7, jvp: 3e-7, vjp: 2e-6 },
  },
  'embedding.sinusoidContract': {
    params: { order: 0, angleScale: 1, dim: 9 },
    inputs: [randomHost([3], 91), freqs(9), randomHost([3, 9], 95)],
    differentiable: [true, false, true],
    reference: ([t, f, g]) => sinusoidContractRef(t!, f!, g!, 0, 1, 9),
    tol: { forward: 1e-6, jvp: 1e-6, vjp: 2e-6 },
  },
  'resample.up2x': { params: { filter: 'fir' }, inputs: [randomHost([1, 3, 4, 6], 11)], reference: ([x]) => firUpsample2dRef(x!), tol: RESAMPLE },
  'resample.down2x': { params: { filter: 'naive' }, inputs: [randomHost([1, 3, 4, 6], 12)], reference: ([x]) => avgPool2xRef(x!), tol: RESAMPLE },

  softmax: { params: {}, inputs: [randomHost([3, 7], 1, 3)], reference: ([x]) => softmaxRef(x!), tol: PRODUCT },
  softmaxBackward: {
    params: {},
    inputs: [softmaxY, randomHost([3, 7], 2)],
    reference: ([y, g]) => softmaxBackwardRef(y!, g!),
    tol: PRODUCT,
  },
  ninApply: {
    params: { transposed: false },
    inputs: [randomHost([2, 8, 4, 4], 1), randomHost([8, 4], 2), randomHost([4], 3)],
    reference: ([x, W, b]) => ninRef(x!, { W: W!, b: b! }),
    tol: PRODUCT,
  },
  ninWeightGrad: {
    params: {},
    inputs: [randomHost([2, 8, 4, 4], 1), randomHost([2, 4, 4, 4], 4)],
    reference: ([x, g]) => ninVjpRef(x!, { W: host([8, 4], new Float64Array(32)), b: zeros(4) }, g!).W,
    tol: PRODUCT,
  },
  attnScores: {
    params: { alpha: 0.7 },
    inputs: [attnQ, randomHost([1, 4, 3, 3], 6)],
    reference: ([q, k]) => attnScoresRef(q!, k!, 0.7),
    tol: PRODUCT,
  },
  attnMix: {
    params: { alpha: 1.3, transposed: false },
    inputs: [randomHost([1, 9, 9], 7), attnQ],
    reference: ([w, v]) => attnMixRef(w!, v!, 1.3, false),
    tol: PRODUCT,
  },
  attentionCore: {
    params: { alpha: attnAlpha },
    inputs: [randomHost([1, 8, 4, 4], 1, 2), randomHost([1, 8, 4, 4], 2, 2), randomHost([1, 8, 4, 4], 3)],
    reference: ([q, k, v]) => attnMixRef(softmaxRef(attnScoresRef(q!, k!, attnAlpha)), v!, 1, false),
    tol: BLOCK,
  },
};
