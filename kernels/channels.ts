/**
 * Channel ops of the NCSN++ network, all for row-major tensors whose leading axes are a "prefix" ([N] or [N, C])
 * and whose remaining axes form `inner` contiguous elements per prefix entry:
 * - concatChannels / sliceChannels (skip connections: concat along axis 1; its VJP is the split);
 * - addChannelBias: x [N, C, …] + v [N, C] (projected time / label embeddings added to feature maps), with
 *   broadcastChannels and sumInner (its VJP: a per-(n, c) spatial sum);
 * - addScaled: (a + b)·s (score_sde's skip_rescale divides sums by √2).
 * Each op's VJP and JVP are written with these ops, so forward-over-reverse works. Per-sample scaling and inner
 * products (mulPerSample, perSampleDot) live in reductions.ts, which runs mulPerSample on `launchRows` from here.
 *
 * Reductions over `inner` have two variants: 'serial' (one invocation per row, 4 independent accumulators, no
 * barriers: best on lavapipe, where barriers are coroutine switches) and 'workgroup' (64 invocations per row with
 * coalesced strided loads and a shared-memory tree: best on GPUs). The default picks by `e.info.isCpu`.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { shapeSize } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { grid } from '../engine/rng.js';
import { SbgcError, ShapeError } from '../engine/errors.js';
import { scale } from './elementwise.js';

type NoParams = Record<string, never>;
const WG = 256;
const ROW_WG = 64;

function req(t: MaybeTensor, what: string): Tensor {
  if (!t) throw new ShapeError(`${what}: missing input`);
  t.assertDType('f32', what);
  return t;
}

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

export interface RowLaunch {
  name: string;
  /** Buffers indexed per element (bound as vec4<f32> when vectorised). */
  ins: Record<string, Tensor>;
  /** Buffers read once per row (always f32), e.g. a per-channel bias or per-sample scalar. */
  perRow?: Record<string, Tensor>;
  outs: Record<string, Tensor>;
  rows: number;
  /** Elements per row; len, a1, a2 must all be multiples of 4 to vectorise. */
  len: number;
  a1?: number;
  a2?: number;
  alpha?: number;
  /** WGSL statements using row, j (in units of T = f32 or vec4<f32>), params.len/a1/a2/alpha. */
  exprs: string;
}

/**
 * A 2-D dispatch: x runs along a row (j), y·z over rows, so no invocation divides by a runtime size (integer
 * division is scalarised on lavapipe and made these ops 2× slower). vec4 loads/stores when every offset allows.
 */
export function launchRows(e: Engine, k: RowLaunch): void {
  if (k.rows === 0 || k.len === 0) return;
  const a1 = k.a1 ?? 0;
  const a2 = k.a2 ?? 0;
  const width = k.len % 4 === 0 && a1 % 4 === 0 && a2 % 4 === 0 ? 4 : 1;
  const len = k.len / width;
  const wg = len <= 64 ? 64 : WG;
  const elem = width === 4 ? ('vec4<f32>' as const) : ('f32' as const);
  const perRow = k.perRow ?? {};
  const program = e.program({
    name: `${k.name}${width === 4 ? '.vec4' : ''}`,
    buffers: [
      ...Object.keys(k.ins).map((n) => ({ name: n, type: elem })),
      ...Object.keys(perRow).map((n) => ({ name: n, type: 'f32' as const })),
      ...Object.keys(k.outs).map((n) => ({ name: n, type: elem, access: 'read_write' as const })),
    ],
    uniforms: [
      ['rows', 'u32'],
      ['len', 'u32'],
      ['a1', 'u32'],
      ['a2', 'u32'],
      ['alpha', 'f32'],
    ],
    workgroupSize: [wg],
    body: `
alias T = ${elem};
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = g.x;
  let row = g.y + g.z * nwg.y;
  if (j >= params.len || row >= params.rows) { return; }
  ${k.exprs}
}`,
  });
  const maxDim = e.limits.maxComputeWorkgroupsPerDimension;
  const y = Math.min(k.rows, maxDim);
  e.dispatch(
    program,
    { ...k.ins, ...perRow, ...k.outs },
    { rows: k.rows, len, a1: a1 / width, a2: a2 / width, alpha: k.alpha ?? 0 },
    [Math.ceil(len / wg), y, Math.ceil(k.rows / y)],
  );
}

// ---------------------------------------------------------------- concat / slice along axis 1

/** [N, C, …] → [N, count, …]: channels start … start+count−1 (a copy). */
export const sliceChannels: Op<{ start: number; count: number }> = defineOp<{ start: number; count: number }>({
  name: 'channels.slice',
  forward(e, [x0], { start, count }) {
    const x = req(x0, 'sliceChannels x');
    if (x.rank < 2) throw new ShapeError(`sliceChannels: ${x.describe()} needs a channel axis (rank ≥ 2)`);
    const C = x.shape[1];
    if (!(Number.isInteger(start) && Number.isInteger(count) && start >= 0 && count >= 0 && start + count <= C)) {
      throw new ShapeError(`sliceChannels: channels [${start}, ${start + count}) are outside ${x.describe()}`);
    }
    const inner = shapeSize(x.shape.slice(2));
    const out = e.empty([x.shape[0], count, ...x.shape.slice(2)], 'f32', 'sliceChannels');
    if (out.size === 0) return out;
    // Row n of the output is a contiguous run of count·inner elements at n·C·inner + start·inner of x.
    launchRows(e, {
      name: 'channels.slice',
      ins: { x },
      outs: { out },
      rows: x.shape[0],
      len: count * inner,
      a1: C * inner,
      a2: start * inner,
      exprs: 'out[row * params.len + j] = x[row * params.a1 + params.a2 + j];',
    });
    return out;
  },
  vjp(e, { inputs: [x], params: { start, count } }, ct) {
    // Adjoint of a slice: the cotangent placed in its channels, zeros elsewhere.
    const [N, C, ...rest] = x!.shape;
    const parts = [e.zeros([N, start, ...rest], 'f32', 'zero channels'), ct, e.zeros([N, C - start - count, ...rest])];
    return [concatChannels(e, parts, {})];
  },
  jvp: (e, { params }, [tx]) => (tx ? sliceChannels(e, [tx], params) : null),
});

/** Concatenates [N, C_k, …] tensors along axis 1 (same N and trailing axes): one copy dispatch per input. */
export const concatChannels: Op<NoParams> = defineOp<NoParams>({
  name: 'channels.concat',
  forward(e, xs0) {
    if (xs0.length === 0) throw new ShapeError('concatChannels: no inputs');
    const xs = xs0.map((x, k) => req(x, `concatChannels input ${k}`));
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
        launchRows(e, {
          name: 'channels.concat',
          ins: { x },
          outs: { out },
          rows: x.shape[0],
          len: x.shape[1] * inner,
          a1: total * inner,
          a2: c0 * inner,
          exprs: 'out[row * params.a1 + params.a2 + j] = x[row * params.len + j];',
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

// ---------------------------------------------------------------- row reductions over `inner`

export type ReductionVariant = 'serial' | 'workgroup';

export interface ReduceParams {
  /** Kernel variant; default: 'serial' on CPU adapters, 'workgroup' on GPUs. */
  variant?: ReductionVariant;
}

/** out[r] = Σ_j a[r·inner + j], for `rows` rows. */
function reduceRows(e: Engine, name: string, a: Tensor, out: Tensor, inner: number, variant?: ReductionVariant): void {
  const rows = out.size;
  if (rows === 0) return;
  const v = variant ?? (e.info.isCpu ? 'serial' : 'workgroup');
  const term = (k: string) => `a[${k}]`;
  const buffers = [
    { name: 'a', type: 'f32' as const },
    { name: 'out', type: 'f32' as const, access: 'read_write' as const },
  ];
  const uniforms: Array<[string, 'u32']> = [
    ['rows', 'u32'],
    ['inner', 'u32'],
  ];
  const bindings: Record<string, Tensor> = { a, out };
  if (v === 'serial') {
    const program = e.program({
      name: `${name}.serial`,
      buffers,
      uniforms,
      workgroupSize: [WG],
      body: `
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = g.x + g.y * nwg.x * ${WG}u;
  if (r >= params.rows) { return; }
  let base = r * params.inner;
  let end = base + params.inner;
  // Four independent accumulators: ILP, and each sums only inner/4 terms (smaller rounding error).
  var acc = vec4<f32>(0.0);
  var k = base;
  for (; k + 4u <= end; k += 4u) {
    acc += vec4<f32>(${term('k')}, ${term('k + 1u')}, ${term('k + 2u')}, ${term('k + 3u')});
  }
  for (; k < end; k++) { acc.x += ${term('k')}; }
  out[r] = (acc.x + acc.y) + (acc.z + acc.w);
}`,
    });
    e.dispatch(program, bindings, { rows, inner }, grid(e, rows, WG));
    return;
  }
  const program = e.program({
    name: `${name}.workgroup`,
    buffers,
    uniforms,
    workgroupSize: [ROW_WG],
    body: `
var<workgroup> partial: array<f32, ${ROW_WG}>;
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wid.x + wid.y * nwg.x;
  // r is uniform across the workgroup, so the early exit keeps the barriers below in uniform control flow.
  if (r >= params.rows) { return; }
  let base = r * params.inner;
  var s = 0.0;
  for (var j = lid; j < params.inner; j += ${ROW_WG}u) { s += ${term('base + j')}; }
  partial[lid] = s;
  workgroupBarrier();
  for (var w = ${ROW_WG / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) { partial[lid] += partial[lid + w]; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[r] = partial[0]; }
}`,
  });
  e.dispatch(program, bindings, { rows, inner }, grid(e, rows, 1));
}

/** x [N, C, …] → [N, C]: the sum over the trailing axes (a per-(n, c) spatial sum). */
export const sumInner: Op<ReduceParams> = defineOp<ReduceParams>({
  name: 'channels.sumInner',
  forward(e, [x0], { variant }) {
    const x = req(x0, 'sumInner x');
    if (x.rank < 2) throw new ShapeError(`sumInner: ${x.describe()} must be [N, C, …]`);
    const out = e.empty(x.shape.slice(0, 2), 'f32', 'sumInner');
    reduceRows(e, 'channels.sumInner', x, out, shapeSize(x.shape.slice(2)), variant);
    return out;
  },
  vjp: (e, { inputs: [x] }, ct) => [broadcastChannels(e, [ct], { inner: x!.shape.slice(2) })],
  jvp: (e, { params }, [tx]) => (tx ? sumInner(e, [tx], params) : null),
});

/** v [N, C] → [N, C, ...inner], each v[n, c] repeated over the trailing axes. */
export const broadcastChannels: Op<{ inner: readonly number[] }> = defineOp<{ inner: readonly number[] }>({
  name: 'channels.broadcast',
  forward(e, [v0], { inner }) {
    const v = req(v0, 'broadcastChannels v');
    if (v.rank !== 2) throw new ShapeError(`broadcastChannels: ${v.describe()} must be [N, C]`);
    const out = e.empty([...v.shape, ...inner], 'f32', 'broadcastChannels');
    launchRows(e, {
      name: 'channels.broadcast',
      ins: {},
      perRow: { v },
      outs: { out },
      rows: v.size,
      len: shapeSize(inner),
      exprs: 'out[row * params.len + j] = T(v[row]);',
    });
    return out;
  },
  vjp: (e, _ctx, ct) => [sumInner(e, [ct], {})],
  jvp: (e, { params }, [tv]) => (tv ? broadcastChannels(e, [tv], params) : null),
});

/** x [N, C, …] + v [N, C] broadcast over the trailing axes. */
export const addChannelBias: Op<NoParams> = defineOp<NoParams>({
  name: 'channels.addBias',
  forward(e, [x0, v0]) {
    const x = req(x0, 'addChannelBias x');
    const v = req(v0, 'addChannelBias v');
    if (v.rank !== 2) throw new ShapeError(`addChannelBias: ${v.describe()} must be [N, C]`);
    const inner = innerOf(x, v.shape, 'addChannelBias x');
    const out = e.empty(x.shape, 'f32', 'addChannelBias');
    launchRows(e, {
      name: 'channels.addBias',
      ins: { x },
      perRow: { v },
      outs: { out },
      rows: v.size,
      len: inner,
      exprs: 'let k = row * params.len + j; out[k] = x[k] + T(v[row]);',
    });
    return out;
  },
  vjp: (e, _ctx, ct, needs) => [needs[0] ? ct : null, needs[1] ? sumInner(e, [ct], {}) : null],
  jvp(e, { inputs: [x] }, [tx, tv]) {
    if (tx && tv) return addChannelBias(e, [tx, tv], {});
    return tx ?? broadcastChannels(e, [tv], { inner: x!.shape.slice(2) });
  },
});

// ---------------------------------------------------------------- (a + b)·s

/** (a + b)·scale, elementwise (score_sde's skip_rescale: scale = 1/√2). */
export const addScaled: Op<{ scale: number }> = defineOp<{ scale: number }>({
  name: 'channels.addScaled',
  forward(e, [a0, b0], { scale: s }) {
    const a = req(a0, 'addScaled a');
    const b = req(b0, 'addScaled b');
    if (a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i])) {
      throw new ShapeError(`addScaled: shapes differ: ${a.describe()} vs ${b.describe()}`);
    }
    if (!Number.isFinite(s)) throw new SbgcError(`addScaled: scale must be finite, got ${s}`);
    const out = e.empty(a.shape, 'f32', 'addScaled');
    const rows = a.rank > 0 ? a.shape[0] : 1;
    launchRows(e, {
      name: 'channels.addScaled',
      ins: { a, b },
      outs: { out },
      rows,
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
