// FLOPs of one forward pass, counted as 2 × multiply-adds of convolutions, dense layers, NIN (1×1) layers and
// the two attention matmuls (QKᵀ and AV). Norms, activations, softmax, bias adds, residual sums, upsampling and
// FIR filtering are not counted: they are O(activations), negligible next to the matmuls for these widths.

import type { NcsnppConfig } from './config.js';
import { networkPlan, type ResampleOp } from './network-plan.js';
import type { ConvRef, DenseRef, NinRef } from './params.js';

/** Conv MACs ×2 given its output side (square maps). */
function convFlops(conv: ConvRef, outSide: number): number {
  return 2 * conv.inChannels * conv.outChannels * conv.kernel * conv.kernel * outSide * outSide;
}

const denseFlops = (d: DenseRef): number => 2 * d.inFeatures * d.outFeatures;
const ninFlops = (n: NinRef, side: number): number => 2 * n.inChannels * n.outChannels * side * side;

function resampleFlops(op: ResampleOp, resIn: number, resOut: number): number {
  switch (op.kind) {
    case 'nearestUpConv':
    case 'strideConvDown':
    case 'firDownConv':
      return convFlops(op.conv, resOut);
    case 'firUpConv':
      // A stride-2 transposed conv scatters each input pixel through the 3×3 kernel: MACs scale with the input.
      return convFlops(op.conv, resIn);
    default:
      return 0;
  }
}

/** FLOPs (2 × multiply-adds) of one forward pass for `batch` images. */
export function forwardFlops(config: NcsnppConfig, batch: number): number {
  let perImage = 0;
  for (const blk of networkPlan(config).blocks) {
    switch (blk.kind) {
      case 'timeEmbedding':
        if (blk.mlp) perImage += denseFlops(blk.mlp[0]) + denseFlops(blk.mlp[1]);
        break;
      case 'labelEmbedding':
        perImage += denseFlops(blk.dense0) + denseFlops(blk.dense1);
        break;
      case 'convIn':
        perImage += convFlops(blk.conv, blk.resolution);
        break;
      case 'resnet': {
        const r = blk.resolutionOut;
        perImage += convFlops(blk.conv0, r) + convFlops(blk.conv1, r);
        if (blk.timeDense) perImage += denseFlops(blk.timeDense);
        if (blk.labelDense) perImage += denseFlops(blk.labelDense);
        if (blk.shortcut.kind === 'conv1x1') perImage += convFlops(blk.shortcut.conv, r);
        if (blk.shortcut.kind === 'nin') perImage += ninFlops(blk.shortcut.nin, r);
        break;
      }
      case 'attention': {
        const r = blk.resolution;
        const n = r * r;
        perImage += ninFlops(blk.q, r) + ninFlops(blk.k, r) + ninFlops(blk.v, r) + ninFlops(blk.out, r);
        perImage += 2 * 2 * n * n * blk.channels;
        break;
      }
      case 'resample':
        perImage += resampleFlops(blk.op, blk.resolutionIn, blk.resolutionOut);
        break;
      case 'combine':
        perImage += convFlops(blk.conv, blk.resolution);
        break;
      case 'pyramidHead':
        perImage += convFlops(blk.conv, blk.resolution);
        break;
      case 'output':
        if (blk.head) perImage += convFlops(blk.head.conv, blk.resolution);
        break;
      case 'pushSkip':
      case 'inputPyramidAdd':
      case 'pyramidAdd':
        break;
    }
  }
  return perImage * batch;
}
