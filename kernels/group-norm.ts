/**
 * GroupNorm over [N, C, ...spatial] (PyTorch semantics: biased variance, eps inside the root, per-channel affine),
 * and its backward as ops of their own so forward-over-reverse works:
 *
 *   groupNorm(x, γ, β)            y = γ·x̂ + β,          x̂ = (x − μ)·r, r = 1/√(var + eps) per (sample, group)
 *   groupNormSilu(x, γ, β)        SiLU(γ·x̂ + β) in the same kernel (the networks' norm → activation pairs)
 *   groupNormBackward(x, γ, gy)   dx = P(γ·gy),          P(v) = r·(v − mean v − x̂·mean(x̂ v)) (symmetric Jacobian of x̂)
 *   groupNormGammaGrad(x, gy)     dγ[c] = Σ_{n,s} gy·x̂
 *   channelSum(g) / channelBroadcast(w)   dβ and its transpose (the bias ops of bias.ts, re-exported here)
 *
 * Every (sample, group) block is contiguous in NC… layout, so one workgroup owns one block: it reduces Σx (pass 1),
 * then every other sum the block needs around the exact mean (pass 2, the numerically careful two-pass variance),
 * then writes (pass 3); the block (≤ 64 KiB) stays in cache across passes (kernels in group-norm-kernels.ts).
 * `groupNormBackward`'s JVP is one such fused dual kernel (dx and its tangent share the statistics and the loads of
 * x, γ, gy): the group-norm piece of the network's Hessian-vector product.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op, type OpDef, type OpInputs } from '../engine/autodiff.js';
import { addMaybe, mul, siluBackward } from './elementwise.js';
import { channelSum } from './bias.js';
import { blockStats, gammaGradReduce, launchBackward, launchForward, layoutOf } from './group-norm-kernels.js';

/** GroupNorm's dβ is the bias gradient: one channelSum / channelBroadcast pair in the tree (bias.ts). */
export { channelBroadcast, channelSum } from './bias.js';
/** The block kernels' workgroup is the reduction family's (reduce.ts); tests force the GPU layout with it. */
export { overrideReductionWorkgroup as overrideGroupNormWorkgroup } from './reduce.js';

export interface GroupNormParams {
  groups: number;
  eps: number;
}

/** score_sde's choice for a C-channel GroupNorm: min(C // 4, 32) groups, eps 1e-6. */
export function scoreSdeGroupNorm(channels: number): GroupNormParams {
  return { groups: Math.min(Math.floor(channels / 4), 32), eps: 1e-6 };
}

function checkChannelVector(op: string, t: Tensor, c: number, what: string): void {
  t.assertDType('f32', `${op} ${what}`);
  t.assertShape([c], `${op} ${what}`);
}

function checkSame(op: string, a: Tensor, b: Tensor, what: string): void {
  b.assertDType('f32', `${op} ${what}`);
  b.assertShape(a.shape, `${op} ${what}`);
}

const FORWARD_INPUTS = ['x', 'gamma', 'beta?'] as const;
const BACKWARD_INPUTS = ['x', 'gamma', 'cotangent'] as const;

function checkForwardInputs(op: string, [x, gamma, beta]: OpInputs<typeof FORWARD_INPUTS>, groups: number) {
  const L = layoutOf(op, x, groups);
  checkChannelVector(op, gamma, L.c, 'gamma');
  if (beta) checkChannelVector(op, beta, L.c, 'beta');
  return { x, gamma, beta, L };
}

/** Primal and tangent of GroupNorm (then the activation) in one forward-kernel dispatch, inputs checked. */
function forwardDual(
  e: Engine,
  op: string,
  inputs: OpInputs<typeof FORWARD_INPUTS>,
  [tx, tgamma, tbeta]: readonly MaybeTensor[],
  p: GroupNormParams,
  activation: 'none' | 'silu',
): [Tensor, MaybeTensor] {
  const { x, gamma, beta, L } = checkForwardInputs(op, inputs, p.groups);
  if (tx) checkSame(op, x, tx, 'x tangent');
  if (tgamma) checkChannelVector(op, tgamma, L.c, 'gamma tangent');
  if (tbeta) checkChannelVector(op, tbeta, L.c, 'beta tangent');
  return launchForward(e, L, p.eps, x, gamma, beta, { x: tx, gamma: tgamma, beta: tbeta }, activation);
}

/** The (x, γ, β) cotangents of y = γ·x̂ + β for the cotangent gy of y, as ops. */
function groupNormVjp(e: Engine, x: Tensor, gamma: Tensor, gy: Tensor, p: GroupNormParams, needs: readonly boolean[]): MaybeTensor[] {
  return [
    needs[0] ? groupNormBackward(e, [x, gamma, gy], p) : null,
    needs[1] ? groupNormGammaGrad(e, [x, gy], p) : null,
    needs[2] ? channelSum(e, [gy], {}) : null,
  ];
}

/** GroupNorm then `activation` in the forward kernel, whose dual is the JVP; `vjp` is the op's own. */
function normalization(
  name: 'groupNorm' | 'groupNormSilu',
  activation: 'none' | 'silu',
  vjp: OpDef<GroupNormParams, typeof FORWARD_INPUTS>['vjp'],
): Op<GroupNormParams> {
  return defineOp({
    name,
    inputs: FORWARD_INPUTS,
    forward(e, inputs, p) {
      const { x, gamma, beta, L } = checkForwardInputs(name, inputs, p.groups);
      return launchForward(e, L, p.eps, x, gamma, beta, null, activation)[0];
    },
    vjp,
    jvp: (e, ctx, tangents) => forwardDual(e, name, ctx.inputs, tangents, ctx.params, activation)[1],
    dual: (e, inputs, tangents, p) => forwardDual(e, name, inputs, tangents, p, activation),
  });
}

export const groupNorm = normalization('groupNorm', 'none', (e, { inputs: [x, gamma], params }, ct, needs) =>
  groupNormVjp(e, x, gamma, ct, params, needs),
);

/**
 * SiLU(groupNorm(x, γ, β)) with the activation applied in GroupNorm's write pass (and in its dual: ẏ = silu'(z)·ż),
 * which saves the separate SiLU pass over the tensor and its tangent. The VJP recomputes z = groupNorm(x, γ, β)
 * (nothing extra is kept on the tape) and is written with ops, so forward-over-reverse (HVP) works through it.
 */
export const groupNormSilu = normalization('groupNormSilu', 'silu', (e, { inputs: [x, gamma, beta], params }, ct, needs) => {
  const gz = siluBackward(e, [groupNorm(e, [x, gamma, beta], params), ct], {});
  return groupNormVjp(e, x, gamma, gz, params, needs);
});

// ---------------------------------------------------------------- backward dx = P(γ·gy) (and its fused dual)

function checkBackwardInputs(op: string, [x, gamma, gy]: OpInputs<typeof BACKWARD_INPUTS>, groups: number) {
  const L = layoutOf(op, x, groups);
  checkChannelVector(op, gamma, L.c, 'gamma');
  checkSame(op, x, gy, 'cotangent');
  return { x, gamma, gy, L };
}

function ones(e: Engine, n: number): Tensor {
  return e.tensor(new Float32Array(n).fill(1), [n], 'f32', 'ones');
}

/** dx of GroupNorm: P(γ·gy). Its JVP is the fused dual kernel (the group-norm piece of the HVP). */
export const groupNormBackward: Op<GroupNormParams> = defineOp({
  name: 'groupNormBackward',
  inputs: BACKWARD_INPUTS,
  forward(e, inputs, p) {
    const { x, gamma, gy, L } = checkBackwardInputs('groupNormBackward', inputs, p.groups);
    return launchBackward(e, L, p.eps, x, gamma, gy, null)[0];
  },
  vjp(e, { inputs, params }, w, needs) {
    const { x, gamma, gy, L } = checkBackwardInputs('groupNormBackward', inputs, params.groups);
    // dx = ∇ₓ⟨γ·gy, x̂(x)⟩, so its x-VJP is that function's Hessian times w: the x-tangent of the dual kernel.
    // Third-order derivatives are never needed, so these two are plain kernels, not ops.
    const gx = needs[0] ? launchBackward(e, L, params.eps, x, gamma, gy, { x: w, gamma: null, gy: null })[1] : null;
    // ∂/∂gy ⟨w, P(γ·gy)⟩ = γ·P(w): GroupNorm's own x-JVP (β absent).
    const ggy = needs[2] ? launchForward(e, L, params.eps, x, gamma, null, { x: w, gamma: null, beta: null })[1] : null;
    // ∂/∂γ_c = Σ_{n,s∈c} gy·P(w).
    const gg = needs[1]
      ? channelSum(e, [mul(e, [gy, groupNormBackward(e, [x, ones(e, L.c), w], params)], {})], {})
      : null;
    return [gx, gg, ggy];
  },
  jvp: (e, ctx, tangents) => groupNormBackward.def.dual!(e, ctx.inputs, tangents, ctx.params)[1],
  dual(e, inputs, [tx, tgamma, tgy], p) {
    const { x, gamma, gy, L } = checkBackwardInputs('groupNormBackward', inputs, p.groups);
    if (tx) checkSame('groupNormBackward', x, tx, 'x tangent');
    if (tgamma) checkChannelVector('groupNormBackward', tgamma, L.c, 'gamma tangent');
    if (tgy) checkSame('groupNormBackward', x, tgy, 'cotangent tangent');
    return launchBackward(e, L, p.eps, x, gamma, gy, { x: tx, gamma: tgamma, gy: tgy });
  },
});

// ---------------------------------------------------------------- the γ gradient

/** dγ[c] = Σ_{n,s} gy·x̂ over the channel (statistics recomputed from x). */
export const groupNormGammaGrad: Op<GroupNormParams> = defineOp({
  name: 'groupNormGammaGrad',
  inputs: ['x', 'cotangent'],
  forward(e, [x, gy], p) {
    const L = layoutOf('groupNormGammaGrad', x, p.groups);
    checkSame('groupNormGammaGrad', x, gy, 'cotangent');
    const stats = blockStats(e, x, L, p.eps);
    const out = gammaGradReduce(e, gy, L, x, stats);
    stats.dispose();
    return out;
  },
  vjp: (e, { inputs: [x, gy], params }, w, needs) => [
    // ⟨w, dγ⟩ = ⟨w·gy, x̂⟩ = ⟨gy, w·x̂⟩: its x-gradient is P(w·gy), its gy-gradient GroupNorm(x; γ = w, β = 0).
    needs[0] ? groupNormBackward(e, [x, w, gy], params) : null,
    needs[1] ? groupNorm(e, [x, w, null], params) : null,
  ],
  jvp(e, { inputs: [x, gy], params }, [tx, tgy]) {
    // d(Σ gy·x̂) = Σ ġy·x̂ + Σ gy·P(ẋ).
    const fromGy = tgy ? groupNormGammaGrad(e, [x, tgy], params) : null;
    const c = x.shape[1];
    const fromX = tx ? channelSum(e, [mul(e, [gy, groupNormBackward(e, [x, ones(e, c), tx], params)], {})], {}) : null;
    return addMaybe(e, fromGy, fromX);
  },
});
