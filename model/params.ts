// Parameter records and the layer-shaped helpers that create them, with score_sde_pytorch's names, shapes and
// initialisers. Layouts are PyTorch's: conv OIHW, Linear [out, in], NIN W [in, out] (score_sde's own layout).

/**
 * How score_sde initialises a parameter.
 * - `varianceScaling`: score_sde `default_init(scale)` = JAX variance_scaling(scale, 'fan_avg', 'uniform'):
 *   U(−limit, limit) with limit = sqrt(3·scale / ((fanIn + fanOut)/2)). Fans follow score_sde's `_compute_fans`
 *   on the PyTorch shape (in_axis 1, out_axis 0, receptive field = the rest). `scale` is the effective scale:
 *   score_sde maps a requested 0 to 1e-10 (`requestedScale` keeps what the config asked for).
 * - `zeros` / `ones`: biases, GroupNorm shift / GroupNorm scale.
 * - `normal`: N(0, std²) — only the Gaussian Fourier projection's frozen W (randn · fourier_scale).
 */
export type InitSpec =
  | {
      kind: 'varianceScaling';
      scale: number;
      requestedScale: number;
      mode: 'fan_avg';
      distribution: 'uniform';
      fanIn: number;
      fanOut: number;
      limit: number;
    }
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'normal'; std: number };

export interface ParamEntry {
  name: string;
  shape: number[];
  init: InitSpec;
  /** False only for the Fourier projection W (an nn.Parameter with requires_grad=False; still in the state dict). */
  trainable: boolean;
}

/** nn.Linear: y = x·Wᵀ + b, weight [outFeatures, inFeatures]. */
export interface DenseRef {
  weight: string;
  bias: string;
  inFeatures: number;
  outFeatures: number;
}

/** Explicit zero padding per side, applied before the convolution. */
export interface Padding {
  top: number;
  bottom: number;
  left: number;
  right: number;
}

/** nn.Conv2d (cross-correlation), weight [outChannels, inChannels, kernel, kernel], bias [outChannels]. */
export interface ConvRef {
  weight: string;
  bias: string;
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride: number;
  pad: Padding;
}

/** nn.GroupNorm(groups, channels, eps) with affine weight (scale) and bias. */
export interface GroupNormRef {
  weight: string;
  bias: string;
  channels: number;
  groups: number;
  eps: number;
}

/** score_sde NIN: a 1×1 conv stored as W [inChannels, outChannels] plus b [outChannels]. */
export interface NinRef {
  W: string;
  b: string;
  inChannels: number;
  outChannels: number;
}

/** score_sde `default_init(scale)` for a tensor of this PyTorch shape. */
export function defaultInit(shape: readonly number[], requestedScale = 1): InitSpec {
  const scale = requestedScale === 0 ? 1e-10 : requestedScale;
  const total = shape.reduce((a, b) => a * b, 1);
  const receptive = total / shape[1] / shape[0];
  const fanIn = shape[1] * receptive;
  const fanOut = shape[0] * receptive;
  const limit = Math.sqrt((3 * scale) / ((fanIn + fanOut) / 2));
  return { kind: 'varianceScaling', scale, requestedScale, mode: 'fan_avg', distribution: 'uniform', fanIn, fanOut, limit };
}

const SAME3: Padding = { top: 1, bottom: 1, left: 1, right: 1 };
const NONE: Padding = { top: 0, bottom: 0, left: 0, right: 0 };

/** Collects parameters in registration (= state-dict) order while the plan builder walks the network. */
export class ParamCollector {
  readonly entries: ParamEntry[] = [];
  private readonly seen = new Set<string>();

  add(name: string, shape: number[], init: InitSpec, trainable = true): string {
    if (this.seen.has(name)) throw new Error(`duplicate parameter name ${name}`);
    this.seen.add(name);
    this.entries.push({ name, shape, init, trainable });
    return name;
  }

  /** score_sde ddpm_conv3x3 / ddpm_conv1x1 / up_or_down_sampling.Conv2d: default_init(initScale) weight, zero bias. */
  conv(prefix: string, inCh: number, outCh: number, kernel: 1 | 3, initScale = 1, stride = 1, pad?: Padding): ConvRef {
    const shape = [outCh, inCh, kernel, kernel];
    return {
      weight: this.add(`${prefix}.weight`, shape, defaultInit(shape, initScale)),
      bias: this.add(`${prefix}.bias`, [outCh], { kind: 'zeros' }),
      inChannels: inCh,
      outChannels: outCh,
      kernel,
      stride,
      pad: pad ?? (kernel === 3 ? { ...SAME3 } : { ...NONE }),
    };
  }

  /** nn.Linear whose weight score_sde overwrites with default_init() and whose bias it zeroes. */
  dense(prefix: string, inFeatures: number, outFeatures: number): DenseRef {
    const shape = [outFeatures, inFeatures];
    return {
      weight: this.add(`${prefix}.weight`, shape, defaultInit(shape)),
      bias: this.add(`${prefix}.bias`, [outFeatures], { kind: 'zeros' }),
      inFeatures,
      outFeatures,
    };
  }

  /** nn.GroupNorm with score_sde's group rule min(C/4, 32); PyTorch's default affine init. */
  groupNorm(prefix: string, channels: number, eps: number): GroupNormRef {
    const groups = Math.min(Math.floor(channels / 4), 32);
    if (groups < 1 || channels % groups !== 0) throw new Error(`${prefix}: GroupNorm cannot split ${channels} channels into ${groups} groups`);
    return {
      weight: this.add(`${prefix}.weight`, [channels], { kind: 'ones' }),
      bias: this.add(`${prefix}.bias`, [channels], { kind: 'zeros' }),
      channels,
      groups,
      eps,
    };
  }

  /** score_sde NIN; its default init_scale is 0.1 (not 1). */
  nin(prefix: string, inCh: number, outCh: number, initScale = 0.1): NinRef {
    const shape = [inCh, outCh];
    return {
      W: this.add(`${prefix}.W`, shape, defaultInit(shape, initScale)),
      b: this.add(`${prefix}.b`, [outCh], { kind: 'zeros' }),
      inChannels: inCh,
      outChannels: outCh,
    };
  }
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
