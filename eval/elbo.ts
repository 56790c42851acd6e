/**
 * A cheap generative classifier: the continuous-time ELBO of log p(x|y) instead of the probability-flow ODE
 * (SPEC §3). Song et al. 2021 ("Maximum likelihood training of score-based diffusion models", Thm 1 with the DSM
 * form) / Kingma et al. 2021 (VDM), for the linear SDEs of SPEC §2 (VP and sub-VP), with the model's score
 * s = −ε̂/σ(t) and the training noise x_t = m(t)·x + σ(t)·z, z ~ N(0, I) (train/loss.ts).
 *
 * The bound. Let Q be the forward process started at x₀ = x (the model-space image) and P the model's reverse
 * SDE started from π = N(0, I) at T, both on [ε, T]. Given x₀, Q is Markov with Gaussian marginals
 * q_t = N(m_t·x, σ_t²I), and its time reversal has drift f − g²∇log q_t(·|x); P has drift f − g²s. Girsanov and
 * the data-processing inequality at time ε give
 *   −KL(q_ε ‖ p_ε) ≥ −KL(q_T ‖ π) − J,   J = ½∫_ε^T g² E_q‖s(x_t, t) − ∇log q_t(x_t|x)‖² dt
 *                                          = ½∫_ε^T (g²/σ²) E_z‖ε̂(x_t, t, y) − z‖² dt.
 * p_ε is a density of x_ε, and q_ε is spread by σ_ε around m_ε·x; to bound a density AT x, close the model with
 * the Gaussian decoder r(x|x_ε) = N(x_ε/m_ε, (σ_ε/m_ε)²I) (VDM's reconstruction term): the model
 * p̃(x) = ∫ p_ε(x_ε) r(x|x_ε) dx_ε satisfies log p̃(x) ≥ E_q[log p_ε(x_ε) + log r(x|x_ε) − log q_ε(x_ε|x)]
 * = E_q[log p_ε(x_ε)] + D·log m_ε. Writing out −KL(q_ε‖p_ε) = E_q log p_ε + H(q_ε) and the Gaussian KL:
 *
 *   log p̃(x|y) ≥ L(x, y) = c(x) − J(x, y),
 *   c(x) = D·log m_ε − ½D·log(2πe·σ_ε²) − ½(D·σ_T² + m_T²‖x‖² − D − D·log σ_T²),
 *   J(x, y) ≈ (Z/K)·Σ_k ½‖ε̂(x_{t_k}, t_k, y) − z_k‖²,   x_{t_k} = m(t_k)·x + σ(t_k)·z_k.
 *
 * All constants are exact, so L is a genuine lower bound in nats (model space) and its bits/dim (SPEC §1) is
 * comparable with the ODE's. It bounds p̃, which is the ODE's p_ε blurred once more by N(0, σ_ε²) and rescaled by
 * m_ε (VP, ε = 1e-5: σ_ε ≈ 1e-3, a quarter of a pixel level in [0, 1); m_ε ≈ 1 − 5e-7); for smooth densities
 * the two agree to O(σ_ε²) (the Gaussian tests: ≤ 7e-5 nats at D = 16).
 * Tightness: with the exact score and π = the exact p_T, Q and P share the conditional law of the path after ε
 * given x_ε (both are the forward transition), so the first inequality is an equality and
 * E[L] = E_z log p_ε(m_ε x + σ_ε z) + D·log m_ε exactly; the standard-normal prior subtracts the prior mismatch
 * E_{q_T}[log p_T − log π] (the tests check both).
 *
 * The integral: t from the likelihood-importance proposal q(t) ∝ g²/σ² on [ε, T] (SPEC §6, train/time-sampling.ts),
 * for which the weight (g²/σ²)/q(t) is the constant Z = ∫g²/σ² — the integrand is then the training loss itself.
 * Stratified: t_k = W⁻¹((k + v_k)/K·Z), one uniform v_k per quantile stratum k. Standard error: collapsed
 * strata (pairs (2j, 2j+1)), a slightly conservative estimate for one draw per stratum. Replacing ‖z‖² by its
 * mean D (a control variate) was measured not to help (Gaussian, D = 16: 5.8 vs 6.1 nats at K = 64; mnist-small
 * after 250 steps: 57–67 vs 39–56 nats), so the estimator is the plain training loss.
 *
 * Cost: K·classes network forward passes per image (no VJP, no step control), batched batchRows at a time; the
 * ODE costs nfe × classes × (forward + VJP) per draw.
 *
 * Uniform times (`times: 'uniform'`): t_k stratified uniform on [ε, T] with the weight (T − ε)·g²(t_k)/σ²(t_k) — the
 * same unbiased estimate of J, with its samples where a model trained with uniform t (ε-MSE) learned the most and
 * where classes differ (moderate t), instead of crowding them near ε where q(t) ∝ 1/t puts them and the class
 * signal is nil. Its variance is larger at small t (the weight ~1/t), and it is heavy-tailed there: a typical
 * estimate misses the small-t mass, so its bits/dim read optimistic (the mean is still right). Shared noise cancels
 * most of that in class differences. `mixture` takes half its samples each way (balance-heuristic weights, bounded
 * by 2Z): honest bits/dim and samples at moderate t.
 *
 * Common random numbers: every class of an image sees the same dequantisation noise, t_k and z_k, so class
 * differences carry no noise from the draws that the classes share. All draws are Philox keyed by
 * (seed, global image index): results do not depend on batching. The dequantisation noise is that of draw 0 of the
 * shared slot of eval/probability-flow-likelihood.ts (stream 0 of data/model-space-images.ts), so the ODE
 * classifier (shared probes) and this one see the same x for the same seed.
 */
import type { Engine } from '../engine/engine.js';
import { ShapeError } from '../engine/errors.js';
import { blocksFor, drawHost } from '../engine/rng.js';
import { bitsPerDim, describeModelSpace } from '../data/model-space.js';
import { configuredCentering, imagesInModelSpace, type ImageInput, type ModelSpaceImages } from '../data/model-space-images.js';
import type { ScoreModel } from '../model/score.js';
import { perturb, type Sde } from '../model/sde.js';
import { classLogPrior, classPosterior, requireClasses } from './class-posterior.js';
import type { ProbeSharing } from './probability-flow-likelihood.js';
import { importanceNormaliser, invertImportanceCdf } from '../train/time-sampling.js';

/** The dequantisation draw of every image: stream 0, the ODE classifier's draw 0 of the shared slot. */
const DEQUANT_DRAW = 0;
const STREAM_TIMES = 0x60000000;
const STREAM_NOISE = 0x60000001;

const LOG_2PI_E = Math.log(2 * Math.PI) + 1;

export interface ElboOptions {
  /** Stratified time samples per image (default 64). */
  k?: number;
  /** Lower end ε of the time integral (default 1e-5, the ODE's ε_t). */
  epsT?: number;
  /** Seed of t, z and the dequantisation noise (default 0). */
  seed?: number;
  /** Global index of the first image (keys its draws; default 0). */
  imageOffset?: number;
  /** Pixel input: add U[0, 1/256) noise per value (default true). Model-space images carry their own. */
  dequantise?: boolean;
  /** Model space [−1, 1] (true) or [0, 1]; default: the model's config.centered, else false. Model-space images carry their own. */
  centered?: boolean;
  /** log p(y) (default uniform). */
  logPrior?: ArrayLike<number>;
  /** Network rows (image × stratum × class) per call (default 256). */
  batchRows?: number;
  /** Where the K times go: quantiles of q(t) ∝ g²/σ² ('importance', default) or uniform on [ε, T] ('uniform'). */
  times?: ElboTimes;
}

export type ElboTimes = 'importance' | 'uniform' | 'mixture';
export const ELBO_TIMES: readonly ElboTimes[] = ['importance', 'uniform', 'mixture'];

export const ELBO_TIMES_DESCRIPTION: Record<ElboTimes, string> = {
  importance: 'stratified quantiles of the likelihood-importance proposal q(t) ∝ g²/σ² on [ε, T]',
  uniform: 'stratified uniform t on [ε, T], weight (T − ε)·g²/σ²',
  mixture: 'half importance quantiles, half uniform strata; balance-heuristic weights',
};

/** Mixture times: the first ⌈K/2⌉ samples are importance quantiles, the rest uniform strata. */
function mixtureSplit(K: number): [number, number] {
  const n1 = Math.ceil(K / 2);
  return [n1, K - n1];
}

/**
 * The weight w(t) of one sample, so that J ≈ (1/K)·Σ_k ½·w(t_k)‖ε̂ − z_k‖² is unbiased: (g²/σ²)/q(t) for the
 * density q the times come from — Z for importance, (T − ε)·g²/σ² for uniform, and for the mixture the balance
 * heuristic of multiple importance sampling, (g²/σ²)/((n₁/K)·q_imp + (n₂/K)·q_unif), which stays ≤ K/n₁·Z.
 */
export function elboWeight(sde: Sde, times: ElboTimes, t: number, k: number, epsT: number): number {
  const Z = importanceNormaliser(sde, epsT);
  const ratio = sde.diffusionSquared(t) / sde.marginalStd(t) ** 2;
  if (times === 'importance') return Z;
  const span = sde.T - epsT;
  if (times === 'uniform') return span * ratio;
  const [n1, n2] = mixtureSplit(k);
  return ratio / ((n1 / k) * (ratio / Z) + (n2 / k) / span);
}

export interface ElboClassifyResult {
  estimator: 'elbo';
  nImages: number;
  numClasses: number;
  dim: number;
  k: number;
  epsT: number;
  probeSharing: ProbeSharing;
  timeSampling: string;
  modelSpace: string;
  /** [nImages, numClasses]: the ELBO L(x, y) ≤ log p̃(x|y), nats in model space. */
  logpPerClass: Float64Array;
  /** [nImages, numClasses]: Monte-Carlo standard error of logpPerClass (collapsed strata). */
  logpStdErrPerClass: Float64Array;
  /** [nImages, numClasses]: p(y|x) = softmax_y(L(x, y) + log p(y)). */
  posterior: Float64Array;
  /** logsumexp_y(L(x, y) + log p(y)), a lower bound of log p̃(x). */
  logpMarginal: Float64Array;
  bitsPerDimMarginal: Float64Array;
  predicted: Uint32Array;
  /** Per image: the model-independent part c(x) of the bound. */
  constantPerImage: Float64Array;
  /** Batched network calls. */
  nfev: number;
  /** Network evaluations of single samples: nImages·numClasses·k (each a forward pass, no VJP). */
  networkEvaluations: number;
}

/** The model-independent part c(x) of the bound (see the module comment), from ‖x‖² and D. */
export function elboConstant(sde: Sde, dim: number, normSquared: number, epsT: number): number {
  const mEps = sde.meanCoefficient(epsT);
  const sEps = sde.marginalStd(epsT);
  const mT = sde.meanCoefficient(sde.T);
  const sT = sde.marginalStd(sde.T);
  const D = dim;
  return D * Math.log(mEps) - 0.5 * D * (LOG_2PI_E + 2 * Math.log(sEps)) - 0.5 * (D * sT * sT + mT * mT * normSquared - D - 2 * D * Math.log(sT));
}

/** The draws of one image: stratified times t_k and the noise z_k (f32, [K, D], the values x_t is built from). */
export function elboDraws(
  sde: Sde,
  o: { k: number; dim: number; seed: number; imageKey: number; epsT: number; times?: ElboTimes },
): { t: Float64Array; z: Float32Array } {
  const { k: K, dim: D, seed, imageKey, epsT } = o;
  const v = drawHost(K, 'uniform', { seed, stream: STREAM_TIMES, offset: imageKey * blocksFor(K, 'uniform') });
  const uniform = (u: number) => epsT + u * (sde.T - epsT);
  const [n1, n2] = mixtureSplit(K);
  const t =
    o.times === 'uniform'
      ? Float64Array.from(v, (vk, k) => uniform((k + vk) / K))
      : o.times === 'mixture'
        ? Float64Array.from(v, (vk, k) => (k < n1 ? invertImportanceCdf(sde, (k + vk) / n1, epsT) : uniform((k - n1 + vk) / n2)))
        : Float64Array.from(v, (vk, k) => invertImportanceCdf(sde, (k + vk) / K, epsT));
  const z = drawHost(K * D, 'normal', { seed, stream: STREAM_NOISE, offset: imageKey * blocksFor(K * D, 'normal') }) as Float32Array;
  return { t, z };
}

function positiveInt(v: number, what: string): number {
  if (!(Number.isSafeInteger(v) && v >= 1)) throw new RangeError(`elboClassify: ${what} must be a positive integer, got ${v}`);
  return v;
}

interface ImageDraws {
  /** [K, D] x_t rows (f32). */
  xt: Float32Array;
  z: Float32Array;
  t: Float64Array;
}

/**
 * The ELBO classifier: L(x, y) for every class of every image (rows image × stratum × class, batched through the
 * network in chunks of batchRows), then p(y|x), the marginal bound and ŷ = argmax_y.
 */
export async function elboClassify(e: Engine, model: ScoreModel, input: ImageInput, options: ElboOptions = {}): Promise<ElboClassifyResult> {
  requireClasses(model, 'elboClassify');
  const centered = options.centered ?? configuredCentering(model);
  const images = imagesInModelSpace(input, model.shape, { centered, dequantise: options.dequantise ?? true }, 'elboClassify');
  return elboClassifyImages(e, model, images, options);
}

/** `elboClassify` of images already in model space (options.centered/dequantise: the images' own). */
export async function elboClassifyImages(e: Engine, model: ScoreModel, images: ModelSpaceImages, options: ElboOptions = {}): Promise<ElboClassifyResult> {
  const C = requireClasses(model, 'elboClassify');
  const K = positiveInt(options.k ?? 64, 'k');
  const batchRows = positiveInt(options.batchRows ?? 256, 'batchRows');
  const seed = options.seed ?? 0;
  const imageOffset = options.imageOffset ?? 0;
  if (!(Number.isSafeInteger(imageOffset) && imageOffset >= 0)) throw new RangeError(`elboClassify: imageOffset must be a non-negative integer, got ${imageOffset}`);
  const sde = model.sde;
  const epsT = options.epsT ?? 1e-5;
  if (!(epsT > 0 && epsT < sde.T)) throw new RangeError(`elboClassify: need 0 < epsT < T = ${sde.T}, got ${epsT}`);
  const logPrior = classLogPrior(options.logPrior, C, 'elboClassify');

  const [ch, h, w] = model.shape;
  const D = ch * h * w;
  if (images.dim !== D) throw new ShapeError(`elboClassify: images have ${images.dim} values each, the model's shape ${model.shape.join('×')} needs ${D}`);
  const centered = images.centered;
  const I = images.count;
  const xs = new Float32Array(I * D);
  for (let i = 0; i < I; i++) xs.set(images.image(i, { seed, stream: DEQUANT_DRAW, imageKey: imageOffset + i }), i * D);

  const times = options.times ?? 'importance';
  if (!ELBO_TIMES.includes(times)) throw new RangeError(`elboClassify: times must be ${ELBO_TIMES.join(' or ')}, got ${String(times)}`);
  const weightAt = (t: number): number => elboWeight(sde, times, t, K, epsT);
  // terms[(i·K + k)·C + y] = ½w(t_k)‖ε̂ − z‖²: stratum k's estimate of J for class y.
  const terms = new Float64Array(I * K * C);
  const draws = new Map<number, ImageDraws>();
  const drawsOf = (i: number): ImageDraws => {
    let d = draws.get(i);
    if (!d) {
      const { t, z } = elboDraws(sde, { k: K, dim: D, seed, imageKey: imageOffset + i, epsT, times });
      const xt = new Float32Array(K * D);
      const x0 = xs.subarray(i * D, (i + 1) * D);
      for (let k = 0; k < K; k++) xt.set(perturb(sde, t[k], x0, z.subarray(k * D, (k + 1) * D)), k * D);
      d = { xt, z, t };
      draws.set(i, d);
    }
    return d;
  };

  const totalRows = I * K * C;
  let nfev = 0;
  for (let r0 = 0; r0 < totalRows; r0 += batchRows) {
    const r1 = Math.min(totalRows, r0 + batchRows);
    const B = r1 - r0;
    const xt = new Float32Array(B * D);
    const rowTimes = new Float64Array(B);
    const labels = new Uint32Array(B);
    for (let r = r0; r < r1; r++) {
      const i = Math.floor(r / (K * C));
      const k = Math.floor(r / C) % K;
      const d = drawsOf(i);
      xt.set(d.xt.subarray(k * D, (k + 1) * D), (r - r0) * D);
      rowTimes[r - r0] = d.t[k];
      labels[r - r0] = r % C;
    }
    const eps = await e.scope(async () => {
      const x = e.tensor(xt, [B, ch, h, w], 'f32', 'elbo.x_t');
      return (await model.epsilon(e, x, rowTimes, labels).read()) as Float32Array;
    });
    nfev++;
    for (let r = r0; r < r1; r++) {
      const i = Math.floor(r / (K * C));
      const k = Math.floor(r / C) % K;
      const d = drawsOf(i);
      const z = d.z;
      let sq = 0;
      for (let j = 0; j < D; j++) {
        const diff = eps[(r - r0) * D + j] - z[k * D + j];
        sq += diff * diff;
      }
      terms[r] = 0.5 * weightAt(d.t[k]) * sq;
    }
    // Images whose rows are all done.
    for (const i of draws.keys()) if ((i + 1) * K * C <= r1) draws.delete(i);
  }

  const logpPerClass = new Float64Array(I * C);
  const logpStdErrPerClass = new Float64Array(I * C);
  const constantPerImage = new Float64Array(I);
  const pairs = Math.floor(K / 2);
  for (let i = 0; i < I; i++) {
    let norm = 0;
    for (let j = i * D; j < (i + 1) * D; j++) norm += xs[j] * xs[j];
    const c = elboConstant(sde, D, norm, epsT);
    constantPerImage[i] = c;
    for (let y = 0; y < C; y++) {
      const term = (k: number) => terms[(i * K + k) * C + y];
      let sum = 0;
      for (let k = 0; k < K; k++) sum += term(k);
      logpPerClass[i * C + y] = c - sum / K;
      // Collapsed strata: Var(Σ_k a_k/K) ≈ (1/K²)·Σ_j (a_2j − a_2j+1)² · K/(2·pairs) (odd K: the last stratum
      // is represented by the average pair).
      let v = 0;
      for (let j = 0; j < pairs; j++) v += (term(2 * j) - term(2 * j + 1)) ** 2;
      logpStdErrPerClass[i * C + y] = pairs > 0 ? Math.sqrt((v * K) / (2 * pairs)) / K : NaN;
    }
  }
  const { posterior, logpMarginal, predicted } = classPosterior(logpPerClass, logPrior, I, C);
  return {
    estimator: 'elbo',
    nImages: I,
    numClasses: C,
    dim: D,
    k: K,
    epsT,
    probeSharing: 'shared-across-classes',
    timeSampling: ELBO_TIMES_DESCRIPTION[times],
    modelSpace: describeModelSpace(centered),
    logpPerClass,
    logpStdErrPerClass,
    posterior,
    logpMarginal,
    bitsPerDimMarginal: logpMarginal.map((l) => (Number.isFinite(l) ? bitsPerDim(l, D, centered) : NaN)),
    predicted,
    constantPerImage,
    nfev,
    networkEvaluations: totalRows,
  };
}
