/**
 * logsumexp along one axis of any tensor (the axis is removed), max-shifted so it never overflows:
 *
 *   logSumExp(x; axis)                 lse = m + log Σ exp(x − m), m = max along the axis (all −∞ → −∞)
 *   logSumExpBackward(x, lse, g; axis) g·exp(x − lse), the VJP (softmax weights times the cotangent)
 *
 * logSumExpBackward takes lse as an input, so its JVP sees lse's tangent ⟨p, ẋ⟩ from the trace and is one fused
 * dual kernel: p·(ġ + g·(ẋ − l̇se)). The sums are the family's axisReduce (reduce.ts: one invocation per output,
 * Kahan-compensated, error ~2ε whatever the length); a contiguous axis longer than 4096 goes to its chunked
 * rowReduce instead, which spreads it over many workgroups. The per-element kernels are the one broadcast
 * (broadcast.ts) with lse, g and their tangents as [outer, 1, inner] operands.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type Op, type OpInputs } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { axisReduce, rowReduce, type AxisView } from './reduce.js';
import { broadcast } from './broadcast.js';

export interface AxisParams {
  axis: number;
}

interface AxisLayout extends AxisView {
  outShape: number[];
}

function axisLayout(x: Tensor, axis: number, op: string): AxisLayout {
  const r = x.rank;
  const ax = axis < 0 ? axis + r : axis;
  if (!Number.isInteger(ax) || ax < 0 || ax >= r) {
    throw new ShapeError(`${op}: axis ${axis} is out of range for ${x.describe()}`);
  }
  const outer = x.shape.slice(0, ax).reduce((p, d) => p * d, 1);
  const inner = x.shape.slice(ax + 1).reduce((p, d) => p * d, 1);
  return { outer, len: x.shape[ax], inner, outShape: x.shape.filter((_, i) => i !== ax) };
}

const P = 'exp(x[k] - lse[r])';

/** A per-element kernel's statements for both layouts of `perElement`, prefixed with k (element) and r (output). */
interface PerElement {
  /** Over [outer, len, inner] with [outer, inner] operands (rows = outer·len, j < inner). */
  axis: string;
  /** The last axis (inner = 1): rows = outer of len elements, the operands per row. */
  last: string;
}

function perElementKernel(body: string): PerElement {
  return {
    axis: `let k = row * params.len + j; let r = (row / params.mid) * params.len + j; ${body}`,
    last: `let k = row * params.len + j; let r = row; ${body}`,
  };
}

/** Elementwise over x's elements (its shape) with [outer, inner] operands read at r: one output per statement. */
function perElement(
  e: Engine,
  name: string,
  ins: Record<string, Tensor>,
  ops: Record<string, Tensor>,
  outs: Record<string, Tensor>,
  k: PerElement,
  L: AxisLayout,
): void {
  if (L.inner === 1) broadcast(e, { name, ins, rowOps: ops, outs, mid: L.outer, len: L.len, exprs: k.last });
  else broadcast(e, { name, ins, axisOps: ops, outs, outer: L.outer, mid: L.len, len: L.inner, exprs: k.axis });
}

const BACKWARD = perElementKernel(`out[k] = g[r] * ${P};`);
const BACKWARD_VJP_X = perElementKernel(`out[k] = w[k] * g[r] * ${P};`);

function lseForward(e: Engine, x: Tensor, L: AxisLayout): Tensor {
  if (L.inner === 1 && L.len > 4096) {
    const rows = L.outer;
    const m = rowReduce(e, { name: 'lse.max', inputs: { x }, term: 'x[k]', combine: 'max' }, rows, L.len, [rows]);
    const out = rowReduce(
      e,
      {
        name: 'lse.sum',
        inputs: { x },
        rowInputs: { m },
        term: 'exp(x[k] - m[row])',
        combine: 'sum',
        finish: 'm[row] + log(total)',
      },
      rows,
      L.len,
      L.outShape,
    );
    m.dispose();
    return out;
  }
  return axisReduce(e, { name: 'lse.fwd', inputs: { x }, shift: true, term: 'exp(x[k] - m)', finish: 'm + log(s)' }, L, L.outShape);
}

export const logSumExp: Op<AxisParams> = defineOp({
  name: 'logSumExp',
  inputs: ['x'],
  forward: (e, [x], { axis }) => lseForward(e, x, axisLayout(x, axis, 'logSumExp')),
  vjp: (e, { inputs: [x], output, params }, g) => [logSumExpBackward(e, [x, output, g], params)],
  jvp(e, { inputs: [x], output, params }, [tx]) {
    if (!tx) return null;
    const L = axisLayout(x, params.axis, 'logSumExp');
    // ⟨p, ẋ⟩ along the axis, p = exp(x − lse).
    return axisReduce(e, { name: 'lse.jvp', inputs: { x, lse: output, tx }, shift: false, term: `${P} * tx[k]`, finish: 's' }, L, L.outShape);
  },
});

const BACKWARD_INPUTS = ['x', 'lse', 'cotangent'] as const;

function checkBackward([x, lse, g]: OpInputs<typeof BACKWARD_INPUTS>, axis: number) {
  const L = axisLayout(x, axis, 'logSumExpBackward');
  lse.assertShape(L.outShape, 'logSumExpBackward lse');
  g.assertShape(L.outShape, 'logSumExpBackward cotangent');
  return L;
}

/** The dual kernel's statements for each set of present tangents, indexed 4·ẋ + 2·l̇se + ġ. */
const DUAL = Array.from({ length: 8 }, (_, bits) => {
  const [tx, tl, tg] = [bits & 4, bits & 2, bits & 1];
  const inner = [tx ? 'tx[k]' : '', tl ? '- tl[r]' : ''].filter(Boolean).join(' ');
  const tangent = [tg ? 'tg[r]' : '', inner ? `g[r] * (${inner})` : ''].filter(Boolean).join(' + ');
  return {
    name: `lse.bwd.dual.${+!!tx}${+!!tl}${+!!tg}`,
    tangentLabel: `lse.bwd.dual.${+!!tx}${+!!tl}${+!!tg}.1`,
    // One kernel: p = exp(x − lse) computed once for the primal g·p and the tangent.
    kernel: perElementKernel(`out[k] = g[r] * ${P}; out1[k] = ${P} * (${tangent || '0.0'});`),
  };
});

/** g·exp(x − lse) with g, lse broadcast along the axis. */
export const logSumExpBackward: Op<AxisParams> = defineOp({
  name: 'logSumExpBackward',
  inputs: BACKWARD_INPUTS,
  forward(e, inputs, { axis }) {
    const L = checkBackward(inputs, axis);
    const [x, lse, g] = inputs;
    const out = e.empty(x.shape, 'f32', 'lse.bwd');
    perElement(e, 'lse.bwd', { x }, { lse, g }, { out }, BACKWARD, L);
    return out;
  },
  vjp(e, { inputs, params }, w, needs) {
    const L = checkBackward(inputs, params.axis);
    const [x, lse, g] = inputs;
    // Third order is never needed: plain kernels. With p = exp(x − lse): ∂/∂x = w·g·p, ∂/∂lse = −Σ w·g·p,
    // ∂/∂g = Σ w·p (sums along the axis).
    let gx: Tensor | null = null;
    if (needs[0]) {
      gx = e.empty(x.shape, 'f32', 'lse.bwd.vjp.x');
      perElement(e, 'lse.bwd.vjp.x', { x, w }, { lse, g }, { out: gx }, BACKWARD_VJP_X, L);
    }
    const ins = { x, lse, g, w };
    const sum = (name: string, finish: string) => axisReduce(e, { name, inputs: ins, shift: false, term: `w[k] * ${P}`, finish }, L, L.outShape);
    return [gx, needs[1] ? sum('lse.bwd.vjp.lse', '-g[r] * s') : null, needs[2] ? sum('lse.bwd.vjp.g', 's') : null];
  },
  jvp: (e, ctx, tangents) => logSumExpBackward.def.dual!(e, ctx.inputs, tangents, ctx.params)[1],
  dual(e, inputs, [tx, tl, tg], { axis }) {
    const L = checkBackward(inputs, axis);
    const [x, lse, g] = inputs;
    const ins: Record<string, Tensor> = { x };
    const ops: Record<string, Tensor> = { lse, g };
    if (tx) ins.tx = tx;
    if (tl) ops.tl = tl;
    if (tg) ops.tg = tg;
    const dual = DUAL[(tx ? 4 : 0) + (tl ? 2 : 0) + (tg ? 1 : 0)];
    const out = e.empty(x.shape, 'f32', dual.name);
    const out1 = e.empty(x.shape, 'f32', dual.tangentLabel);
    perElement(e, dual.name, ins, ops, { out, out1 }, dual.kernel, L);
    return [out, out1];
  },
});
