/**
 * logsumexp along one axis of any tensor (the axis is removed), max-shifted so it never overflows:
 *
 *   logSumExp(x; axis)                 lse = m + log Σ exp(x − m), m = max along the axis (all −∞ → −∞)
 *   logSumExpBackward(x, lse, g; axis) g·exp(x − lse), the VJP (softmax weights times the cotangent)
 *
 * logSumExpBackward takes lse as an input, so its JVP sees lse's tangent ⟨p, ẋ⟩ from the trace and is one fused
 * dual kernel: p·(ġ + g·(ẋ − l̇se)). An output owns the `len` values of its axis (strided by the inner size) and
 * sums them sequentially with Kahan compensation (error ~2ε whatever the length); a contiguous axis longer than
 * 4096 goes to the two-level row reduction of reductions.ts instead, which spreads it over many workgroups.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { grid } from '../engine/rng.js';
import { rowReduce } from './reductions.js';

export interface AxisParams {
  axis: number;
}

interface AxisLayout {
  outer: number;
  len: number;
  inner: number;
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

function req(t: MaybeTensor, what: string): Tensor {
  if (!t) throw new ShapeError(`${what}: missing input`);
  t.assertDType('f32', what);
  return t;
}

const UNIFORMS: Array<[string, 'u32']> = [
  ['n', 'u32'],
  ['len', 'u32'],
  ['inner', 'u32'],
];

/**
 * One invocation per output r = (o, i): `body` runs with `base` (index of l = 0) and `stride`; element l is at
 * base + l·stride. It must assign out[r].
 */
function perOutput(e: Engine, name: string, inputs: Record<string, Tensor>, body: string, L: AxisLayout): Tensor {
  const out = e.empty(L.outShape, 'f32', name);
  const n = L.outer * L.inner;
  const program = e.program({
    name,
    buffers: [
      ...Object.keys(inputs).map((k) => ({ name: k, type: 'f32' as const })),
      { name: 'out', type: 'f32', access: 'read_write' },
    ],
    uniforms: UNIFORMS,
    workgroupSize: [64],
    body: `
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = gid.x + gid.y * nwg.x * 64u;
  if (r >= params.n) { return; }
  let stride = params.inner;
  let base = (r / stride) * params.len * stride + r % stride;
  ${body}
}`,
  });
  e.dispatch(program, { ...inputs, out }, { n, len: L.len, inner: L.inner }, grid(e, n, 64));
  return out;
}

/** Kahan-compensated Σ_l of `term` (WGSL using k = base + l·stride) into variable `name`. */
function kahan(name: string, term: string): string {
  return `
  var ${name} = 0.0;
  var ${name}_c = 0.0;
  for (var l = 0u; l < params.len; l++) {
    let k = base + l * stride;
    let y = (${term}) - ${name}_c;
    let t = ${name} + y;
    ${name}_c = (t - ${name}) - y;
    ${name} = t;
  }`;
}

const MAX_PASS = `
  var m = -3.402823e38;
  for (var l = 0u; l < params.len; l++) { m = max(m, x[base + l * stride]); }`;

/** Elementwise over x's elements with its output index r (k = index of x); one output per expression. */
function perElement(e: Engine, name: string, inputs: Record<string, Tensor>, exprs: string[], shape: readonly number[], L: AxisLayout): Tensor[] {
  const outs = exprs.map((_, j) => e.empty(shape, 'f32', `${name}${j ? `.${j}` : ''}`));
  const names = exprs.map((_, j) => (j ? `out${j}` : 'out'));
  const n = outs[0].size;
  const program = e.program({
    name,
    buffers: [
      ...Object.keys(inputs).map((k) => ({ name: k, type: 'f32' as const })),
      ...names.map((k) => ({ name: k, type: 'f32' as const, access: 'read_write' as const })),
    ],
    uniforms: UNIFORMS,
    workgroupSize: [256],
    body: `
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let k = gid.x + gid.y * nwg.x * 256u;
  if (k >= params.n) { return; }
  let r = (k / (params.len * params.inner)) * params.inner + k % params.inner;
  ${exprs.map((x, j) => `${names[j]}[k] = ${x};`).join('\n  ')}
}`,
  });
  const bindings: Record<string, Tensor> = { ...inputs };
  outs.forEach((t, j) => (bindings[names[j]] = t));
  e.dispatch(program, bindings, { n, len: L.len, inner: L.inner }, grid(e, n, 256));
  return outs;
}

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
  return perOutput(e, 'lse.fwd', { x }, `${MAX_PASS}${kahan('s', 'exp(x[k] - m)')}\n  out[r] = m + log(s);`, L);
}

export const logSumExp: Op<AxisParams> = defineOp<AxisParams>({
  name: 'logSumExp',
  forward(e, [x0], { axis }) {
    const x = req(x0, 'logSumExp');
    return lseForward(e, x, axisLayout(x, axis, 'logSumExp'));
  },
  vjp: (e, { inputs: [x], output, params }, g) => [logSumExpBackward(e, [x, output, g], params)],
  jvp(e, { inputs: [x0], output, params }, [tx]) {
    if (!tx) return null;
    const x = x0!;
    const L = axisLayout(x, params.axis, 'logSumExp');
    // ⟨p, ẋ⟩ along the axis, p = exp(x − lse).
    return perOutput(e, 'lse.jvp', { x, lse: output, tx }, `${kahan('s', 'exp(x[k] - lse[r]) * tx[k]')}\n  out[r] = s;`, L);
  },
});

function checkBackward(inputs: readonly MaybeTensor[], axis: number) {
  const x = req(inputs[0], 'logSumExpBackward x');
  const lse = req(inputs[1], 'logSumExpBackward lse');
  const g = req(inputs[2], 'logSumExpBackward cotangent');
  const L = axisLayout(x, axis, 'logSumExpBackward');
  lse.assertShape(L.outShape, 'logSumExpBackward lse');
  g.assertShape(L.outShape, 'logSumExpBackward cotangent');
  return { x, lse, g, L };
}

/** g·exp(x − lse) with g, lse broadcast along the axis. */
export const logSumExpBackward: Op<AxisParams> = defineOp<AxisParams>({
  name: 'logSumExpBackward',
  forward(e, inputs, { axis }) {
    const { x, lse, g, L } = checkBackward(inputs, axis);
    return perElement(e, 'lse.bwd', { x, lse, g }, ['g[r] * exp(x[k] - lse[r])'], x.shape, L)[0];
  },
  vjp(e, { inputs, params }, w, needs) {
    const { x, lse, g, L } = checkBackward(inputs, params.axis);
    // Third order is never needed: plain kernels. With p = exp(x − lse): ∂/∂x = w·g·p, ∂/∂lse = −Σ w·g·p,
    // ∂/∂g = Σ w·p (sums along the axis).
    const p = 'exp(x[k] - lse[r])';
    const ins = { x, lse, g, w };
    return [
      needs[0] ? perElement(e, 'lse.bwd.vjp.x', ins, [`w[k] * g[r] * ${p}`], x.shape, L)[0] : null,
      needs[1] ? perOutput(e, 'lse.bwd.vjp.lse', ins, `${kahan('s', `w[k] * ${p}`)}\n  out[r] = -g[r] * s;`, L) : null,
      needs[2] ? perOutput(e, 'lse.bwd.vjp.g', ins, `${kahan('s', `w[k] * ${p}`)}\n  out[r] = s;`, L) : null,
    ];
  },
  jvp: (e, ctx, tangents) => logSumExpBackward.def.dual!(e, ctx.inputs, tangents, ctx.params)[1],
  dual(e, inputs, [tx, tl, tg], { axis }) {
    const { x, lse, g, L } = checkBackward(inputs, axis);
    const ins: Record<string, Tensor> = { x, lse, g };
    if (tx) ins.tx = tx;
    if (tl) ins.tl = tl;
    if (tg) ins.tg = tg;
    const inner = [tx ? 'tx[k]' : '', tl ? '- tl[r]' : ''].filter(Boolean).join(' ');
    const tangent = [tg ? 'tg[r]' : '', inner ? `g[r] * (${inner})` : ''].filter(Boolean).join(' + ');
    // One kernel: p = exp(x − lse) computed once for the primal g·p and the tangent.
    const [primal, out] = perElement(
      e,
      `lse.bwd.dual.${+!!tx}${+!!tl}${+!!tg}`,
      ins,
      ['g[r] * exp(x[k] - lse[r])', `exp(x[k] - lse[r]) * (${tangent || '0.0'})`],
      x.shape,
      L,
    );
    return [primal, out];
  },
});
