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
 */
import type { Engine } from '../engine/engine.js';
import { SbgcError, ShapeError } from '../engine/errors.js';
import { blocksFor, drawHost } from '../engine/rng.js';
import { bitsPerDim as bitsPerDimOf, describeModelSpace, toModelSpace } from '../data/model-space.js';
import type { ScoreModel } from '../model/score.js';
import { perturb } from '../model/sde.js';
import { solveBatch, type BatchSolveOptions, type RowOutcome, type SolveProgress, type StatePlacement, type StepControl } from './gpu-rk45.js';
import { probabilityFlowRhs, sampleDim, type DivergenceEstimator } from './probability-flow.js';
import { HUTCHINSON_PASSES, type HutchinsonPass } from './divergence.js';
import type { SolveIvpStatus } from './dormand-prince.js';

export type ProbeKind = 'rademacher' | 'gaussian' | 'exact';
export type LikelihoodStart = 'clean' | 'diffused';
export const LIKELIHOOD_STARTS: readonly LikelihoodStart[] = ['clean', 'diffused'];
export type ProbeSharing = 'shared-across-classes' | 'independent';

/** 8-bit images (C·H·W bytes each, CHW order, dequantised per SPEC §1), or model-space values directly. */
export type ImageInput = { pixels: Uint8Array } | { x: ArrayLike<number> };

export interface LikelihoodOptions {
  /** Default 1e-5 (the paper's setting, SPEC §3). */
  rtol?: number;
  /** Default 1e-5. */
  atol?: number;
  /** Start time ε_t (default 1e-5). */
  epsT?: number;
  /** State at ε_t: the image ('clean', default, the paper) or a forward-process draw from it ('diffused'; see above). */
  start?: LikelihoodStart;
  /** End time (default the SDE's T = 1). */
  T?: number;
  /** Divergence estimator (default 'rademacher'); 'exact' costs D score VJPs per evaluation (small D only). */
  probes?: ProbeKind;
  /** Draws n (default 1): n independent solves batched along the batch axis, log p averaged over them. */
  nProbes?: number;
  /** How εᵀ(∂s/∂x)ε is formed (solvers/divergence.ts): 'forward' (default: one JVP, the cheaper pass measured) or 'reverse' (one VJP). */
  hutchinsonPass?: HutchinsonPass;
  /** Seed of the probes and the dequantisation noise (default 0). */
  seed?: number;
  /** Default 'shared' (the reference: one step size for the whole batch). */
  stepControl?: StepControl;
  /** Default 'gpu-f32' (see gpu-rk45.ts for the precision of each placement). */
  state?: StatePlacement;
  /** Pixel input: add U[0, 1/256) noise per value (default true); false uses pixels/256 exactly. */
  dequantise?: boolean;
  /** Model space [−1, 1] (true) or [0, 1]; default: the model's config.centered, else false. */
  centered?: boolean;
  /** Global index of the first image (keys its random streams; default 0). */
  imageOffset?: number;
  /** Replaces the N(0, I) prior log p_T (e.g. the exact p_T of an analytic model). */
  priorLogDensity?: (z: Float64Array, label: number | null) => number;
  maxSteps?: number;
  onProgress?: (p: SolveProgress) => void;
}

export interface ClassifyOptions extends LikelihoodOptions {
  /** Same probes and dequantisation noise for every class of an image (default true: common random numbers). */
  sharedProbesAcrossClasses?: boolean;
  /** log p(y) (default uniform). */
  logPrior?: ArrayLike<number>;
}

interface SolveSummary {
  /** Batched RHS evaluations. */
  nfev: number;
  /** Accepted steps (shared) or rounds (per-sample). */
  nSteps: number;
  nRejected: number;
  status: SolveIvpStatus;
  message: string;
  /** Per row of the batch (see each result for the row order). */
  rows: RowOutcome[];
  probes: ProbeKind;
  nProbes: number;
  /** The AD pass of the Hutchinson product (null for exact divergence). */
  hutchinsonPass: HutchinsonPass | null;
  /** The state at ε_t: the image, or a forward-process draw from it (the module comment). */
  start: LikelihoodStart;
  stepControl: StepControl;
  state: StatePlacement;
  /** The precision of the solve (f32 GPU state or float64 host state). */
  precision: string;
  /** The model space the nats refer to (SPEC §1). */
  modelSpace: string;
  /** Per row: log p_T(x(T)) and ℓ(T) = ∫∇·f̃ dt, whose sum is the row's log p₀ (NaN where the row failed). */
  priorLogpPerRow: Float64Array;
  deltaLogpPerRow: Float64Array;
}

export interface LikelihoodResult extends SolveSummary {
  nImages: number;
  dim: number;
  /** log p₀(x|y) per image in nats (model space), mean over draws; NaN where a row failed. */
  logpNats: Float64Array;
  /** Sample standard deviation over draws (0 for one draw). */
  logpStdNats: Float64Array;
  /** [nImages, nProbes] (rows are image-major: row = image·nProbes + draw). */
  logpPerDraw: Float64Array;
  /** SPEC §1 bits/dim of logpNats with the model-space scale (1 uncentred, 2 centred) made explicit. */
  bitsPerDim: Float64Array;
}

export interface ClassifyResult extends SolveSummary {
  nImages: number;
  numClasses: number;
  dim: number;
  probeSharing: ProbeSharing;
  /** [nImages, numClasses]: log p₀(x|y), mean over draws (rows: (image·nProbes + draw)·numClasses + y). */
  logpPerClass: Float64Array;
  /** [nImages, numClasses]: sample std over draws. */
  logpStdPerClass: Float64Array;
  /** [nImages, nProbes, numClasses]. */
  logpPerDraw: Float64Array;
  /** [nImages, numClasses]: p(y|x) = softmax_y(log p(x|y) + log p(y)). */
  posterior: Float64Array;
  /** log p(x) = logsumexp_y(log p(x|y) + log p(y)). */
  logpMarginal: Float64Array;
  bitsPerDimMarginal: Float64Array;
  predicted: Uint32Array;
}

const STREAM_DEQUANT = 0x40000000;
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

interface Prepared {
  nImages: number;
  D: number;
  pixels: Uint8Array | null;
  x: Float32Array | null;
}

function modelCentered(model: ScoreModel): boolean {
  const config = (model as { config?: { centered?: unknown } }).config;
  return typeof config?.centered === 'boolean' ? config.centered : false;
}

function prepare(model: ScoreModel, input: ImageInput, what: string): Prepared {
  const D = sampleDim(model);
  const [C, H, W] = model.shape;
  const data = 'pixels' in input ? input.pixels : input.x;
  if (!data || data.length === 0 || data.length % D !== 0) {
    throw new ShapeError(
      `${what}: expected images of C×H×W = ${C}×${H}×${W} = ${D} values each (the model's shape), got ` +
        `${data?.length ?? 0} values${data?.length ? `, not a multiple of ${D}` : ''}`,
    );
  }
  if ('pixels' in input) {
    if (!(input.pixels instanceof Uint8Array)) throw new SbgcError(`${what}: pixels must be a Uint8Array of 8-bit values`);
    return { nImages: data.length / D, D, pixels: input.pixels, x: null };
  }
  const x = Float32Array.from(input.x);
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw new RangeError(`${what}: x[${i}] (image ${Math.floor(i / D)}) is ${x[i]}`);
  }
  return { nImages: x.length / D, D, pixels: null, x };
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
    centered: o.centered ?? modelCentered(model),
    dequantise: o.dequantise ?? true,
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
  input: Prepared,
  rows: Row[],
  r: ReturnType<typeof resolve>,
): Promise<{ logp: Float64Array; summary: SolveSummary }> {
  const D = input.D;
  const N = D + 1;
  const B = rows.length;
  const slots = Math.max(1, model.numClasses) + 1;
  if (r.nProbes * slots >= STREAM_PROBES - STREAM_DEQUANT) {
    throw new RangeError(`nProbes ${r.nProbes} × ${slots} class slots exceeds the ${STREAM_PROBES - STREAM_DEQUANT} random streams per purpose`);
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
      let x: Float32Array;
      if (input.pixels) {
        const noise =
          r.dequantise ? (drawHost(D, 'uniform', { seed: r.seed, stream: STREAM_DEQUANT + stream, offset: imageKey * blocksFor(D, 'uniform') }) as Float32Array) : undefined;
        x = toModelSpace(input.pixels.subarray(row.image * D, (row.image + 1) * D), { centered: r.centered, dequantNoise: noise });
      } else {
        x = input.x!.subarray(row.image * D, (row.image + 1) * D);
      }
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
      modelSpace: describeModelSpace(r.centered),
      priorLogpPerRow: priorLogp,
      deltaLogpPerRow: deltaLogp,
    },
  };
}

function meanStd(xs: ArrayLike<number>): { mean: number; std: number } {
  const n = xs.length;
  let s = 0;
  for (let i = 0; i < n; i++) s += xs[i];
  const mean = s / n;
  if (n < 2) return { mean, std: 0 };
  let q = 0;
  for (let i = 0; i < n; i++) q += (xs[i] - mean) ** 2;
  return { mean, std: Math.sqrt(q / (n - 1)) };
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
  const what = 'logLikelihood';
  const prep = prepare(model, input, what);
  const r = resolve(model, options, what);
  if (model.numClasses > 0) {
    if (!labels) throw new SbgcError(`${what}: the model is class-conditional (${model.numClasses} classes); labels are required`);
    checkLabels(model, labels, prep.nImages, what);
  } else if (labels) {
    throw new SbgcError(`${what}: the model is unconditional; pass labels = null`);
  }
  const rows: Row[] = [];
  for (let i = 0; i < prep.nImages; i++) {
    for (let k = 0; k < r.nProbes; k++) rows.push({ image: i, draw: k, label: labels ? labels[i] : null, slot: 0 });
  }
  const out = await solveRows(e, model, prep, rows, r);
  const n = r.nProbes;
  const logpNats = new Float64Array(prep.nImages);
  const logpStdNats = new Float64Array(prep.nImages);
  for (let i = 0; i < prep.nImages; i++) {
    const ms = meanStd(out.logp.subarray(i * n, (i + 1) * n));
    logpNats[i] = ms.mean;
    logpStdNats[i] = ms.std;
  }
  return {
    ...out.summary,
    nImages: prep.nImages,
    dim: prep.D,
    logpNats,
    logpStdNats,
    logpPerDraw: out.logp,
    bitsPerDim: logpNats.map((l) => bpd(l, prep.D, r.centered)),
  };
}

/** log p(y) for `classes` classes: the given values (checked: one per class, no NaN) or uniform. */
export function classLogPrior(given: ArrayLike<number> | undefined, classes: number, what: string): Float64Array {
  const logPrior = given ? Float64Array.from(given) : new Float64Array(classes).fill(-Math.log(classes));
  if (logPrior.length !== classes || logPrior.some((v) => Number.isNaN(v))) {
    throw new RangeError(`${what}: logPrior needs ${classes} values (one per class), not NaN`);
  }
  return logPrior;
}

/**
 * Bayes' rule per image from log p(x|y) ([images, classes]) and log p(y): p(y|x), log p(x) = logsumexp_y and
 * ŷ = argmax_y (the first on ties), shared by every classifier estimate (ODE, ELBO).
 */
export function classPosterior(
  logpPerClass: Float64Array,
  logPrior: Float64Array,
  images: number,
  classes: number,
): { posterior: Float64Array; logpMarginal: Float64Array; predicted: Uint32Array } {
  const posterior = new Float64Array(images * classes);
  const logpMarginal = new Float64Array(images);
  const predicted = new Uint32Array(images);
  for (let i = 0; i < images; i++) {
    const joint = (y: number) => logpPerClass[i * classes + y] + logPrior[y];
    let mx = -Infinity;
    let best = 0;
    for (let y = 0; y < classes; y++) {
      if (joint(y) > mx) {
        mx = joint(y);
        best = y;
      }
    }
    let z = 0;
    for (let y = 0; y < classes; y++) z += Math.exp(joint(y) - mx);
    logpMarginal[i] = mx + Math.log(z);
    for (let y = 0; y < classes; y++) posterior[i * classes + y] = Math.exp(joint(y) - logpMarginal[i]);
    predicted[i] = best;
  }
  return { posterior, logpMarginal, predicted };
}

/**
 * The generative classifier (SPEC §3): log p₀(x|y) for ALL classes of every image in ONE batched solve
 * (images × draws × classes), then p(y|x), log p(x) and ŷ = argmax_y p(y|x).
 */
export async function classify(e: Engine, model: ScoreModel, input: ImageInput, options: ClassifyOptions = {}): Promise<ClassifyResult> {
  const what = 'classify';
  const K = model.numClasses;
  if (!(K >= 1)) throw new SbgcError(`${what}: the model is unconditional (numClasses = 0); a classifier needs class-conditional scores`);
  const prep = prepare(model, input, what);
  const r = resolve(model, options, what);
  const shared = options.sharedProbesAcrossClasses ?? true;
  const logPrior = classLogPrior(options.logPrior, K, what);
  const n = r.nProbes;
  const rows: Row[] = [];
  for (let i = 0; i < prep.nImages; i++) {
    for (let k = 0; k < n; k++) for (let y = 0; y < K; y++) rows.push({ image: i, draw: k, label: y, slot: shared ? 0 : y + 1 });
  }
  const out = await solveRows(e, model, prep, rows, r);
  const I = prep.nImages;
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
    dim: prep.D,
    probeSharing: shared ? 'shared-across-classes' : 'independent',
    logpPerClass,
    logpStdPerClass,
    logpPerDraw: out.logp,
    posterior,
    logpMarginal,
    bitsPerDimMarginal: logpMarginal.map((l) => bpd(l, prep.D, r.centered)),
    predicted,
  };
}
