/**
 * One interface for the estimators of log p(x|y): the probability-flow ODE (eval/probability-flow-likelihood.ts)
 * and the ELBO (eval/elbo.ts). Each takes images in model space and answers, per image and class, log p in nats,
 * its spread, Bayes' posterior and the cost, so a command runs either without knowing which.
 */
import type { Engine } from '../engine/engine.js';
import type { ModelSpaceImages } from '../data/model-space-images.js';
import type { ScoreModel } from '../model/score.js';
import type { SolveProgress } from '../solvers/ode/batch-types.js';
import { elboClassifyImages, type ElboOptions } from './elbo.js';
import { classifyImages, type ClassifyOptions } from './probability-flow-likelihood.js';

export type EstimatorName = 'ode' | 'elbo';

export interface ImageStatus {
  status: string;
  message?: string;
}

export interface ClassLogpEstimate {
  estimator: EstimatorName;
  nImages: number;
  numClasses: number;
  dim: number;
  /** [nImages, numClasses]: log p(x|y), nats in model space (ODE: mean over draws; ELBO: the bound). */
  logpPerClass: Float64Array;
  /** [nImages, numClasses]: std over draws (ODE) or the Monte-Carlo standard error (ELBO). */
  logpSpreadPerClass: Float64Array;
  /** [nImages, numClasses]: p(y|x). */
  posterior: Float64Array;
  logpMarginal: Float64Array;
  bitsPerDimMarginal: Float64Array;
  predicted: Uint32Array;
  /** Batched evaluations (progress display). */
  nfev: number;
  /** Per image: network evaluations along its path (ODE: the most of its rows; ELBO: K per class). */
  nfePerImage: Uint32Array;
  statusPerImage: ImageStatus[];
  /** Draws per image and their log p, [nImages, draws, numClasses] (ODE); null for the ELBO. */
  draws: number;
  logpPerDraw: Float64Array | null;
}

/** Where a chunk of images sits in the whole input: its random streams are keyed by the global image index. */
export interface ChunkPosition {
  imageOffset: number;
  onProgress?: (p: SolveProgress) => void;
}

export interface Estimator {
  readonly name: EstimatorName;
  logpPerClass(e: Engine, model: ScoreModel, images: ModelSpaceImages, at: ChunkPosition): Promise<ClassLogpEstimate>;
}

/** Largest per-row NFE over rows [r0, r1) (rows of one image). */
export function maxNfe(rows: ReadonlyArray<{ nfev: number }>, r0: number, r1: number): number {
  let m = 0;
  for (let r = r0; r < r1; r++) m = Math.max(m, rows[r].nfev);
  return m;
}

/** First non-success status among rows [r0, r1). */
export function rowStatus(rows: ReadonlyArray<{ status: string; message: string }>, r0: number, r1: number): ImageStatus {
  for (let r = r0; r < r1; r++) if (rows[r].status !== 'success') return { status: rows[r].status, message: rows[r].message };
  return { status: 'success' };
}

/** The probability-flow ODE classifier with fixed solver options (imageOffset and onProgress come per chunk). */
export function probabilityFlowEstimator(options: ClassifyOptions): Estimator {
  return {
    name: 'ode',
    async logpPerClass(e, model, images, at) {
      const r = await classifyImages(e, model, images, { ...options, imageOffset: at.imageOffset, ...(at.onProgress ? { onProgress: at.onProgress } : {}) });
      const n = r.nProbes;
      const C = r.numClasses;
      const perImage = n * C;
      return {
        ...r,
        estimator: 'ode',
        logpSpreadPerClass: r.logpStdPerClass,
        nfePerImage: Uint32Array.from({ length: r.nImages }, (_, i) => maxNfe(r.rows, i * perImage, (i + 1) * perImage)),
        statusPerImage: Array.from({ length: r.nImages }, (_, i) => rowStatus(r.rows, i * perImage, (i + 1) * perImage)),
        draws: n,
        logpPerDraw: r.logpPerDraw,
      };
    },
  };
}

/** The ELBO classifier with fixed options (imageOffset comes per chunk). */
export function elboEstimator(options: ElboOptions): Estimator {
  return {
    name: 'elbo',
    async logpPerClass(e, model, images, at) {
      const r = await elboClassifyImages(e, model, images, { ...options, imageOffset: at.imageOffset });
      const C = r.numClasses;
      const finite = (i: number) => r.logpPerClass.subarray(i * C, (i + 1) * C).every(Number.isFinite);
      return {
        ...r,
        logpSpreadPerClass: r.logpStdErrPerClass,
        nfePerImage: new Uint32Array(r.nImages).fill(r.k),
        statusPerImage: Array.from({ length: r.nImages }, (_, i): ImageStatus =>
          finite(i) ? { status: 'success' } : { status: 'non-finite', message: 'the network output is not finite' },
        ),
        draws: 1,
        logpPerDraw: null,
      };
    },
  };
}
