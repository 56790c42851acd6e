/**
 * Bias gradients: `channelSum` sums a tensor over every axis but one (dense: rows of [M, N]; conv and GroupNorm's
 * β: N, H, W of NCHW), and `channelBroadcast` is its adjoint. Both are linear, so each is the other's VJP and its
 * own JVP — which keeps forward-over-reverse working through layers with a bias. The kernels are the family's
 * channelReduce (reduce.ts) and the one broadcast (broadcast.ts) over the view [outer, C, inner].
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { CHANNEL_SUM_BODY, channelReduce, type AxisView } from './reduce.js';
import { broadcast } from './broadcast.js';
import { addMaybe } from './elementwise.js';

export interface ChannelSumParams {
  /** The axis kept (default 1: NCHW channels, and the columns of a [M, N] matrix). */
  axis?: number;
}

export interface ChannelBroadcastParams {
  /** Shape of the output; the input is a vector of length shape[axis]. */
  shape: readonly number[];
  /** Default 1. */
  axis?: number;
}

function viewOf(shape: readonly number[], axis: number, what: string): AxisView {
  if (!Number.isInteger(axis) || axis < 0 || axis >= shape.length) {
    throw new ShapeError(`${what}: axis ${axis} is out of range for shape [${shape.join('×')}]`);
  }
  const prod = (a: readonly number[]) => a.reduce((p, d) => p * d, 1);
  return { outer: prod(shape.slice(0, axis)), len: shape[axis], inner: prod(shape.slice(axis + 1)) };
}

export const channelSum: Op<ChannelSumParams> = defineOp({
  name: 'channelSum',
  inputs: ['g'],
  forward: (e, [g], { axis = 1 }) =>
    channelReduce(e, { name: 'channel.sum', inputs: { g }, body: CHANNEL_SUM_BODY }, viewOf(g.shape, axis, 'channelSum')),
  vjp: (e, { inputs: [g], params }, ct) => [channelBroadcast(e, [ct], { shape: g.shape, axis: params.axis })],
  jvp: (e, { params }, [tg]) => (tg ? channelSum(e, [tg], params) : null),
});

/** w [shape[axis]] repeated over every other axis of `shape`: the transpose of channelSum. */
export const channelBroadcast: Op<ChannelBroadcastParams> = defineOp({
  name: 'channelBroadcast',
  inputs: ['w'],
  forward(e, [w], { shape, axis = 1 }) {
    const view = viewOf(shape, axis, 'channelBroadcast');
    if (w.rank !== 1 || w.size !== view.len) {
      throw new ShapeError(`channelBroadcast: ${w.describe()} does not give axis ${axis} of [${shape.join('×')}]`);
    }
    const out = e.empty(shape, 'f32', 'channel.broadcast');
    broadcast(e, {
      name: 'channel.broadcast',
      ins: {},
      midOps: { w },
      outs: { out },
      outer: view.outer,
      mid: view.len,
      len: view.inner,
      exprs: 'out[row * params.len + j] = T(w[row % params.mid]);',
    });
    return out;
  },
  vjp: (e, { params }, ct) => [channelSum(e, [ct], { axis: params.axis })],
  jvp: (e, { params }, [tw]) => (tw ? channelBroadcast(e, [tw], params) : null),
});

/**
 * JVP of a layer y = f(x, W) + b with f bilinear (dense, conv2d): layer(ẋ, W, ḃ) + layer(x, Ẇ, null), and ḃ
 * broadcast over the output's channel axis 1 only where no ẋ term carries it.
 */
export function biasedLayerJvp(
  e: Engine,
  layer: (x: Tensor, w: Tensor, b: MaybeTensor) => Tensor,
  [x, w]: readonly [Tensor, Tensor, ...unknown[]],
  output: Tensor,
  [tx, tw, tb]: readonly MaybeTensor[],
): MaybeTensor {
  const fromX = tx ? layer(tx, w, tb ?? null) : null;
  const fromW = tw ? layer(x, tw, null) : null;
  const onlyBias = !tx && tb ? channelBroadcast(e, [tb], { shape: output.shape, axis: 1 }) : null;
  return addMaybe(e, addMaybe(e, fromX, fromW), onlyBias);
}
