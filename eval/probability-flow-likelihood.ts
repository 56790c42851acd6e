/**
 * Probability-flow log-likelihoods (SPEC §3) and the generative classifier built on them.
 *
 * Every (image, class, draw) is one row of ONE batched solve of the augmented ODE from ε_t to T; a draw fixes the
 * Hutchinson probe and the dequantisation noise (SPEC §1) of its row. log p₀(x|y) = log p_T(x(T)) + ℓ(T) with
 * p_T = N(0, I) unless a prior is given; log p is averaged over draws (and its spread reported).
 *
 * Randomness is keyed, not sequential: the noise of (image i, draw k, class slot c) is Philox with
 * stream = base + k·(numClasses + 1) + c and block offset (imageOffset + i)·⌈D/4⌉, so a row's numbers do not
 * depend on the batch it is solved in. Slot c = 0 is shared by all classes of an image (common random numbers,
 * the default for classify); c = y + 1 gives class y its own draws (the paper's independent draws). The numbers
 * are drawn on the host with engine/rng.ts's drawHost (the same Philox words as the GPU generator) and uploaded
 * once per solve; the probes are held fixed for the whole solve.
 *
 * Start point (`start`). 'clean' (the paper, SPEC §3): the image itself is the ODE state at ε_t, so log p is
 * log p_ε(x) — right for ε_t → 0, but at a larger ε_t a clean image is an atypical point of the diffused marginal
 * p_ε (whose samples carry noise of std σ_ε), and its density there is an extrapolation of the model. 'diffused':
 * the state at ε_t is a draw of the forward process, x_ε = m_ε·x + σ_ε·z (z ~ N(0, I), keyed like the probes and
 * shared across classes with them), and log p = log p_ε(x_ε) + D·log m_ε — a one-sample estimate of the lower
 * bound log p̃(x) ≥ E_z[log p_ε(x_ε)] + D·log m_ε for the model p̃ = p_ε closed by the Gaussian decoder
 * N(x; x_ε/m_ε, (σ_ε/m_ε)²I) (the reconstruction term of eval/elbo.ts, where the derivation is), so it is the ODE's
 * counterpart of the ELBO at the same ε_t and its bits/dim are those of p̃. Each draw has its own z.
 *
 * Images come in model space (data/model-space-images.ts): the draw key of a row selects its dequantisation noise.
 * `logLikelihood` and `classify` take pixels or values and convert them once, on entry.
 */
import type { Engine } from '../engine/engine.js';
import { SbgcError, ShapeError } from '../engine/errors.js';
import { blocksFor, drawHost } from '../engine/rng.js';
import { bitsPerDim as bitsPerDimOf, describeModelSpace } from '../data/model-space.js';
import { configuredCentering, DEQUANT_STREAM, imagesInModelSpace, type ImageInput, type ModelSpaceImages } from '../data/model-space-images.js';
import type { ScoreModel } from '../model/score.js';
import { perturb } from '../model/sde.js';
import type { BatchSolveOptions } from '../solvers/ode/batch-types.js';
import { solveBatch } from '../solvers/ode/solve-batch.js';
import { probabilityFlowRhs, sampleDim, type DivergenceEstimator } from '../solvers/probability-flow.js';
import { HUTCHINSON_PASSES } from '../solvers/divergence.js';
import { classLogPrior, classPosterior, meanStd, requireClasses } from './class-posterior.js';
import { LIKELIHOOD_STARTS, type ClassifyOptions, type ClassifyResult, type LikelihoodOptions, type LikelihoodResult, type SolveSummary } from './probability-flow-types.js';

export { classLogPrior, classPosterior } from './class-posterior.js';
export type { ImageInput } from '../data/model-space-images.js';

export * from './probability-flow-types.js';

// The dequantisation noise is data/model-space-images.ts's DEQUANT_STREAM (0x40000000) + the row's stream.
const STREAM_PROBES = 0x50000000;
/** Noise z of the diffused start (eval/elbo.ts uses 0x60000000 and 0x60000001). */
const STREAM_START = 0x70000000;

/**
 * The diffused start of one row: x_ε = m_ε·x + σ_ε·z with z the Philox normal draw of (seed, stream, image key),
 * in float32 as the solver's state holds it.
 */
export function diffusedStart(
  model: ScoreModel,
  x: ArrayLike<number>,
  epsT: number,
  key: { seed: number; stream: number; imageKey: number },
): Float32Array {
  const D = x.length;
  const z = drawHost(D, 'normal', { seed: key.seed, stream: STREAM_START + key.stream, offset: key.imageKey * blocksFor(D, 'normal') });
  return perturb(model.sde, epsT, x, z);
}

/** The input in model space, converted once (the one place pixels and values differ). */
function toImages(model: ScoreModel, input: ImageInput, o: LikelihoodOptions, what: string): ModelSpaceImages {
  return imagesInModelSpace(input, model.shape, { centered: o.centered ?? configuredCentering(model), dequantise: o.dequantise ?? true }, what);
}

function checkImages(model: ScoreModel, images: ModelSpaceImages, what: string): void {
  const D = sampleDim(model);
  if (images.dim !== D) throw new ShapeError(`${what}: images have ${images.dim} values each, the model's shape ${model.shape.join('×')} needs ${D}`);
}

function resolve(model: ScoreModel, o: LikelihoodOptions, what: string) {
  const T = o.T ?? model.sde.T;
  const epsT = o.epsT ?? 1e-5;
  if (!(epsT > 0 && epsT < T && T <= model.sde.T)) throw new RangeError(`${what}: need 0 < epsT < T ≤ ${model.sde.T}, got epsT ${epsT}, T ${T}`);
  const nProbes = o.nProbes ?? 1;
  if (!(Number.isInteger(nProbes) && nProbes >= 1 && nProbes < 1 << 20)) throw new RangeError(`${what}: nProbes must be a positive integer, got ${nProbes}`);
  const probes = o.probes ?? 'rademacher';
  if (!['rademacher', 'gaussian', 'exact'].includes(probes)) throw new RangeError(`${what}: unknown probes '${probes}'`);
  const start = o.start ?? 'clean';
  if (!LIKELIHOOD_STARTS.includes(start)) throw new RangeError(`${what}: start must be one of ${LIKELIHOOD_STARTS.join(', ')}, got '${start}'`);
  const hutchinsonPass = o.hutchinsonPass ?? 'forward';
  if (!HUTCHINSON_PASSES.includes(hutchinsonPass)) throw new RangeError(`${what}: hutchinsonPass must be one of ${HUTCHINSON_PASSES.join(', ')}, got '${hutchinsonPass}'`);
  const imageOffset = o.imageOffset ?? 0;
  if (!(Number.isInteger(imageOffset) && imageOffset >= 0)) throw new RangeError(`${what}: imageOffset must be a non-negative integer`);
  return {
    T,
    epsT,
    start,
    nProbes,
    probes,
    hutchinsonPass,
    imageOffset,
    seed: o.seed ?? 0,
    prior: o.priorLogDensity,
    solve: {
      rtol: o.rtol ?? 1e-5,
      atol: o.atol ?? 1e-5,
      stepControl: o.stepControl ?? 'shared',
      state: o.state ?? 'gpu-f32',
      maxSteps: o.maxSteps,
      onProgress: o.onProgress,
    } satisfies BatchSolveOptions,
  };
}

function checkLabels(model: ScoreModel, labels: ArrayLike<number>, n: number, what: string): void {
  if (labels.length !== n) throw new ShapeError(`${what}: ${labels.length} labels for ${n} images`);
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    if (!(Number.isInteger(y) && y >= 0 && y < model.numClasses)) {
      throw new RangeError(`${what}: label of image ${i} is ${y}, outside [0, ${model.numClasses})`);
    }
  }
}

/** One row of the batch: which image, draw and class, and which noise slot (0 = shared by the classes). */
interface Row {
  image: number;
  draw: number;
  label: number | null;
  slot: number;
}

async function solveRows(
  e: Engine,
  model: ScoreModel,
  images: ModelSpaceImages,
  rows: Row[],
  r: ReturnType<typeof resolve>,
): Promise<{ logp: Float64Array; summary: SolveSummary }> {
  const D = images.dim;
  const N = D + 1;
  const B = rows.length;
  const slots = Math.max(1, model.numClasses) + 1;
  if (r.nProbes * slots >= STREAM_PROBES - DEQUANT_STREAM) {
    throw new RangeError(`nProbes ${r.nProbes} × ${slots} class slots exceeds the ${STREAM_PROBES - DEQUANT_STREAM} random streams per purpose`);
  }
  const dist = r.probes === 'gaussian' ? 'normal' : 'rademacher';
  const y0 = new Float64Array(B * N);
  const probes = r.probes === 'exact' ? null : new Float32Array(B * D);
  const cache = new Map<string, { x: Float32Array; probe: Float32Array | null }>();
  rows.forEach((row, k) => {
    const key = `${row.image}/${row.draw}/${row.slot}`;
    let c = cache.get(key);
    if (!c) {
      const stream = row.draw * slots + row.slot;
      const imageKey = r.imageOffset + row.image;
      let x = images.image(row.image, { seed: r.seed, stream, imageKey });
      if (r.start === 'diffused') x = diffusedStart(model, x, r.epsT, { seed: r.seed, stream, imageKey });
      const probe = probes
        ? (drawHost(D, dist, { seed: r.seed, stream: STREAM_PROBES + stream, offset: imageKey * blocksFor(D, dist) }) as Float32Array)
        : null;
      c = { x, probe };
      cache.set(key, c);
    }
    y0.set(c.x, k * N);
    if (probes && c.probe) probes.set(c.probe, k * D);
  });
  const labels = model.numClasses > 0 ? Uint32Array.from(rows, (row) => row.label ?? 0) : null;
  const probeT = probes ? e.keep(e.tensor(probes, [B, D], 'f32', 'pf.probes')) : null;
  const divergence: DivergenceEstimator = probeT ? { kind: 'hutchinson', probes: probeT, pass: r.hutchinsonPass } : { kind: 'exact' };
  const rhs = probabilityFlowRhs(e, { model, batch: B, labels, divergence });
  let res;
  try {
    res = await solveBatch(e, rhs, [r.epsT, r.T], y0, { batch: B, dim: N }, r.solve);
  } finally {
    probeT?.dispose();
  }
  const logp = new Float64Array(B);
  const priorLogp = new Float64Array(B);
  const deltaLogp = new Float64Array(B);
  const z = new Float64Array(D);
  // The decoder's D·log m_ε (see the module comment): log p then bounds log p̃(x), not log p_ε(x_ε).
  const decoder = r.start === 'diffused' ? D * Math.log(model.sde.meanCoefficient(r.epsT)) : 0;
  rows.forEach((row, k) => {
    if (res.rows[k].status !== 'success') {
      logp[k] = priorLogp[k] = deltaLogp[k] = NaN;
      return;
    }
    z.set(res.yFinal.subarray(k * N, k * N + D));
    priorLogp[k] = r.prior ? r.prior(z, row.label) : model.sde.priorLogProb(z);
    deltaLogp[k] = res.yFinal[k * N + D];
    logp[k] = priorLogp[k] + deltaLogp[k] + decoder;
  });
  res.dispose();
  return {
    logp,
    summary: {
      nfev: res.nfev,
      nSteps: res.nSteps,
      nRejected: res.nRejected,
      status: res.status,
      message: res.message,
      rows: res.rows,
      probes: r.probes,
      nProbes: r.nProbes,
      hutchinsonPass: probeT ? r.hutchinsonPass : null,
      start: r.start,
      stepControl: res.stepControl,
      state: res.state,
      precision: res.precision,
      modelSpace: describeModelSpace(images.centered),
      priorLogpPerRow: priorLogp,
      deltaLogpPerRow: deltaLogp,
    },
  };
}

function bpd(logp: number, D: number, centered: boolean): number {
  return Number.isNaN(logp) ? NaN : bitsPerDimOf(logp, D, centered);
}

/**
 * log p₀(x|y) per image (labels for a class-conditional model, null for an unconditional one), averaged over
 * nProbes draws solved as one batch (rows image-major: image·nProbes + draw).
 */
export async function logLikelihood(
  e: Engine,
  model: ScoreModel,
  input: ImageInput,
  labels: ArrayLike<number> | null,
  options: LikelihoodOptions = {},
): Promise<LikelihoodResult> {
  return logLikelihoodOfImages(e, model, toImages(model, input, options, 'logLikelihood'), labels, options);
}

/** `logLikelihood` of images already in model space (options.centered/dequantise: the images' own). */
export async function logLikelihoodOfImages(
  e: Engine,
  model: ScoreModel,
  images: ModelSpaceImages,
  labels: ArrayLike<number> | null,
  options: LikelihoodOptions = {},
): Promise<LikelihoodResult> {
  const what = 'logLikelihood';
  checkImages(model, images, what);
  const r = resolve(model, options, what);
  if (model.numClasses > 0) {
    if (!labels) throw new SbgcError(`${what}: the model is class-conditional (${model.numClasses} classes); labels are required`);
    checkLabels(model, labels, images.count, what);
  } else if (labels) {
    throw new SbgcError(`${what}: the model is unconditional; pass labels = null`);
  }
  const rows: Row[] = [];
  for (let i = 0; i < images.count; i++) {
    for (let k = 0; k < r.nProbes; k++) rows.push({ image: i, draw: k, label: labels ? labels[i] : null, slot: 0 });
  }
  const out = await solveRows(e, model, images, rows, r);
  const n = r.nProbes;
  const logpNats = new Float64Array(images.count);
  const logpStdNats = new Float64Array(images.count);
  for (let i = 0; i < images.count; i++) {
    const ms = meanStd(out.logp.subarray(i * n, (i + 1) * n));
    logpNats[i] = ms.mean;
    logpStdNats[i] = ms.std;
  }
  return {
    ...out.summary,
    nImages: images.count,
    dim: images.dim,
    logpNats,
    logpStdNats,
    logpPerDraw: out.logp,
    bitsPerDim: logpNats.map((l) => bpd(l, images.dim, images.centered)),
  };
}

/**
 * The generative classifier (SPEC §3): log p₀(x|y) for ALL classes of every image in ONE batched solve
 * (images × draws × classes), then p(y|x), log p(x) and ŷ = argmax_y p(y|x).
 */
export async function classify(e: Engine, model: ScoreModel, input: ImageInput, options: ClassifyOptions = {}): Promise<ClassifyResult> {
  requireClasses(model, 'classify');
  return classifyImages(e, model, toImages(model, input, options, 'classify'), options);
}

/** `classify` of images already in model space (options.centered/dequantise: the images' own). */
export async function classifyImages(e: Engine, model: ScoreModel, images: ModelSpaceImages, options: ClassifyOptions = {}): Promise<ClassifyResult> {
  const what = 'classify';
  const K = requireClasses(model, what);
  checkImages(model, images, what);
  const r = resolve(model, options, what);
  const shared = options.sharedProbesAcrossClasses ?? true;
  const logPrior = classLogPrior(options.logPrior, K, what);
  const n = r.nProbes;
  const rows: Row[] = [];
  for (let i = 0; i < images.count; i++) {
    for (let k = 0; k < n; k++) for (let y = 0; y < K; y++) rows.push({ image: i, draw: k, label: y, slot: shared ? 0 : y + 1 });
  }
  const out = await solveRows(e, model, images, rows, r);
  const I = images.count;
  const logpPerClass = new Float64Array(I * K);
  const logpStdPerClass = new Float64Array(I * K);
  const draws = new Float64Array(n);
  for (let i = 0; i < I; i++) {
    for (let y = 0; y < K; y++) {
      for (let k = 0; k < n; k++) draws[k] = out.logp[(i * n + k) * K + y];
      const ms = meanStd(draws);
      logpPerClass[i * K + y] = ms.mean;
      logpStdPerClass[i * K + y] = ms.std;
    }
  }
  const { posterior, logpMarginal, predicted } = classPosterior(logpPerClass, logPrior, I, K);
  return {
    ...out.summary,
    nImages: I,
    numClasses: K,
    dim: images.dim,
    probeSharing: shared ? 'shared-across-classes' : 'independent',
    logpPerClass,
    logpStdPerClass,
    logpPerDraw: out.logp,
    posterior,
    logpMarginal,
    bitsPerDimMarginal: logpMarginal.map((l) => bpd(l, images.dim, images.centered)),
    predicted,
  };
}
