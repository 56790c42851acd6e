/**
 * sbgc likelihood: log p₀(x|y) and bits/dim of images (SPEC §1, §3) for given labels, or the marginal
 * log p(x) = logsumexp_y(log p(x|y) + log p(y)) over the classes (--marginal), or log p(x) of an unconditional
 * model. Same inputs, solver flags, JSON output and --resume as sbgc classify.
 */
import { createEngine } from './context.js';
import { processIo, type CommandIo } from './progress.js';
import { MODEL_USAGE } from './model-source.js';
import { bitsPerDim } from '../data/model-space.js';
import { fixedPoints } from '../data/model-space-images.js';
import { classifyImages, logLikelihoodOfImages } from '../eval/probability-flow-likelihood.js';
import { maxNfe, rowStatus } from '../eval/estimator.js';
import type { FlagReader, FlagValues } from './flag-reader.js';
import { SOLVER_USAGE } from './solver-flags.js';
import { INPUT_USAGE } from './image-input.js';
import { chunkImages, chunkOptions, header, loopSettings, meanBitsPerDimNote, round, roundAll, RUN_USAGE, setupEvaluation, writeClosingLine, failingImagesCommand } from './eval-setup.js';
import { runEvaluation } from './evaluation-loop.js';
import type { ImageRecord, JsonValue, RunFile } from './run-file.js';

export const LIKELIHOOD_USAGE = `usage: sbgc likelihood MODEL INPUT [--label Y | --marginal] [solver options] [--out results.json [--resume]]

log p(x|y) in nats (model space) and bits/dim (SPEC §1) by the probability-flow ODE. For a class-conditional
model y comes from --label Y (all images), else from the input's labels (--labels, class folders, a labelled
dataset); --marginal gives log p(x) = logsumexp_y(log p(x|y)) − log K instead (all classes, one solve).

  --label Y               class of every image
  --marginal              the marginal log p(x) over the classes (uniform p(y))

${MODEL_USAGE}

${INPUT_USAGE}

${SOLVER_USAGE}

${RUN_USAGE}`;

export interface LikelihoodRecord extends ImageRecord {
  /** The y of log p(x|y); null for the marginal or an unconditional model. */
  label: number | null;
  /** Nats in model space (mean over draws), their sample std over draws, and bits/dim (SPEC §1). */
  logp: number;
  logpStd: number;
  bitsPerDim: number;
  nfe: number;
  status: string;
  message?: string;
  /** --marginal: log p(x|y) of every class. */
  logpPerClass?: number[];
  /** With --per-draw: log p of each draw (marginal: [draw][class]). */
  logpPerDraw?: number[] | number[][];
  /** Analytic models at deterministic points: the exact log p_{ε_t} and its bits/dim. */
  exact?: { logp: number; bitsPerDim: number };
}

type Mode = 'given-label' | 'marginal' | 'unconditional';

const EXTRA_FLAGS = { label: { type: 'string' }, marginal: { type: 'boolean' } } as const;

function logSumExp(xs: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < xs.length; i++) m = Math.max(m, xs[i]);
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += Math.exp(xs[i] - m);
  return m + Math.log(s);
}

function summarize(records: LikelihoodRecord[], untrained: boolean): { [k: string]: JsonValue } {
  const ok = records.filter((r) => r.status === 'success');
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  const bpd = ok.map((r) => r.bitsPerDim);
  const m = mean(bpd);
  const se = bpd.length > 1 ? Math.sqrt(bpd.reduce((a, b) => a + (b - m) ** 2, 0) / (bpd.length - 1) / bpd.length) : null;
  const exact = ok.filter((r) => r.exact);
  return {
    images: records.length,
    failed: records.length - ok.length,
    meanLogp: ok.length ? round(mean(ok.map((r) => r.logp))) : null,
    meanBitsPerDim: ok.length ? round(m) : null,
    bitsPerDimStdError: se === null ? null : round(se),
    meanNfe: records.length ? round(mean(records.map((r) => r.nfe))) : null,
    ...(exact.length ? { meanAbsErrorVsExactNats: round(mean(exact.map((r) => Math.abs(r.logp - r.exact!.logp)))) } : {}),
    ...(untrained ? { warning: 'UNTRAINED network: these numbers only check the pipeline' } : {}),
  };
}

function readMode(s: { f: FlagReader; values: FlagValues }, numClasses: number, haveLabels: boolean): { mode: Mode; fixedLabel: number | null } {
  const { f, values } = s;
  const marginal = values.marginal === true;
  const labelRaw = f.string(values, 'label');
  if (marginal && labelRaw !== undefined) f.fail('--label and --marginal contradict each other');
  if (numClasses === 0) {
    if (marginal || labelRaw !== undefined) f.fail('the model is unconditional: --label and --marginal do not apply');
    return { mode: 'unconditional', fixedLabel: null };
  }
  if (marginal) return { mode: 'marginal', fixedLabel: null };
  if (labelRaw !== undefined) {
    const y = f.int(values, 'label', 0, 0);
    if (y >= numClasses) f.fail(`--label ${y} is outside [0, ${numClasses}) (the model has ${numClasses} classes)`);
    return { mode: 'given-label', fixedLabel: y };
  }
  if (!haveLabels) {
    f.fail(`the model is class-conditional (${numClasses} classes) and the input has no labels: give --label Y, labels with the input (--labels y.npy, class folders, a labelled dataset), or --marginal`);
  }
  return { mode: 'given-label', fixedLabel: null };
}

/** Runs `sbgc likelihood`; returns the results (also written to --out or stdout), or null for --help. */
export async function runLikelihood(argv: string[], io: CommandIo = processIo): Promise<RunFile<LikelihoodRecord> | null> {
  const s = await setupEvaluation('likelihood', LIKELIHOOD_USAGE, argv, io, EXTRA_FLAGS, (m, v) => (v.marginal ? m.model.numClasses : 1), createEngine);
  if (!s) return null;
  const { loaded, source, settings } = s;
  try {
    const K = loaded.model.numClasses;
    const { mode, fixedLabel } = readMode(s, K, source.labels !== null);
    const n = settings.nProbes;
    const a = loaded.analytic;
    const labelOf = (p: number): number | null => (mode !== 'given-label' ? null : (fixedLabel ?? source.labels![p]));
    const file = await runEvaluation<LikelihoodRecord>({
      ...loopSettings(s),
      header: header(s, 'sbgc.likelihood/1', { mode, label: fixedLabel ?? (mode === 'given-label' ? 'from the input' : null) }),
      async solveChunk(p0, p1, progress) {
        const images = chunkImages(s, p0, p1);
        const opts = chunkOptions(s, p0, progress.solve);
        const xs = a ? fixedPoints(images) : null;
        const D = loaded.model.shape[0] * loaded.model.shape[1] * loaded.model.shape[2];
        const exactAt = (i: number, label: number | null) => {
          if (!xs || !a) return undefined;
          const x = xs.subarray(i * D, (i + 1) * D);
          const l = mode === 'marginal' ? logSumExp(a.bayes(x, settings.epsT).logp) - Math.log(K) : a.logDensity(x, settings.epsT, label);
          return { logp: round(l), bitsPerDim: round(bitsPerDim(l, D, loaded.centered)) };
        };
        if (mode === 'marginal') {
          const r = await classifyImages(s.engine, loaded.model, images, opts);
          const records = Array.from({ length: p1 - p0 }, (_, i): LikelihoodRecord => {
            const row0 = i * n * K;
            // Std over draws of the per-draw marginal.
            const perDraw = Array.from({ length: n }, (_, k) => logSumExp(r.logpPerDraw.subarray(row0 + k * K, row0 + (k + 1) * K)) - Math.log(K));
            const mean = perDraw.reduce((x, y) => x + y, 0) / n;
            const std = n > 1 ? Math.sqrt(perDraw.reduce((x, y) => x + (y - mean) ** 2, 0) / (n - 1)) : 0;
            const ex = exactAt(i, null);
            return {
              index: source.globalIndex(p0 + i),
              source: source.name(p0 + i),
              label: null,
              logp: round(r.logpMarginal[i]),
              logpStd: round(std),
              bitsPerDim: round(r.bitsPerDimMarginal[i]),
              nfe: maxNfe(r.rows, row0, row0 + n * K),
              ...rowStatus(r.rows, row0, row0 + n * K),
              logpPerClass: roundAll(r.logpPerClass.subarray(i * K, (i + 1) * K)),
              ...(s.perDraw ? { logpPerDraw: Array.from({ length: n }, (_, k) => roundAll(r.logpPerDraw.subarray(row0 + k * K, row0 + (k + 1) * K))) } : {}),
              ...(ex ? { exact: ex } : {}),
            };
          });
          return { records, nfe: r.nfev };
        }
        const labels = mode === 'given-label' ? Array.from({ length: p1 - p0 }, (_, i) => labelOf(p0 + i)!) : null;
        const r = await logLikelihoodOfImages(s.engine, loaded.model, images, labels, opts);
        const records = Array.from({ length: p1 - p0 }, (_, i): LikelihoodRecord => {
          const label = labels ? labels[i] : null;
          const ex = exactAt(i, label);
          return {
            index: source.globalIndex(p0 + i),
            source: source.name(p0 + i),
            label,
            logp: round(r.logpNats[i]),
            logpStd: round(r.logpStdNats[i]),
            bitsPerDim: round(r.bitsPerDim[i]),
            nfe: maxNfe(r.rows, i * n, (i + 1) * n),
            ...rowStatus(r.rows, i * n, (i + 1) * n),
            ...(s.perDraw ? { logpPerDraw: roundAll(r.logpPerDraw.subarray(i * n, (i + 1) * n)) } : {}),
            ...(ex ? { exact: ex } : {}),
          };
        });
        return { records, nfe: r.nfev };
      },
      summarize: (records) => summarize(records, loaded.untrained),
      describe(rec) {
        const parts = [`#${rec.index} ${rec.source}`];
        if (rec.label !== null) parts.push(`y ${rec.label}`);
        else if (mode === 'marginal') parts.push('marginal');
        if (rec.status !== 'success') parts.push(`FAILED (${rec.status}: ${rec.message ?? ''})`);
        else parts.push(`log p ${rec.logp.toFixed(4)} nats`, `${rec.bitsPerDim.toFixed(4)} bits/dim`);
        if (n > 1) parts.push(`±${rec.logpStd.toPrecision(3)} nats over ${n} draws`);
        parts.push(`NFE ${rec.nfe}`);
        if (rec.exact) parts.push(`exact ${rec.exact.logp.toFixed(4)} nats`);
        return parts.join(' | ');
      },
    });
    writeClosingLine(s, 'likelihood', file, (sum) => {
      const stdError = sum.bitsPerDimStdError !== null ? ` ± ${(sum.bitsPerDimStdError as number).toPrecision(2)}` : '';
      return ` (${mode})${meanBitsPerDimNote(sum)}${stdError}`;
    });
    return file;
  } finally {
    loaded.dispose();
  }
}

/** The CLI entry (cli/main.ts): false (exit status 1) when some image failed to solve. */
export const likelihoodCommand = failingImagesCommand('likelihood', runLikelihood);
