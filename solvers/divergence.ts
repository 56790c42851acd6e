/**
 * Divergence of a score function s(x) per sample (SPEC §3), the part of ∇·f̃ that needs estimating (the linear
 * drift's divergence −½β(t)·D is exact and added by the caller):
 *  - Hutchinson: tr(∂s/∂x) ≈ εᵀ(∂s/∂x)ε from ONE VJP of ⟨ε, s⟩ per evaluation (reverse pass: (εᵀJ)·ε), or from
 *    one JVP along ε (forward pass: εᵀ·(Jε)) — the same number up to float32 rounding. ε (Rademacher or Gaussian,
 *    one per row) is drawn once per solve by the caller and held fixed — resampling inside the RHS breaks step
 *    control. The forward pass needs no tape and runs fused primal+tangent kernels (the convolutions load their
 *    weights once for both): on lavapipe it is the cheaper one (bench/network.ts, "JVP total").
 *  - exact: the D basis VJPs batched along the batch axis (x tiled D times, cotangent row k·B + b = e_k); for small
 *    D only (D·B rows through the score).
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { jvp, vjp } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { basisTrace, tileRows } from './flow-kernels.js';
import { rowReduce } from '../kernels/reductions.js';

/** The score of a batch x [B, …] → [B, …] (times and labels already bound). */
export type ScoreFn = (x: Tensor) => Tensor;

export interface ScoreAndTrace {
  /** s(x), shaped like x. */
  score: Tensor;
  /** [B]: the (estimated) trace of ∂s/∂x per row. */
  trace: Tensor;
}

function rows(x: Tensor): { batch: number; d: number } {
  const batch = x.shape[0];
  if (x.rank < 2 || batch < 1) throw new ShapeError(`divergence: ${x.describe()} must be [B, …]`);
  return { batch, d: x.size / batch };
}

/** Which automatic-differentiation pass gives the Hutchinson product: 'reverse' (εᵀJ, a VJP) or 'forward' (Jε, a JVP). */
export type HutchinsonPass = 'forward' | 'reverse';
export const HUTCHINSON_PASSES: readonly HutchinsonPass[] = ['forward', 'reverse'];

/** Hutchinson: s(x) and εᵀ(∂s/∂x)ε per row, probes ε [B, D] (any shape of B·D values). */
export function hutchinsonTrace(e: Engine, score: ScoreFn, x: Tensor, probes: Tensor, pass: HutchinsonPass): ScoreAndTrace {
  const { batch, d } = rows(x);
  if (probes.size !== x.size) throw new ShapeError(`hutchinsonTrace: probes ${probes.describe()} do not match ${x.describe()}`);
  const eps = probes.reshape(x.shape);
  let output: Tensor;
  let product: Tensor | null;
  if (pass === 'forward') {
    const r = jvp(e, score, [x], [eps]);
    output = r.output;
    product = r.tangent;
  } else {
    const r = vjp(e, score, [x]);
    output = r.output;
    product = r.backward(eps)[0];
  }
  // ⟨Jε or εᵀJ, ε⟩ per row with the engine's row reduction as a plain kernel (not the perSampleDot op): the trace
  // is data for the solver, never recorded on a tape.
  const trace = product
    ? rowReduce(e, { name: 'pf.hutchinson-dot', inputs: { g: product, p: eps }, term: 'g[k] * p[k]', combine: 'sum' }, batch, d, [batch])
    : e.zeros([batch], 'f32', 'pf.trace');
  return { score: output, trace };
}

/** Cotangent rows e_k for the tiled batch: row k·B + b is the k-th basis vector ([D·B, D]). */
function basisCotangents(e: Engine, batch: number, d: number): Tensor {
  const data = new Float32Array(d * batch * d);
  for (let k = 0; k < d; k++) for (let b = 0; b < batch; b++) data[(k * batch + b) * d + k] = 1;
  return e.tensor(data, [d * batch, d], 'f32', 'pf.basis');
}

/**
 * Exact trace: `scoreTiled(xt, copies)` must evaluate the score on x tiled `copies` times (row k·B + b is sample b;
 * its times/labels tiled the same way). One forward of D·B rows and one backward with basis cotangents.
 */
export function exactTrace(e: Engine, scoreTiled: (xTiled: Tensor, copies: number) => Tensor, x: Tensor): ScoreAndTrace {
  const { batch, d } = rows(x);
  const xt = tileRows(e, x.reshape([batch, d]), batch, d, d).reshape([d * batch, ...x.shape.slice(1)]);
  const r = vjp(e, (xx) => scoreTiled(xx, d), [xt]);
  const g = r.backward(basisCotangents(e, batch, d).reshape(xt.shape))[0];
  const trace = g ? basisTrace(e, g, batch, d) : e.zeros([batch], 'f32', 'pf.trace');
  return { score: r.output.slice0(0, batch), trace };
}
