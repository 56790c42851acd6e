/** Options and results of the probability-flow likelihood and classifier (eval/probability-flow-likelihood.ts). */
import type { RowOutcome, SolveProgress, StatePlacement, StepControl } from '../solvers/ode/batch-types.js';
import type { HutchinsonPass } from '../solvers/divergence.js';
import type { SolveIvpStatus } from '../solvers/ode/outcome.js';

export type ProbeKind = 'rademacher' | 'gaussian' | 'exact';
export type LikelihoodStart = 'clean' | 'diffused';
export const LIKELIHOOD_STARTS: readonly LikelihoodStart[] = ['clean', 'diffused'];
export type ProbeSharing = 'shared-across-classes' | 'independent';

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
  /** Default 'gpu-f32' (see PRECISION_NOTE in solvers/ode/batch-types.ts). */
  state?: StatePlacement;
  /** Pixel input: add U[0, 1/256) noise per value (default true); false uses pixels/256 exactly. Model-space images carry their own. */
  dequantise?: boolean;
  /** Model space [−1, 1] (true) or [0, 1]; default: the model's config.centered, else false. Model-space images carry their own. */
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

export interface SolveSummary {
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
