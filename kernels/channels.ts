/**
 * Channel ops of the NCSN++ network, all for row-major tensors whose leading axes are a "prefix" ([N] or [N, C])
 * and whose remaining axes form `inner` contiguous elements per prefix entry:
 * - concatChannels / sliceChannels (skip connections: concat along axis 1; its VJP is the split);
 * - addChannelBias: x [N, C, …] + v [N, C] (projected time / label embeddings added to feature maps), with
 *   broadcastChannels and sumInner (its VJP: a per-(n, c) spatial sum);
 * - addScaled: (a + b)·s (score_sde's skip_rescale divides sums by √2).
 * Each op's VJP and JVP are written with these ops, so forward-over-reverse works. The kernels are the family's:
 * copies and per-row operands run on the one broadcast (broadcast.ts), sumInner on rowReduce (reduce.ts).
 *
 * sumInner has two variants: 'serial' (one invocation per row, 4 independent accumulators, no barriers: best on
 * lavapipe, where barriers are coroutine switches) and 'workgroup' (rowReduce's chunked workgroups: coalesced
 * loads and a shared-memory tree, best on GPUs). The default picks by `e.info.isCpu`.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { shapeSize } from '../engine/tensor.js';
import { defineOp, type Op } from '../engine/autodiff.js';
import { SbgcError, ShapeError } from '../engine/errors.js';
import { scale } from './elementwise.js';
import { broadcast } from './broadcast.js';
import { rowReduce } from './reduce.js';

type NoParams = Record<string, never>;

function fmt(shape: readonly number[]): string {
  return `[${shape.join('×')}]`;
}

/** Elements per prefix entry when `prefix` is a leading prefix of x's shape; throws naming both otherwise. */
function innerOf(x: Tensor, prefix: readonly number[], what: string): number {
  if (x.rank < prefix.length || prefix.some((d, i) => d !== x.shape[i])) {
    throw new ShapeError(`${what}: ${x.describe()} must start with ${fmt(prefix)}`);
  }
  return shapeSize(x.shape.slice(prefix.length));
}

// ---------------------------------------------------------------- concat / slice along axis 1

const SLICE = 'out[row * params.len + j] = x[row * params.a1 + params.a2 + j];';
const CONCAT = 'out[row * params.a1 + params.a2 + j] = x[row * params.len + j];';

/** [N, C, …] → [N, count, …]: channels start … start+count−1 (a copy). */
export const sliceChannels: Op<{ start: number; count: number }> = defineOp({
  name: 'channels.slice',
  inputs: ['x'],
  forward(e, [x], { start, count }) {
    if (x.rank < 2) throw new ShapeError(`sliceChannels: ${x.describe()} needs a channel axis (rank ≥ 2)`);
    const C = x.shape[1];
    if (!(Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= C)) {
      throw new ShapeError(`sliceChannels: channels [${start}, ${start + count}) are outside ${x.describe()}`);
    }
    const inner = shapeSize(x.shape.slice(2));
    const out = e.empty([x.shape[0], count, ...x.shape.slice(2)], 'f32', 'sliceChannels');
    if (out.size === 0) return out;
    // Row n of the output is a contiguous run of count·inner elements at n·C·inner + start·inner of x.
    broadcast(e, {
      name: 'channels.slice',
      ins: { x },
      outs: { out },
      mid: x.shape[0],
      len: count * inner,
      a1: C * inner,
      a2: start * inner,
      exprs: SLICE,
    });
    return out;
  },
  vjp(e, { inputs: [x], params: { start, count } }, ct) {
    // Adjoint of a slice: the cotangent placed in its channels, zeros elsewhere.
    const [N, C, ...rest] = x.shape;
    const parts = [e.zeros([N, start, ...rest], 'f32', 'zero channels'), ct, e.zeros([N, C - start - count, ...rest])];
    return [concatChannels(e, parts, {})];
  },
  jvp: (e, { params }, [tx]) => (tx ? sliceChannels(e, [tx], params) : null),
});

/** Concatenates [N, C_k, …] tensors along axis 1 (same N and trailing axes): one copy dispatch per input. */
export const concatChannels: Op<NoParams> = defineOp({
  name: 'channels.concat',
  inputs: ['...xs'],
  forward(e, xs) {
    const first = xs[0];
    if (first.rank < 2) throw new ShapeError(`concatChannels: ${first.describe()} needs a channel axis (rank ≥ 2)`);
    const rest = first.shape.slice(2);
    xs.forEach((x, k) => {
      if (x.rank !== first.rank || x.shape[0] !== first.shape[0] || x.shape.slice(2).some((d, i) => d !== rest[i])) {
        throw new ShapeError(`concatChannels: input ${k} ${x.describe()} does not match ${first.describe()} outside axis 1`);
      }
    });
    const inner = shapeSize(rest);
    const total = xs.reduce((s, x) => s + x.shape[1], 0);
    const out = e.empty([first.shape[0], total, ...rest], 'f32', 'concatChannels');
    let c0 = 0;
    for (const x of xs) {
      if (x.size > 0) {
        broadcast(e, {
          name: 'channels.concat',
          ins: { x },
          outs: { out },
          mid: x.shape[0],
          len: x.shape[1] * inner,
          a1: total * inner,
          a2: c0 * inner,
          exprs: CONCAT,
        });
      }
      c0 += x.shape[1];
    }
    return out;
  },
  vjp(e, { inputs }, ct, needs) {
    let c0 = 0;
    return inputs.map((x, k) => {
      const count = x!.shape[1];
      const g = needs[k] ? sliceChannels(e, [ct], { start: c0, count }) : null;
      c0 += count;
      return g;
    });
  },
  jvp: (e, { inputs }, tangents) =>
    concatChannels(
      e,
      tangents.map((t, k) => t ?? e.zeros(inputs[k]!.shape, 'f32', 'zero tangent')),
      {},
    ),
});

/** Splits x [N, ΣC_k, …] into [N, C_k, …] copies (the VJP of concatChannels). */
export function splitChannels(e: Engine, x: Tensor, counts: readonly number[]): Tensor[] {
  const sum = counts.reduce((a, b) => a + b, 0);
  if (x.rank < 2 || sum !== x.shape[1]) {
    throw new ShapeError(`splitChannels: counts [${counts.join(', ')}] do not sum to the channels of ${x.describe()}`);
  }
  let c0 = 0;
  return counts.map((count) => {
    const part = sliceChannels(e, [x], { start: c0, count });
    c0 += count;
    return part;
  });
}

// ---------------------------------------------------------------- sum over `inner` and its transpose

export type ReductionVariant = 'serial' | 'workgroup';

export interface ReduceParams {
  /** Kernel variant; default: 'serial' on CPU adapters, 'workgroup' on GPUs. */
  variant?: ReductionVariant;
}

/** x [N, C, …] → [N, C]: the sum over the trailing axes (a per-(n, c) spatial sum). */
export const sumInner: Op<ReduceParams> = defineOp({
  name: 'channels.sumInner',
  inputs: ['x'],
  forward(e, [x], { variant }) {
    if (x.rank < 2) throw new ShapeError(`sumInner: ${x.describe()} must be [N, C, …]`);
    const rows = x.shape[0] * x.shape[1];
    const serial = (variant ?? (e.info.isCpu ? 'serial' : 'workgroup')) === 'serial';
    return rowReduce(
      e,
      { name: 'channels.sumInner', inputs: { x }, term: 'x[k]', combine: 'sum', variant: serial ? 'serial' : 'chunked' },
      rows,
      shapeSize(x.shape.slice(2)),
      x.shape.slice(0, 2),
    );
  },
  vjp: (e, { inputs: [x] }, ct) => [broadcastChannels(e, [ct], { inner: x.shape.slice(2) })],
  jvp: (e, { params }, [tx]) => (tx ? sumInner(e, [tx], params) : null),
});

/** v [N, C] → [N, C, ...inner], each v[n, c] repeated over the trailing axes. */
export const broadcastChannels: Op<{ inner: readonly number[] }> = defineOp({
  name: 'channels.broadcast',
  inputs: ['v'],
  forward(e, [v], { inner }) {
    if (v.rank !== 2) throw new ShapeError(`broadcastChannels: ${v.describe()} must be [N, C]`);
    const out = e.empty([...v.shape, ...inner], 'f32', 'broadcastChannels');
    broadcast(e, {
      name: 'channels.broadcast',
      ins: {},
      rowOps: { v },
      outs: { out },
      mid: v.size,
      len: shapeSize(inner),
      exprs: 'out[row * params.len + j] = T(v[row]);',
    });
    return out;
  },
  vjp: (e, _ctx, ct) => [sumInner(e, [ct], {})],
  jvp: (e, { params }, [tv]) => (tv ? broadcastChannels(e, [tv], params) : null),
});

/** x [N, C, …] + v [N, C] broadcast over the trailing axes. */
export const addChannelBias: Op<NoParams> = defineOp({
  name: 'channels.addBias',
  inputs: ['x', 'v'],
  forward(e, [x, v]) {
    if (v.rank !== 2) throw new ShapeError(`addChannelBias: ${v.describe()} must be [N, C]`);
    const inner = innerOf(x, v.shape, 'addChannelBias x');
    const out = e.empty(x.shape, 'f32', 'addChannelBias');
    broadcast(e, {
      name: 'channels.addBias',
      ins: { x },
      rowOps: { v },
      outs: { out },
      mid: v.size,
      len: inner,
      exprs: 'let k = row * params.len + j; out[k] = x[k] + T(v[row]);',
    });
    return out;
  },
  vjp: (e, _ctx, ct, needs) => [needs[0] ? ct : null, needs[1] ? sumInner(e, [ct], {}) : null],
  jvp(e, { inputs: [x] }, [tx, tv]) {
    if (tx && tv) return addChannelBias(e, [tx, tv], {});
    return tx ?? broadcastChannels(e, [tv], { inner: x.shape.slice(2) });
  },
});

// ---------------------------------------------------------------- (a + b)·s

/** (a + b)·scale, elementwise (score_sde's skip_rescale: scale = 1/√2). */
export const addScaled: Op<{ scale: number }> = defineOp({
  name: 'channels.addScaled',
  inputs: ['a', 'b'],
  forward(e, [a, b], { scale: s }) {
    if (a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i])) {
      throw new ShapeError(`addScaled: shapes differ: ${a.describe()} vs ${b.describe()}`);
    }
    if (!Number.isFinite(s)) throw new SbgcError(`addScaled: scale must be finite, got ${s}`);
    const out = e.empty(a.shape, 'f32', 'addScaled');
    const rows = a.rank > 0 ? a.shape[0] : 1;
    broadcast(e, {
      name: 'channels.addScaled',
      ins: { a, b },
      outs: { out },
      mid: rows,
      len: rows > 0 ? a.size / rows : 0,
      alpha: s,
      exprs: 'let k = row * params.len + j; out[k] = (a[k] + b[k]) * params.alpha;',
    });
    return out;
  },
  vjp(e, { params }, ct, needs) {
    const g = params.scale === 1 ? ct : scale(e, [ct], { alpha: params.scale });
    return [needs[0] ? g : null, needs[1] ? g : null];
  },
  jvp(e, { params }, [ta, tb]) {
    if (ta && tb) return addScaled(e, [ta, tb], params);
    return scale(e, [(ta ?? tb)!], { alpha: params.scale });
  },
});
