/**
 * sbgc classify: the generative classifier of SPEC §3 on images — ŷ = argmax_y log p₀(x|y), p(y|x) by softmax,
 * log p(x) and bits/dim — with the probability-flow ODE solved for all classes of a batch of images at once.
 * Output: JSON (stdout, or --out FILE written atomically after every batch and resumable with --resume).
 */
import { createEngine } from './context.js';
import { processIo, type CommandIo } from './progress.js';
import { MODEL_USAGE, type LoadedModel } from './model-source.js';
import { bitsPerDim } from '../data/model-space.js';
import { classify } from '../solvers/likelihood.js';
import { SOLVER_USAGE } from '../eval/cli-flags.js';
import { INPUT_USAGE } from '../eval/image-input.js';
import { chunkOptions, exactPoints, header, maxNfe, round, roundAll, rowStatus, RUN_USAGE, setupEvaluation } from '../eval/eval-setup.js';
import { runEvaluation, type ImageRecord, type JsonValue, type RunFile } from '../eval/run-file.js';

export const CLASSIFY_USAGE = `usage: sbgc classify MODEL INPUT [solver options] [--out results.json [--resume]]

Classifies images with a class-conditional score model: log p(x|y) for every class by the probability-flow ODE
(SPEC §3), p(y|x) = softmax, ŷ = argmax. Prints a line per image (predicted class, p(y|x) of it, bits/dim, the
spread of log p over draws, accuracy so far when labels are known) and writes JSON with the settings, NFE per
image and log p(x|y) of every class.

${MODEL_USAGE}

${INPUT_USAGE}

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
  /** log p₀(x|y) per class (mean over draws), its sample std over draws, and p(y|x). */
  logpPerClass: number[];
  logpStdPerClass: number[];
  posterior: number[];
  /** Std over draws of log p(x|ŷ). */
  logpSpread: number;
  /** RHS evaluations of this image's solve (per row: the network calls along one trajectory). */
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

/** Runs `sbgc classify`; returns the results (also written to --out or stdout), or null for --help. */
export async function runClassify(argv: string[], io: CommandIo = processIo): Promise<RunFile<ClassifyRecord> | null> {
  const s = await setupEvaluation('classify', CLASSIFY_USAGE, argv, io, {}, (m) => m.model.numClasses, createEngine, (f, m) => {
    if (m.model.numClasses < 1) f.error(`the model is unconditional (${m.description}); classification needs class-conditional scores — use sbgc likelihood`);
  });
  if (!s) return null;
  const { loaded, source, settings } = s;
  try {
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
    const file = await runEvaluation<ClassifyRecord>({
      f: s.f,
      io,
      header: header(s, 'sbgc.classify/1', {}),
      source,
      batch: s.batch,
      out: s.out,
      resume: s.resume,
      overwrite: s.overwrite,
      progress: s.progress,
      quiet: s.quiet,
      tSpan: [settings.epsT, loaded.model.sde.T],
      async solveChunk(p0, p1, progress) {
        const input = source.input(p0, p1);
        const r = await classify(s.engine, loaded.model, input, chunkOptions(s, p0, progress.solve));
        const D = r.dim;
        const xs = loaded.analytic ? exactPoints(input, settings.dequantise, loaded.centered) : null;
        const records = Array.from({ length: p1 - p0 }, (_, i): ClassifyRecord => {
          const p = p0 + i;
          const label = source.labels ? source.labels[p] : null;
          const y = r.predicted[i];
          const row0 = i * n * K;
          const spread = n > 1 ? r.logpStdPerClass[i * K + y] : 0;
          const rec: ClassifyRecord = {
            index: source.globalIndex(p),
            source: source.name(p),
            label,
            predicted: y,
            pTop: round(r.posterior[i * K + y]),
            logpMarginal: round(r.logpMarginal[i]),
            bitsPerDim: round(r.bitsPerDimMarginal[i]),
            logpPerClass: roundAll(r.logpPerClass.subarray(i * K, (i + 1) * K)),
            logpStdPerClass: roundAll(r.logpStdPerClass.subarray(i * K, (i + 1) * K)),
            posterior: roundAll(r.posterior.subarray(i * K, (i + 1) * K)),
            logpSpread: round(spread),
            nfe: maxNfe(r.rows, row0, row0 + n * K),
            ...rowStatus(r.rows, row0, row0 + n * K),
          };
          if (label !== null && Number.isFinite(r.logpPerClass[i * K + label])) {
            const l = r.logpPerClass[i * K + label];
            rec.bitsPerDimGivenLabel = round(bitsPerDim(l, D, loaded.centered));
          }
          if (s.perDraw) {
            rec.logpPerDraw = Array.from({ length: n }, (_, k) => roundAll(r.logpPerDraw.subarray(row0 + k * K, row0 + (k + 1) * K)));
          }
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
        if (n > 1) parts.push(`±${rec.logpSpread.toPrecision(3)} nats over ${n} draws`);
        parts.push(`NFE ${rec.nfe}`);
        if (rec.exact) parts.push(`exact ŷ ${rec.exact.predicted}`);
        if (labelled > 0) parts.push(`acc ${correct}/${labelled} = ${((100 * correct) / labelled).toFixed(1)}%`);
        return parts.join(' | ');
      },
    });
    const sum = file.summary;
    const doneLine =
      `classify: ${sum.images} images` +
      (sum.accuracy !== null ? `, accuracy ${(100 * (sum.accuracy as number)).toFixed(2)}% (${sum.correct}/${sum.labelled})` : '') +
      (sum.meanBitsPerDim !== null ? `, mean ${(sum.meanBitsPerDim as number).toFixed(4)} bits/dim` : '') +
      `, mean NFE ${sum.meanNfe}` +
      (Number(sum.failed) > 0 ? `, ${sum.failed} FAILED` : '') +
      (s.out ? ` → ${s.out}${file.complete ? '' : ' (incomplete)'}` : '');
    (s.out ? io.stdout : io.stderr).write(doneLine + '\n');
    return file;
  } finally {
    loaded.dispose();
  }
}

/** The CLI entry (cli/main.ts): false (exit status 1) when some image failed to solve. */
export async function classifyCommand(argv: string[]): Promise<boolean> {
  const file = await runClassify(argv);
  if (file && Number(file.summary.failed) > 0) {
    process.stderr.write(`classify: ${file.summary.failed} image(s) failed to solve (see "status" in the output)\n`);
    return false;
  }
  return true;
}
