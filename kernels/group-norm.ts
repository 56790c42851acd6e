/**
 * GroupNorm over [N, C, ...spatial] (PyTorch semantics: biased variance, eps inside the root, per-channel affine),
 * and its backward as ops of their own so forward-over-reverse works:
 *
 *   groupNorm(x, γ, β)            y = γ·x̂ + β,          x̂ = (x − μ)·r, r = 1/√(var + eps) per (sample, group)
 *   groupNormSilu(x, γ, β)        SiLU(γ·x̂ + β) in the same kernel (the networks' norm → activation pairs)
 *   groupNormBackward(x, γ, gy)   dx = P(γ·gy),          P(v) = r·(v − mean v − x̂·mean(x̂ v)) (symmetric Jacobian of x̂)
 *   groupNormGammaGrad(x, gy)     dγ[c] = Σ_{n,s} gy·x̂
 *   channelSum(g) / channelBroadcast(w)   dβ and its transpose
 *
 * Every (sample, group) block is contiguous in NC… layout, so one workgroup owns one block: it reduces Σx (pass 1),
 * then every other sum the block needs around the exact mean (pass 2, the numerically careful two-pass variance),
 * then writes (pass 3); the block (≤ 64 KiB) stays in cache across passes (kernels in group-norm-kernels.ts).
 * `groupNormBackward`'s JVP is one such fused dual kernel (dx and its tangent share the statistics and the loads of
 * x, γ, gy): the group-norm piece of the network's Hessian-vector product.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { grid } from '../engine/rng.js';
import { addMaybe, mul, siluBackward } from './elementwise.js';
import {
  blockStats,
  launchBackward,
  launchChannelReduce,
  launchForward,
  layoutOf,
  type Layout,
} from './group-norm-kernels.js';

export { overrideGroupNormWorkgroup } from './group-norm-kernels.js';

export interface GroupNormParams {
  groups: number;
  eps: number;
}

/** score_sde's choice for a C-channel GroupNorm: min(C // 4, 32) groups, eps 1e-6. */
export function scoreSdeGroupNorm(channels: number): GroupNormParams {
  return { groups: Math.min(Math.floor(channels / 4), 32), eps: 1e-6 };
}

function req(t: MaybeTensor, what: string): Tensor {
  if (!t) throw new ShapeError(`${what}: missing input`);
  t.assertDType('f32', what);
  return t;
}

function checkChannelVector(op: string, t: Tensor, c: number, what: string): void {
  t.assertDType('f32', `${op} ${what}`);
  t.assertShape([c], `${op} ${what}`);
}

function checkSame(op: string, a: Tensor, b: Tensor, what: string): void {
  b.assertDType('f32', `${op} ${what}`);
  b.assertShape(a.shape, `${op} ${what}`);
}

function checkForwardInputs(op: string, inputs: readonly MaybeTensor[], groups: number) {
  const x = req(inputs[0], `${op} x`);
  const gamma = req(inputs[1], `${op} gamma`);
  const L = layoutOf(op, x, groups);
  checkChannelVector(op, gamma, L.c, 'gamma');
  const beta = inputs[2] ?? null;
  if (beta) checkChannelVector(op, beta, L.c, 'beta');
  return { x, gamma, beta, L };
}

/** Primal and tangent of GroupNorm (then the activation) in one forward-kernel dispatch, inputs checked. */
function forwardDual(
  e: Engine,
  op: string,
  inputs: readonly MaybeTensor[],
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
function groupNormVjp(e: Engine, x: MaybeTensor, gamma: MaybeTensor, gy: Tensor, p: GroupNormParams, needs: readonly boolean[]): MaybeTensor[] {
  return [
    needs[0] ? groupNormBackward(e, [x, gamma, gy], p) : null,
    needs[1] ? groupNormGammaGrad(e, [x, gy], p) : null,
    needs[2] ? channelSum(e, [gy], {}) : null,
  ];
}

export const groupNorm: Op<GroupNormParams> = defineOp<GroupNormParams>({
  name: 'groupNorm',
  forward(e, inputs, p) {
    const { x, gamma, beta, L } = checkForwardInputs('groupNorm', inputs, p.groups);
    return launchForward(e, L, p.eps, x, gamma, beta, null)[0];
  },
  vjp: (e, { inputs: [x, gamma], params }, ct, needs) => groupNormVjp(e, x, gamma, ct, params, needs),
  jvp: (e, ctx, tangents) => forwardDual(e, 'groupNorm', ctx.inputs, tangents, ctx.params, 'none')[1],
  dual: (e, inputs, tangents, p) => forwardDual(e, 'groupNorm', inputs, tangents, p, 'none'),
});

/**
 * SiLU(groupNorm(x, γ, β)) with the activation applied in GroupNorm's write pass (and in its dual: ẏ = silu'(z)·ż),
 * which saves the separate SiLU pass over the tensor and its tangent. The VJP recomputes z = groupNorm(x, γ, β)
 * (nothing extra is kept on the tape) and is written with ops, so forward-over-reverse (HVP) works through it.
 */
export const groupNormSilu: Op<GroupNormParams> = defineOp<GroupNormParams>({
  name: 'groupNormSilu',
  forward(e, inputs, p) {
    const { x, gamma, beta, L } = checkForwardInputs('groupNormSilu', inputs, p.groups);
    return launchForward(e, L, p.eps, x, gamma, beta, null, 'silu')[0];
  },
  vjp(e, { inputs: [x, gamma, beta], params }, ct, needs) {
    const gz = siluBackward(e, [groupNorm(e, [x, gamma, beta], params), ct], {});
    return groupNormVjp(e, x, gamma, gz, params, needs);
  },
  jvp: (e, ctx, tangents) => forwardDual(e, 'groupNormSilu', ctx.inputs, tangents, ctx.params, 'silu')[1],
  dual: (e, inputs, tangents, p) => forwardDual(e, 'groupNormSilu', inputs, tangents, p, 'silu'),
});

// ---------------------------------------------------------------- backward dx = P(γ·gy) (and its fused dual)

function checkBackwardInputs(op: string, inputs: readonly MaybeTensor[], groups: number) {
  const x = req(inputs[0], `${op} x`);
  const gamma = req(inputs[1], `${op} gamma`);
  const gy = req(inputs[2], `${op} cotangent`);
  const L = layoutOf(op, x, groups);
  checkChannelVector(op, gamma, L.c, 'gamma');
  checkSame(op, x, gy, 'cotangent');
  return { x, gamma, gy, L };
}

function ones(e: Engine, n: number): Tensor {
  return e.tensor(new Float32Array(n).fill(1), [n], 'f32', 'ones');
}

/** dx of GroupNorm: P(γ·gy). Its JVP is the fused dual kernel (the group-norm piece of the HVP). */
export const groupNormBackward: Op<GroupNormParams> = defineOp<GroupNormParams>({
  name: 'groupNormBackward',
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

// ---------------------------------------------------------------- per-channel reductions

/** dγ[c] = Σ_{n,s} gy·x̂ over the channel (statistics recomputed from x). */
export const groupNormGammaGrad: Op<GroupNormParams> = defineOp<GroupNormParams>({
  name: 'groupNormGammaGrad',
  forward(e, [x0, gy0], p) {
    const x = req(x0, 'groupNormGammaGrad x');
    const gy = req(gy0, 'groupNormGammaGrad cotangent');
    const L = layoutOf('groupNormGammaGrad', x, p.groups);
    checkSame('groupNormGammaGrad', x, gy, 'cotangent');
    const stats = blockStats(e, x, L, p.eps);
    const out = launchChannelReduce(e, gy, L, { x, stats });
    stats.dispose();
    return out;
  },
  vjp: (e, { inputs: [x, gy], params }, w, needs) => [
    // ⟨w, dγ⟩ = ⟨w·gy, x̂⟩ = ⟨gy, w·x̂⟩: its x-gradient is P(w·gy), its gy-gradient GroupNorm(x; γ = w, β = 0).
    needs[0] ? groupNormBackward(e, [x, w, gy], params) : null,
    needs[1] ? groupNorm(e, [x, w, null], params) : null,
  ],
  jvp(e, { inputs: [x0, gy0], params }, [tx, tgy]) {
    const x = x0!;
    const gy = gy0!;
    // d(Σ gy·x̂) = Σ ġy·x̂ + Σ gy·P(ẋ).
    const fromGy = tgy ? groupNormGammaGrad(e, [x, tgy], params) : null;
    const c = x.shape[1];
    const fromX = tx ? channelSum(e, [mul(e, [gy, groupNormBackward(e, [x, ones(e, c), tx], params)], {})], {}) : null;
    return addMaybe(e, fromGy, fromX);
  },
});

function channelLayout(op: string, t: Tensor): Layout {
  return layoutOf(op, t, 1);
}

/** Σ over every axis but 1: [N, C, ...] → [C] (GroupNorm's dβ, a bias gradient). */
export const channelSum: Op<Record<string, never>> = defineOp<Record<string, never>>({
  name: 'channelSum',
  forward(e, [g0]) {
    const g = req(g0, 'channelSum');
    return launchChannelReduce(e, g, channelLayout('channelSum', g), null);
  },
  vjp: (e, { inputs: [g] }, w) => [channelBroadcast(e, [w], { shape: g!.shape })],
  jvp: (e, _ctx, [tg]) => (tg ? channelSum(e, [tg], {}) : null),
});

/** w[C] broadcast to `shape` = [N, C, ...]: the transpose of channelSum. */
export const channelBroadcast: Op<{ shape: readonly number[] }> = defineOp<{ shape: readonly number[] }>({
  name: 'channelBroadcast',
  forward(e, [w0], { shape }) {
    const w = req(w0, 'channelBroadcast');
    if (shape.length < 2 || w.rank !== 1 || w.shape[0] !== shape[1]) {
      throw new ShapeError(`channelBroadcast: ${w.describe()} does not give the channels of [${shape.join('×')}]`);
    }
    const out = e.empty(shape, 'f32', 'channel.broadcast');
    const s = out.size / Math.max(shape[0] * shape[1], 1);
    const program = e.program({
      name: 'channel.broadcast',
      buffers: [
        { name: 'w', type: 'f32' },
        { name: 'out', type: 'f32', access: 'read_write' },
      ],
      uniforms: [
        ['n', 'u32'],
        ['c', 'u32'],
        ['s', 'u32'],
      ],
      workgroupSize: [256],
      body: `
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = g.x + g.y * nwg.x * 256u;
  if (i >= params.n) { return; }
  out[i] = w[(i / params.s) % params.c];
}`,
    });
    e.dispatch(program, { w, out }, { n: out.size, c: shape[1], s }, grid(e, out.size, 256));
    return out;
  },
  vjp: (e, _ctx, ct) => [channelSum(e, [ct], {})],
  jvp: (e, { params }, [tw]) => (tw ? channelBroadcast(e, [tw], params) : null),
});
