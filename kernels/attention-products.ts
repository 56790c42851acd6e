/**
 * The bilinear products of score_sde's attention block, all on one strided batched-matmul kernel:
 *
 *   ninApply(x, W, b)          NIN, a 1×1 linear over channels: y[n,o,s] = Σ_c W[c,o]·x[n,c,s] + b[o]
 *                              (W stored [in, out] as in score_sde; `transposed` applies W[c,o] the other way)
 *   ninWeightGrad(x, g)        Σ_{n,s} x[n,c,s]·g[n,o,s] → [Cx, Cg] (NIN's weight gradient)
 *   attnScores(q, k)           z[n,i,j] = α·Σ_c q[n,c,i]·k[n,c,j]
 *   attnMix(w, v)              a[n,c,i] = α·Σ_j w[n,i,j]·v[n,c,j]   (`transposed`: w[n,j,i])
 *
 * This family is closed under differentiation (every VJP of one is another), so VJPs are written with these ops
 * and forward-over-reverse works through them. All run on the strided register-blocked kernel of
 * strided-product.ts; kernels/matmul.ts could take over the unbatched ones on GPUs.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { addMaybe } from './elementwise.js';
import { channelBroadcast, channelSum } from './group-norm.js';
import { stridedProduct, type StridedProduct } from './strided-product.js';

export { stridedProduct, type StridedProduct };

/** [N, C, ...spatial] → N, C, S. */
function ncs(t: Tensor, what: string): { n: number; c: number; s: number } {
  if (t.rank < 2) throw new ShapeError(`${what}: ${t.describe()} must be [N, C, ...spatial]`);
  const [n, c] = t.shape;
  return { n, c, s: t.size / Math.max(n * c, 1) };
}

// ---------------------------------------------------------------- NIN

export interface NinParams {
  /** false: y[o] = Σ_c W[c,o]·x[c] (score_sde's NIN, W = [in, out]); true: y[c] = Σ_o W[c,o]·x[o]. */
  transposed: boolean;
}

export const ninApply: Op<NinParams> = defineOp({
  name: 'ninApply',
  inputs: ['x', 'W', 'b?'],
  forward(e, [x, W, b0], { transposed }) {
    const { n, c, s } = ncs(x, 'ninApply x');
    const [rows, cols] = W.shape;
    const cin = transposed ? cols : rows;
    const cout = transposed ? rows : cols;
    if (W.rank !== 2 || cin !== c) {
      throw new ShapeError(`ninApply: W ${W.describe()} does not take the ${c} channels of ${x.describe()}`);
    }
    if (b0) b0.assertShape([cout], 'ninApply b');
    const out = e.empty([n, cout, ...x.shape.slice(2)], 'f32', 'nin');
    // A(i = out channel, k2 = in channel) = W; B(k2, j = position) = x[n].
    const a: StridedProduct['a'] = transposed ? [0, cols, 0, 1] : [0, 1, 0, cols];
    stridedProduct(e, 'nin', W, x, b0, out, {
      batch: n,
      I: cout,
      J: s,
      K1: 1,
      K2: c,
      a,
      b: [c * s, 1, 0, s],
      out: [cout * s, s, 1],
      alpha: 1,
    });
    return out;
  },
  vjp(e, { inputs: [x, W], params: { transposed } }, gy, needs) {
    return [
      needs[0] ? ninApply(e, [gy, W, null], { transposed: !transposed }) : null,
      needs[1] ? (transposed ? ninWeightGrad(e, [gy, x], {}) : ninWeightGrad(e, [x, gy], {})) : null,
      needs[2] ? channelSum(e, [gy], {}) : null,
    ];
  },
  jvp(e, { inputs: [x, W], params, output }, [tx, tW, tb]) {
    // Bilinear in (x, W), affine in b.
    const fromX = tx ? ninApply(e, [tx, W, tb], params) : tb ? channelBroadcast(e, [tb], { shape: output.shape }) : null;
    const fromW = tW ? ninApply(e, [x, tW, null], params) : null;
    return addMaybe(e, fromX, fromW);
  },
});

/** Σ_{n,s} x[n,c,s]·g[n,o,s] → [Cx, Cg]. */
export const ninWeightGrad: Op<Record<string, never>> = defineOp({
  name: 'ninWeightGrad',
  inputs: ['x', 'g'],
  forward(e, [x, g]) {
    const dx = ncs(x, 'ninWeightGrad x');
    const dg = ncs(g, 'ninWeightGrad g');
    if (dx.n !== dg.n || dx.s !== dg.s) {
      throw new ShapeError(`ninWeightGrad: ${x.describe()} and ${g.describe()} differ in batch or spatial size`);
    }
    const out = e.empty([dx.c, dg.c], 'f32', 'nin.dW');
    stridedProduct(e, 'nin.dW', x, g, null, out, {
      batch: 1,
      I: dx.c,
      J: dg.c,
      K1: dx.n,
      K2: dx.s,
      a: [0, dx.s, dx.c * dx.s, 1],
      b: [0, dg.s, dg.c * dg.s, 1],
      out: [0, dg.c, 1],
      alpha: 1,
    });
    return out;
  },
  vjp: (e, { inputs: [x, g] }, w, needs) => [
    needs[0] ? ninApply(e, [g, w, null], { transposed: true }) : null,
    needs[1] ? ninApply(e, [x, w, null], { transposed: false }) : null,
  ],
  jvp: (e, { inputs: [x, g] }, [tx, tg]) =>
    addMaybe(e, tx ? ninWeightGrad(e, [tx, g], {}) : null, tg ? ninWeightGrad(e, [x, tg], {}) : null),
});

// ---------------------------------------------------------------- scores and mix

export interface ScaleParams {
  alpha: number;
}

function checkPair(op: string, q: Tensor, k: Tensor): { n: number; c: number; s: number } {
  const d = ncs(q, `${op} first operand`);
  k.assertShape(q.shape, `${op} second operand`);
  return d;
}

/** z[n,i,j] = α·Σ_c q[n,c,i]·k[n,c,j] → [N, S, S]. */
export const attnScores: Op<ScaleParams> = defineOp({
  name: 'attnScores',
  inputs: ['q', 'k'],
  forward(e, [q, k], { alpha }) {
    const { n, c, s } = checkPair('attnScores', q, k);
    const out = e.empty([n, s, s], 'f32', 'attn.scores');
    stridedProduct(e, 'scores', q, k, null, out, {
      batch: n,
      I: s,
      J: s,
      K1: 1,
      K2: c,
      a: [c * s, 1, 0, s],
      b: [c * s, 1, 0, s],
      out: [s * s, s, 1],
      alpha,
    });
    return out;
  },
  vjp: (e, { inputs: [q, k], params }, gz, needs) => [
    needs[0] ? attnMix(e, [gz, k], { ...params, transposed: false }) : null,
    needs[1] ? attnMix(e, [gz, q], { ...params, transposed: true }) : null,
  ],
  jvp: (e, { inputs: [q, k], params }, [tq, tk]) =>
    addMaybe(e, tq ? attnScores(e, [tq, k], params) : null, tk ? attnScores(e, [q, tk], params) : null),
});

export interface MixParams extends ScaleParams {
  /** Use w[n,j,i] instead of w[n,i,j]. */
  transposed: boolean;
}

/** a[n,c,i] = α·Σ_j w[n,i,j]·v[n,c,j] (transposed: w[n,j,i]) → v's shape. */
export const attnMix: Op<MixParams> = defineOp({
  name: 'attnMix',
  inputs: ['w', 'v'],
  forward(e, [w, v], { alpha, transposed }) {
    const { n, c, s } = ncs(v, 'attnMix v');
    w.assertShape([n, s, s], 'attnMix w');
    const out = e.empty(v.shape, 'f32', 'attn.mix');
    // out(i = channel, j = query) = Σ_key v(channel, key)·w(query, key).
    stridedProduct(e, transposed ? 'mixT' : 'mix', v, w, null, out, {
      batch: n,
      I: c,
      J: s,
      K1: 1,
      K2: s,
      a: [c * s, s, 0, 1],
      b: transposed ? [s * s, 1, 0, s] : [s * s, s, 0, 1],
      out: [c * s, s, 1],
      alpha,
    });
    return out;
  },
  vjp(e, { inputs: [w, v], params }, ga, needs) {
    const scale = { alpha: params.alpha };
    let gw: MaybeTensor = null;
    // ∂/∂w[i,j] = α·Σ_c ga[c,i]·v[c,j] (untransposed), or at [j,i] when transposed.
    if (needs[0]) gw = params.transposed ? attnScores(e, [v, ga], scale) : attnScores(e, [ga, v], scale);
    const gv = needs[1] ? attnMix(e, [w, ga], { ...scale, transposed: !params.transposed }) : null;
    return [gw, gv];
  },
  jvp: (e, { inputs: [w, v], params }, [tw, tv]) =>
    addMaybe(e, tw ? attnMix(e, [tw, v], params) : null, tv ? attnMix(e, [w, tv], params) : null),
});
