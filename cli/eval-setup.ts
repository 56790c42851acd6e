/**
 * What classify and likelihood share before their loops: flags (model, input, solver, run), the model, the input
 * checked against it, the engine, the options of each chunk's solve, and the header of the results file.
 */
import type { Engine } from '../engine/engine.js';
import { describeAdapter } from '../engine/gpu.js';
import { describeModelSpace } from '../data/model-space.js';
import type { ModelSpaceImages } from '../data/model-space-images.js';
import { PRECISION_NOTE } from '../solvers/ode/batch-types.js';
import type { ClassifyOptions } from '../eval/probability-flow-likelihood.js';
import { loadModelSource, MODEL_FLAGS, type LoadedModel } from './model-source.js';
import type { CommandIo } from './progress.js';
import { FlagReader, HELP_FLAG, switchFlags, valueFlags, type FlagValues } from './flag-reader.js';
import { readSolverFlags, solverOptions, SOLVER_FLAGS, type SolverSettings } from './solver-flags.js';
import { INPUT_FLAGS, loadImageInput, type ImageSource } from './image-input.js';
import type { ImageRecord, JsonValue, RunHeader } from './run-file.js';
import type { EvaluationSpec } from './evaluation-loop.js';

export const RUN_FLAGS = {
  ...valueFlags('batch', 'out'),
  ...switchFlags('resume', 'overwrite', 'per-draw', 'quiet', 'no-progress'),
  help: HELP_FLAG,
} as const;

export const RUN_USAGE = `run:
  --batch B               images per solve (default: as many as keep images·n·classes ≤ 256 rows)
  --out FILE.json         write the results there instead of stdout (atomically: after batches, at most
                          every 10 s, and at the end)
  --resume                continue --out FILE: skip the images it holds (same flags required)
  --overwrite             replace an existing --out file
  --per-draw              also record log p of every draw
  --quiet                 no per-image lines;  --no-progress: no progress display`;

/** Rows a default batch aims at (images · draws · classes). */
const DEFAULT_ROWS = 256;

export interface EvalSetup {
  f: FlagReader;
  io: CommandIo;
  values: FlagValues;
  settings: SolverSettings;
  loaded: LoadedModel;
  source: ImageSource;
  engine: Engine;
  batch: number;
  out: string | null;
  resume: boolean;
  overwrite: boolean;
  perDraw: boolean;
  quiet: boolean;
  progress: boolean;
}

export type FlagTable = Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>;

/**
 * Parses the flags and loads model and input. Returns null after printing the usage for --help.
 * `classesPerRow` is the number of class rows per draw the command solves (for the default batch).
 */
export async function setupEvaluation(
  command: string,
  usage: string,
  argv: string[],
  io: CommandIo,
  extraFlags: FlagTable,
  classesPerRow: (model: LoadedModel, values: FlagValues) => number,
  defaultEngine: () => Promise<Engine>,
  /** Refuses an unsuitable model (before the input is read). */
  checkModel?: (f: FlagReader, model: LoadedModel) => void,
): Promise<EvalSetup | null> {
  const f: FlagReader = new FlagReader(command, usage);
  const { values, positionals } = f.parse(argv, { ...MODEL_FLAGS, ...INPUT_FLAGS, ...SOLVER_FLAGS, ...RUN_FLAGS, ...extraFlags }, true);
  if (values.help) {
    io.stdout.write(usage + '\n');
    return null;
  }
  const settings = readSolverFlags(f, values);
  const batchFlag = f.int(values, 'batch', 0, 1);
  if (values.resume && values.overwrite) f.fail('--resume and --overwrite contradict each other');
  let engine: Engine | undefined;
  const getEngine = async () => (engine ??= await (io.engine ?? defaultEngine)());
  const loaded = await loadModelSource(f, values, getEngine);
  try {
    checkModel?.(f, loaded);
    if (settings.prior === 'exact' && !loaded.analytic) f.fail('--prior exact needs an analytic model (--model analytic:TYPE): a network has no exact p_T');
    if (settings.probes === 'exact' && loaded.model.shape[0] * loaded.model.shape[1] * loaded.model.shape[2] > 4096) {
      f.fail(`--probes exact costs D = ${loaded.model.shape.join('×')} score VJPs per evaluation; use rademacher or gaussian`);
    }
    const source = await loadImageInput(f, values, positionals, loaded.model);
    const rowsPerImage = settings.nProbes * Math.max(1, classesPerRow(loaded, values));
    const batch = batchFlag || Math.max(1, Math.floor(DEFAULT_ROWS / rowsPerImage));
    if (loaded.untrained) io.stderr.write(`WARNING: ${loaded.description}\n`);
    return {
      f,
      io,
      values,
      settings,
      loaded,
      source,
      engine: await getEngine(),
      batch,
      out: f.string(values, 'out') ?? null,
      resume: values.resume === true,
      overwrite: values.overwrite === true,
      perDraw: values['per-draw'] === true,
      quiet: values.quiet === true,
      progress: values['no-progress'] !== true,
    };
  } catch (e) {
    loaded.dispose();
    throw e;
  }
}

/** The fields of an evaluation loop's spec that come from the flags and the input (cli/evaluation-loop.ts). */
export function loopSettings(s: EvalSetup): Pick<EvaluationSpec<ImageRecord>, 'f' | 'io' | 'source' | 'batch' | 'out' | 'resume' | 'overwrite' | 'progress' | 'quiet' | 'tSpan'> {
  const { f, io, source, batch, out, resume, overwrite, progress, quiet } = s;
  return { f, io, source, batch, out, resume, overwrite, progress, quiet, tSpan: [s.settings.epsT, s.loaded.model.sde.T] };
}

/** The likelihood-module options of every chunk (imageOffset and onProgress are added per chunk). */
export function odeOptions(s: EvalSetup): ClassifyOptions {
  const a = s.loaded.analytic;
  return {
    ...solverOptions(s.settings),
    centered: s.loaded.centered,
    ...(s.settings.prior === 'exact' && a ? { priorLogDensity: (z: Float64Array, y: number | null) => a.logDensity(z, a.sde.T, a.numClasses ? y : null) } : {}),
  };
}

/** The likelihood-module options for the chunk starting at entry p0. */
export function chunkOptions(s: EvalSetup, p0: number, onProgress: ClassifyOptions['onProgress']): ClassifyOptions {
  return { ...odeOptions(s), imageOffset: s.source.globalIndex(p0), ...(onProgress ? { onProgress } : {}) };
}

/** Entries [p0, p1) in the model's space: the one conversion of the input (dequantised per draw when asked). */
export function chunkImages(s: EvalSetup, p0: number, p1: number): ModelSpaceImages {
  return s.source.images(p0, p1, { centered: s.loaded.centered, dequantise: s.settings.dequantise });
}

export function header(s: EvalSetup, format: string, extra: { [k: string]: JsonValue }): RunHeader {
  const m = s.loaded;
  const st = s.settings;
  return {
    format,
    model: {
      source: m.source,
      description: m.description,
      kind: m.kind,
      untrained: m.untrained,
      shape: [...m.model.shape],
      numClasses: m.model.numClasses,
      ...(m.classNames ? { classNames: m.classNames } : {}),
      ...(m.weightsInfo ? { weights: m.weightsInfo } : {}),
    },
    input: { id: s.source.id, description: s.source.description, space: s.source.space },
    adapter: describeAdapter(s.engine.info),
    settings: {
      ...st,
      probesMode: st.probesMode === 'shared' ? 'shared-across-classes' : 'independent',
      T: m.model.sde.T,
      sde: m.model.sde.kind,
      modelSpace: describeModelSpace(m.centered),
      precision: PRECISION_NOTE[st.state],
      priorDensity: st.prior === 'exact' ? "the analytic model's exact p_T" : 'standard normal N(0, I)',
      ...extra,
      batch: s.batch,
    },
  };
}

/** Rounds for the file: 9 significant digits keeps nats at ~1e-9 relative, the f32 RHS gives ~1e-7. */
export function round(v: number): number {
  return Number.isFinite(v) ? Number(v.toPrecision(9)) : v;
}

export function roundAll(a: ArrayLike<number>): number[] {
  return Array.from(a, round);
}

/**
 * The closing line of an evaluation command: "<command>: N images<what>, mean NFE …[, k FAILED][ → out]", written
 * to stdout when the JSON went to a file (so stdout stays parseable otherwise) and to stderr when it went to stdout.
 * `what` reads the command's own figures from the summary.
 */
export function writeClosingLine(
  s: Pick<EvalSetup, 'io' | 'out'>,
  command: string,
  file: { summary: { [k: string]: JsonValue }; complete: boolean },
  what: (summary: { [k: string]: JsonValue }) => string,
): void {
  const sum = file.summary;
  const line =
    `${command}: ${sum.images} images${what(sum)}, mean NFE ${sum.meanNfe}` +
    (Number(sum.failed) > 0 ? `, ${sum.failed} FAILED` : '') +
    (s.out ? ` → ${s.out}${file.complete ? '' : ' (incomplete)'}` : '');
  (s.out ? s.io.stdout : s.io.stderr).write(line + '\n');
}

/** ", mean B bits/dim" of a summary's meanBitsPerDim (nothing when no image succeeded). */
export function meanBitsPerDimNote(summary: { [k: string]: JsonValue }): string {
  return summary.meanBitsPerDim !== null ? `, mean ${(summary.meanBitsPerDim as number).toFixed(4)} bits/dim` : '';
}

/** A CLI entry for cli/main.ts: exit status 1 (false) when some image failed to solve. */
export function failingImagesCommand(command: string, run: (argv: string[]) => Promise<{ summary: { [k: string]: JsonValue } } | null>) {
  return async (argv: string[]): Promise<boolean> => {
    const file = await run(argv);
    if (file && Number(file.summary.failed) > 0) {
      process.stderr.write(`${command}: ${file.summary.failed} image(s) failed to solve (see "status" in the output)\n`);
      return false;
    }
    return true;
  };
}
