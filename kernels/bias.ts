/**
 * Bias gradients: `channelSum` sums a tensor over every axis but one (dense: rows of [M, N]; conv: N, H, W of
 * NCHW), and `channelBroadcast` is its adjoint. Both are linear, so each is the other's VJP and its own JVP —
 * which keeps forward-over-reverse working through layers with a bias.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { grid } from '../engine/rng.js';

export interface ChannelSumParams {
  /** The axis kept (1 for NCHW channels and for the columns of a [M, N] matrix). */
  axis: number;
}

export interface ChannelBroadcastParams {
  /** Shape of the output; the input is a vector of length shape[axis]. */
  shape: readonly number[];
  axis: number;
}

const WG = 64;

function split(shape: readonly number[], axis: number, what: string): { outer: number; channels: number; inner: number } {
  if (!Number.isInteger(axis) || axis < 0 || axis >= shape.length) {
    throw new ShapeError(`${what}: axis ${axis} is out of range for shape [${shape.join('×')}]`);
  }
  const prod = (a: readonly number[]) => a.reduce((p, d) => p * d, 1);
  return { outer: prod(shape.slice(0, axis)), channels: shape[axis], inner: prod(shape.slice(axis + 1)) };
}

function req(t: MaybeTensor, what: string): Tensor {
  if (!t) throw new ShapeError(`${what}: missing input`);
  t.assertDType('f32', what);
  return t;
}

/** Σ over all axes but `axis`: one workgroup per channel, 64 strided partial sums, then a tree in shared memory. */
export function channelSumForward(e: Engine, x: Tensor, axis: number): Tensor {
  const { outer, channels, inner } = split(x.shape, axis, `channelSum of ${x.describe()}`);
  const out = e.empty([channels], 'f32', 'channelSum');
  const program = e.program({
    name: 'channel-sum',
    buffers: [
      { name: 'x', type: 'f32' },
      { name: 'out', type: 'f32', access: 'read_write' },
    ],
    uniforms: [
      ['C', 'u32'],
      ['inner', 'u32'],
      ['total', 'u32'],
    ],
    workgroupSize: [WG],
    body: `
var<workgroup> part: array<f32, ${WG}>;
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let c = wg.x;
  let inner = params.inner;
  var s = 0.0;
  for (var i = t; i < params.total; i += ${WG}u) {
    let o = i / inner;
    s += x[(o * params.C + c) * inner + (i - o * inner)];
  }
  part[t] = s;
  for (var w = ${WG / 2}u; w > 0u; w = w / 2u) {
    workgroupBarrier();
    if (t < w) { part[t] += part[t + w]; }
  }
  if (t == 0u) { out[c] = part[0]; }
}`,
  });
  e.dispatch(program, { x, out }, { C: channels, inner, total: outer * inner }, [channels]);
  return out;
}

export function channelBroadcastForward(e: Engine, g: Tensor, shape: readonly number[], axis: number): Tensor {
  const { channels, inner } = split(shape, axis, 'channelBroadcast');
  if (g.size !== channels) {
    throw new ShapeError(`channelBroadcast: ${g.describe()} must have ${channels} elements (axis ${axis} of [${shape.join('×')}])`);
  }
  const out = e.empty(shape, 'f32', 'channelBroadcast');
  const program = e.program({
    name: 'channel-broadcast',
    buffers: [
      { name: 'g', type: 'f32' },
      { name: 'out', type: 'f32', access: 'read_write' },
    ],
    uniforms: [
      ['n', 'u32'],
      ['C', 'u32'],
      ['inner', 'u32'],
    ],
    workgroupSize: [WG],
    body: `
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * ${WG}u;
  if (i >= params.n) { return; }
  out[i] = g[(i / params.inner) % params.C];
}`,
  });
  e.dispatch(program, { g, out }, { n: out.size, C: channels, inner }, grid(e, out.size, WG));
  return out;
}

export const channelSum: Op<ChannelSumParams> = defineOp<ChannelSumParams>({
  name: 'channelSum',
  forward: (e, [x], { axis }) => channelSumForward(e, req(x, 'channelSum x'), axis),
  vjp: (e, { inputs: [x], params }, ct) => [channelBroadcast(e, [ct], { shape: x!.shape, axis: params.axis })],
  jvp: (e, { params }, [tx]) => (tx ? channelSum(e, [tx], params) : null),
});

export const channelBroadcast: Op<ChannelBroadcastParams> = defineOp<ChannelBroadcastParams>({
  name: 'channelBroadcast',
  forward: (e, [g], { shape, axis }) => channelBroadcastForward(e, req(g, 'channelBroadcast g'), shape, axis),
  vjp: (e, { params }, ct) => [channelSum(e, [ct], { axis: params.axis })],
  jvp: (e, { params }, [tg]) => (tg ? channelBroadcast(e, [tg], params) : null),
});
