// Typed blocks of an NCSN++ network plan (see network-plan.ts): what each block computes, which parameters it
// reads and how it moves the forward state (h, the skip stack hs, temb/lemb, inputPyramid, pyramid).

import type { NcsnppConfig } from './config.js';
import type { ConvRef, DenseRef, GroupNormRef, NinRef, ParamEntry } from './params.js';

/**
 * Spatial resampling by 2. FIR variants follow score_sde's up_or_down_sampling (upfirdn2d with the separable
 * kernel outer(k, k) / sum, times `gain`; `firPad` = the [before, after] padding upfirdn2d gets on each axis).
 * - nearestUp: nearest-neighbour ×2 (F.interpolate 'nearest' ≡ naive_upsample_2d).
 * - meanDown: 2×2 mean (naive_downsample_2d; avg_pool2d after the right/bottom pad is the same for even sizes).
 * - nearestUpConv: nearestUp then `conv` (3×3 same).
 * - strideConvDown: `conv` with its pad (right/bottom 1) and stride 2, i.e. TF 'SAME' emulation.
 * - firUp / firDown: upsample_2d / downsample_2d.
 * - firUpConv: upsample_conv_2d — conv_transpose2d(stride 2) with the flipped 3×3 kernel, then FIR with firPad.
 * - firDownConv: conv_downsample_2d — FIR with firPad, then `conv` with stride 2, no padding.
 */
export type ResampleOp =
  | { kind: 'nearestUp' }
  | { kind: 'meanDown' }
  | { kind: 'nearestUpConv'; conv: ConvRef }
  | { kind: 'strideConvDown'; conv: ConvRef }
  | { kind: 'firUp'; kernel: number[]; gain: number; firPad: [number, number] }
  | { kind: 'firDown'; kernel: number[]; gain: number; firPad: [number, number] }
  | { kind: 'firUpConv'; kernel: number[]; gain: number; firPad: [number, number]; conv: ConvRef }
  | { kind: 'firDownConv'; kernel: number[]; gain: number; firPad: [number, number]; conv: ConvRef };

/** Resampling without parameters, as used inside BigGAN residual blocks. */
export type PlainResampleOp = Extract<ResampleOp, { kind: 'nearestUp' | 'meanDown' | 'firUp' | 'firDown' }>;

/**
 * temb = Dense_1(SiLU(Dense_0(emb(t·timeLabelScale)))), or null when the model is not time-conditional.
 * timeLabelScale is 999 for continuous / sub-VP models, N − 1 for discrete VP (score_sde `get_score_fn`).
 * positional: sinusoidal DDPM embedding (half sin, half cos, frequencies exp(−ln(maxPositions)·i/(dim/2 − 1))).
 * fourier: [sin(2π·log(label)·W), cos(2π·log(label)·W)] — score_sde feeds log(time_cond) to the projection.
 */
export interface TimeEmbeddingBlock {
  kind: 'timeEmbedding';
  timeLabelScale: number;
  embedding:
    | { kind: 'positional'; dim: number; maxPositions: number }
    | { kind: 'fourier'; W: string; size: number; dim: number; logOfLabel: true };
  mlp: [DenseRef, DenseRef] | null;
}

/** lemb = Dense_1(SiLU(Dense_0(one_hot(y, numClasses)))). */
export interface LabelEmbeddingBlock {
  kind: 'labelEmbedding';
  numClasses: number;
  dense0: DenseRef;
  dense1: DenseRef;
}

/** h = conv(x'), x' = 2x − 1 when `rescaleInput` (uncentred data); also inputPyramid = x' when `setInputPyramid`. */
export interface ConvInBlock {
  kind: 'convIn';
  moduleIndex: number;
  rescaleInput: boolean;
  setInputPyramid: boolean;
  conv: ConvRef;
  resolution: number;
}

/** hs.push(h). `depth` is the stack size after the push. */
export interface PushSkipBlock {
  kind: 'pushSkip';
  channels: number;
  resolution: number;
  depth: number;
}

/**
 * ResnetBlockBigGANpp / ResnetBlockDDPMpp. Input: `h`, or cat([h, hs.pop()], channels) when skipChannels > 0.
 * a = SiLU(GN_0(in)); [BigGAN up/down: a = resample(a), in = resample(in)]; a = Conv_0(a)
 * a += Dense_0(SiLU(temb)) [if timeDense] + Dense_label(SiLU(lemb)) [if labelDense], broadcast over H, W
 * a = Conv_1(Dropout(SiLU(GN_1(a)))); h = (shortcut(in) + a) · (skipRescale ? 1/√2 : 1).
 */
export interface ResnetBlock {
  kind: 'resnet';
  variant: 'biggan' | 'ddpm';
  moduleIndex: number;
  paramPrefix: string;
  /** Channels of the block input, hChannels + skipChannels. */
  inChannels: number;
  hChannels: number;
  skipChannels: number;
  outChannels: number;
  resolutionIn: number;
  resolutionOut: number;
  resample: PlainResampleOp | null;
  groupNorm0: GroupNormRef;
  conv0: ConvRef;
  /** Null when the model is not time-conditional (Dense_0 still exists as a parameter, unused, as in score_sde). */
  timeDense: DenseRef | null;
  labelDense: DenseRef | null;
  groupNorm1: GroupNormRef;
  dropout: number;
  conv1: ConvRef;
  shortcut: { kind: 'identity' } | { kind: 'conv1x1'; conv: ConvRef } | { kind: 'nin'; nin: NinRef };
  skipRescale: boolean;
}

/**
 * AttnBlockpp (single head over all H·W positions): g = GN(h); q, k, v = NIN_0..2(g);
 * w = softmax_j(q_i · k_j / √C); a = NIN_3(Σ_j w_ij v_j); h = (h + a) · (skipRescale ? 1/√2 : 1).
 */
export interface AttentionBlock {
  kind: 'attention';
  moduleIndex: number;
  paramPrefix: string;
  channels: number;
  resolution: number;
  groupNorm: GroupNormRef;
  q: NinRef;
  k: NinRef;
  v: NinRef;
  out: NinRef;
  skipRescale: boolean;
}

/** layerspp.Upsample / Downsample applied to `target` in place (a module index even when it has no params). */
export interface ResampleBlock {
  kind: 'resample';
  moduleIndex: number;
  paramPrefix: string;
  target: 'h' | 'inputPyramid' | 'pyramid';
  direction: 'up' | 'down';
  inChannels: number;
  outChannels: number;
  resolutionIn: number;
  resolutionOut: number;
  op: ResampleOp;
}

/** progressive_input 'input_skip': c = Conv(inputPyramid) (1×1); h = method 'sum' ? c + h : cat([c, h]). */
export interface CombineBlock {
  kind: 'combine';
  moduleIndex: number;
  paramPrefix: string;
  method: 'sum' | 'cat';
  conv: ConvRef;
  outChannels: number;
  resolution: number;
}

/** progressive_input 'residual': inputPyramid = (inputPyramid + h) · s; h = inputPyramid. */
export interface InputPyramidAddBlock {
  kind: 'inputPyramidAdd';
  skipRescale: boolean;
}

/** progressive ≠ none: v = conv(SiLU(GN(h))); pyramid = v ('set') or pyramid + v ('add'). GN and conv are two modules. */
export interface PyramidHeadBlock {
  kind: 'pyramidHead';
  mode: 'set' | 'add';
  moduleIndex: number;
  groupNorm: GroupNormRef;
  conv: ConvRef;
  resolution: number;
}

/** progressive 'residual': pyramid = (pyramid + h) · s; h = pyramid. */
export interface PyramidAddBlock {
  kind: 'pyramidAdd';
  skipRescale: boolean;
}

/** Network output: conv(SiLU(GN(h))), or `pyramid` as is when head is null (progressive 'output_skip'). */
export interface OutputBlock {
  kind: 'output';
  moduleIndex: number;
  head: { groupNorm: GroupNormRef; conv: ConvRef } | null;
  channels: number;
  resolution: number;
}

export type PlanBlock =
  | TimeEmbeddingBlock
  | LabelEmbeddingBlock
  | ConvInBlock
  | PushSkipBlock
  | ResnetBlock
  | AttentionBlock
  | ResampleBlock
  | CombineBlock
  | InputPyramidAddBlock
  | PyramidHeadBlock
  | PyramidAddBlock
  | OutputBlock;

export interface NetworkPlan {
  config: NcsnppConfig;
  /** Every parameter in state-dict order (score_sde's `all_modules.*`, then `label_embed.*`). */
  params: ParamEntry[];
  blocks: PlanBlock[];
  /** Width of temb / lemb (4·nf). */
  embDim: number;
  /** Number of `all_modules` entries (score_sde's len(self.all_modules)). */
  numModules: number;
  /** Registered buffers: none for NCSN++ (FIR kernels are built per call, `sigmas` is a plain numpy attribute). */
  buffers: string[];
}
