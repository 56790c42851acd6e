/**
 * What the trainer needs from a score network: its parameters (names, shapes, initial values) and a
 * differentiable ε-prediction. The NCSN++ network implements it in ncsnpp-model.ts; tests use small models.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import type { Sde } from '../model/sde.js';
import type { ArenaParam } from './param-arena.js';

export interface NoisePredictionOptions {
  /** Training mode (dropout on). */
  train: boolean;
  /** Seed of this step's dropout masks (a safe non-negative integer, different every step). */
  dropoutSeed: number;
}

export interface TrainableModel {
  /** A short name for logs (e.g. the preset). */
  readonly name: string;
  /** [C, H, W] of one sample. */
  readonly imageShape: readonly [number, number, number];
  /** 0 = class-unconditional (labels are then ignored). */
  readonly numClasses: number;
  readonly sde: Sde;
  /** Model space is [−1, 1] (true) or [0, 1] (false), SPEC §1. */
  readonly centered: boolean;
  /** Every parameter, in a fixed order (the checkpoint and arena order). */
  readonly params: readonly ArenaParam[];
  /** Deterministic initial values for every parameter. */
  initialParams(seed: number): Map<string, Float32Array>;
  /**
   * ε̂(x_t, t, y), [B, C, H, W], built from ops so it is differentiable in `weights` (the tensors of `params`).
   * `t` holds the continuous diffusion times (the model maps them to its own time input).
   */
  predictNoise(
    e: Engine,
    weights: ReadonlyMap<string, Tensor>,
    x: Tensor,
    t: Float64Array,
    labels: Tensor | null,
    options: NoisePredictionOptions,
  ): Tensor;
  /** JSON-serialisable description (the network config) stored in checkpoints and checked on resume. */
  describe(): unknown;
}
