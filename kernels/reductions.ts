/**
 * Reductions for the solvers and likelihood code, each an op with forward / VJP / JVP:
 *
 *   perSampleDot(a, b)  ⟨a_n, b_n⟩ over all non-batch axes → [N]    mulPerSample(x, s)  x[n, …]·s[n] (its transpose)
 *   perSampleSum(x)     Σ over all non-batch axes → [N]               rowBroadcast(g)     g[n] over [n, …] (transpose)
 *   perSampleSumSq(x)   ‖x_n‖² → [N]                                  sumAll(x)           Σ over everything → []
 *   (logSumExp along an axis lives in reductions-axis.ts, built on `rowReduce` from here)
 *   rmsNormRatio(e, s)  √(mean((e/s)²)) over the whole tensor (or per sample): the ODE solver's error norm
 *
 * perSampleDot and mulPerSample are the engine's only per-sample inner product and per-sample scaling (the training
 * loss and the score's division by std(t) use them); mulPerSample has a fused dual (primal and tangent in one
 * dispatch) and runs on channels.ts's 2-D row launch (vec4 loads, no integer division).
 *
 * Long rows use two (or more) levels: a workgroup reduces a chunk of 4096 values (16 vec4 per lane, then a tree),
 * and the per-chunk partials are reduced again by the same kernel until one value per row remains. Each value
 * passes through ≤ 16 sequential adds per level plus a 6-level tree, so the f32 error stays ≲ 25·levels·ε of
 * Σ|terms| (≈ 4e-6 worst case at 16.7M values, 3 levels; typically ~1e-7).
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { DeviceLimitError, ShapeError } from '../engine/errors.js';
import { grid } from '../engine/rng.js';
import { addMaybe, scale } from './elementwise.js';
import { launchRows } from './channels.js';

type NoParams = Record<string, never>;

const WG = 64;
/** Vector loads per lane per chunk. */
const PER_LANE = 16;
const CHUNK = WG * PER_LANE;

export interface RowReduceSpec {
  name: string;
  /** Tensors of rows·len elements, read as `name[k]` (k in vector units when vectorised). */
  inputs: Record<string, Tensor>;
  /** Per-row tensors [rows], read as `name[row]`. */
  rowInputs?: Record<string, Tensor>;
  /** WGSL expression of type V (f32 or vec4<f32>) for element k of row `row`. */
  term: string;
  combine: 'sum' | 'max';
  /** WGSL f32 expression of `total` (and `row`, rowInputs, `params.count` = len) giving the row's result. */
  finish?: string;
}

/**
 * out[row] = finish(⊕_k term(k)) for `rows` rows of `len` elements each, in as many levels as needed.
 * Rows are vectorised (vec4 loads) when len is a multiple of 4.
 */
export function rowReduce(e: Engine, spec: RowReduceSpec, rows: number, len: number, outShape: readonly number[]): Tensor {
  const vw = len % 4 === 0 ? 4 : 1;
  let chunks = Math.max(1, Math.ceil(len / vw / CHUNK));
  const out = e.empty(outShape, 'f32', spec.name);
  if (rows === 0) return out;
  const max = e.limits.maxComputeWorkgroupsPerDimension;
  if (rows > max || chunks > max) {
    throw new DeviceLimitError(`${spec.name}: ${rows} rows of ${len} values exceed this adapter's dispatch limits`);
  }
  let partial = chunks > 1 ? e.empty([rows, chunks], 'f32', `${spec.name}.partials`) : out;
  launchLevel(e, spec, spec.inputs, spec.term, vw, rows, len / vw, chunks, partial, len);
  // Further levels reduce the partials of each row (scalar loads, same combine, same finish at the end).
  while (chunks > 1) {
    const n = chunks;
    chunks = Math.ceil(n / CHUNK);
    const next = chunks > 1 ? e.empty([rows, chunks], 'f32', `${spec.name}.partials`) : out;
    launchLevel(e, spec, { p: partial }, 'p[k]', 1, rows, n, chunks, next, len);
    partial.dispose();
    partial = next;
  }
  return out;
}

function launchLevel(
  e: Engine,
  spec: RowReduceSpec,
  inputs: Record<string, Tensor>,
  term: string,
  vw: 1 | 4,
  rows: number,
  lenV: number,
  chunks: number,
  out: Tensor,
  count: number,
): void {
  const final = chunks === 1;
  const sum = spec.combine === 'sum';
  const V = vw === 4 ? 'vec4<f32>' : 'f32';
  const op = (a: string, b: string) => (sum ? `${a} + ${b}` : `max(${a}, ${b})`);
  const ident = sum ? '0.0' : '-3.402823e38';
  const horizontal = vw === 4 ? (sum ? 'dot(acc, vec4<f32>(1.0))' : 'max(max(acc.x, acc.y), max(acc.z, acc.w))') : 'acc';
  const rowInputs = spec.rowInputs ?? {};
  const program = e.program({
    name: `${spec.name}.${final ? 'final' : 'partial'}${vw === 4 ? '.v4' : ''}`,
    buffers: [
      ...Object.keys(inputs).map((n) => ({ name: n, type: V as 'f32' | 'vec4<f32>' })),
      ...Object.keys(rowInputs).map((n) => ({ name: n, type: 'f32' as const })),
      { name: 'out', type: 'f32', access: 'read_write' },
    ],
    uniforms: [
      ['len', 'u32'],
      ['chunks', 'u32'],
      ['count', 'f32'],
    ],
    workgroupSize: [WG],
    body: `
var<workgroup> red: array<f32, ${WG}>;
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let chunk = wid.x;
  let row = wid.y;
  let start = chunk * ${CHUNK}u;
  let end = min(start + ${CHUNK}u, params.len);
  let o = row * params.len;
  var acc = ${V}(${ident});
  for (var kk = start + lid; kk < end; kk += ${WG}u) {
    let k = o + kk;
    acc = ${op('acc', `(${term})`)};
  }
  red[lid] = ${horizontal};
  workgroupBarrier();
  for (var h = ${WG / 2}u; h > 0u; h = h >> 1u) {
    if (lid < h) { red[lid] = ${op('red[lid]', 'red[lid + h]')}; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let total = red[0];
    ${final ? `out[row] = ${spec.finish ?? 'total'};` : 'out[row * params.chunks + chunk] = total;'}
  }
}`,
  });
  // Row inputs are declared on every level (only the final one reads them), so they are always bound.
  e.dispatch(program, { ...inputs, ...rowInputs, out }, { len: lenV, chunks, count }, [chunks, rows]);
}

// ---------------------------------------------------------------- helpers

function req(t: MaybeTensor, what: string): Tensor {
  if (!t) throw new ShapeError(`${what}: missing input`);
  t.assertDType('f32', what);
  return t;
}

function batchOf(t: Tensor, what: string): { n: number; len: number } {
  if (t.rank < 1) throw new ShapeError(`${what}: ${t.describe()} needs a batch axis`);
  const n = t.shape[0];
  return { n, len: n === 0 ? 0 : t.size / n };
}

/** Elementwise kernel over a tensor of `shape` with per-row values (row = index / len; params.count = len). */
function rowElementwise(e: Engine, name: string, inputs: Record<string, Tensor>, expr: string, shape: readonly number[], len: number): Tensor {
  const out = e.empty(shape, 'f32', name);
  const program = e.program({
    name,
    buffers: [
      ...Object.keys(inputs).map((n) => ({ name: n, type: 'f32' as const })),
      { name: 'out', type: 'f32', access: 'read_write' },
    ],
    uniforms: [
      ['n', 'u32'],
      ['len', 'u32'],
      ['count', 'f32'],
    ],
    workgroupSize: [256],
    body: `
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let k = gid.x + gid.y * nwg.x * 256u;
  if (k >= params.n) { return; }
  let row = k / params.len;
  out[k] = ${expr};
}`,
  });
  e.dispatch(program, { ...inputs, out }, { n: out.size, len: Math.max(len, 1), count: len }, grid(e, out.size, 256));
  return out;
}

// ---------------------------------------------------------------- per-sample dot, sum, sum of squares

export const perSampleDot: Op<NoParams> = defineOp<NoParams>({
  name: 'perSampleDot',
  forward(e, [a0, b0]) {
    const a = req(a0, 'perSampleDot a');
    const b = req(b0, 'perSampleDot b');
    b.assertShape(a.shape, 'perSampleDot b');
    const { n, len } = batchOf(a, 'perSampleDot');
    return rowReduce(e, { name: 'reduce.dot', inputs: { a, b }, term: 'a[k] * b[k]', combine: 'sum' }, n, len, [n]);
  },
  vjp: (e, { inputs: [a, b] }, g, needs) => [
    needs[0] ? mulPerSample(e, [b, g], {}) : null,
    needs[1] ? mulPerSample(e, [a, g], {}) : null,
  ],
  jvp: (e, { inputs: [a, b] }, [ta, tb]) =>
    addMaybe(e, ta ? perSampleDot(e, [ta, b], {}) : null, tb ? perSampleDot(e, [a, tb], {}) : null),
});

function perSampleLen(x: Tensor, s: Tensor, what: string): number {
  if (x.rank < 1 || s.rank !== 1 || s.shape[0] !== x.shape[0]) {
    throw new ShapeError(`${what}: ${x.describe()} and ${s.describe()} must be [N, …] and [N]`);
  }
  return batchOf(x, what).len;
}

/**
 * x [N, …] · s [N]: each sample scaled by its own scalar (dividing the score by std(t), per-sample solver updates);
 * the transpose of perSampleDot in its first argument.
 */
export const mulPerSample: Op<NoParams> = defineOp<NoParams>({
  name: 'mulPerSample',
  forward(e, [x0, s0]) {
    const x = req(x0, 'mulPerSample x');
    const s = req(s0, 'mulPerSample s');
    const len = perSampleLen(x, s, 'mulPerSample');
    const out = e.empty(x.shape, 'f32', 'mulPerSample');
    launchRows(e, {
      name: 'reduce.mulPerSample',
      ins: { x },
      perRow: { s },
      outs: { out },
      rows: s.size,
      len,
      exprs: 'let k = row * params.len + j; out[k] = x[k] * T(s[row]);',
    });
    return out;
  },
  vjp: (e, { inputs: [x, s] }, ct, needs) => [
    needs[0] ? mulPerSample(e, [ct, s], {}) : null,
    needs[1] ? perSampleDot(e, [ct, x], {}) : null,
  ],
  jvp: (e, { inputs: [x, s] }, [tx, ts]) =>
    addMaybe(e, tx ? mulPerSample(e, [tx, s], {}) : null, ts ? mulPerSample(e, [x, ts], {}) : null),
  dual(e, [x0, s0], [tx, ts]) {
    // Primal x·s and tangent ẋ·s + x·ṡ in one dispatch (x and s loaded once).
    const x = req(x0, 'mulPerSample x');
    const s = req(s0, 'mulPerSample s');
    const len = perSampleLen(x, s, 'mulPerSample');
    const out = e.empty(x.shape, 'f32', 'mulPerSample');
    const tout = e.empty(x.shape, 'f32', 'mulPerSample.tangent');
    const ins: Record<string, Tensor> = { x };
    const perRow: Record<string, Tensor> = { s };
    const terms: string[] = [];
    if (tx) {
      ins.tx = tx;
      terms.push('tx[k] * sv');
    }
    if (ts) {
      perRow.ts = ts;
      terms.push('x[k] * T(ts[row])');
    }
    launchRows(e, {
      name: `reduce.mulPerSample.dual${tx ? '.x' : ''}${ts ? '.s' : ''}`,
      ins,
      perRow,
      outs: { out, tout },
      rows: s.size,
      len,
      exprs: `let k = row * params.len + j; let sv = T(s[row]); out[k] = x[k] * sv; tout[k] = ${terms.join(' + ') || 'T(0.0)'};`,
    });
    return [out, tout];
  },
});

export const perSampleSum: Op<NoParams> = defineOp<NoParams>({
  name: 'perSampleSum',
  forward(e, [x0]) {
    const x = req(x0, 'perSampleSum');
    const { n, len } = batchOf(x, 'perSampleSum');
    return rowReduce(e, { name: 'reduce.sum', inputs: { x }, term: 'x[k]', combine: 'sum' }, n, len, [n]);
  },
  vjp: (e, { inputs: [x] }, g) => [rowBroadcast(e, [g], { shape: x!.shape })],
  jvp: (e, _ctx, [tx]) => (tx ? perSampleSum(e, [tx], {}) : null),
});

/** g[n] (or a scalar g) repeated over `shape` = [N, …]: the transpose of perSampleSum (or sumAll). */
export const rowBroadcast: Op<{ shape: readonly number[] }> = defineOp<{ shape: readonly number[] }>({
  name: 'rowBroadcast',
  forward(e, [g0], { shape }) {
    const g = req(g0, 'rowBroadcast');
    const size = shape.reduce((a, b) => a * b, 1);
    if (g.size === 0 || size % g.size !== 0 || (g.rank > 0 && (g.rank !== 1 || g.shape[0] !== shape[0]))) {
      throw new ShapeError(`rowBroadcast: ${g.describe()} does not give the rows of [${shape.join('×')}]`);
    }
    return rowElementwise(e, 'reduce.broadcast', { g }, 'g[row]', shape, size / g.size);
  },
  vjp: (e, { inputs: [g] }, ct) => [g!.rank === 0 ? sumAll(e, [ct], {}) : perSampleSum(e, [ct], {})],
  jvp: (e, { params }, [tg]) => (tg ? rowBroadcast(e, [tg], params) : null),
});

export const perSampleSumSq: Op<NoParams> = defineOp<NoParams>({
  name: 'perSampleSumSq',
  forward(e, [x0]) {
    const x = req(x0, 'perSampleSumSq');
    const { n, len } = batchOf(x, 'perSampleSumSq');
    return rowReduce(e, { name: 'reduce.sumsq', inputs: { x }, term: 'x[k] * x[k]', combine: 'sum' }, n, len, [n]);
  },
  vjp: (e, { inputs: [x] }, g) => [mulPerSample(e, [x, scale(e, [g], { alpha: 2 })], {})],
  jvp: (e, { inputs: [x] }, [tx]) => (tx ? scale(e, [perSampleDot(e, [x, tx], {})], { alpha: 2 }) : null),
});

/** Σ of every element → a scalar tensor (shape []). */
export const sumAll: Op<NoParams> = defineOp<NoParams>({
  name: 'sumAll',
  forward(e, [x0]) {
    const x = req(x0, 'sumAll');
    return rowReduce(e, { name: 'reduce.sumall', inputs: { x }, term: 'x[k]', combine: 'sum' }, 1, x.size, []);
  },
  vjp: (e, { inputs: [x] }, g) => [rowBroadcast(e, [g], { shape: x!.shape })],
  jvp: (e, _ctx, [tx]) => (tx ? sumAll(e, [tx], {}) : null),
});

// ---------------------------------------------------------------- RMS norm of a ratio (the ODE error norm)

export interface RmsNormParams {
  /** One norm per sample ([N], over each sample's elements) instead of one over the whole tensor ([]). */
  perSample?: boolean;
}

function rmsLayout(err: Tensor, sc: Tensor, p: RmsNormParams): { rows: number; len: number; shape: number[] } {
  sc.assertShape(err.shape, 'rmsNormRatio scale');
  if (p.perSample) {
    const { n, len } = batchOf(err, 'rmsNormRatio');
    return { rows: n, len, shape: [n] };
  }
  return { rows: 1, len: err.size, shape: [] };
}

/**
 * r = √(mean((err/scale)²)) — Hairer's error norm with scale = atol + rtol·max(|y₀|, |y₁|). Differentiable once
 * (its VJP and JVP are plain kernels; nothing differentiates an error norm twice). r = 0 gets a zero gradient.
 */
export const rmsNormRatio: Op<RmsNormParams> = defineOp<RmsNormParams>({
  name: 'rmsNormRatio',
  forward(e, [e0, s0], p) {
    const err = req(e0, 'rmsNormRatio err');
    const sc = req(s0, 'rmsNormRatio scale');
    const { rows, len, shape } = rmsLayout(err, sc, p);
    return rowReduce(
      e,
      {
        name: 'reduce.rms',
        inputs: { err, sc },
        term: '(err[k] / sc[k]) * (err[k] / sc[k])',
        combine: 'sum',
        finish: 'sqrt(total / params.count)',
      },
      rows,
      len,
      shape,
    );
  },
  vjp(e, { inputs: [e0, s0], output, params }, g, needs) {
    const err = e0!;
    const sc = s0!;
    const { len } = rmsLayout(err, sc, params);
    // ∂r/∂eᵢ = qᵢ/(sᵢ·M·r), ∂r/∂sᵢ = −qᵢ²/(sᵢ·M·r), q = e/s.
    const common = 'select(0.0, g[row] / (sc[k] * params.count * r[row]), r[row] > 0.0)';
    const ins = { err, sc, g, r: output };
    return [
      needs[0] ? rowElementwise(e, 'reduce.rms.vjp.err', ins, `(err[k] / sc[k]) * ${common}`, err.shape, len) : null,
      needs[1] ? rowElementwise(e, 'reduce.rms.vjp.scale', ins, `-(err[k] / sc[k]) * (err[k] / sc[k]) * ${common}`, sc.shape, len) : null,
    ];
  },
  jvp(e, { inputs: [e0, s0], output, params }, [te, ts]) {
    const err = e0!;
    const sc = s0!;
    const { rows, len, shape } = rmsLayout(err, sc, params);
    // ṙ = Σ qᵢ·(ėᵢ − qᵢ·ṡᵢ)/sᵢ / (M·r).
    const inputs: Record<string, Tensor> = { err, sc };
    if (te) inputs.te = te;
    if (ts) inputs.ts = ts;
    const de = te ? 'te[k]' : '0.0';
    const ds = ts ? 'ts[k]' : '0.0';
    return rowReduce(
      e,
      {
        name: `reduce.rms.jvp.${+!!te}${+!!ts}`,
        inputs,
        rowInputs: { r: output },
        term: `(err[k] / sc[k]) * (${de} - (err[k] / sc[k]) * ${ds}) / sc[k]`,
        combine: 'sum',
        finish: 'select(0.0, total / (params.count * r[row]), r[row] > 0.0)',
      },
      rows,
      len,
      shape,
    );
  },
});
