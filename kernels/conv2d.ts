/**
 * 2-D convolution, NCHW, weight [Cout, Cin, kh, kw] (PyTorch layout), optional bias [Cout], any stride and
 * symmetric or asymmetric padding [top, bottom, left, right] (score_sde's stride-2 downsampling pads (0,1,0,1)).
 *
 * Three ops, each with forward, VJP and JVP written with ops, so forward-over-reverse works through conv layers:
 * - `conv2d` (x, W, b): its dual computes conv(x, W) + b and conv(ẋ, W) + ḃ in ONE dispatch (weights loaded once
 *   for both) — the fused HVP piece (in HVPs the weights have no tangent).
 * - `conv2dInputGrad` (gy, W) → gx, the transposed convolution (per stride phase, see conv2d-wgsl.ts); linear in
 *   gy and in W, with its own dual (gy and ġy share the weight loads).
 * - `conv2dWeightGrad` (x, gy) → gW, a GEMM over N·OH·OW split into chunks of rows.
 * Bias gradients are `channelSum` (bias.ts). Configurations: conv2d-config.ts; launchers: conv2d-launch.ts;
 * tuning: conv2d-tune.ts; WGSL: conv2d-wgsl.ts (CPU) and conv2d-tiled.ts (GPU); weight packing (cached per
 * weight tensor): conv2d-packed-weights.ts.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { addMaybe } from './elementwise.js';
import { biasedLayerJvp, channelBroadcast, channelSum } from './bias.js';
import {
  convGeometry,
  resolveConvConfig,
  type Conv2dInputGradParams,
  type Conv2dParams,
  type Conv2dWeightGradParams,
  type ConvGeometry,
} from './conv2d-config.js';
import { launchForward, launchInputGrad, launchWeightGrad } from './conv2d-launch.js';

export * from './conv2d-config.js';
export * from './conv2d-launch.js';
export * from './conv2d-tune.js';
export { packedWeightStats } from './conv2d-packed-weights.js';

function checkBias(op: string, b: MaybeTensor, C: number): void {
  if (!b) return;
  b.assertDType('f32', `${op} bias`);
  if (b.size !== C) throw new ShapeError(`${op}: bias ${b.describe()} must have ${C} elements`);
}

function geometryParams(p: Conv2dParams): Conv2dParams {
  return { stride: p.stride, padding: p.padding, variant: p.variant };
}

// ---------------------------------------------------------------- ops

function forwardGeometry(x: Tensor, w: Tensor, b: MaybeTensor, p: Conv2dParams): ConvGeometry {
  const g = convGeometry('conv2d', x.shape, w.shape, p);
  checkBias('conv2d', b, g.Cout);
  return g;
}

/** One dispatch for y = conv(x, W) + b and ẏ = conv(ẋ, W) + ḃ: the fused forward-mode (HVP) kernel. */
export function conv2dDual(e: Engine, x: Tensor, xDot: Tensor, w: Tensor, b: MaybeTensor, bDot: MaybeTensor, p: Conv2dParams): [Tensor, Tensor] {
  const g = forwardGeometry(x, w, b, p);
  checkBias('conv2d', bDot, g.Cout);
  if (xDot.size !== x.size) throw new ShapeError(`conv2d: tangent ${xDot.describe()} does not match ${x.describe()}`);
  const [y, yDot] = launchForward(e, g, x, xDot, w, b, bDot, resolveConvConfig(e, 'forward', g, p.variant));
  return [y, yDot!];
}

function conv2dTangent(e: Engine, [x, w, b]: readonly [Tensor, Tensor, MaybeTensor], [tx, tw, tb]: readonly MaybeTensor[], p: Conv2dParams): [Tensor, MaybeTensor] {
  let y: Tensor;
  let ty: MaybeTensor = null;
  if (tx) [y, ty] = conv2dDual(e, x, tx, w, b ?? null, tb ?? null, p);
  else y = conv2d.def.forward(e, [x, w, b ?? null], p);
  if (tw) ty = addMaybe(e, ty, conv2d(e, [x, tw, tx ? null : (tb ?? null)], p));
  else if (!tx && tb) ty = channelBroadcast(e, [tb], { shape: y.shape, axis: 1 });
  return [y, ty];
}

export const conv2d: Op<Conv2dParams> = defineOp({
  name: 'conv2d',
  inputs: ['x', 'W', 'bias?'],
  forward(e, [x, w, b], p) {
    const g = forwardGeometry(x, w, b ?? null, p);
    return launchForward(e, g, x, null, w, b ?? null, null, resolveConvConfig(e, 'forward', g, p.variant))[0];
  },
  vjp: (e, { inputs: [x, w], params }, ct, needs) => [
    needs[0] ? conv2dInputGrad(e, [ct, w], { ...geometryParams(params), inputSize: [x.shape[2], x.shape[3]] }) : null,
    needs[1] ? conv2dWeightGrad(e, [x, ct], { ...geometryParams(params), kernelSize: [w.shape[2], w.shape[3]] }) : null,
    needs[2] ? channelSum(e, [ct], { axis: 1 }) : null,
  ],
  jvp: (e, { inputs, output, params }, tangents) =>
    biasedLayerJvp(e, (x, w, b) => conv2d(e, [x, w, b], params), inputs, output, tangents),
  dual: (e, inputs, tangents, params) => conv2dTangent(e, inputs, tangents, params),
});

function inputGradGeometry(gy: Tensor, w: Tensor, p: Conv2dInputGradParams): ConvGeometry {
  if (gy.rank !== 4 || w.rank !== 4) throw new ShapeError(`conv2dInputGrad: ${gy.describe()} and ${w.describe()} must be rank 4`);
  const g = convGeometry('conv2dInputGrad', [gy.shape[0], w.shape[1], p.inputSize[0], p.inputSize[1]], w.shape, p);
  gy.assertShape([g.N, g.Cout, g.OH, g.OW], `conv2dInputGrad gy (input ${p.inputSize.join('×')})`);
  return g;
}

/** gx = ∂⟨gy, conv(x, W)⟩/∂x for x of spatial size params.inputSize; bilinear in (gy, W). */
export const conv2dInputGrad: Op<Conv2dInputGradParams> = defineOp({
  name: 'conv2dInputGrad',
  inputs: ['gy', 'W'],
  forward(e, [gy, w], p) {
    const g = inputGradGeometry(gy, w, p);
    return launchInputGrad(e, g, gy, null, w, resolveConvConfig(e, 'inputGrad', g, p.variant))[0];
  },
  // ⟨ct, igrad(gy, W)⟩ = ⟨conv(ct, W), gy⟩ = ⟨W, wgrad(ct, gy)⟩
  vjp: (e, { inputs: [gy, w], params }, ct, needs) => [
    needs[0] ? conv2d(e, [ct, w], geometryParams(params)) : null,
    needs[1] ? conv2dWeightGrad(e, [ct, gy], { ...geometryParams(params), kernelSize: [w.shape[2], w.shape[3]] }) : null,
  ],
  jvp: (e, { inputs: [gy, w], params }, [tgy, tw]) =>
    addMaybe(e, tgy ? conv2dInputGrad(e, [tgy, w], params) : null, tw ? conv2dInputGrad(e, [gy, tw], params) : null),
  dual(e, [gy, w], [tgy, tw], p) {
    const g = inputGradGeometry(gy, w, p);
    const [gx, tgx] = launchInputGrad(e, g, gy, tgy, w, resolveConvConfig(e, 'inputGrad', g, p.variant));
    return [gx, addMaybe(e, tgx, tw ? conv2dInputGrad(e, [gy, tw], p) : null)];
  },
});

/** gW = ∂⟨gy, conv(x, W)⟩/∂W for a kernel of params.kernelSize; bilinear in (x, gy). */
export const conv2dWeightGrad: Op<Conv2dWeightGradParams> = defineOp({
  name: 'conv2dWeightGrad',
  inputs: ['x', 'gy'],
  forward(e, [x, gy], p) {
    if (gy.rank !== 4) throw new ShapeError(`conv2dWeightGrad: ${gy.describe()} must be rank 4`);
    const g = convGeometry('conv2dWeightGrad', x.shape, [gy.shape[1], x.shape[1], p.kernelSize[0], p.kernelSize[1]], p);
    gy.assertShape([g.N, g.Cout, g.OH, g.OW], 'conv2dWeightGrad gy');
    return launchWeightGrad(e, g, x, gy, resolveConvConfig(e, 'weightGrad', g, p.variant));
  },
  // ⟨ct, wgrad(x, gy)⟩ = ⟨conv(x, ct), gy⟩ = ⟨x, igrad(gy, ct)⟩
  vjp: (e, { inputs: [x, gy], params }, ct, needs) => [
    needs[0] ? conv2dInputGrad(e, [gy, ct], { ...geometryParams(params), inputSize: [x.shape[2], x.shape[3]] }) : null,
    needs[1] ? conv2d(e, [x, ct], geometryParams(params)) : null,
  ],
  jvp: (e, { inputs: [x, gy], params }, [tx, tgy]) =>
    addMaybe(e, tx ? conv2dWeightGrad(e, [tx, gy], params) : null, tgy ? conv2dWeightGrad(e, [x, tgy], params) : null),
});
