// The whole NCSN++ forward in float64 on the host, walking `networkPlan(config)` with the kernels/reference ops:
// the ground truth the GPU forward (ncsnpp.ts) is tested against. Written for clarity, not speed (fine for `tiny`).
// Eval mode: dropout is the identity.

import { attnBlockRef } from '../kernels/reference/attention.js';
import { siluRef } from '../kernels/reference/activations.js';
import { addRef, concatChannelsRef, scaleRef } from '../kernels/reference/channels.js';
import { conv2dRef } from '../kernels/reference/conv2d.js';
import { gaussianFourierRef, timestepEmbeddingRef } from '../kernels/reference/embeddings.js';
import { groupNormRef } from '../kernels/reference/group-norm.js';
import { linearRef } from '../kernels/reference/linear.js';
import { ninRef } from '../kernels/reference/attention.js';
import {
  avgPool2xRef,
  convDownsample2dRef,
  firKernel2d,
  upfirdn2dRef,
  upsampleConv2dRef,
  upsampleNearest2xRef,
} from '../kernels/reference/resample.js';
import { t64, type T64 } from '../kernels/reference/tensor64.js';
import type { NcsnppConfig } from './config.js';
import { networkPlan, type NetworkPlan, type PlainResampleOp, type ResampleOp, type ResnetBlock } from './network-plan.js';
import type { ConvRef, DenseRef, GroupNormRef, NinRef } from './params.js';

function addChannelBias(y: T64, b: T64): T64 {
  const [, C, H, W] = y.shape;
  const hw = H * W;
  const out = t64(y.shape, new Float64Array(y.data));
  for (let i = 0; i < out.data.length; i++) out.data[i] += b.data[Math.floor(i / hw) % C];
  return out;
}

/** The float64 network of one config with fixed parameters. */
export class ReferenceNetwork {
  readonly plan: NetworkPlan;
  private readonly params = new Map<string, T64>();

  /** `params`: name → values (f32 values are widened exactly), validated against the plan's spec. */
  constructor(
    readonly config: NcsnppConfig,
    params: ReadonlyMap<string, ArrayLike<number>>,
  ) {
    this.plan = networkPlan(config);
    for (const p of this.plan.params) {
      const v = params.get(p.name);
      if (!v) throw new Error(`ReferenceNetwork: parameter '${p.name}' is missing`);
      this.params.set(p.name, t64(p.shape, Float64Array.from(v)));
    }
  }

  private p(name: string): T64 {
    const t = this.params.get(name);
    if (!t) throw new Error(`ReferenceNetwork: no parameter '${name}'`);
    return t;
  }

  private conv(c: ConvRef, x: T64): T64 {
    const { top, bottom, left, right } = c.pad;
    return conv2dRef(x, this.p(c.weight), this.p(c.bias), { stride: c.stride, padding: [top, bottom, left, right] });
  }

  private dense(d: DenseRef, x: T64): T64 {
    return linearRef(x, this.p(d.weight), this.p(d.bias));
  }

  private gn(g: GroupNormRef, x: T64): T64 {
    return groupNormRef(x, this.p(g.weight), this.p(g.bias), { groups: g.groups, eps: g.eps });
  }

  private nin(n: NinRef, x: T64): T64 {
    return ninRef(x, { W: this.p(n.W), b: this.p(n.b) });
  }

  private plainResample(op: PlainResampleOp, x: T64): T64 {
    switch (op.kind) {
      case 'nearestUp':
        return upsampleNearest2xRef(x);
      case 'meanDown':
        return avgPool2xRef(x);
      case 'firUp':
        return upfirdn2dRef(x, firKernel2d(op.kernel, op.gain), { up: 2, pad: op.firPad });
      case 'firDown':
        return upfirdn2dRef(x, firKernel2d(op.kernel, op.gain), { down: 2, pad: op.firPad });
    }
  }

  private resample(op: ResampleOp, x: T64): T64 {
    switch (op.kind) {
      case 'nearestUpConv':
        return this.conv(op.conv, upsampleNearest2xRef(x));
      case 'strideConvDown':
        return this.conv(op.conv, x);
      case 'firUpConv':
        // The plan's gain already includes the factor² that upsample_conv_2d multiplies in itself.
        return addChannelBias(upsampleConv2dRef(x, this.p(op.conv.weight), { kernel: op.kernel, factor: 2, gain: op.gain / 4 }), this.p(op.conv.bias));
      case 'firDownConv':
        return addChannelBias(convDownsample2dRef(x, this.p(op.conv.weight), { kernel: op.kernel, factor: 2, gain: op.gain }), this.p(op.conv.bias));
      default:
        return this.plainResample(op, x);
    }
  }

  private resnet(b: ResnetBlock, input: T64, temb: T64 | null, lemb: T64 | null): T64 {
    let x = input;
    let h = siluRef(this.gn(b.groupNorm0, x));
    if (b.resample) {
      h = this.plainResample(b.resample, h);
      x = this.plainResample(b.resample, x);
    }
    h = this.conv(b.conv0, h);
    if (b.timeDense && temb) h = addRef(h, this.dense(b.timeDense, siluRef(temb)));
    if (b.labelDense && lemb) h = addRef(h, this.dense(b.labelDense, siluRef(lemb)));
    h = this.conv(b.conv1, siluRef(this.gn(b.groupNorm1, h)));
    if (b.shortcut.kind === 'conv1x1') x = this.conv(b.shortcut.conv, x);
    else if (b.shortcut.kind === 'nin') x = this.nin(b.shortcut.nin, x);
    const sum = addRef(x, h);
    return b.skipRescale ? scaleRef(sum, Math.SQRT1_2) : sum;
  }

  /**
   * Raw network output for x [N, C, H, W], the network's own time input `tNet` [N] (e.g. 999·t) and class labels
   * [N] (required iff the config has numClasses > 0).
   */
  forward(x: T64, tNet: ArrayLike<number>, labels: ArrayLike<number> | null): T64 {
    const c = this.config;
    const [N] = x.shape;
    if (x.shape.length !== 4 || x.shape[1] !== c.channels || x.shape[2] !== c.imageSize || x.shape[3] !== c.imageSize) {
      throw new Error(`ReferenceNetwork: x [${x.shape.join(', ')}] must be [N, ${c.channels}, ${c.imageSize}, ${c.imageSize}]`);
    }
    if (tNet.length !== N) throw new Error(`ReferenceNetwork: ${tNet.length} times for a batch of ${N}`);
    if ((c.numClasses > 0) !== (labels !== null)) {
      throw new Error(`ReferenceNetwork: labels are ${c.numClasses > 0 ? 'required' : 'not accepted'} (numClasses ${c.numClasses})`);
    }
    let h: T64 | null = null;
    let temb: T64 | null = null;
    let lemb: T64 | null = null;
    let inputPyramid: T64 | null = null;
    let pyramid: T64 | null = null;
    const hs: T64[] = [];
    const need = (v: T64 | null, what: string): T64 => {
      if (!v) throw new Error(`ReferenceNetwork: ${what} used before being set`);
      return v;
    };
    const skip = (v: T64, rescale: boolean): T64 => (rescale ? scaleRef(v, Math.SQRT1_2) : v);
    for (const b of this.plan.blocks) {
      switch (b.kind) {
        case 'timeEmbedding': {
          const t = t64([N], Float64Array.from(tNet));
          let emb: T64;
          if (b.embedding.kind === 'positional') {
            emb = timestepEmbeddingRef(t, b.embedding.dim, b.embedding.maxPositions);
          } else {
            emb = gaussianFourierRef(t64([N], t.data.map(Math.log)), this.p(b.embedding.W));
          }
          temb = b.mlp ? this.dense(b.mlp[1], siluRef(this.dense(b.mlp[0], emb))) : null;
          break;
        }
        case 'labelEmbedding': {
          const oneHot = t64([N, b.numClasses]);
          for (let n = 0; n < N; n++) {
            const y = labels![n];
            if (!Number.isInteger(y) || y < 0 || y >= b.numClasses) throw new Error(`ReferenceNetwork: label ${y} out of range [0, ${b.numClasses})`);
            oneHot.data[n * b.numClasses + y] = 1;
          }
          lemb = this.dense(b.dense1, siluRef(this.dense(b.dense0, oneHot)));
          break;
        }
        case 'convIn': {
          const xin = b.rescaleInput ? t64(x.shape, x.data.map((v) => 2 * v - 1)) : x;
          if (b.setInputPyramid) inputPyramid = xin;
          h = this.conv(b.conv, xin);
          break;
        }
        case 'pushSkip':
          hs.push(need(h, 'h'));
          break;
        case 'resnet': {
          let input = need(h, 'h');
          if (b.skipChannels > 0) input = concatChannelsRef([input, need(hs.pop() ?? null, 'skip')]);
          h = this.resnet(b, input, temb, lemb);
          break;
        }
        case 'attention':
          h = attnBlockRef(need(h, 'h'), {
            gamma: this.p(b.groupNorm.weight), beta: this.p(b.groupNorm.bias),
            nin0: { W: this.p(b.q.W), b: this.p(b.q.b) }, nin1: { W: this.p(b.k.W), b: this.p(b.k.b) },
            nin2: { W: this.p(b.v.W), b: this.p(b.v.b) }, nin3: { W: this.p(b.out.W), b: this.p(b.out.b) },
          }, { skipRescale: b.skipRescale, groups: b.groupNorm.groups, eps: b.groupNorm.eps });
          break;
        case 'resample':
          if (b.target === 'h') h = this.resample(b.op, need(h, 'h'));
          else if (b.target === 'inputPyramid') inputPyramid = this.resample(b.op, need(inputPyramid, 'inputPyramid'));
          else pyramid = this.resample(b.op, need(pyramid, 'pyramid'));
          break;
        case 'combine': {
          const v = this.conv(b.conv, need(inputPyramid, 'inputPyramid'));
          h = b.method === 'sum' ? addRef(v, need(h, 'h')) : concatChannelsRef([v, need(h, 'h')]);
          break;
        }
        case 'inputPyramidAdd':
          inputPyramid = skip(addRef(need(inputPyramid, 'inputPyramid'), need(h, 'h')), b.skipRescale);
          h = inputPyramid;
          break;
        case 'pyramidHead': {
          const v = this.conv(b.conv, siluRef(this.gn(b.groupNorm, need(h, 'h'))));
          pyramid = b.mode === 'set' ? v : addRef(need(pyramid, 'pyramid'), v);
          break;
        }
        case 'pyramidAdd':
          pyramid = skip(addRef(need(pyramid, 'pyramid'), need(h, 'h')), b.skipRescale);
          h = pyramid;
          break;
        case 'output':
          h = b.head ? this.conv(b.head.conv, siluRef(this.gn(b.head.groupNorm, need(h, 'h')))) : need(pyramid, 'pyramid');
          break;
      }
    }
    return need(h, 'output');
  }
}

/** One-shot float64 forward (see ReferenceNetwork.forward). */
export function referenceForward(
  config: NcsnppConfig,
  params: ReadonlyMap<string, ArrayLike<number>>,
  x: T64,
  tNet: ArrayLike<number>,
  labels: ArrayLike<number> | null,
): T64 {
  return new ReferenceNetwork(config, params).forward(x, tNet, labels);
}
