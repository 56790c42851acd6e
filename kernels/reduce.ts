/**
 * The reduction family: every sum or max over part of a tensor is one of three programs, each with the operator,
 * the per-element term and the epilogue as spec fields (WGSL expressions given as constants by the callers).
 *
 *   rowReduce      out[row] = finish(⊕_k term(k)) over contiguous rows            [rows, len] → [rows]
 *   axisReduce     out[o, i] = finish(Σ_l term(o, l, i)), Kahan-compensated       [outer, len, inner] → [outer, inner]
 *   channelReduce  out[c] = Σ_{o, i} term(o, c, i)                                  [outer, C, inner] → [C]
 *
 * Their adjoint is the one broadcast (broadcast.ts). Adapter variants, each kept because it was measured faster:
 * - rowReduce 'chunked' (default): a 64-lane workgroup per chunk of 4096 vectors (vec4 loads when len % 4 = 0),
 *   tree-reduced, then the per-chunk partials reduced again by the same kernel until one value per row remains —
 *   long rows spread over many workgroups. Each value passes ≤ 16 sequential adds per level plus a 6-level tree,
 *   so the f32 error stays ≲ 25·levels·ε of Σ|terms| (≈ 4e-6 worst case at 16.7M values, 3 levels).
 * - rowReduce 'serial': one invocation per row, 4 independent accumulators, no barriers (sum only; many short
 *   rows on lavapipe, where a barrier is a coroutine switch per 8-lane slice).
 * - channelReduce's workgroup: 32 lanes on CPU adapters, 256 on GPUs (`reductionWorkgroup`, shared with the
 *   GroupNorm block kernels, where it was measured: 3.1 ms at 32 lanes vs 4.1 at 64 and 8.5 at 256 on lavapipe).
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineProgram } from '../engine/program.js';
import { reads, u32s, writes } from '../engine/kernel.js';
import { flatMain, grid, groupMain } from '../engine/wgsl.js';
import { DeviceLimitError, SbgcError, ShapeError } from '../engine/errors.js';
import {
  INPUT_SLOT_FIELDS,
  combineWgsl,
  identityWgsl,
  nameSlots,
  treeReduceWgsl,
  usedSlots,
  vectorWgsl,
  type Combine,
  type InputSlots,
} from './reduce-wgsl.js';


// ---------------------------------------------------------------- row reduce

export type RowVariant = 'chunked' | 'serial';

export interface RowReduceSpec {
  /** Kernel name (a constant: it is part of the program key). */
  name: string;
  /** Tensors of rows·len elements (≤ 4), read as `name[k]` (k in vector units when vectorised). */
  inputs: Record<string, Tensor>;
  /** Per-row tensors [rows] (≤ 2), read as `name[row]`. */
  rowInputs?: Record<string, Tensor>;
  /** WGSL expression of type V (f32 or vec4<f32>) for element k of row `row` (a constant; the serial variant
   * evaluates it in a helper of k alone, so there it may not read `row`). */
  term: string;
  combine: Combine;
  /** WGSL f32 expression of `total` (and `row`, rowInputs, `params.count` = len) giving the row's result. */
  finish?: string;
  /** Default 'chunked'; 'serial' sums each row in one invocation (see the file comment). */
  variant?: RowVariant;
}

type RowSpec = InputSlots & {
  name: string;
  variant: RowVariant;
  row0: string;
  row1: string;
  term: string;
  combine: Combine;
  finish: string;
  vw: number;
  final: boolean;
};

const WG = 64;
/** Vector loads per lane per chunk. */
const PER_LANE = 16;
const CHUNK = WG * PER_LANE;
const SERIAL_WG = 256;

const ROW_REDUCE = defineProgram<RowSpec>({
  name: 'rowReduce',
  spec: {
    name: true, variant: true, ...INPUT_SLOT_FIELDS, row0: true, row1: true,
    term: true, combine: true, finish: true, vw: true, final: true,
  },
  build(s) {
    const V = s.vw === 4 ? ('vec4<f32>' as const) : ('f32' as const);
    const buffers = [
      ...usedSlots(s.in0, s.in1, s.in2, s.in3).map((name) => ({ name, type: V })),
      ...reads(...usedSlots(s.row0, s.row1)),
      ...writes('out'),
    ];
    if (s.variant === 'serial') {
      return {
        name: `${s.name}.serial`,
        buffers,
        uniforms: [...u32s('rows', 'len'), ['count', 'f32']],
        workgroupSize: [SERIAL_WG],
        body: `
fn term(k: u32) -> f32 { return ${s.term}; }
${flatMain({
  wg: SERIAL_WG,
  count: 'params.rows',
  index: 'row',
  body: `  let base = row * params.len;
  let end = base + params.len;
  // Four independent accumulators: ILP, and each sums only len/4 terms (smaller rounding error).
  var acc = vec4<f32>(0.0);
  var k = base;
  for (; k + 4u <= end; k += 4u) {
    acc += vec4<f32>(term(k), term(k + 1u), term(k + 2u), term(k + 3u));
  }
  for (; k < end; k++) { acc.x += term(k); }
  let total = (acc.x + acc.y) + (acc.z + acc.w);
  out[row] = ${s.finish};`,
})}`,
      };
    }
    const horizontal =
      s.vw === 4 ? (s.combine === 'sum' ? 'dot(acc, vec4<f32>(1.0))' : 'max(max(acc.x, acc.y), max(acc.z, acc.w))') : 'acc';
    return {
      name: `${s.name}.${s.final ? 'final' : 'partial'}${s.vw === 4 ? '.v4' : ''}`,
      buffers,
      uniforms: [...u32s('rows', 'len', 'chunks'), ['count', 'f32']],
      workgroupSize: [WG],
      body: `${treeReduceWgsl({ wg: WG, fn: 'tree', arr: 'red', type: 'f32', combine: s.combine, reusable: false })}
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let chunk = wid.x;
  // Rows run over y, then z past the per-dimension limit; the exit is uniform per workgroup (barriers stay legal).
  let row = wid.y + wid.z * nwg.y;
  if (row >= params.rows) { return; }
  let start = chunk * ${CHUNK}u;
  let end = min(start + ${CHUNK}u, params.len);
  let o = row * params.len;
  var acc = ${V}(${identityWgsl(s.combine)});
  for (var kk = start + lid; kk < end; kk += ${WG}u) {
    let k = o + kk;
    acc = ${combineWgsl(s.combine, 'acc', `(${s.term})`)};
  }
  let total = tree(lid, ${horizontal});
  if (lid == 0u) {
    ${s.final ? `out[row] = ${s.finish};` : 'out[row * params.chunks + chunk] = total;'}
  }
}`,
    };
  },
});

/**
 * out[row] = finish(⊕_k term(k)) for `rows` rows of `len` elements each: 'chunked' in as many levels as needed
 * (vec4 loads when len is a multiple of 4), or 'serial'.
 */
export function rowReduce(e: Engine, r: RowReduceSpec, rows: number, len: number, outShape: readonly number[]): Tensor {
  const result = e.empty(outShape, 'f32', r.name);
  if (rows === 0) return result;
  const [in0, in1, in2, in3] = nameSlots(r.name, 'inputs', r.inputs, 4);
  const [row0, row1] = nameSlots(r.name, 'row inputs', r.rowInputs, 2);
  const rowInputs = r.rowInputs ?? {};
  const base = { name: r.name, in0, in1, in2, in3, row0, row1, term: r.term, combine: r.combine, finish: r.finish ?? 'total' };
  if (r.variant === 'serial') {
    if (r.combine !== 'sum') throw new SbgcError(`rowReduce ${r.name}: the serial variant only sums`);
    const spec: RowSpec = { ...base, variant: 'serial', vw: 1, final: true };
    e.run(ROW_REDUCE, spec, { ...r.inputs, ...rowInputs, out: result }, { rows, len, count: len }, grid(e, rows, SERIAL_WG));
    return result;
  }
  const vw = len % 4 === 0 ? 4 : 1;
  let chunks = Math.max(1, Math.ceil(len / vw / CHUNK));
  const max = e.limits.maxComputeWorkgroupsPerDimension;
  if (chunks > max) throw new DeviceLimitError(`${r.name}: rows of ${len} values exceed this adapter's dispatch limits`);
  const y = Math.min(rows, max);
  const z = Math.ceil(rows / y);
  let partial = chunks > 1 ? e.empty([rows, chunks], 'f32', 'rowReduce.partials') : result;
  const first: RowSpec = { ...base, variant: 'chunked', vw, final: chunks === 1 };
  // Row inputs are declared on every level (only the final one reads them), so they are always bound.
  e.run(ROW_REDUCE, first, { ...r.inputs, ...rowInputs, out: partial }, { rows, len: len / vw, chunks, count: len }, [chunks, y, z]);
  // Further levels reduce the partials of each row (scalar loads, same combine, same finish at the end).
  while (chunks > 1) {
    const n = chunks;
    chunks = Math.ceil(n / CHUNK);
    const next = chunks > 1 ? e.empty([rows, chunks], 'f32', 'rowReduce.partials') : result;
    const level = { ...first, in0: 'p', in1: '', in2: '', in3: '', term: 'p[k]', vw: 1, final: chunks === 1 };
    e.run(ROW_REDUCE, level, { p: partial, ...rowInputs, out: next }, { rows, len: n, chunks, count: len }, [chunks, y, z]);
    partial.dispose();
    partial = next;
  }
  return result;
}

// ---------------------------------------------------------------- axis reduce

export interface AxisView {
  outer: number;
  len: number;
  inner: number;
}

export interface AxisReduceSpec {
  name: string;
  /** Tensors read by the term and finish (≤ 4): per-element ones as `name[k]`, per-output ones as `name[r]`. */
  inputs: Record<string, Tensor>;
  /** First take m = max_l x[k] along the axis (needs an input named x), for max-shifted terms. */
  shift: boolean;
  /** WGSL f32 expression of k (= base + l·stride, the element), r (the output) and m (when shifted). */
  term: string;
  /** WGSL f32 expression of s (the compensated sum), r and m: the output. */
  finish: string;
}

type AxisSpec = InputSlots & { name: string; shift: boolean; term: string; finish: string };

const AXIS_WG = 64;

/**
 * One invocation per output r = (o, i): element l is at base + l·stride (stride = inner), summed sequentially with
 * Kahan compensation (error ~2ε whatever the length).
 */
const AXIS_REDUCE = defineProgram<AxisSpec>({
  name: 'axisReduce',
  spec: { name: true, ...INPUT_SLOT_FIELDS, shift: true, term: true, finish: true },
  build: (s) => ({
    name: s.name,
    buffers: [...reads(...usedSlots(s.in0, s.in1, s.in2, s.in3)), ...writes('out')],
    uniforms: u32s('n', 'len', 'inner'),
    workgroupSize: [AXIS_WG],
    body: flatMain({
      wg: AXIS_WG,
      count: 'params.n',
      index: 'r',
      body: `  let stride = params.inner;
  let base = (r / stride) * params.len * stride + r % stride;${
    s.shift
      ? `
  var m = -3.402823e38;
  for (var l = 0u; l < params.len; l++) { m = max(m, x[base + l * stride]); }`
      : ''
  }
  var s = 0.0;
  var s_c = 0.0;
  for (var l = 0u; l < params.len; l++) {
    let k = base + l * stride;
    let y = (${s.term}) - s_c;
    let t = s + y;
    s_c = (t - s) - y;
    s = t;
  }
  out[r] = ${s.finish};`,
    }),
  }),
});

/** out [outer·inner] (shaped `outShape`) = finish(Σ_l term) over the middle axis of the view. */
export function axisReduce(e: Engine, a: AxisReduceSpec, view: AxisView, outShape: readonly number[]): Tensor {
  const result = e.empty(outShape, 'f32', a.name);
  const n = view.outer * view.inner;
  if (n === 0) return result;
  const [in0, in1, in2, in3] = nameSlots(a.name, 'inputs', a.inputs, 4);
  if (a.shift && !a.inputs.x) throw new SbgcError(`axisReduce ${a.name}: a shifted reduction needs an input named x`);
  const spec = { name: a.name, in0, in1, in2, in3, shift: a.shift, term: a.term, finish: a.finish };
  e.run(AXIS_REDUCE, spec, { ...a.inputs, out: result }, { n, len: view.len, inner: view.inner }, grid(e, n, AXIS_WG));
  return result;
}

// ---------------------------------------------------------------- channel reduce (every axis but one)

let forcedWg: number | null = null;

/** Lanes of the per-block and per-channel workgroups: 32 on CPU adapters, 256 on GPUs (see the file comment). */
export function reductionWorkgroup(e: Engine): number {
  return forcedWg ?? (e.info.isCpu ? 32 : 256);
}

/** Forces that workgroup size (a power of two in [2, 256]) so tests cover the GPU layout on any adapter. */
export function overrideReductionWorkgroup(size: number | null): void {
  if (size !== null && (!Number.isInteger(Math.log2(size)) || size < 2 || size > 256)) {
    throw new ShapeError(`overrideReductionWorkgroup: ${size} is not a power of two in [2, 256]`);
  }
  forcedWg = size;
}

export interface ChannelReduceSpec {
  name: string;
  /** Per-element tensors [outer, C, inner] (≤ 2), bound as V (vec4<f32> when inner % 4 = 0). */
  inputs: Record<string, Tensor>;
  /** f32 tensors read by index (≤ 1), e.g. per-block statistics. */
  extras?: Record<string, Tensor>;
  /**
   * WGSL statements adding the f32 contribution of vector k (at outer index n, channel ch) to `acc`; uniforms
   * params.c and params.cpg (channels per group) are available. Default: the sum of the first input.
   */
  body: string;
  /** params.cpg, for bodies that find a channel's group. */
  channelsPerGroup?: number;
}

type ChannelSpec = { name: string; in0: string; in1: string; extra: string; body: string; vw: number; wg: number };

const CHANNEL_REDUCE = defineProgram<ChannelSpec>({
  name: 'channelReduce',
  spec: { name: true, in0: true, in1: true, extra: true, body: true, vw: true, wg: true },
  build: (s) => ({
    name: s.name,
    buffers: [
      ...usedSlots(s.in0, s.in1).map((name) => ({ name, type: s.vw === 4 ? ('vec4<f32>' as const) : ('f32' as const) })),
      ...reads(...usedSlots(s.extra)),
      ...writes('out'),
    ],
    uniforms: u32s('n', 'c', 's', 'cpg'),
    workgroupSize: [s.wg],
    body: `${vectorWgsl(s.vw)}
${treeReduceWgsl({ wg: s.wg, fn: 'reduce4', arr: 'red4', type: 'vec4<f32>', combine: 'sum', reusable: true })}
${groupMain({
  index: 'ch',
  count: 'params.c',
  body: `  var acc = 0.0;
  let total = params.n * params.s;
  for (var j = lid; j < total; j += ${s.wg}u) {
    let n = j / params.s;
    let k = (n * params.c + ch) * params.s + (j - n * params.s);
    ${s.body}
  }
  let sum = reduce4(lid, vec4<f32>(acc, 0.0, 0.0, 0.0)).x;
  if (lid == 0u) { out[ch] = sum; }`,
})}`,
  }),
});

/**
 * out[c] = Σ_{o, i} body over the view [outer, C, inner]: one workgroup per channel, its outer·inner terms split
 * over the lanes (each adds outer·inner/wg of them), then a tree.
 */
export function channelReduce(e: Engine, c: ChannelReduceSpec, view: AxisView): Tensor {
  const result = e.empty([view.len], 'f32', c.name);
  if (view.len === 0) return result;
  const [in0, in1] = nameSlots(c.name, 'inputs', c.inputs, 2);
  const [extra] = nameSlots(c.name, 'extras', c.extras, 1);
  const vw = view.inner % 4 === 0 ? 4 : 1;
  const spec = { name: c.name, in0, in1, extra, body: c.body, vw, wg: reductionWorkgroup(e) };
  const uniforms = { n: view.outer, c: view.len, s: view.inner / vw, cpg: c.channelsPerGroup ?? 1 };
  e.run(CHANNEL_REDUCE, spec, { ...c.inputs, ...c.extras, out: result }, uniforms, grid(e, view.len, 1));
  return result;
}

/** The body of a plain channel sum of the input named `g`. */
export const CHANNEL_SUM_BODY = 'acc += hdot(g[k], V(1.0));';
