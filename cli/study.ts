/**
 * sbgc study divergence: the variance of log p(x|y) and of the class margin, and the accuracy, for n Hutchinson
 * draws, shared vs independent probes, Rademacher vs Gaussian (eval/divergence-study.ts). Writes
 * <out-dir>/divergence.json and <out-dir>/divergence.svg (atomically) and prints the table.
 * Default model: the built-in analytic mixture with images sampled from it (finishes in about a minute on
 * lavapipe); any model and input of sbgc classify can be given instead.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { createEngine } from './context.js';
import { processIo, Progress, type CommandIo } from './progress.js';
import { loadModelSource, MODEL_FLAGS, MODEL_USAGE, sampleAnalytic } from './model-source.js';
import { writeFileAtomic } from '../engine/files.js';
import { describeModelSpace } from '../data/model-space.js';
import { PRECISION_NOTE } from '../solvers/ode/batch-types.js';
import type { ClassifyOptions } from '../eval/probability-flow-likelihood.js';
import { FlagReader, HELP_FLAG, switchFlags, valueFlags, type FlagValues } from './flag-reader.js';
import { ODE_FLAGS, readEpsT, PRIORS, STATES, STEP_CONTROLS } from './solver-flags.js';
import { arrayImageSource, INPUT_FLAGS, INPUT_USAGE, loadImageInput, usesInputFlags, type ImageSource } from './image-input.js';
import { divergenceStudy, type DivergenceStudyResult, type StudyProbes, type StudySharing } from '../eval/divergence-study.js';
import { plotSvg, type PlotSeries } from '../eval/svg-plot.js';
import { round } from './eval-setup.js';
import { fixedPoints } from '../data/model-space-images.js';

export const STUDY_USAGE = `usage: sbgc study divergence [MODEL] [INPUT] [options]

How Hutchinson draws affect the classifier (SPEC §3): for n = 1, 4, 16 draws, shared vs independent probes and
Rademacher vs Gaussian, the variance of log p(x|y) and of the class margin, and the accuracy. One solve with
max(n)·groups draws per configuration; the draws are split into disjoint groups of n. Writes divergence.json and
divergence.svg to --out-dir and prints the table.

  --ns 1,4,16             draw counts compared
  --groups G              groups of the largest n (default 4): max(n)·G draws per image
  --probes LIST           rademacher,gaussian (default both)
  --modes LIST            shared,independent (default both)
  --reference exact|none  also solve with the exact divergence (default: exact when D ≤ 256)
  --images-per-class N    analytic models without INPUT: samples per class drawn from the model (default 16)
  --sample-seed S         seed of those samples (default 1)
  --out-dir DIR           default runs/study-divergence
  --batch B               images per solve
  --rtol --atol --eps-t --seed --step-control --state --prior --no-dequant --max-steps   as in sbgc classify
  --no-progress

${MODEL_USAGE}
  (default: --model analytic:mixture)

${INPUT_USAGE}
  (required for networks, with labels; analytic models default to samples from the model)`;

const STUDY_FLAGS = {
  ...MODEL_FLAGS,
  ...INPUT_FLAGS,
  ...ODE_FLAGS,
  ...valueFlags('ns', 'groups', 'probes', 'modes', 'reference', 'images-per-class', 'sample-seed', 'out-dir', 'batch'),
  ...switchFlags('no-progress'),
  help: HELP_FLAG,
} as const;

export interface StudyOutput {
  format: string;
  model: { source: string; description: string; untrained: boolean };
  input: { id: string; description: string };
  settings: Record<string, unknown>;
  /** Exact Bayes accuracy at ε_t (analytic models at deterministic points). */
  bayesAccuracy: number | null;
  result: DivergenceStudyResult;
  seconds: number;
  files: { json: string; svg: string };
}

function list<T extends string>(f: FlagReader, values: FlagValues, name: string, choices: readonly T[]): T[] {
  const raw = f.string(values, name);
  if (raw === undefined) return [...choices];
  const parts = raw.split(',').map((s) => s.trim());
  for (const p of parts) if (!(choices as readonly string[]).includes(p)) f.fail(`--${name}: '${p}' is not one of ${choices.join(', ')}`);
  return [...new Set(parts)] as T[];
}

/** The table printed to stdout. */
export function studyTable(r: DivergenceStudyResult): string {
  const head = ['probes', 'sharing', 'n', 'var log p', '(var1/n)', 'var margin', '(var1/n)', 'accuracy', 'agreement'];
  const rows = r.cells.map((c) => [
    c.probes,
    c.sharing,
    String(c.n),
    c.varLogp.toPrecision(3),
    c.varLogpFromSingle.toPrecision(3),
    c.varMargin.toPrecision(3),
    c.varMarginFromSingle.toPrecision(3),
    c.accuracy === null ? '-' : c.accuracy.toFixed(3),
    c.agreement.toFixed(3),
  ]);
  const widths = head.map((h, j) => Math.max(h.length, ...rows.map((row) => row[j].length)));
  const fmt = (row: string[]) => row.map((v, j) => (j < 2 ? v.padEnd(widths[j]) : v.padStart(widths[j]))).join('  ');
  return [fmt(head), ...rows.map(fmt)].join('\n');
}

/** The SVG figure against n: variance of log p, variance of the margin, accuracy, agreement with the reference. */
export function studyFigure(r: DivergenceStudyResult, title: string, bayesAccuracy: number | null): string {
  const names = [...new Set(r.cells.map((c) => `${c.probes}, ${c.sharing}`))];
  const series = (pick: (c: DivergenceStudyResult['cells'][number]) => number | null): PlotSeries[] =>
    names.map((name) => ({
      name,
      dashed: name.endsWith('independent'),
      points: r.cells.filter((c) => `${c.probes}, ${c.sharing}` === name).map((c) => [c.n, pick(c) ?? NaN] as const),
    }));
  const refs = [
    ...(r.reference?.accuracy != null ? [{ name: 'exact divergence', y: r.reference.accuracy, color: '#000000' }] : []),
    ...(bayesAccuracy !== null ? [{ name: 'Bayes (exact log p)', y: bayesAccuracy, color: '#888888' }] : []),
  ];
  const labelled = r.cells.some((c) => c.accuracy !== null);
  return plotSvg({
    title,
    panels: [
      { title: 'Var of mean log p(x|y)', xLabel: 'draws n', yLabel: 'nats²', xLog: true, yLog: true, series: series((c) => c.varLogp) },
      { title: 'Var of class margin', xLabel: 'draws n', yLabel: 'nats²', xLog: true, yLog: true, series: series((c) => c.varMargin) },
      ...(labelled ? [{ title: 'Accuracy', xLabel: 'draws n', yLabel: 'accuracy', xLog: true, series: series((c) => c.accuracy), references: refs }] : []),
      { title: `Agreement with ${r.referenceKind}`, xLabel: 'draws n', yLabel: 'fraction of decisions', xLog: true, series: series((c) => c.agreement) },
    ],
  });
}

/** Runs `sbgc study …`; returns what it wrote, or null for --help. */
export async function runStudy(argv: string[], io: CommandIo = processIo): Promise<StudyOutput | null> {
  const f: FlagReader = new FlagReader('study', STUDY_USAGE);
  const [name, ...rest] = argv;
  if (name === '--help' || name === '-h' || name === undefined) {
    if (name === undefined) f.fail('which study? known: divergence');
    io.stdout.write(STUDY_USAGE + '\n');
    return null;
  }
  if (name !== 'divergence') f.fail(`unknown study '${name}'; known: divergence`);
  const { values, positionals } = f.parse(rest, STUDY_FLAGS, true);
  if (values.help) {
    io.stdout.write(STUDY_USAGE + '\n');
    return null;
  }
  const ns = f.intList(values, 'ns', [1, 4, 16]);
  const groups = f.int(values, 'groups', 4, 2);
  const probes = list<StudyProbes>(f, values, 'probes', ['rademacher', 'gaussian']);
  const sharing = list<StudySharing>(f, values, 'modes', ['shared', 'independent']);
  const perClass = f.int(values, 'images-per-class', 16, 1);
  const sampleSeed = f.int(values, 'sample-seed', 1, 0);
  const outDir = f.string(values, 'out-dir') ?? 'runs/study-divergence';
  const settings = {
    rtol: f.positive(values, 'rtol', 1e-5),
    atol: f.positive(values, 'atol', 1e-5),
    epsT: readEpsT(f, values),
    seed: f.int(values, 'seed', 0, 0),
    stepControl: f.oneOf(values, 'step-control', STEP_CONTROLS, 'shared'),
    state: f.oneOf(values, 'state', STATES, 'gpu-f32'),
    prior: f.oneOf(values, 'prior', PRIORS, 'standard'),
    dequantise: values['no-dequant'] !== true,
    maxSteps: f.int(values, 'max-steps', 0, 1) || null,
  };
  const batchFlag = f.int(values, 'batch', 0, 1);
  const now = io.now ?? (() => performance.now());
  const t0 = now();

  let engine: Awaited<ReturnType<typeof createEngine>> | undefined;
  const getEngine = async () => (engine ??= await (io.engine ?? createEngine)());
  const loaded = await loadModelSource(f, values, getEngine, 'analytic:mixture');
  try {
    const model = loaded.model;
    const K = model.numClasses;
    if (K < 2) f.error(`the model has ${K} classes; the study compares class decisions and needs ≥ 2 (${loaded.description})`);
    if (settings.prior === 'exact' && !loaded.analytic) f.fail('--prior exact needs an analytic model');
    if (loaded.untrained) io.stderr.write(`WARNING: ${loaded.description}\n`);
    const D = model.shape[0] * model.shape[1] * model.shape[2];
    const reference = f.oneOf(values, 'reference', ['exact', 'none'] as const, D <= 256 ? 'exact' : 'none') === 'exact';

    let source: ImageSource;
    if (usesInputFlags(values, positionals)) {
      source = await loadImageInput(f, values, positionals, model);
    } else if (loaded.analytic) {
      const s = sampleAnalytic(loaded.analytic, perClass, sampleSeed);
      source = arrayImageSource('samples', `${perClass} samples per class from the model (seed ${sampleSeed}), model space`, s.x, s.labels, model.shape);
    } else {
      f.fail('a network needs labelled input: --data SPEC, --npy x.npy --labels y.npy, or --png with class folders');
    }
    const e = await getEngine();
    const M = Math.max(...ns) * groups;
    const batch = batchFlag || Math.max(1, Math.floor((loaded.analytic ? 16384 : 256) / (M * K)));
    const a = loaded.analytic;
    const solve: ClassifyOptions = {
      rtol: settings.rtol,
      atol: settings.atol,
      epsT: settings.epsT,
      seed: settings.seed,
      stepControl: settings.stepControl,
      state: settings.state,
      dequantise: settings.dequantise,
      centered: loaded.centered,
      ...(settings.maxSteps ? { maxSteps: settings.maxSteps } : {}),
      ...(settings.prior === 'exact' && a ? { priorLogDensity: (z: Float64Array, y: number | null) => a.logDensity(z, a.sde.T, y) } : {}),
    };

    // Bayes accuracy where the points are deterministic.
    let bayesAccuracy: number | null = null;
    if (a && source.labels) {
      const xs = fixedPoints(source.images(0, source.count, { centered: loaded.centered, dequantise: settings.dequantise }));
      if (xs) {
        let c = 0;
        for (let i = 0; i < source.count; i++) if (a.bayes(xs.subarray(i * D, (i + 1) * D), settings.epsT).predicted === source.labels[i]) c++;
        bayesAccuracy = c / source.count;
      }
    }

    const configs = probes.length * sharing.length + (reference ? 1 : 0);
    const progress = new Progress(io.stderr, { label: 'study', totalImages: source.count * configs, enabled: values['no-progress'] !== true, now });
    let result: DivergenceStudyResult;
    try {
      result = await divergenceStudy(e, model, source, {
        ns,
        groups,
        probes,
        sharing,
        reference,
        batch,
        solve,
        onConfiguration: (cfg, images) => progress.log(`study: ${cfg} (${images} images × ${cfg === 'exact divergence' ? 1 : M} draws × ${K} classes)`),
        onChunkStart: (images) => progress.chunkStarted(images, settings.epsT, model.sde.T),
        onChunk: (images, nfe) => progress.chunkDone(images, nfe),
        onProgress: progress.solve,
      });
    } finally {
      progress.finish();
    }

    await mkdir(outDir, { recursive: true }).catch((err: Error) => f.error(`--out-dir ${outDir}: cannot create (${err.message})`));
    const files = { json: join(outDir, 'divergence.json'), svg: join(outDir, 'divergence.svg') };
    const roundCells = result.cells.map((c) => ({
      ...c,
      varLogp: round(c.varLogp),
      varLogpFromSingle: round(c.varLogpFromSingle),
      varMargin: round(c.varMargin),
      varMarginFromSingle: round(c.varMarginFromSingle),
      accuracy: c.accuracy === null ? null : round(c.accuracy),
      agreement: round(c.agreement),
    }));
    const output: StudyOutput = {
      format: 'sbgc.study.divergence/1',
      model: { source: loaded.source, description: loaded.description, untrained: loaded.untrained },
      input: { id: source.id, description: source.description },
      settings: {
        ...settings,
        ns,
        groups,
        drawsPerImage: M,
        probes,
        sharing,
        reference: reference ? 'exact divergence' : 'none',
        batch,
        modelSpace: describeModelSpace(loaded.centered),
        precision: PRECISION_NOTE[settings.state],
      },
      bayesAccuracy,
      result: { ...result, cells: roundCells },
      seconds: round((now() - t0) / 1000),
      files,
    };
    const title = `Hutchinson draws: ${loaded.kind === 'analytic' ? loaded.source : loaded.source.split(' + ')[0]}, ${source.count} images, ${K} classes`;
    await writeFileAtomic(files.svg, studyFigure(result, title, bayesAccuracy));
    await writeFileAtomic(files.json, JSON.stringify(output, null, 2) + '\n');
    const refLine =
      (result.reference?.accuracy != null ? `exact-divergence accuracy ${result.reference.accuracy.toFixed(3)}` : '') +
      (bayesAccuracy !== null ? `${result.reference?.accuracy != null ? ', ' : ''}Bayes accuracy ${bayesAccuracy.toFixed(3)}` : '');
    io.stdout.write(
      `study divergence: ${loaded.description}\n${source.count} images, ${M} draws per image and configuration` +
        `${refLine ? `; ${refLine}` : ''}; margins between each image's top two classes (${result.referenceKind})\n\n` +
        `${studyTable(result)}\n\nwrote ${files.json} and ${files.svg} (${output.seconds.toFixed(1)} s)\n`,
    );
    return output;
  } finally {
    loaded.dispose();
  }
}

/** The CLI entry (cli/main.ts). */
export async function studyCommand(argv: string[]): Promise<boolean> {
  await runStudy(argv);
  return true;
}
