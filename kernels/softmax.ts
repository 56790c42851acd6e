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
import { grid } from '../engine/rng.js';

type NoParams = Record<string, never>;

function req(t: MaybeTensor, what: string): Tensor {
  if (!t) throw new ShapeError(`${what}: missing input`);
  t.assertDType('f32', what);
  if (t.rank < 1 || t.shape[t.rank - 1] === 0) throw new ShapeError(`${what}: ${t.describe()} needs a non-empty last axis`);
  return t;
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

/**
 * A row kernel. `body` uses: `o` (row offset), `FOR(j)` as a loop header over the row's columns j, and
 * `SUM(v)` / `MAX(v)` (vec4 / f32) for row-wide reductions of per-lane partials, which every lane receives.
 */
function launchRows(
  e: Engine,
  name: string,
  inputs: Record<string, Tensor>,
  outputs: Record<string, Tensor>,
  body: string,
  rows: number,
  len: number,
): void {
  const layout = rowLayout(e, len);
  const thread = layout === 'thread';
  const expanded = body
    .replace(/FOR\((\w+)\)/g, (_m, j: string) =>
      thread ? `for (var ${j} = 0u; ${j} < params.len; ${j}++)` : `for (var ${j} = lid; ${j} < params.len; ${j} += ${WG_ROW}u)`,
    )
    .replace(/SUM\(/g, thread ? '(' : 'rowSum(lid, ')
    .replace(/MAX\(/g, thread ? '(' : 'rowMax(lid, ');
  const reductions = thread
    ? ''
    : `
var<workgroup> red: array<vec4<f32>, ${WG_ROW}>;
var<workgroup> redm: array<f32, ${WG_ROW}>;
fn rowSum(lid: u32, v: vec4<f32>) -> vec4<f32> {
  red[lid] = v;
  workgroupBarrier();
  for (var h = ${WG_ROW / 2}u; h > 0u; h = h >> 1u) {
    if (lid < h) { red[lid] = red[lid] + red[lid + h]; }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}
fn rowMax(lid: u32, v: f32) -> f32 {
  redm[lid] = v;
  workgroupBarrier();
  for (var h = ${WG_ROW / 2}u; h > 0u; h = h >> 1u) {
    if (lid < h) { redm[lid] = max(redm[lid], redm[lid + h]); }
    workgroupBarrier();
  }
  let t = redm[0];
  workgroupBarrier();
  return t;
}`;
  const head = thread
    ? `fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = gid.x + gid.y * nwg.x * ${WG_THREAD}u;
  if (row >= params.rows) { return; }`
    : `fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= params.rows) { return; }`;
  const program = e.program({
    name: `${name}.${layout}`,
    buffers: [
      ...Object.keys(inputs).map((n) => ({ name: n, type: 'f32' as const })),
      ...Object.keys(outputs).map((n) => ({ name: n, type: 'f32' as const, access: 'read_write' as const })),
    ],
    uniforms: [
      ['rows', 'u32'],
      ['len', 'u32'],
    ],
    workgroupSize: [thread ? WG_THREAD : WG_ROW],
    body: `${reductions}
${head}
  let o = row * params.len;
  ${expanded}
}`,
  });
  let wgs: [number, number];
  if (thread) wgs = grid(e, rows, WG_THREAD);
  else {
    const max = e.limits.maxComputeWorkgroupsPerDimension;
    wgs = rows <= max ? [rows, 1] : [max, Math.ceil(rows / max)];
  }
  e.dispatch(program, { ...inputs, ...outputs }, { rows, len }, wgs);
}

function rowsOf(t: Tensor): { rows: number; len: number } {
  const len = t.shape[t.rank - 1];
  return { rows: t.size / len, len };
}

// Pass 1: row max; pass 2: y = exp(x − m), s = Σ y; pass 3: y /= s.
const SOFTMAX_BODY = `
  var mx = -3.402823e38;
  FOR(j) { mx = max(mx, x[o + j]); }
  mx = MAX(mx);
  var s = 0.0;
  FOR(j) { let p = exp(x[o + j] - mx); y[o + j] = p; s += p; }
  let inv = 1.0 / SUM(vec4<f32>(s, 0.0, 0.0, 0.0)).x;`;

function softmaxForward(e: Engine, x: Tensor, tx: MaybeTensor): [Tensor, MaybeTensor] {
  const { rows, len } = rowsOf(x);
  const y = e.empty(x.shape, 'f32', 'softmax');
  if (!tx) {
    launchRows(e, 'softmax.fwd', { x }, { y }, `${SOFTMAX_BODY}\n  FOR(j) { y[o + j] = y[o + j] * inv; }`, rows, len);
    return [y, null];
  }
  // ẏ = y ⊙ (ẋ − ⟨ẋ, y⟩), with ⟨ẋ, y⟩ summed while y is finalised.
  const ty = e.empty(x.shape, 'f32', 'softmax.tangent');
  launchRows(
    e,
    'softmax.dual',
    { x, tx },
    { y, ty },
    `${SOFTMAX_BODY}
  var d = 0.0;
  FOR(j) { let p = y[o + j] * inv; y[o + j] = p; d += p * tx[o + j]; }
  d = SUM(vec4<f32>(d, 0.0, 0.0, 0.0)).x;
  FOR(j) { ty[o + j] = y[o + j] * (tx[o + j] - d); }`,
    rows,
    len,
  );
  return [y, ty];
}

export const softmax: Op<NoParams> = defineOp<NoParams>({
  name: 'softmax',
  forward: (e, [x]) => softmaxForward(e, req(x, 'softmax'), null)[0],
  vjp: (e, { output }, ct) => [softmaxBackward(e, [output, ct], {})],
  jvp: (e, { output }, [tx]) => (tx ? softmaxBackward(e, [output, tx], {}) : null),
  dual(e, [x0], [tx]) {
    const x = req(x0, 'softmax');
    if (tx) same('softmax', x, tx, 'tangent');
    return softmaxForward(e, x, tx);
  },
});

function checkBackward(inputs: readonly MaybeTensor[]): { y: Tensor; g: Tensor } {
  const y = req(inputs[0], 'softmaxBackward y');
  const g = req(inputs[1], 'softmaxBackward cotangent');
  same('softmaxBackward', y, g, 'cotangent');
  return { y, g };
}

function softmaxBackwardLaunch(e: Engine, y: Tensor, g: Tensor, ty: MaybeTensor, tg: MaybeTensor): [Tensor, MaybeTensor] {
  const { rows, len } = rowsOf(y);
  const out = e.empty(y.shape, 'f32', 'softmax.backward');
  if (!ty && !tg) {
    launchRows(
      e,
      'softmax.bwd',
      { y, g },
      { out },
      `var d = 0.0;
  FOR(j) { d += g[o + j] * y[o + j]; }
  d = SUM(vec4<f32>(d, 0.0, 0.0, 0.0)).x;
  FOR(j) { out[o + j] = y[o + j] * (g[o + j] - d); }`,
      rows,
      len,
    );
    return [out, null];
  }
  // One pass for ⟨g,y⟩, ⟨ġ,y⟩, ⟨g,ẏ⟩; one pass writing the primal and the tangent.
  const tout = e.empty(y.shape, 'f32', 'softmax.backward.tangent');
  const inputs: Record<string, Tensor> = { y, g };
  if (ty) inputs.ty = ty;
  if (tg) inputs.tg = tg;
  const yd = ty ? 'ty[o + j]' : '0.0';
  const gd = tg ? 'tg[o + j]' : '0.0';
  launchRows(
    e,
    `softmax.bwd.dual.${+!!ty}${+!!tg}`,
    inputs,
    { out, tout },
    `var acc = vec4<f32>(0.0);
  FOR(j) { let gj = g[o + j]; acc += vec4<f32>(gj * y[o + j], ${gd} * y[o + j], gj * ${yd}, 0.0); }
  acc = SUM(acc);
  FOR(j) {
    let gc = g[o + j] - acc.x;
    out[o + j] = y[o + j] * gc;
    tout[o + j] = ${yd} * gc + y[o + j] * (${gd} - acc.y - acc.z);
  }`,
    rows,
    len,
  );
  return [out, tout];
}

/** y ⊙ (g − ⟨g, y⟩) per row: softmax's VJP in terms of its output. Its JVP is a fused dual kernel. */
export const softmaxBackward: Op<NoParams> = defineOp<NoParams>({
  name: 'softmaxBackward',
  forward(e, inputs) {
    const { y, g } = checkBackward(inputs);
    return softmaxBackwardLaunch(e, y, g, null, null)[0];
  },
  vjp(e, { inputs }, w, needs) {
    const { y, g } = checkBackward(inputs);
    let gy: MaybeTensor = null;
    if (needs[0]) {
      // ∂/∂y ⟨w, y ⊙ (g − ⟨g,y⟩)⟩ = w ⊙ (g − ⟨g,y⟩) − g·⟨w,y⟩. Third order is never needed: a plain kernel.
      const { rows, len } = rowsOf(y);
      gy = e.empty(y.shape, 'f32', 'softmax.backward.vjp.y');
      launchRows(
        e,
        'softmax.bwd.vjpy',
        { y, g, w },
        { out: gy },
        `var acc = vec4<f32>(0.0);
  FOR(j) { acc += vec4<f32>(g[o + j] * y[o + j], w[o + j] * y[o + j], 0.0, 0.0); }
  acc = SUM(acc);
  FOR(j) { out[o + j] = w[o + j] * (g[o + j] - acc.x) - g[o + j] * acc.y; }`,
        rows,
        len,
      );
    }
    // The map g ↦ y ⊙ (g − ⟨g,y⟩) is symmetric.
    return [gy, needs[1] ? softmaxBackward(e, [y, w], {}) : null];
  },
  jvp: (e, { inputs }, [ty, tg]) => {
    const { y, g } = checkBackward(inputs);
    return softmaxBackwardLaunch(e, y, g, ty, tg)[1];
  },
  dual(e, inputs, [ty, tg]) {
    const { y, g } = checkBackward(inputs);
    if (ty) same('softmaxBackward', y, ty, 'y tangent');
    if (tg) same('softmaxBackward', y, tg, 'cotangent tangent');
    return softmaxBackwardLaunch(e, y, g, ty, tg);
  },
});
