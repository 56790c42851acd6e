/**
 * Softmax along the last axis (max-subtracted, so large logits do not overflow) and its backward as an op:
 *
 *   softmax(x)             y = exp(x − max x) / Σ exp(x − max x)         per row
 *   softmaxBackward(y, g)  y ⊙ (g − ⟨g, y⟩)                              the VJP, written in terms of the output y
 *
 * The softmax Jacobian is symmetric, so softmaxBackward(y, ẋ) is also the JVP. softmaxBackward's own JVP (the
 * softmax piece of a Hessian-vector product) is one fused dual kernel: ẏ ⊙ (g − ⟨g,y⟩) + y ⊙ (ġ − ⟨ġ,y⟩ − ⟨g,ẏ⟩).
 *
 * Two row-kernel layouts: one invocation per row (no barriers: what lavapipe runs fastest, its lanes being rows)
 * and one workgroup per row with tree reductions (GPUs, long rows). `rowLayout` picks.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { defineProgram } from '../engine/program.js';
import { reads, u32s, writes } from '../engine/kernel.js';
import { flatMain, grid, groupMain } from '../engine/wgsl.js';
import { treeReduceWgsl } from './reduce-wgsl.js';

type NoParams = Record<string, never>;

/** Rows are the last axis: it must be non-empty. */
function checkRows(t: Tensor, what: string): void {
  if (t.rank < 1 || t.shape[t.rank - 1] === 0) throw new ShapeError(`${what}: ${t.describe()} needs a non-empty last axis`);
}

function same(op: string, a: Tensor, b: Tensor, what: string): void {
  b.assertDType('f32', `${op} ${what}`);
  b.assertShape(a.shape, `${op} ${what}`);
}

export type RowLayout = 'thread' | 'workgroup';

let forcedLayout: RowLayout | null = null;

/** Forces one row layout (tests and benchmarks run both on any adapter); null restores the adapter's choice. */
export function overrideRowLayout(layout: RowLayout | null): void {
  forcedLayout = layout;
}

/** One invocation per row on CPU adapters and for short rows; a 64-lane workgroup per row on GPUs. */
export function rowLayout(e: Engine, len: number): RowLayout {
  if (forcedLayout) return forcedLayout;
  return e.info.isCpu || len < 64 ? 'thread' : 'workgroup';
}

const WG_ROW = 64;
const WG_THREAD = 64;

// ---------------------------------------------------------------- the row kernels

/**
 * Each row kernel's statements use `o` (row offset), `FOR(j)` as a loop header over the row's columns j, and
 * `SUM(v)` / `MAX(v)` (vec4 / f32) for row-wide reductions of per-lane partials, which every lane receives.
 */
type Kind = 'fwd' | 'dual' | 'bwd' | 'bwdDual' | 'vjpy';

// Pass 1: row max; pass 2: y = exp(x − m), s = Σ y; pass 3: y /= s.
const SOFTMAX_BODY = `
  var mx = -3.402823e38;
  FOR(j) { mx = max(mx, x[o + j]); }
  mx = MAX(mx);
  var s = 0.0;
  FOR(j) { let p = exp(x[o + j] - mx); y[o + j] = p; s += p; }
  let inv = 1.0 / SUM(vec4<f32>(s, 0.0, 0.0, 0.0)).x;`;

/** Name, buffers and statements of one row kernel (called once per program key, in `build`). */
function rowKernel(kind: Kind, ty: boolean, tg: boolean): { name: string; ins: string[]; outs: string[]; body: string } {
  switch (kind) {
    case 'fwd':
      return { name: 'softmax.fwd', ins: ['x'], outs: ['y'], body: `${SOFTMAX_BODY}\n  FOR(j) { y[o + j] = y[o + j] * inv; }` };
    case 'dual':
      // ẏ = y ⊙ (ẋ − ⟨ẋ, y⟩), with ⟨ẋ, y⟩ summed while y is finalised.
      return {
        name: 'softmax.dual',
        ins: ['x', 'tx'],
        outs: ['y', 'ty'],
        body: `${SOFTMAX_BODY}
  var d = 0.0;
  FOR(j) { let p = y[o + j] * inv; y[o + j] = p; d += p * tx[o + j]; }
  d = SUM(vec4<f32>(d, 0.0, 0.0, 0.0)).x;
  FOR(j) { ty[o + j] = y[o + j] * (tx[o + j] - d); }`,
      };
    case 'bwd':
      return {
        name: 'softmax.bwd',
        ins: ['y', 'g'],
        outs: ['out'],
        body: `var d = 0.0;
  FOR(j) { d += g[o + j] * y[o + j]; }
  d = SUM(vec4<f32>(d, 0.0, 0.0, 0.0)).x;
  FOR(j) { out[o + j] = y[o + j] * (g[o + j] - d); }`,
      };
    case 'bwdDual': {
      // One pass for ⟨g,y⟩, ⟨ġ,y⟩, ⟨g,ẏ⟩; one pass writing the primal and the tangent.
      const yd = ty ? 'ty[o + j]' : '0.0';
      const gd = tg ? 'tg[o + j]' : '0.0';
      return {
        name: `softmax.bwd.dual.${+ty}${+tg}`,
        ins: ['y', 'g', ...(ty ? ['ty'] : []), ...(tg ? ['tg'] : [])],
        outs: ['out', 'tout'],
        body: `var acc = vec4<f32>(0.0);
  FOR(j) { let gj = g[o + j]; acc += vec4<f32>(gj * y[o + j], ${gd} * y[o + j], gj * ${yd}, 0.0); }
  acc = SUM(acc);
  FOR(j) {
    let gc = g[o + j] - acc.x;
    out[o + j] = y[o + j] * gc;
    tout[o + j] = ${yd} * gc + y[o + j] * (${gd} - acc.y - acc.z);
  }`,
      };
    }
    case 'vjpy':
      // ∂/∂y ⟨w, y ⊙ (g − ⟨g,y⟩)⟩ = w ⊙ (g − ⟨g,y⟩) − g·⟨w,y⟩.
      return {
        name: 'softmax.bwd.vjpy',
        ins: ['y', 'g', 'w'],
        outs: ['out'],
        body: `var acc = vec4<f32>(0.0);
  FOR(j) { acc += vec4<f32>(g[o + j] * y[o + j], w[o + j] * y[o + j], 0.0, 0.0); }
  acc = SUM(acc);
  FOR(j) { out[o + j] = w[o + j] * (g[o + j] - acc.x) - g[o + j] * acc.y; }`,
      };
  }
}

const ROWS = defineProgram<{ kind: Kind; ty: boolean; tg: boolean; layout: RowLayout }>({
  name: 'softmax.rows',
  spec: { kind: true, ty: true, tg: true, layout: true },
  build({ kind, ty, tg, layout }) {
    const k = rowKernel(kind, ty, tg);
    const thread = layout === 'thread';
    const expanded = k.body
      .replace(/FOR\((\w+)\)/g, (_m, j: string) =>
        thread ? `for (var ${j} = 0u; ${j} < params.len; ${j}++)` : `for (var ${j} = lid; ${j} < params.len; ${j} += ${WG_ROW}u)`,
      )
      .replace(/SUM\(/g, thread ? '(' : 'rowSum(lid, ')
      .replace(/MAX\(/g, thread ? '(' : 'rowMax(lid, ');
    const body = `  let o = row * params.len;
  ${expanded}`;
    return {
      name: `${k.name}.${layout}`,
      buffers: [...reads(...k.ins), ...writes(...k.outs)],
      uniforms: u32s('rows', 'len'),
      workgroupSize: [thread ? WG_THREAD : WG_ROW],
      body: thread
        ? flatMain({ wg: WG_THREAD, count: 'params.rows', index: 'row', body })
        : `${treeReduceWgsl({ wg: WG_ROW, fn: 'rowSum', arr: 'red', type: 'vec4<f32>', combine: 'sum', reusable: true })}
${treeReduceWgsl({ wg: WG_ROW, fn: 'rowMax', arr: 'redm', type: 'f32', combine: 'max', reusable: true })}
${groupMain({ index: 'row', count: 'params.rows', body })}`,
    };
  },
});

function launchRows(e: Engine, kind: Kind, bindings: Record<string, Tensor>, like: Tensor, ty = false, tg = false): void {
  const len = like.shape[like.rank - 1];
  const rows = like.size / len;
  const layout = rowLayout(e, len);
  const wgs = layout === 'thread' ? grid(e, rows, WG_THREAD) : grid(e, rows, 1);
  e.run(ROWS, { kind, ty, tg, layout }, bindings, { rows, len }, wgs);
}

// ---------------------------------------------------------------- ops

function softmaxForward(e: Engine, x: Tensor, tx: MaybeTensor): [Tensor, MaybeTensor] {
  const y = e.empty(x.shape, 'f32', 'softmax');
  if (!tx) {
    launchRows(e, 'fwd', { x, y }, x);
    return [y, null];
  }
  const ty = e.empty(x.shape, 'f32', 'softmax.tangent');
  launchRows(e, 'dual', { x, tx, y, ty }, x);
  return [y, ty];
}

export const softmax: Op<NoParams> = defineOp({
  name: 'softmax',
  inputs: ['x'],
  forward(e, [x]) {
    checkRows(x, 'softmax');
    return softmaxForward(e, x, null)[0];
  },
  vjp: (e, { output }, ct) => [softmaxBackward(e, [output, ct], {})],
  jvp: (e, { output }, [tx]) => (tx ? softmaxBackward(e, [output, tx], {}) : null),
  dual(e, [x], [tx]) {
    checkRows(x, 'softmax');
    if (tx) same('softmax', x, tx, 'tangent');
    return softmaxForward(e, x, tx);
  },
});

function checkBackward(y: Tensor, g: Tensor): void {
  checkRows(y, 'softmaxBackward y');
  checkRows(g, 'softmaxBackward cotangent');
  same('softmaxBackward', y, g, 'cotangent');
}

function softmaxBackwardLaunch(e: Engine, y: Tensor, g: Tensor, ty: MaybeTensor, tg: MaybeTensor): [Tensor, MaybeTensor] {
  const out = e.empty(y.shape, 'f32', 'softmax.backward');
  if (!ty && !tg) {
    launchRows(e, 'bwd', { y, g, out }, y);
    return [out, null];
  }
  const tout = e.empty(y.shape, 'f32', 'softmax.backward.tangent');
  const bindings: Record<string, Tensor> = { y, g, out, tout };
  if (ty) bindings.ty = ty;
  if (tg) bindings.tg = tg;
  launchRows(e, 'bwdDual', bindings, y, !!ty, !!tg);
  return [out, tout];
}

/** y ⊙ (g − ⟨g, y⟩) per row: softmax's VJP in terms of its output. Its JVP is a fused dual kernel. */
export const softmaxBackward: Op<NoParams> = defineOp({
  name: 'softmaxBackward',
  inputs: ['y', 'cotangent'],
  forward(e, [y, g]) {
    checkBackward(y, g);
    return softmaxBackwardLaunch(e, y, g, null, null)[0];
  },
  vjp(e, { inputs: [y, g] }, w, needs) {
    checkBackward(y, g);
    let gy: MaybeTensor = null;
    if (needs[0]) {
      // Third order is never needed: a plain kernel.
      gy = e.empty(y.shape, 'f32', 'softmax.backward.vjp.y');
      launchRows(e, 'vjpy', { y, g, w, out: gy }, y);
    }
    // The map g ↦ y ⊙ (g − ⟨g,y⟩) is symmetric.
    return [gy, needs[1] ? softmaxBackward(e, [y, w], {}) : null];
  },
  jvp: (e, { inputs: [y, g] }, [ty, tg]) => {
    checkBackward(y, g);
    return softmaxBackwardLaunch(e, y, g, ty, tg)[1];
  },
  dual(e, [y, g], [ty, tg]) {
    checkBackward(y, g);
    if (ty) same('softmaxBackward', y, ty, 'y tangent');
    if (tg) same('softmaxBackward', y, tg, 'cotangent tangent');
    return softmaxBackwardLaunch(e, y, g, ty, tg);
  },
});
