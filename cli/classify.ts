/**
 * sbgc classify: the generative classifier of SPEC §3 on images — ŷ = argmax_y log p₀(x|y), p(y|x) by softmax,
 * log p(x) and bits/dim — with the probability-flow ODE solved for all classes of a batch of images at once
 * (--estimator ode, the default), or with the continuous-time ELBO (--estimator elbo, eval/elbo.ts).
 * Output: JSON (stdout, or --out FILE written atomically after every batch and resumable with --resume).
 */
import { createEngine } from './context.js';
import { processIo, type CommandIo } from './progress.js';
import { MODEL_USAGE, type LoadedModel } from './model-source.js';
import { bitsPerDim } from '../data/model-space.js';
import { fixedPoints } from '../data/model-space-images.js';
import { ELBO_TIMES, ELBO_TIMES_DESCRIPTION, type ElboTimes } from '../eval/elbo.js';
import { elboEstimator, probabilityFlowEstimator, type Estimator } from '../eval/estimator.js';
import type { FlagReader, FlagValues } from './flag-reader.js';
import { SOLVER_USAGE } from './solver-flags.js';
import { INPUT_USAGE } from './image-input.js';
import { chunkImages, header, loopSettings, meanBitsPerDimNote, odeOptions, round, roundAll, RUN_USAGE, setupEvaluation, writeClosingLine, failingImagesCommand, type EvalSetup } from './eval-setup.js';
import { runEvaluation } from './evaluation-loop.js';
import type { ImageRecord, JsonValue, RunFile } from './run-file.js';

export const CLASSIFY_USAGE = `usage: sbgc classify MODEL INPUT [--estimator ode|elbo] [solver options] [--out results.json [--resume]]

Classifies images with a class-conditional score model: log p(x|y) for every class by the probability-flow ODE
(SPEC §3), p(y|x) = softmax, ŷ = argmax. Prints a line per image (predicted class, p(y|x) of it, bits/dim, the
spread of log p over draws, accuracy so far when labels are known) and writes JSON with the settings, NFE per
image and log p(x|y) of every class.

${MODEL_USAGE}

${INPUT_USAGE}

estimator:
  --estimator ode         log p(x|y) by the probability-flow ODE (default; the paper's method)
  --estimator elbo        the continuous-time ELBO of log p(x|y) instead (eval/elbo.ts): K stratified t and the
                          same noise for every class; K·classes network forward passes per image, no ODE solve.
                          Uses --eps-t, --seed, --no-dequant; the other solver flags are refused
  --k K                   ELBO time samples per image (default 64); "logpStdPerClass" is then its Monte-Carlo
                          standard error and "nfe" is K (network evaluations per class)
  --elbo-times T          importance (default: quantiles of q(t) ∝ g²/σ², the bound's own proposal) | uniform
                          (stratified uniform t, weighted: where a uniform-t-trained model tells classes apart;
                          heavy-tailed, bits/dim read optimistic) | mixture (half each, balance-heuristic weights)

${SOLVER_USAGE}

${RUN_USAGE}`;

export interface ClassifyRecord extends ImageRecord {
  label: number | null;
  predicted: number;
  /** p(ŷ|x). */
  pTop: number;
  /** log p(x) = logsumexp_y(log p(x|y) + log p(y)), nats in model space, and its bits/dim (SPEC §1). */
  logpMarginal: number;
  bitsPerDim: number;
  /** bits/dim of log p(x|label) when the label is known. */
  bitsPerDimGivenLabel?: number;
  /**
   * log p₀(x|y) per class (mean over draws), its sample std over draws, and p(y|x). With --estimator elbo:
   * the ELBO per class and its Monte-Carlo standard error.
   */
  logpPerClass: number[];
  logpStdPerClass: number[];
  posterior: number[];
  /** Std over draws of log p(x|ŷ) (ELBO: its standard error). */
  logpSpread: number;
  /**
   * RHS evaluations of this image's solve (per row: the network calls along one trajectory, each a forward pass
   * and a VJP). ELBO: K, the forward passes per class.
   */
  nfe: number;
  status: string;
  message?: string;
  /** With --per-draw: [draw][class]. */
  logpPerDraw?: number[][];
  /** Analytic models at deterministic points: the exact log p_{ε_t}(x|y), Bayes prediction and posterior. */
  exact?: { logpPerClass: number[]; predicted: number; pTop: number };
}

function summarize(records: ClassifyRecord[], model: LoadedModel): { [k: string]: JsonValue } {
  const labelled = records.filter((r) => r.label !== null);
  const correct = labelled.filter((r) => r.predicted === r.label).length;
  const ok = records.filter((r) => r.status === 'success');
  const mean = (xs: number[]) => (xs.length ? round(xs.reduce((a, b) => a + b, 0) / xs.length) : null);
  const exact = records.filter((r) => r.exact);
  return {
    images: records.length,
    failed: records.length - ok.length,
    labelled: labelled.length,
    correct,
    accuracy: labelled.length ? round(correct / labelled.length) : null,
    meanBitsPerDim: mean(ok.map((r) => r.bitsPerDim)),
    meanBitsPerDimGivenLabel: mean(ok.filter((r) => r.bitsPerDimGivenLabel !== undefined).map((r) => r.bitsPerDimGivenLabel!)),
    meanNfe: mean(records.map((r) => r.nfe)),
    ...(exact.length
      ? {
          exactAgreement: round(exact.filter((r) => r.exact!.predicted === r.predicted).length / exact.length),
          exactAccuracy: labelled.length ? round(exact.filter((r) => r.label !== null && r.exact!.predicted === r.label).length / labelled.length) : null,
        }
      : {}),
    ...(model.untrained ? { warning: 'UNTRAINED network: these numbers only check the pipeline' } : {}),
  };
}

const ESTIMATORS = ['ode', 'elbo'] as const;

const ESTIMATOR_FLAGS = {
  estimator: { type: 'string' },
  k: { type: 'string' },
  'elbo-times': { type: 'string' },
} as const;

/** Network rows per class and image of the default batch: K for the ELBO (checked later; 64 if unparsable), 1 else. */
function elboRowsPerClass(values: FlagValues): number {
  if (values.estimator !== 'elbo') return 1;
  const k = Number(values.k ?? 64);
  return Number.isSafeInteger(k) && k >= 1 ? k : 64;
}

/** The solver flags that only the ODE uses (refused with --estimator elbo rather than silently ignored). */
const ODE_ONLY_FLAGS = ['rtol', 'atol', 'start', 'probes', 'n', 'probes-mode', 'step-control', 'state', 'max-steps', 'per-draw'];
/** Settings of the ODE that do not describe an ELBO run (dropped from its header). */
const ODE_ONLY_SETTINGS = ['rtol', 'atol', 'start', 'probes', 'nProbes', 'hutchinsonPass', 'stepControl', 'state', 'maxSteps', 'precision'];

interface EstimatorChoice {
  estimator: (typeof ESTIMATORS)[number];
  k: number;
  times: ElboTimes;
}

function readEstimator(f: FlagReader, values: FlagValues, s: EvalSetup): EstimatorChoice {
  const estimator = f.oneOf(values, 'estimator', ESTIMATORS, 'ode');
  if (estimator === 'ode') {
    if (values.k !== undefined) f.fail('--k sets the ELBO sample size; it needs --estimator elbo');
    if (values['elbo-times'] !== undefined) f.fail('--elbo-times needs --estimator elbo');
    return { estimator, k: 0, times: 'importance' };
  }
  for (const flag of ODE_ONLY_FLAGS) if (values[flag] !== undefined) f.fail(`--${flag} applies to the ODE estimator, not to --estimator elbo`);
  if (s.settings.prior === 'exact') f.fail('--prior exact applies to the ODE estimator; the ELBO uses its closed-form N(0, I) prior term');
  return { estimator, k: f.int(values, 'k', 64, 1), times: f.oneOf(values, 'elbo-times', ELBO_TIMES, 'importance') };
}

/** The estimator the flags chose, with its fixed options (each chunk adds its image offset and progress). */
function chooseEstimator(s: EvalSetup, est: EstimatorChoice): Estimator {
  if (est.estimator === 'elbo') return elboEstimator({ k: est.k, epsT: s.settings.epsT, seed: s.settings.seed, times: est.times });
  return probabilityFlowEstimator(odeOptions(s));
}

/** Runs `sbgc classify`; returns the results (also written to --out or stdout), or null for --help. */
export async function runClassify(argv: string[], io: CommandIo = processIo): Promise<RunFile<ClassifyRecord> | null> {
  const s = await setupEvaluation('classify', CLASSIFY_USAGE, argv, io, ESTIMATOR_FLAGS, (m, v) => m.model.numClasses * elboRowsPerClass(v), createEngine, (f, m) => {
    if (m.model.numClasses < 1) f.error(`the model is unconditional (${m.description}); classification needs class-conditional scores — use sbgc likelihood`);
  });
  if (!s) return null;
  const { loaded, source, settings } = s;
  try {
    const est = readEstimator(s.f, s.values, s);
    const estimator = chooseEstimator(s, est);
    const elbo = est.estimator === 'elbo';
    const K = loaded.model.numClasses;
    const n = settings.nProbes;
    const names = loaded.classNames ?? source.classNames;
    const className = (y: number) => (names?.[y] !== undefined && names[y] !== String(y) ? `${y} (${names[y]})` : String(y));
    let labelled = 0;
    let correct = 0;
    const count = (r: ClassifyRecord) => {
      if (r.label === null) return;
      labelled++;
      if (r.predicted === r.label) correct++;
    };
    // ODE runs keep the header they had before --estimator existed (so their --out files still --resume).
    const head = header(s, 'sbgc.classify/1', elbo
        ? {
            estimator: 'elbo',
            k: est.k,
            timeSampling: ELBO_TIMES_DESCRIPTION[est.times],
          }
        : {});
    if (elbo) for (const key of ODE_ONLY_SETTINGS) delete head.settings[key];
    const file = await runEvaluation<ClassifyRecord>({
      ...loopSettings(s),
      header: head,
      async solveChunk(p0, p1, progress) {
        const images = chunkImages(s, p0, p1);
        const r = await estimator.logpPerClass(s.engine, loaded.model, images, { imageOffset: source.globalIndex(p0), onProgress: progress.solve });
        const D = r.dim;
        // The analytic model's exact log p_ε(x) is what a clean start estimates (a diffused one bounds another quantity).
        const xs = loaded.analytic && settings.start === 'clean' ? fixedPoints(images) : null;
        const records = Array.from({ length: p1 - p0 }, (_, i): ClassifyRecord => {
          const p = p0 + i;
          const label = source.labels ? source.labels[p] : null;
          const y = r.predicted[i];
          const rec: ClassifyRecord = {
            index: source.globalIndex(p),
            source: source.name(p),
            label,
            predicted: y,
            pTop: round(r.posterior[i * K + y]),
            logpMarginal: round(r.logpMarginal[i]),
            bitsPerDim: round(r.bitsPerDimMarginal[i]),
            logpPerClass: roundAll(r.logpPerClass.subarray(i * K, (i + 1) * K)),
            logpStdPerClass: roundAll(r.logpSpreadPerClass.subarray(i * K, (i + 1) * K)),
            posterior: roundAll(r.posterior.subarray(i * K, (i + 1) * K)),
            logpSpread: round(r.logpSpreadPerClass[i * K + y]),
            nfe: r.nfePerImage[i],
            ...r.statusPerImage[i],
          };
          if (label !== null && Number.isFinite(r.logpPerClass[i * K + label])) {
            const l = r.logpPerClass[i * K + label];
            rec.bitsPerDimGivenLabel = round(bitsPerDim(l, D, loaded.centered));
          }
          const perDraw = r.logpPerDraw;
          if (s.perDraw && perDraw) rec.logpPerDraw = Array.from({ length: r.draws }, (_, k) => roundAll(perDraw.subarray((i * r.draws + k) * K, (i * r.draws + k + 1) * K)));
          if (xs && loaded.analytic) {
            const b = loaded.analytic.bayes(xs.subarray(i * D, (i + 1) * D), settings.epsT);
            rec.exact = { logpPerClass: roundAll(b.logp), predicted: b.predicted, pTop: round(b.posterior[b.predicted]) };
          }
          return rec;
        });
        return { records, nfe: r.nfev };
      },
      summarize: (records) => summarize(records, loaded),
      begin: (done) => done.forEach(count),
      describe(rec) {
        count(rec);
        const parts = [
          `#${rec.index} ${rec.source}`,
          rec.status === 'success' ? `ŷ ${className(rec.predicted)} p=${rec.pTop.toFixed(4)}` : `FAILED (${rec.status}: ${rec.message ?? ''})`,
        ];
        if (rec.label !== null) parts.push(`y ${className(rec.label)} ${rec.predicted === rec.label ? 'ok' : 'WRONG'}`);
        parts.push(`${rec.bitsPerDim.toFixed(4)} bits/dim`);
        if (elbo) parts.push(`±${rec.logpSpread.toPrecision(3)} nats (ELBO, K = ${est.k})`);
        else if (n > 1) parts.push(`±${rec.logpSpread.toPrecision(3)} nats over ${n} draws`);
        parts.push(`NFE ${rec.nfe}`);
        if (rec.exact) parts.push(`exact ŷ ${rec.exact.predicted}`);
        if (labelled > 0) parts.push(`acc ${correct}/${labelled} = ${((100 * correct) / labelled).toFixed(1)}%`);
        return parts.join(' | ');
      },
    });
    writeClosingLine(s, 'classify', file, (sum) => {
      const accuracy = sum.accuracy !== null ? `, accuracy ${(100 * (sum.accuracy as number)).toFixed(2)}% (${sum.correct}/${sum.labelled})` : '';
      return accuracy + meanBitsPerDimNote(sum);
    });
    return file;
  } finally {
    loaded.dispose();
  }
}

/** The CLI entry (cli/main.ts): false (exit status 1) when some image failed to solve. */
export const classifyCommand = failingImagesCommand('classify', runClassify);
