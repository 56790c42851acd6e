// The NCSN++ / DDPM++ forward pass on the GPU: walks `networkPlan(config)` block by block with the differentiable
// ops of kernels/, so vjp / jvp / vjpAndHvp through the whole network just work. model/reference-network.ts is the
// same walk in float64 (the test oracle); keep the two in step.
//
// Memory: outside a trace, each block runs in its own scope and every activation is disposed as soon as neither
// `h`, the skip stack nor the embeddings refer to it, so peak memory is the weights plus the skip stack plus one
// block's temporaries. Under a trace (vjp / jvp) nothing is disposed here: the tape needs the intermediates, and
// the caller's scope frees them.

import { isTracing } from '../engine/autodiff.js';
import type { Engine } from '../engine/engine.js';
import { SbgcError, ShapeError } from '../engine/errors.js';
import { Tensor } from '../engine/tensor.js';
import { addChannelBias, addScaled, concatChannels } from '../kernels/channels.js';
import { dropout } from '../kernels/dropout.js';
import { add, affine, log, silu } from '../kernels/elementwise.js';
import { gaussianFourierProjection, oneHot, timestepEmbedding } from '../kernels/embeddings.js';
import { groupNormSilu } from '../kernels/group-norm.js';
import { downsample2x, upsample2x, type ResampleParams } from '../kernels/resample.js';
import { ninApply } from '../kernels/attention-products.js';
import { attentionBlock } from '../kernels/attention.js';
import { conv2d } from '../kernels/conv2d.js';
import { dense } from '../kernels/matmul.js';
import type { NcsnppConfig } from './config.js';
import { networkPlan, type AttentionBlock, type NetworkPlan, type PlainResampleOp, type ResampleOp, type ResnetBlock } from './network-plan.js';
import type { ConvRef, DenseRef, GroupNormRef, NinRef } from './params.js';
import type { NetworkWeights } from './weights.js';

export interface NcsnppForwardOptions {
  /** Training mode: dropout active (default false = eval, dropout is the identity). */
  train?: boolean;
  /** Seed of the dropout masks (each residual block uses its module index as the Philox stream). Default 0. */
  dropoutSeed?: number;
}

const planCache = new WeakMap<NcsnppConfig, NetworkPlan>();

function planOf(config: NcsnppConfig): NetworkPlan {
  let plan = planCache.get(config);
  if (!plan) planCache.set(config, (plan = networkPlan(config)));
  return plan;
}

/** The [1,3,3,1] FIR is the only one kernels/resample.ts implements (score_sde's default, and every preset's). */
function firSupported(kernel: readonly number[]): boolean {
  return kernel.length === 4 && kernel[0] === 1 && kernel[1] === 3 && kernel[2] === 3 && kernel[3] === 1;
}

/** One forward pass; the layers read their parameters from `weights`. */
class Forward {
  constructor(
    private readonly e: Engine,
    private readonly weights: NetworkWeights,
    private readonly options: NcsnppForwardOptions,
  ) {}

  private w(name: string): Tensor {
    return this.weights.get(name);
  }

  conv(c: ConvRef, x: Tensor): Tensor {
    const { top, bottom, left, right } = c.pad;
    return conv2d(this.e, [x, this.w(c.weight), this.w(c.bias)], { stride: c.stride, padding: [top, bottom, left, right] });
  }

  dense(d: DenseRef, x: Tensor): Tensor {
    return dense(this.e, [x, this.w(d.weight), this.w(d.bias)], {});
  }

  /** SiLU(GroupNorm(x)) in one kernel (and one fused dual in forward mode): every norm → activation pair. */
  groupNormSilu(g: GroupNormRef, x: Tensor): Tensor {
    return groupNormSilu(this.e, [x, this.w(g.weight), this.w(g.bias)], { groups: g.groups, eps: g.eps });
  }

  nin(n: NinRef, x: Tensor): Tensor {
    return ninApply(this.e, [x, this.w(n.W), this.w(n.b)], { transposed: false });
  }

  silu(x: Tensor): Tensor {
    return silu(this.e, [x], {});
  }

  plainResample(op: PlainResampleOp, x: Tensor): Tensor {
    const p: ResampleParams = { filter: op.kind === 'nearestUp' || op.kind === 'meanDown' ? 'naive' : 'fir' };
    if ((op.kind === 'firUp' || op.kind === 'firDown') && !firSupported(op.kernel)) {
      throw new SbgcError(`ncsnpp: FIR kernel [${op.kernel.join(', ')}] is not supported on the GPU (only [1, 3, 3, 1])`);
    }
    return op.kind === 'nearestUp' || op.kind === 'firUp' ? upsample2x(this.e, [x], p) : downsample2x(this.e, [x], p);
  }

  resample(op: ResampleOp, x: Tensor): Tensor {
    switch (op.kind) {
      case 'nearestUpConv':
        return this.conv(op.conv, upsample2x(this.e, [x], { filter: 'naive' }));
      case 'strideConvDown':
        return this.conv(op.conv, x);
      case 'firUpConv':
      case 'firDownConv':
        throw new SbgcError(`ncsnpp: fused FIR resampling with a conv (${op.kind}: fir true with resamp_with_conv in a DDPM-style or progressive block) is not implemented on the GPU`);
      default:
        return this.plainResample(op, x);
    }
  }

  /** Dense_0(SiLU(temb)) + Dense_label(SiLU(lemb)), [N, C_out], or null when the block has neither. */
  private conditioning(b: ResnetBlock, actTemb: Tensor | null, actLemb: Tensor | null): Tensor | null {
    const fromTime = b.timeDense && actTemb ? this.dense(b.timeDense, actTemb) : null;
    const fromLabel = b.labelDense && actLemb ? this.dense(b.labelDense, actLemb) : null;
    if (fromTime && fromLabel) return add(this.e, [fromTime, fromLabel], {});
    return fromTime ?? fromLabel;
  }

  resnet(b: ResnetBlock, input: Tensor, actTemb: Tensor | null, actLemb: Tensor | null): Tensor {
    let x = input;
    let h = this.groupNormSilu(b.groupNorm0, x);
    if (b.resample) {
      h = this.plainResample(b.resample, h);
      x = this.plainResample(b.resample, x);
    }
    h = this.conv(b.conv0, h);
    const cond = this.conditioning(b, actTemb, actLemb);
    if (cond) h = addChannelBias(this.e, [h, cond], {});
    h = this.groupNormSilu(b.groupNorm1, h);
    h = dropout(this.e, h, {
      rate: b.dropout,
      training: this.options.train ?? false,
      seed: this.options.dropoutSeed ?? 0,
      stream: b.moduleIndex,
    });
    h = this.conv(b.conv1, h);
    if (b.shortcut.kind === 'conv1x1') x = this.conv(b.shortcut.conv, x);
    else if (b.shortcut.kind === 'nin') x = this.nin(b.shortcut.nin, x);
    return addScaled(this.e, [x, h], { scale: b.skipRescale ? Math.SQRT1_2 : 1 });
  }

  attention(b: AttentionBlock, x: Tensor): Tensor {
    return attentionBlock(this.e, x, {
      gamma: this.w(b.groupNorm.weight), beta: this.w(b.groupNorm.bias),
      q: { W: this.w(b.q.W), b: this.w(b.q.b) }, k: { W: this.w(b.k.W), b: this.w(b.k.b) },
      v: { W: this.w(b.v.W), b: this.w(b.v.b) }, out: { W: this.w(b.out.W), b: this.w(b.out.b) },
    }, { groups: b.groupNorm.groups, eps: b.groupNorm.eps, skipRescale: b.skipRescale });
  }
}

/**
 * The raw network output net(x, tNet, y), [N, C, H, W].
 * - x [N, C, H, W] f32 in model space (the net maps [0,1] inputs to 2x − 1 itself when `config.centered` is false);
 * - tNet [N] f32: the network's OWN time input (999·t for continuous VP; see model/score.ts `timeInputScale`);
 * - labels: u32 [N] tensor or host integers, required iff config.numClasses > 0 (null otherwise).
 * `weights` must hold every parameter of `config`'s spec. x, tNet and labels are not disposed.
 */
export function ncsnppForward(
  e: Engine,
  weights: NetworkWeights,
  config: NcsnppConfig,
  x: Tensor,
  tNet: Tensor,
  labels: Tensor | ArrayLike<number> | null,
  options: NcsnppForwardOptions = {},
): Tensor {
  const c = config;
  const plan = planOf(c);
  x.assertDType('f32', 'ncsnppForward x');
  x.assertShape([null, c.channels, c.imageSize, c.imageSize], `ncsnppForward x (config "${c.name}")`);
  const N = x.shape[0];
  tNet.assertDType('f32', 'ncsnppForward tNet');
  tNet.assertShape([N], 'ncsnppForward tNet (one network time input per sample)');
  if (c.numClasses > 0 && labels === null) {
    throw new ShapeError(`ncsnppForward: config "${c.name}" is class-conditional (${c.numClasses} classes): labels are required`);
  }
  if (c.numClasses === 0 && labels !== null) {
    throw new ShapeError(`ncsnppForward: config "${c.name}" is class-unconditional: labels must be null`);
  }
  const labelCount = labels === null ? N : labels instanceof Tensor ? labels.shape[0] : labels.length;
  if (labelCount !== N) throw new ShapeError(`ncsnppForward: ${labelCount} labels for a batch of ${N}`);
  for (const p of plan.params) {
    const t = weights.get(p.name);
    t.assertShape(p.shape, `ncsnppForward weight '${p.name}'`);
  }

  const f = new Forward(e, weights, options);
  const tracing = isTracing();
  const step = <T>(fn: () => T): T => (tracing ? fn() : e.scope(fn));
  // Tensors this pass created that outlive their block; freed (outside a trace) once nothing refers to them.
  const owned = new Set<Tensor>();
  let h: Tensor | null = null;
  let actTemb: Tensor | null = null;
  let actLemb: Tensor | null = null;
  let inputPyramid: Tensor | null = null;
  let pyramid: Tensor | null = null;
  const hs: Tensor[] = [];
  const adopt = (t: Tensor): Tensor => {
    if (t !== x) owned.add(t);
    return t;
  };
  const release = (): void => {
    if (tracing) return;
    const live = new Set<Tensor | null>([h, actTemb, actLemb, inputPyramid, pyramid, ...hs]);
    for (const t of owned) {
      if (!live.has(t)) {
        t.dispose();
        owned.delete(t);
      }
    }
  };
  const need = (t: Tensor | null, what: string): Tensor => {
    if (!t) throw new Error(`internal: ncsnpp plan uses ${what} before setting it`);
    return t;
  };
  const skipSum = (a: Tensor, b: Tensor, rescale: boolean): Tensor => addScaled(e, [a, b], { scale: rescale ? Math.SQRT1_2 : 1 });

  try {
    for (const b of plan.blocks) {
      switch (b.kind) {
        case 'timeEmbedding': {
          // SiLU(temb) is all any block reads (Dense_0(act(temb))), so it is computed once here.
          actTemb = step(() => {
            const emb = b.embedding.kind === 'positional'
              ? timestepEmbedding(e, tNet, b.embedding.dim, b.embedding.maxPositions)
              : gaussianFourierProjection(e, logOf(e, tNet), weights.get(b.embedding.W));
            return b.mlp ? f.silu(f.dense(b.mlp[1], f.silu(f.dense(b.mlp[0], emb)))) : null;
          });
          if (actTemb) adopt(actTemb);
          break;
        }
        case 'labelEmbedding':
          actLemb = adopt(step(() => f.silu(f.dense(b.dense1, f.silu(f.dense(b.dense0, oneHot(e, labels!, b.numClasses)))))));
          break;
        case 'convIn': {
          const xin = b.rescaleInput ? adopt(scaleShift(e, x)) : x;
          if (b.setInputPyramid) inputPyramid = xin;
          h = adopt(step(() => f.conv(b.conv, xin)));
          break;
        }
        case 'pushSkip':
          hs.push(need(h, 'h'));
          break;
        case 'resnet': {
          const hIn = need(h, 'h');
          const skip = b.skipChannels > 0 ? need(hs.pop() ?? null, 'a skip connection') : null;
          h = adopt(step(() => f.resnet(b, skip ? concatChannels(e, [hIn, skip], {}) : hIn, actTemb, actLemb)));
          break;
        }
        case 'attention':
          h = adopt(step(() => f.attention(b, need(h, 'h'))));
          break;
        case 'resample':
          if (b.target === 'h') h = adopt(step(() => f.resample(b.op, need(h, 'h'))));
          else if (b.target === 'inputPyramid') inputPyramid = adopt(step(() => f.resample(b.op, need(inputPyramid, 'inputPyramid'))));
          else pyramid = adopt(step(() => f.resample(b.op, need(pyramid, 'pyramid'))));
          break;
        case 'combine': {
          const hIn = need(h, 'h');
          const pyr = need(inputPyramid, 'inputPyramid');
          h = adopt(step(() => {
            const v = f.conv(b.conv, pyr);
            return b.method === 'sum' ? add(e, [v, hIn], {}) : concatChannels(e, [v, hIn], {});
          }));
          break;
        }
        case 'inputPyramidAdd':
          inputPyramid = adopt(step(() => skipSum(need(inputPyramid, 'inputPyramid'), need(h, 'h'), b.skipRescale)));
          h = inputPyramid;
          break;
        case 'pyramidHead': {
          const hIn = need(h, 'h');
          const prev = pyramid;
          pyramid = adopt(step(() => {
            const v = f.conv(b.conv, f.groupNormSilu(b.groupNorm, hIn));
            return b.mode === 'set' ? v : add(e, [need(prev, 'pyramid'), v], {});
          }));
          break;
        }
        case 'pyramidAdd':
          pyramid = adopt(step(() => skipSum(need(pyramid, 'pyramid'), need(h, 'h'), b.skipRescale)));
          h = pyramid;
          break;
        case 'output': {
          const hIn = need(h, 'h');
          h = b.head ? adopt(step(() => f.conv(b.head!.conv, f.groupNormSilu(b.head!.groupNorm, hIn)))) : need(pyramid, 'pyramid');
          // Only the output stays alive from here on.
          actTemb = actLemb = inputPyramid = pyramid = null;
          break;
        }
      }
      release();
    }
  } catch (err) {
    if (!tracing) for (const t of owned) t.dispose();
    throw err;
  }
  const out = need(h, 'the output');
  if (!tracing) {
    owned.delete(out);
    for (const t of owned) t.dispose();
  }
  return out;
}

/** 2x − 1 (uncentred data enters the network this way). */
function scaleShift(e: Engine, x: Tensor): Tensor {
  return affine(e, [x], { alpha: 2, beta: -1 });
}

/** log of the time input for the Fourier embedding (score_sde feeds it log σ). */
function logOf(e: Engine, t: Tensor): Tensor {
  return log(e, [t], {});
}
