/**
 * Per-sample reductions for the solvers and likelihood code, each an op with forward / VJP / JVP:
 *
 *   perSampleDot(a, b)  ⟨a_n, b_n⟩ over all non-batch axes → [N]    mulPerSample(x, s)  x[n, …]·s[n] (its transpose)
 *   perSampleSum(x)     Σ over all non-batch axes → [N]               rowBroadcast(g)     g[n] over [n, …] (transpose)
 *   perSampleSumSq(x)   ‖x_n‖² → [N]                                  sumAll(x)           Σ over everything → []
 *   (logSumExp along an axis lives in reductions-axis.ts)
 *   rmsNormRatio(e, s)  √(mean((e/s)²)) over the whole tensor (or per sample): the ODE solver's error norm
 *
 * perSampleDot and mulPerSample are the engine's only per-sample inner product and per-sample scaling (the training
 * loss and the score's division by std(t) use them); mulPerSample has a fused dual (primal and tangent in one
 * dispatch). The reductions run on the family's chunked rowReduce (reduce.ts: its error bound is there), the
 * per-sample products and broadcasts on the one broadcast (broadcast.ts, vec4, no integer division).
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type Op } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { addMaybe, scale } from './elementwise.js';
import { broadcast } from './broadcast.js';
import { rowReduce } from './reduce.js';

/** The family's row reduction, re-exported for the solvers (solvers/divergence.ts). */
export { rowReduce, type RowReduceSpec } from './reduce.js';

type NoParams = Record<string, never>;

function batchOf(t: Tensor, what: string): { n: number; len: number } {
  if (t.rank < 1) throw new ShapeError(`${what}: ${t.describe()} needs a batch axis`);
  const n = t.shape[0];
  return { n, len: n === 0 ? 0 : t.size / n };
}

// ---------------------------------------------------------------- per-sample dot, sum, sum of squares

/** Σ of a term over each sample's elements (samples along x's first axis) → [N]. */
function perSampleReduce(e: Engine, what: string, x: Tensor, r: { name: string; inputs: Record<string, Tensor>; term: string }): Tensor {
  const { n, len } = batchOf(x, what);
  return rowReduce(e, { ...r, combine: 'sum' }, n, len, [n]);
}

export const perSampleDot: Op<NoParams> = defineOp({
  name: 'perSampleDot',
  inputs: ['a', 'b'],
  forward(e, [a, b]) {
    b.assertShape(a.shape, 'perSampleDot b');
    return perSampleReduce(e, 'perSampleDot', a, { name: 'reduce.dot', inputs: { a, b }, term: 'a[k] * b[k]' });
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

/** mulPerSample's fused dual for each pair of present tangents (ẋ, ṡ): kernel name, inputs and statements. */
const MUL_DUAL_HEAD = 'let k = row * params.len + j; let sv = T(s[row]); out[k] = x[k] * sv;';
const MUL_DUAL = {
  x: { name: 'reduce.mulPerSample.dual.x', exprs: `${MUL_DUAL_HEAD} tout[k] = tx[k] * sv;` },
  s: { name: 'reduce.mulPerSample.dual.s', exprs: `${MUL_DUAL_HEAD} tout[k] = x[k] * T(ts[row]);` },
  xs: { name: 'reduce.mulPerSample.dual.x.s', exprs: `${MUL_DUAL_HEAD} tout[k] = tx[k] * sv + x[k] * T(ts[row]);` },
  none: { name: 'reduce.mulPerSample.dual', exprs: `${MUL_DUAL_HEAD} tout[k] = T(0.0);` },
} as const;

/**
 * x [N, …] · s [N]: each sample scaled by its own scalar (dividing the score by std(t), per-sample solver updates);
 * the transpose of perSampleDot in its first argument.
 */
export const mulPerSample: Op<NoParams> = defineOp({
  name: 'mulPerSample',
  inputs: ['x', 's'],
  forward(e, [x, s]) {
    const len = perSampleLen(x, s, 'mulPerSample');
    const out = e.empty(x.shape, 'f32', 'mulPerSample');
    broadcast(e, {
      name: 'reduce.mulPerSample',
      ins: { x },
      rowOps: { s },
      outs: { out },
      mid: s.size,
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
  dual(e, [x, s], [tx, ts]) {
    // Primal x·s and tangent ẋ·s + x·ṡ in one dispatch (x and s loaded once).
    const len = perSampleLen(x, s, 'mulPerSample');
    const out = e.empty(x.shape, 'f32', 'mulPerSample');
    const tout = e.empty(x.shape, 'f32', 'mulPerSample.tangent');
    const kernel = tx ? (ts ? MUL_DUAL.xs : MUL_DUAL.x) : ts ? MUL_DUAL.s : MUL_DUAL.none;
    broadcast(e, {
      name: kernel.name,
      ins: tx ? { x, tx } : { x },
      rowOps: ts ? { s, ts } : { s },
      outs: { out, tout },
      mid: s.size,
      len,
      exprs: kernel.exprs,
    });
    return [out, tout];
  },
});

export const perSampleSum: Op<NoParams> = defineOp({
  name: 'perSampleSum',
  inputs: ['x'],
  forward: (e, [x]) => perSampleReduce(e, 'perSampleSum', x, { name: 'reduce.sum', inputs: { x }, term: 'x[k]' }),
  vjp: (e, { inputs: [x] }, g) => [rowBroadcast(e, [g], { shape: x.shape })],
  jvp: (e, _ctx, [tx]) => (tx ? perSampleSum(e, [tx], {}) : null),
});

/** g[n] (or a scalar g) repeated over `shape` = [N, …]: the transpose of perSampleSum (or sumAll). */
export const rowBroadcast: Op<{ shape: readonly number[] }> = defineOp({
  name: 'rowBroadcast',
  inputs: ['g'],
  forward(e, [g], { shape }) {
    const size = shape.reduce((a, b) => a * b, 1);
    if (g.size === 0 || size % g.size !== 0 || (g.rank > 0 && (g.rank !== 1 || g.shape[0] !== shape[0]))) {
      throw new ShapeError(`rowBroadcast: ${g.describe()} does not give the rows of [${shape.join('×')}]`);
    }
    const out = e.empty(shape, 'f32', 'reduce.broadcast');
    broadcast(e, {
      name: 'reduce.broadcast',
      ins: {},
      rowOps: { g },
      outs: { out },
      mid: g.size,
      len: size / g.size,
      exprs: 'out[row * params.len + j] = T(g[row]);',
    });
    return out;
  },
  vjp: (e, { inputs: [g] }, ct) => [g.rank === 0 ? sumAll(e, [ct], {}) : perSampleSum(e, [ct], {})],
  jvp: (e, { params }, [tg]) => (tg ? rowBroadcast(e, [tg], params) : null),
});

export const perSampleSumSq: Op<NoParams> = defineOp({
  name: 'perSampleSumSq',
  inputs: ['x'],
  forward: (e, [x]) => perSampleReduce(e, 'perSampleSumSq', x, { name: 'reduce.sumsq', inputs: { x }, term: 'x[k] * x[k]' }),
  vjp: (e, { inputs: [x] }, g) => [mulPerSample(e, [x, scale(e, [g], { alpha: 2 })], {})],
  jvp: (e, { inputs: [x] }, [tx]) => (tx ? scale(e, [perSampleDot(e, [x, tx], {})], { alpha: 2 }) : null),
});

/** Σ of every element → a scalar tensor (shape []). */
export const sumAll: Op<NoParams> = defineOp({
  name: 'sumAll',
  inputs: ['x'],
  forward(e, [x]) {
    return rowReduce(e, { name: 'reduce.sumall', inputs: { x }, term: 'x[k]', combine: 'sum' }, 1, x.size, []);
  },
  vjp: (e, { inputs: [x] }, g) => [rowBroadcast(e, [g], { shape: x.shape })],
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

// ∂r/∂eᵢ = qᵢ/(sᵢ·M·r), ∂r/∂sᵢ = −qᵢ²/(sᵢ·M·r), q = e/s (params.alpha = M; r = 0 gets a zero gradient).
const RMS_COMMON = 'select(T(0.0), T(g[row]) / (sc[k] * params.alpha * T(r[row])), r[row] > 0.0)';
const RMS_VJP_ERR = `let k = row * params.len + j; out[k] = (err[k] / sc[k]) * ${RMS_COMMON};`;
const RMS_VJP_SCALE = `let k = row * params.len + j; out[k] = -(err[k] / sc[k]) * (err[k] / sc[k]) * ${RMS_COMMON};`;
// ṙ = Σ qᵢ·(ėᵢ − qᵢ·ṡᵢ)/sᵢ / (M·r), for each pair of present tangents.
const rmsJvpTerm = (de: string, ds: string) => `(err[k] / sc[k]) * (${de} - (err[k] / sc[k]) * ${ds}) / sc[k]`;
const RMS_JVP = {
  e: { name: 'reduce.rms.jvp.10', term: rmsJvpTerm('te[k]', '0.0') },
  s: { name: 'reduce.rms.jvp.01', term: rmsJvpTerm('0.0', 'ts[k]') },
  es: { name: 'reduce.rms.jvp.11', term: rmsJvpTerm('te[k]', 'ts[k]') },
} as const;

/**
 * r = √(mean((err/scale)²)) — Hairer's error norm with scale = atol + rtol·max(|y₀|, |y₁|). Differentiable once
 * (its VJP and JVP are plain kernels; nothing differentiates an error norm twice). r = 0 gets a zero gradient.
 */
export const rmsNormRatio: Op<RmsNormParams> = defineOp({
  name: 'rmsNormRatio',
  inputs: ['err', 'scale'],
  forward(e, [err, sc], p) {
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
  vjp(e, { inputs: [err, sc], output, params }, g, needs) {
    const { rows, len } = rmsLayout(err, sc, params);
    const grad = (name: string, exprs: string) => {
      const out = e.empty(err.shape, 'f32', name);
      broadcast(e, { name, ins: { err, sc }, rowOps: { g, r: output }, outs: { out }, mid: rows, len, alpha: len, exprs });
      return out;
    };
    return [needs[0] ? grad('reduce.rms.vjp.err', RMS_VJP_ERR) : null, needs[1] ? grad('reduce.rms.vjp.scale', RMS_VJP_SCALE) : null];
  },
  jvp(e, { inputs: [err, sc], output, params }, [te, ts]) {
    const { rows, len, shape } = rmsLayout(err, sc, params);
    if (!te && !ts) return null;
    const kernel = te ? (ts ? RMS_JVP.es : RMS_JVP.e) : RMS_JVP.s;
    const inputs: Record<string, Tensor> = { err, sc };
    if (te) inputs.te = te;
    if (ts) inputs.ts = ts;
    return rowReduce(
      e,
      {
        name: kernel.name,
        inputs,
        rowInputs: { r: output },
        term: kernel.term,
        combine: 'sum',
        finish: 'select(0.0, total / (params.count * r[row]), r[row] > 0.0)',
      },
      rows,
      len,
      shape,
    );
  },
});
