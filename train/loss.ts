/**
 * The denoising score-matching loss of SPEC §6 on the GPU, differentiable in the network weights.
 *
 * Per sample: x_t = mean(t)·x₀ + std(t)·z with z ~ N(0, I) from a Philox draw (seeded per step), and the term
 * w·‖ε̂(x_t, t, y) − z‖² (the network predicts ε; score = −ε̂/std). See time-sampling.ts for why importance-sampled
 * likelihood weighting reduces to weight 1 (up to the constant Z). The batch loss is
 *   L = (1/B) Σ_b w_b ‖ε̂_b − z_b‖² / (D if reduce = 'mean' else 1)
 * (score_flow sums over dimensions: reduce = 'sum'). Built from ops (sub, perSampleSumSq, perSampleDot), so
 * `vjp` differentiates it and an enclosing `jvp` could too.
 */
import type { Engine } from '../engine/engine.js';
import { vjp, type MaybeTensor } from '../engine/autodiff.js';
import { SbgcError, ShapeError } from '../engine/errors.js';
import { randomTensor, type Seed } from '../engine/rng.js';
import { defineFixedProgram } from '../engine/program.js';
import { reads, u32s, writes } from '../engine/kernel.js';
import { flatMain, grid } from '../engine/wgsl.js';
import { shapeSize, type Tensor } from '../engine/tensor.js';
import { sub } from '../kernels/elementwise.js';
import { perSampleDot, perSampleSumSq } from '../kernels/reductions.js';
import { reshapeOp } from '../kernels/reshape.js';
import type { Sde } from '../model/sde.js';
import type { TrainableModel } from './model.js';
import type { TimeBatch } from './time-sampling.js';

export type LossReduce = 'sum' | 'mean';

/** Philox stream of the training noise z (other purposes use other streams; see trainer.ts). */
export const NOISE_STREAM = 0x7a; // 'z'

const WG = 64;

const PERTURB = defineFixedProgram({
  name: 'train.perturb',
  buffers: [...reads('x0', 'z', 'coefs'), ...writes('out')],
  uniforms: u32s('n', 'inner', 'batch'),
  workgroupSize: [WG],
  body: flatMain({
    wg: WG,
    count: 'params.n',
    body: `  let b = i / params.inner;
  out[i] = coefs[b] * x0[i] + coefs[params.batch + b] * z[i];`,
  }),
});

/**
 * x_t = mean_b·x₀ + std_b·z per sample (a plain kernel: neither input is differentiated in training).
 * `coefs` is [2, B]: row 0 the mean coefficients, row 1 the stds.
 */
export function perturbSamples(e: Engine, x0: Tensor, z: Tensor, coefs: Tensor): Tensor {
  const batch = x0.shape[0];
  if (x0.rank < 1 || z.size !== x0.size || z.shape[0] !== batch) {
    throw new ShapeError(`perturbSamples: x₀ ${x0.describe()} and z ${z.describe()} must have the same [B, …] shape`);
  }
  coefs.assertShape([2, batch], 'perturbSamples coefs');
  const out = e.empty(x0.shape, 'f32', 'x_t');
  const inner = x0.size / Math.max(batch, 1);
  e.run(PERTURB, {}, { x0, z, coefs, out }, { n: x0.size, inner, batch }, grid(e, x0.size, WG));
  return out;
}

/** Host float64 mean(t) and std(t) of a batch of times, as the [2, B] rows `perturbSamples` takes. */
export function perturbationCoefficients(sde: Sde, t: ArrayLike<number>): Float32Array {
  const out = new Float32Array(2 * t.length);
  for (let b = 0; b < t.length; b++) {
    out[b] = sde.meanCoefficient(t[b]);
    out[t.length + b] = sde.marginalStd(t[b]);
  }
  return out;
}

/** L = Σ_b c_b ‖pred_b − target_b‖², c = per-sample coefficients [B] (weights already divided by B, D); [1]. */
export function weightedSquaredError(e: Engine, pred: Tensor, target: Tensor, coef: Tensor): Tensor {
  const batch = pred.shape[0];
  coef.assertShape([batch], 'weightedSquaredError coef');
  const diff = sub(e, [pred, target], {});
  const perSample = reshapeOp(e, [perSampleSumSq(e, [diff], {})], { shape: [1, batch] });
  return perSampleDot(e, [perSample, reshapeOp(e, [coef], { shape: [1, batch] })], {});
}

export interface DsmInputs {
  /** Clean model-space images x₀ [B, C, H, W]. */
  x0: Tensor;
  /** u32 [B], or null for a class-unconditional model. */
  labels: Tensor | null;
  times: TimeBatch;
  /** Philox key of this step's z draw (its stream is NOISE_STREAM). */
  noiseSeed: Seed;
  /** First Philox block of this step's z draw. */
  noiseOffset: number;
  dropoutSeed: number;
  reduce: LossReduce;
}

/**
 * Records the forward pass of the DSM loss and returns it with a `backward` giving ∂L/∂(each param tensor), in the
 * order of `params`. The loss tensor is [1].
 */
export function denoisingLossWithGradients(
  e: Engine,
  model: TrainableModel,
  params: readonly Tensor[],
  inputs: DsmInputs,
): { loss: Tensor; gradients: () => MaybeTensor[] } {
  const { x0, times } = inputs;
  const batch = x0.shape[0];
  x0.assertShape([batch, ...model.imageShape], 'denoising loss x₀');
  if (times.t.length !== batch) throw new ShapeError(`denoising loss: ${times.t.length} times for a batch of ${batch}`);
  if (params.length !== model.params.length) throw new SbgcError(`denoising loss: ${params.length} tensors for ${model.params.length} parameters`);
  const dims = shapeSize(model.imageShape);
  const norm = batch * (inputs.reduce === 'mean' ? dims : 1);
  const coef = e.tensor(Float32Array.from(times.weight, (w) => w / norm), [batch], 'f32', 'loss coefficients');
  const coefs = e.tensor(perturbationCoefficients(model.sde, times.t), [2, batch], 'f32', 'mean/std(t)');
  const z = randomTensor(e, x0.shape, 'normal', { seed: inputs.noiseSeed, stream: NOISE_STREAM, offset: inputs.noiseOffset });
  const xt = perturbSamples(e, x0, z, coefs);
  const names = model.params.map((p) => p.name);
  const { output, backward } = vjp(
    e,
    (...ws) => {
      const weights = new Map(names.map((n, i) => [n, ws[i]]));
      const pred = model.predictNoise(e, weights, xt, times.t, inputs.labels, { train: true, dropoutSeed: inputs.dropoutSeed });
      return weightedSquaredError(e, pred, z, coef);
    },
    [...params],
  );
  let one: Tensor | null = null;
  return {
    loss: output,
    gradients: () => {
      one ??= e.tensor([1], [1], 'f32', 'dL/dL');
      return backward(one);
    },
  };
}
