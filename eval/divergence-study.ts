/**
 * How the Hutchinson divergence estimate (SPEC §3) affects likelihoods and decisions: for each probe kind
 * (Rademacher, Gaussian) and probe sharing (the same probes for every class of an image vs independent ones),
 * ONE classify solve with M = max(n)·groups draws per image; the draws are then split into ⌊M/n⌋ disjoint groups
 * of n for every n, and each group is one run of an n-draw classifier. Per n:
 *   - the variance over groups of the n-draw mean of log p(x|y) (averaged over images and classes), next to
 *     var₁/n from all M single draws (what independent draws predict);
 *   - the same for the class margin log p(x|y₁) − log p(x|y₂), y₁, y₂ the image's top two classes under the
 *     reference (exact divergence when run, else the mean of all draws of the first configuration);
 *   - the accuracy (mean over groups and images) and the agreement with the reference's decisions.
 * Draws are keyed by (image, draw), so group j of size n uses draws jn … jn + n − 1 in every configuration.
 */
import type { Engine } from '../engine/engine.js';
import type { ScoreModel } from '../model/score.js';
import { configuredCentering, type ModelSpaceConversion, type ModelSpaceImages } from '../data/model-space-images.js';
import { classifyImages, type ClassifyOptions, type ClassifyResult } from './probability-flow-likelihood.js';
import type { SolveProgress } from '../solvers/ode/batch-types.js';

export type StudyProbes = 'rademacher' | 'gaussian';
export type StudySharing = 'shared' | 'independent';

export interface StudyImages {
  count: number;
  /** Entries [p0, p1) in model space. */
  images(p0: number, p1: number, conversion: ModelSpaceConversion): ModelSpaceImages;
  globalIndex(p: number): number;
  /** Needed for accuracy; without labels only variances and agreement are reported. */
  labels: Uint32Array | null;
}

export interface DivergenceStudyOptions {
  /** Draw counts compared (default [1, 4, 16]). */
  ns?: number[];
  /** Groups at the largest n (default 4): M = max(ns)·groups draws per image. */
  groups?: number;
  probes?: StudyProbes[];
  sharing?: StudySharing[];
  /** Also solve with the exact divergence (D VJPs per evaluation): the n = ∞ reference. Default true. */
  reference?: boolean;
  /** Images per solve (default 16). */
  batch?: number;
  /** rtol, atol, epsT, seed, stepControl, state, centered, dequantise, priorLogDensity … (probes/nProbes/sharing are set per configuration). */
  solve?: ClassifyOptions;
  /** Called before each configuration's solves ("rademacher, shared", …, "exact divergence"). */
  onConfiguration?: (name: string, images: number) => void;
  onChunkStart?: (images: number) => void;
  onChunk?: (images: number, nfe: number) => void;
  onProgress?: (p: SolveProgress) => void;
}

export interface StudyCell {
  probes: StudyProbes;
  sharing: StudySharing;
  n: number;
  /** Disjoint groups of n draws the statistics are over. */
  groups: number;
  /** Mean over images × classes of the variance over groups of the n-draw mean log p(x|y) (nats²). */
  varLogp: number;
  /** var₁/n: the single-draw variance (from all M draws) over n. */
  varLogpFromSingle: number;
  varMargin: number;
  varMarginFromSingle: number;
  /** Mean over groups and labelled images of [ŷ = y]; null without labels. */
  accuracy: number | null;
  /** Mean over groups and images of [ŷ = ŷ_reference]. */
  agreement: number;
}

export interface DivergenceStudyResult {
  images: number;
  numClasses: number;
  drawsPerImage: number;
  ns: number[];
  cells: StudyCell[];
  /** Batched RHS evaluations per configuration (summed over its solves). */
  nfe: Record<string, number>;
  /** Exact-divergence run, if done. */
  reference: { accuracy: number | null; nfe: number } | null;
  /** What defines the margin pair and the reference decisions. */
  referenceKind: 'exact divergence' | 'mean of all draws';
  /** Images left out because a solve failed for them (any configuration). */
  failedImages: number[];
}

function argmax(a: ArrayLike<number>, off: number, K: number): number {
  let b = 0;
  for (let y = 1; y < K; y++) if (a[off + y] > a[off + b]) b = y;
  return b;
}

function variance(xs: number[]): number {
  const m = xs.reduce((a, b) => a + b, 0) / xs.length;
  return xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1);
}

/** Runs classify over all images in chunks; returns log p per [image, draw, class] (NaN where a row failed). */
async function solveAll(e: Engine, model: ScoreModel, images: StudyImages, opts: ClassifyOptions, batch: number, o: DivergenceStudyOptions) {
  const K = model.numClasses;
  const M = opts.nProbes ?? 1;
  const perDraw = new Float64Array(images.count * M * K);
  const failed = new Set<number>();
  let nfe = 0;
  for (let p0 = 0; p0 < images.count; p0 += batch) {
    const p1 = Math.min(images.count, p0 + batch);
    o.onChunkStart?.(p1 - p0);
    const chunk = images.images(p0, p1, { centered: opts.centered ?? configuredCentering(model), dequantise: opts.dequantise ?? true });
    const r: ClassifyResult = await classifyImages(e, model, chunk, { ...opts, imageOffset: images.globalIndex(p0), ...(o.onProgress ? { onProgress: o.onProgress } : {}) });
    perDraw.set(r.logpPerDraw, p0 * M * K);
    r.rows.forEach((row, k) => {
      if (row.status !== 'success') failed.add(p0 + Math.floor(k / (M * K)));
    });
    nfe += r.nfev;
    o.onChunk?.(p1 - p0, r.nfev);
  }
  return { perDraw, failed, nfe };
}

export async function divergenceStudy(e: Engine, model: ScoreModel, images: StudyImages, o: DivergenceStudyOptions = {}): Promise<DivergenceStudyResult> {
  const K = model.numClasses;
  if (K < 2) throw new RangeError(`divergenceStudy: needs a class-conditional model with ≥ 2 classes, got ${K}`);
  const ns = o.ns ?? [1, 4, 16];
  const groups = o.groups ?? 4;
  if (ns.some((n) => !(Number.isInteger(n) && n >= 1)) || !(Number.isInteger(groups) && groups >= 2)) {
    throw new RangeError(`divergenceStudy: ns must be positive integers and groups ≥ 2, got ns ${ns.join(',')}, groups ${groups}`);
  }
  const M = Math.max(...ns) * groups;
  const probes = o.probes ?? ['rademacher', 'gaussian'];
  const sharing = o.sharing ?? ['shared', 'independent'];
  const batch = o.batch ?? 16;
  const I = images.count;
  const base: ClassifyOptions = { ...o.solve };
  const failed = new Set<number>();
  const nfe: Record<string, number> = {};

  let refPred: Uint32Array | null = null;
  let refLogp: Float64Array | null = null;
  let reference: DivergenceStudyResult['reference'] = null;
  if (o.reference ?? true) {
    o.onConfiguration?.('exact divergence', I);
    const r = await solveAll(e, model, images, { ...base, probes: 'exact', nProbes: 1 }, batch, o);
    r.failed.forEach((i) => failed.add(i));
    refLogp = r.perDraw;
    refPred = Uint32Array.from({ length: I }, (_, i) => argmax(r.perDraw, i * K, K));
    reference = { accuracy: null, nfe: r.nfe };
  }

  const runs: Array<{ probes: StudyProbes; sharing: StudySharing; perDraw: Float64Array }> = [];
  for (const p of probes) {
    for (const s of sharing) {
      const name = `${p}, ${s}`;
      o.onConfiguration?.(name, I);
      const r = await solveAll(e, model, images, { ...base, probes: p, nProbes: M, sharedProbesAcrossClasses: s === 'shared' }, batch, o);
      r.failed.forEach((i) => failed.add(i));
      nfe[name] = r.nfe;
      runs.push({ probes: p, sharing: s, perDraw: r.perDraw });
    }
  }

  // The reference decisions and margin pairs: exact divergence, else the mean of all draws of the first run.
  const refMean = new Float64Array(I * K);
  if (refLogp) refMean.set(refLogp);
  else {
    const pd = runs[0].perDraw;
    for (let i = 0; i < I; i++) for (let k = 0; k < M; k++) for (let y = 0; y < K; y++) refMean[i * K + y] += pd[(i * M + k) * K + y] / M;
  }
  const pairs = Array.from({ length: I }, (_, i) => {
    const order = Array.from({ length: K }, (_, y) => y).sort((a, b) => refMean[i * K + b] - refMean[i * K + a]);
    return [order[0], order[1]] as const;
  });
  refPred ??= Uint32Array.from(pairs, (p) => p[0]);
  const kept = Array.from({ length: I }, (_, i) => i).filter((i) => !failed.has(i));
  const labels = images.labels;
  if (reference && labels) reference.accuracy = kept.filter((i) => refPred![i] === labels[i]).length / kept.length;

  const cells: StudyCell[] = [];
  for (const run of runs) {
    const pd = run.perDraw;
    const lp = (i: number, k: number, y: number) => pd[(i * M + k) * K + y];
    // Single-draw variances from all M draws.
    let v1 = 0;
    let m1 = 0;
    for (const i of kept) {
      const [a, b] = pairs[i];
      for (let y = 0; y < K; y++) v1 += variance(Array.from({ length: M }, (_, k) => lp(i, k, y)));
      m1 += variance(Array.from({ length: M }, (_, k) => lp(i, k, a) - lp(i, k, b)));
    }
    v1 /= kept.length * K;
    m1 /= kept.length;
    for (const n of ns) {
      const g = Math.floor(M / n);
      let vl = 0;
      let vm = 0;
      let correct = 0;
      let agree = 0;
      const mean = new Float64Array(g * K);
      for (const i of kept) {
        mean.fill(0);
        for (let j = 0; j < g; j++) for (let k = j * n; k < (j + 1) * n; k++) for (let y = 0; y < K; y++) mean[j * K + y] += lp(i, k, y) / n;
        for (let y = 0; y < K; y++) vl += variance(Array.from({ length: g }, (_, j) => mean[j * K + y]));
        const [a, b] = pairs[i];
        vm += variance(Array.from({ length: g }, (_, j) => mean[j * K + a] - mean[j * K + b]));
        for (let j = 0; j < g; j++) {
          const yh = argmax(mean, j * K, K);
          if (labels && yh === labels[i]) correct++;
          if (yh === refPred[i]) agree++;
        }
      }
      cells.push({
        probes: run.probes,
        sharing: run.sharing,
        n,
        groups: g,
        varLogp: vl / (kept.length * K),
        varLogpFromSingle: v1 / n,
        varMargin: vm / kept.length,
        varMarginFromSingle: m1 / n,
        accuracy: labels ? correct / (g * kept.length) : null,
        agreement: agree / (g * kept.length),
      });
    }
  }
  return {
    images: I,
    numClasses: K,
    drawsPerImage: M,
    ns,
    cells,
    nfe,
    reference,
    referenceKind: refLogp ? 'exact divergence' : 'mean of all draws',
    failedImages: [...failed].sort((a, b) => a - b),
  };
}
