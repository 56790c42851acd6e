// The score-model interface the solvers see, and its implementation by the NCSN++ network (SPEC §2):
// score(x, t, y) = −net(x, timeInput(t), y) / std(t), with score_sde's `get_score_fn` choice of time input and std.

import { isTracing } from '../engine/autodiff.js';
import type { Engine } from '../engine/engine.js';
import { SbgcError, ShapeError } from '../engine/errors.js';
import type { Tensor } from '../engine/tensor.js';
import { mulPerSample } from '../kernels/reductions.js';
import type { NcsnppConfig } from './config.js';
import { ncsnppForward } from './ncsnpp.js';
import { networkPlan } from './network-plan.js';
import { sdeFromConfig, type Sde } from './sde.js';
import type { NetworkWeights } from './weights.js';

/** Class labels per sample: a u32 [N] tensor, host integers, or null for a class-unconditional model. */
export type Labels = Tensor | ArrayLike<number> | null;

/** Continuous times per sample, t ∈ [0, 1] (one per batch entry). */
export type Times = readonly number[] | Float32Array | Float64Array;

export interface ScoreModel {
  /** [C, H, W] of one sample. */
  readonly shape: [number, number, number];
  /** 0 for a class-unconditional model. */
  readonly numClasses: number;
  readonly sde: Sde;
  /** The raw network output net(x, timeInput(t), y) (ε-prediction, score_sde's model output), [N, C, H, W]. */
  epsilon(e: Engine, x: Tensor, t: Times, labels: Labels): Tensor;
  /** ∇ₓ log p_t(x | y) ≈ −net(x, timeInput(t), y) / std(t), [N, C, H, W]; differentiable in x. t must be > 0. */
  score(e: Engine, x: Tensor, t: Times, labels: Labels): Tensor;
}

/** The network's time input is timeInputScale · t: 999 for continuous (and sub-VP) models, N − 1 for discrete VP. */
export function timeInputScale(config: NcsnppConfig): number {
  const block = networkPlan(config).blocks[0];
  if (block.kind !== 'timeEmbedding') throw new Error('internal: the plan does not start with the time embedding');
  return block.timeLabelScale;
}

/**
 * std(t) that score_sde divides the network output by: the SDE's marginal std for continuous and sub-VP models;
 * for discrete VP (DDPM) the table sqrt(1 − ᾱ) at index ⌊t·(N − 1)⌋, with β_i = linspace(β_min/N, β_max/N, N).
 */
export function scoreStdFn(config: NcsnppConfig, sde: Sde = sdeFromConfig(config)): (t: number) => number {
  if (config.continuous || config.sde === 'subvp') return (t) => sde.marginalStd(t);
  const n = config.numScales;
  const table = new Float64Array(n);
  let alphaBar = 1;
  for (let i = 0; i < n; i++) {
    const beta = config.betaMin / n + ((config.betaMax - config.betaMin) / n) * (i / (n - 1));
    alphaBar *= 1 - beta;
    table[i] = Math.sqrt(1 - alphaBar);
  }
  return (t) => table[Math.min(n - 1, Math.max(0, Math.floor(t * (n - 1))))];
}

export interface NetworkScoreModelOptions {
  /** Dropout on (training); default false, i.e. eval mode. */
  train?: boolean;
  /** Seed of the dropout masks when training. */
  dropoutSeed?: number;
}

/** The NCSN++ network as a ScoreModel. Does not own the weights. */
export class NetworkScoreModel implements ScoreModel {
  readonly shape: [number, number, number];
  readonly numClasses: number;
  readonly sde: Sde;
  readonly config: NcsnppConfig;
  private readonly timeScale: number;
  private readonly stdAt: (t: number) => number;

  constructor(
    readonly weights: NetworkWeights,
    readonly options: NetworkScoreModelOptions = {},
  ) {
    const c = weights.config;
    this.config = c;
    this.shape = [c.channels, c.imageSize, c.imageSize];
    this.numClasses = c.numClasses;
    this.sde = sdeFromConfig(c);
    this.timeScale = timeInputScale(c);
    this.stdAt = scoreStdFn(c, this.sde);
  }

  /** The network's own time input for continuous time t (e.g. 999·t), in float64. */
  timeInput(t: number): number {
    return this.timeScale * t;
  }

  /** The std(t) the score divides by. */
  std(t: number): number {
    return this.stdAt(t);
  }

  private checkTimes(x: Tensor, t: Times, what: string, positive: boolean): void {
    x.assertShape([null, ...this.shape], `${what} x`);
    if (t.length !== x.shape[0]) throw new ShapeError(`${what}: ${t.length} times for a batch of ${x.shape[0]}`);
    for (let i = 0; i < t.length; i++) {
      const v = t[i];
      if (!(Number.isFinite(v) && v <= 1 && (positive ? v > 0 : v >= 0))) {
        throw new SbgcError(`${what}: time ${i} is ${v}, outside ${positive ? '(0, 1]' : '[0, 1]'}`);
      }
    }
  }

  epsilon(e: Engine, x: Tensor, t: Times, labels: Labels): Tensor {
    this.checkTimes(x, t, 'epsilon', false);
    return this.forward(e, x, t, labels);
  }

  score(e: Engine, x: Tensor, t: Times, labels: Labels): Tensor {
    this.checkTimes(x, t, 'score', true);
    const eps = this.forward(e, x, t, labels);
    const factor = e.tensor(Float32Array.from(t, (v) => -1 / this.stdAt(v)), [t.length], 'f32', '−1/std(t)');
    const out = mulPerSample(e, [eps, factor], {});
    // Outside a trace nothing refers to these again (a tape would keep them for the backward pass).
    if (!isTracing()) {
      eps.dispose();
      factor.dispose();
    }
    return out;
  }

  private forward(e: Engine, x: Tensor, t: Times, labels: Labels): Tensor {
    const tNet = e.tensor(Float32Array.from(t, (v) => this.timeScale * v), [t.length], 'f32', 'time input');
    const out = ncsnppForward(e, this.weights, this.config, x, tNet, labels, {
      train: this.options.train ?? false,
      dropoutSeed: this.options.dropoutSeed,
    });
    if (!isTracing()) tNet.dispose();
    return out;
  }
}
