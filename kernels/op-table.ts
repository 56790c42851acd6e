/**
 * The op table: every kernel-level op, keyed by its name. Each entry is an `Op` made by `defineOp`, whose type
 * already requires forward, VJP and JVP, so an op missing a rule does not compile; a name listed twice is a
 * duplicate key in the literal below, which does not compile either. `OpName` is the union of the keys, so tables
 * keyed by it (the op-table test's cases) must cover every op. That each op's `def.name` equals its key is a
 * runtime fact (the names are plain strings in the op files), checked by test/kernels/op-table.test.ts.
 */
import type { InputNames, Op } from '../engine/autodiff.js';
import { add, affine, axpy, divide, log, mul, scale, silu, siluBackward, sub } from './elementwise.js';
import { reshapeOp } from './reshape.js';
import { mulPerSample, perSampleDot, perSampleSum, perSampleSumSq, rmsNormRatio, rowBroadcast, sumAll } from './reductions.js';
import { logSumExp, logSumExpBackward } from './reductions-axis.js';
import { addChannelBias, addScaled, broadcastChannels, concatChannels, sliceChannels, sumInner } from './channels.js';
import { channelBroadcast, channelSum } from './bias.js';
import { groupNorm, groupNormBackward, groupNormGammaGrad, groupNormSilu } from './group-norm.js';
import { dense, matmul } from './matmul.js';
import { conv2d, conv2dInputGrad, conv2dWeightGrad } from './conv2d.js';
import { dropoutMasked } from './dropout.js';
import { sinusoidContract, sinusoidEmbed } from './embeddings.js';
import { downsample2x, upsample2x } from './resample.js';
import { softmax, softmaxBackward } from './softmax.js';
import { attnMix, attnScores, ninApply, ninWeightGrad } from './attention-products.js';
import { attentionCore } from './attention.js';

/**
 * An op of any params: `never` params accept every op (its call signature is contravariant in P), so a table can
 * hold ops of different params while each entry keeps its own type in `typeof` the table.
 */
export type AnyOp = Op<never, InputNames>;

/** A table of ops keyed by name. */
export type OpTable = { readonly [name: string]: AnyOp };

export const KERNEL_OPS = {
  // elementwise
  add,
  sub,
  mul,
  scale,
  affine,
  axpy,
  divide,
  log,
  silu,
  'silu.backward': siluBackward,
  // views
  reshape: reshapeOp,
  // per-sample and whole-tensor reductions, and their transposes
  perSampleDot,
  mulPerSample,
  perSampleSum,
  rowBroadcast,
  perSampleSumSq,
  sumAll,
  rmsNormRatio,
  logSumExp,
  logSumExpBackward,
  // channel ops
  'channels.slice': sliceChannels,
  'channels.concat': concatChannels,
  'channels.sumInner': sumInner,
  'channels.broadcast': broadcastChannels,
  'channels.addBias': addChannelBias,
  'channels.addScaled': addScaled,
  channelSum,
  channelBroadcast,
  // GroupNorm
  groupNorm,
  groupNormSilu,
  groupNormBackward,
  groupNormGammaGrad,
  // linear maps
  matmul,
  dense,
  conv2d,
  conv2dInputGrad,
  conv2dWeightGrad,
  // noise, embeddings, resampling
  dropout: dropoutMasked,
  'embedding.sinusoid': sinusoidEmbed,
  'embedding.sinusoidContract': sinusoidContract,
  'resample.up2x': upsample2x,
  'resample.down2x': downsample2x,
  // attention
  softmax,
  softmaxBackward,
  ninApply,
  ninWeightGrad,
  attnScores,
  attnMix,
  attentionCore,
} as const satisfies OpTable;

export type OpName = keyof typeof KERNEL_OPS;

/** The params type of a table entry, e.g. `OpParams<typeof KERNEL_OPS, 'scale'>` is `{ alpha: number }`. */
export type OpParams<T extends OpTable, K extends keyof T> = T[K] extends Op<infer P, infer _I> ? P : never;

/**
 * Joins two op tables (e.g. the kernel table and the model's ops); a name in both is a compile error (a plain
 * spread would let the second silently replace the first).
 */
export function joinOpTables<A extends OpTable, B extends OpTable>(
  a: A,
  b: B & { readonly [K in keyof A & keyof B]: never },
): A & B {
  return { ...a, ...b };
}
