/**
 * The per-image evaluation loop of classify / likelihood and its results file.
 *
 * Images are solved in chunks of at most `batch` consecutive entries; chunk boundaries are aligned to multiples
 * of `batch` in the GLOBAL index, so a run done in parts (--resume, or --offset/--limit pieces split at multiples
 * of --batch) solves exactly the chunks an uninterrupted run would, and — the random numbers being keyed by the
 * global index — writes the same numbers. (Under --step-control shared the images of a chunk share step sizes,
 * which is why the chunks must match; under per-sample control any split gives identical numbers.)
 *
 * After a chunk the whole file is rewritten atomically (a valid, resumable JSON file at every moment), at most
 * every `saveIntervalMs` (default 10 s: rewriting megabytes per image would slow fast runs) and at the end; an
 * interruption loses at most that much work. With resume, records already in the file are kept and skipped; the
 * settings, model and input must match the file.
 */
import { readFile } from 'node:fs/promises';
import { writeFileAtomic } from '../engine/files.js';
import type { FlagReader } from './flag-reader.js';
import type { ImageSource } from './image-input.js';
import { Progress, type CommandIo } from './progress.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

export interface ImageRecord {
  /** Global index of the image in its input. */
  index: number;
  /** Where it came from (file, dataset entry). */
  source: string;
}

export interface RunHeader {
  /** e.g. "sbgc.classify/1". */
  format: string;
  model: {
    source: string;
    description: string;
    kind: string;
    untrained: boolean;
    shape: number[];
    numClasses: number;
    classNames?: string[];
    /** Metadata and sha256 of the weights file (networks loaded from one). */
    weights?: Record<string, string>;
  };
  input: { id: string; description: string; space: string };
  /**
   * The WebGPU adapter that made the images (engine/gpu.ts describeAdapter, e.g. "nvidia nvidia-h100-80gb-hbm3 —
   * NVIDIA: 580.159.04 580.159.4.0 (vulkan)"). Not a setting: another adapter moves the numbers by float32 rounding
   * only, so a resume on one is allowed and noted in `history`. Files written before it was recorded lack it.
   */
  adapter?: string;
  /**
   * Everything that changes the numbers (checked on resume), plus `batch` and `hutchinsonPass` (warned about and,
   * for the pass, noted in `history`: it changes float32 rounding only).
   */
  settings: { [k: string]: JsonValue };
}

/**
 * Settings a resume may change because they move the numbers by float32 rounding only, with the value files
 * written before the setting existed were made with.
 */
const ROUNDING_ONLY_SETTINGS: Record<string, JsonValue> = { hutchinsonPass: 'reverse' };

export interface RunFile<R extends ImageRecord> extends RunHeader {
  /** Every image of the input is in `images`. */
  complete: boolean;
  summary: { [k: string]: JsonValue };
  images: R[];
  /** Wall-clock seconds summed over the parts of the run, and how many parts (not reproducible, not checked). */
  timing: { seconds: number; parts: number };
  /** Provenance lines added when a resume changed a rounding-only setting (which images were made how). */
  history?: string[];
}

/** One line per image record, keys in a fixed order: readable, diffable, and still plain JSON. */
export function formatRunFile(file: RunFile<ImageRecord>): string {
  const lines: string[] = ['{'];
  const entries = Object.entries(file);
  entries.forEach(([k, v], i) => {
    const comma = i < entries.length - 1 ? ',' : '';
    if (k === 'images') {
      const imgs = v as ImageRecord[];
      lines.push(`  "images": [${imgs.length ? '' : `]${comma}`}`);
      imgs.forEach((r, j) => lines.push(`    ${JSON.stringify(r)}${j < imgs.length - 1 ? ',' : ''}`));
      if (imgs.length) lines.push(`  ]${comma}`);
    } else {
      lines.push(`  ${JSON.stringify(k)}: ${JSON.stringify(v)}${comma}`);
    }
  });
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** Contiguous runs [p0, p1) of entries still to do, split at multiples of `batch` in the global index. */
export function planChunks(source: ImageSource, batch: number, isDone: (globalIndex: number) => boolean): Array<[number, number]> {
  const chunks: Array<[number, number]> = [];
  let p0 = -1;
  for (let p = 0; p <= source.count; p++) {
    const g = p < source.count ? source.globalIndex(p) : -1;
    const open = p0 >= 0;
    const boundary = open && (p === source.count || isDone(g) || Math.floor(g / batch) !== Math.floor(source.globalIndex(p0) / batch));
    if (boundary) {
      chunks.push([p0, p]);
      p0 = -1;
    }
    if (p < source.count && p0 < 0 && !isDone(g)) p0 = p;
  }
  return chunks;
}

function canonical(v: JsonValue | undefined): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}

/** Reads a results file to continue it; throws (naming --out and each difference) if it belongs to another run. */
export async function readForResume<R extends ImageRecord>(
  f: FlagReader,
  path: string,
  header: RunHeader,
  io: CommandIo,
): Promise<{ records: Map<number, R>; timing: RunFile<R>['timing']; history: string[] } | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    f.error(`--out ${path}: cannot read to resume (${(e as Error).message})`);
  }
  let old: RunFile<R>;
  try {
    old = JSON.parse(text) as RunFile<R>;
  } catch (e) {
    f.error(`--resume: ${path} is not valid JSON (${(e as Error).message}); move it away or drop --resume`);
  }
  if (old.format !== header.format) f.error(`--resume: ${path} has format ${JSON.stringify(old.format)}, this command writes ${header.format}`);
  const diffs: string[] = [];
  const { batch: oldBatch, ...oldSettings } = old.settings ?? {};
  const { batch: newBatch, ...newSettings } = header.settings;
  const roundingChanges: string[] = [];
  for (const k of new Set([...Object.keys(oldSettings), ...Object.keys(newSettings)])) {
    if (k in ROUNDING_ONLY_SETTINGS && k in newSettings) {
      const was = k in oldSettings ? oldSettings[k] : ROUNDING_ONLY_SETTINGS[k];
      if (canonical(was) !== canonical(newSettings[k])) roundingChanges.push(`${k} ${canonical(was)} → ${canonical(newSettings[k])}`);
      continue;
    }
    if (canonical(oldSettings[k]) !== canonical(newSettings[k])) diffs.push(`${k}: ${canonical(oldSettings[k])} in the file, ${canonical(newSettings[k])} now`);
  }
  if (old.model?.source !== header.model.source || old.model?.description !== header.model.description) {
    diffs.push(`model: "${old.model?.source}" in the file, "${header.model.source}" now`);
  }
  if (canonical(old.model?.weights) !== canonical(header.model.weights)) {
    diffs.push(`weights: ${canonical(old.model?.weights)} in the file, ${canonical(header.model.weights)} now`);
  }
  if (old.input?.id !== header.input.id) diffs.push(`input: "${old.input?.id}" in the file, "${header.input.id}" now`);
  if (diffs.length) f.error(`--resume: ${path} was written by a different run:\n  ${diffs.join('\n  ')}\n(use the same flags, or another --out)`);
  if (oldBatch !== newBatch && header.settings.stepControl === 'shared') {
    io.stderr.write(
      `note: --batch ${String(newBatch)} differs from the file's ${String(oldBatch)}; with --step-control shared, images solved in ` +
        'differently composed chunks get slightly different numbers than an uninterrupted run would\n',
    );
  }
  const records = new Map<number, R>();
  for (const r of old.images ?? []) records.set(r.index, r);
  const history = Array.isArray(old.history) ? [...old.history] : [];
  if (header.adapter !== undefined && old.adapter !== header.adapter && (old.images ?? []).length > 0) {
    roundingChanges.push(`adapter ${old.adapter === undefined ? '(not recorded)' : JSON.stringify(old.adapter)} → ${JSON.stringify(header.adapter)}`);
  }
  if (roundingChanges.length) {
    const part = (old.timing?.parts ?? 0) + 1;
    const done = [...records.keys()].sort((a, b) => a - b);
    const held = done.length ? `${done.length} images (indices ${done[0]}–${done[done.length - 1]})` : 'no images';
    const line = `part ${part}: ${roundingChanges.join(', ')} (float32 rounding only); the file's ${held} were made before it`;
    history.push(line);
    io.stderr.write(`note: ${line}\n`);
  }
  return { records, timing: old.timing ?? { seconds: 0, parts: 0 }, history };
}

export interface EvaluationSpec<R extends ImageRecord> {
  f: FlagReader;
  io: CommandIo;
  header: RunHeader;
  source: ImageSource;
  batch: number;
  /** Results file, or null for stdout only. */
  out: string | null;
  resume: boolean;
  overwrite: boolean;
  /** Show the progress display. */
  progress: boolean;
  /** Per-image lines (to stderr when the JSON goes to stdout, else to stdout). */
  quiet: boolean;
  /** Least time between rewrites of `out` (default 10 000 ms; 0: after every chunk). */
  saveIntervalMs?: number;
  /** Times of the solve, for the progress display. */
  tSpan: [number, number];
  solveChunk(p0: number, p1: number, progress: Progress): Promise<{ records: R[]; nfe: number }>;
  summarize(records: R[]): { [k: string]: JsonValue };
  /** Called once with the records already done (resumed), before any describe: seeds running totals. */
  begin?(done: R[]): void;
  /** One line per new image, in order (keep running totals such as the accuracy so far). */
  describe(record: R): string;
}

/** Runs the loop, writes the file (or prints it to stdout) and returns it. */
export async function runEvaluation<R extends ImageRecord>(s: EvaluationSpec<R>): Promise<RunFile<R>> {
  const { f, io, source, out } = s;
  const now = io.now ?? (() => performance.now());
  const t0 = now();
  if (s.resume && !out) f.fail('--resume needs --out FILE (the file to continue)');
  let records = new Map<number, R>();
  let timing = { seconds: 0, parts: 0 };
  let history: string[] = [];
  if (out) {
    const prev = s.resume ? await readForResume<R>(f, out, s.header, io) : null;
    if (prev) {
      records = prev.records;
      timing = prev.timing;
      history = prev.history;
    } else if (!s.resume && !s.overwrite) {
      const exists = await readFile(out).then(
        () => true,
        () => false,
      );
      if (exists) f.fail(`--out ${out} exists: pass --resume to continue it, or --overwrite to replace it`);
    }
  }
  // A record whose source differs from this input's entry at that index came from other data.
  for (let p = 0; p < source.count; p++) {
    const r = records.get(source.globalIndex(p));
    if (r && r.source !== source.name(p)) f.error(`--resume: ${out} has image ${r.index} from ${r.source}, but this input's entry ${r.index} is ${source.name(p)}`);
  }
  const doneBefore = Array.from({ length: source.count }, (_, p) => records.has(source.globalIndex(p))).filter(Boolean).length;
  const chunks = planChunks(source, s.batch, (g) => records.has(g));
  const lineOut = out ? io.stdout : io.stderr;
  const progress = new Progress(io.stderr, { label: s.header.format.split('/')[0].replace('sbgc.', ''), totalImages: source.count, doneImages: doneBefore, enabled: s.progress, now });
  if (doneBefore > 0) progress.log(`resuming ${out}: ${doneBefore} of ${source.count} images done, ${source.count - doneBefore} to go`);

  s.begin?.([...records.values()].sort((a, b) => a.index - b.index));
  const inputIndices = new Set(Array.from({ length: source.count }, (_, p) => source.globalIndex(p)));
  const build = (): RunFile<R> => {
    const images = [...records.values()].sort((a, b) => a.index - b.index);
    return {
      ...s.header,
      complete: [...inputIndices].every((g) => records.has(g)),
      summary: s.summarize(images),
      images,
      timing: { seconds: Math.round((timing.seconds + (now() - t0) / 1000) * 1000) / 1000, parts: timing.parts + 1 },
      ...(history.length ? { history } : {}),
    };
  };

  const saveInterval = s.saveIntervalMs ?? 10_000;
  let lastSave = now();
  let unsaved = false;
  let finished = false;
  try {
    for (const [p0, p1] of chunks) {
      progress.chunkStarted(p1 - p0, s.tSpan[0], s.tSpan[1]);
      const { records: got, nfe } = await s.solveChunk(p0, p1, progress);
      for (const r of got) records.set(r.index, r);
      progress.chunkDone(p1 - p0, nfe);
      if (!s.quiet) {
        for (const r of got) {
          const line = s.describe(r);
          if (lineOut === io.stderr) progress.log(line);
          else lineOut.write(line + '\n');
        }
      }
      unsaved = true;
      if (out && now() - lastSave >= saveInterval) {
        await writeFileAtomic(out, formatRunFile(build()));
        lastSave = now();
        unsaved = false;
      }
    }
    finished = true;
  } finally {
    progress.finish();
    // A chunk threw: keep what the earlier chunks solved.
    if (!finished && out && unsaved) await writeFileAtomic(out, formatRunFile(build()));
  }
  const file = build();
  const text = formatRunFile(file);
  if (out) await writeFileAtomic(out, text);
  else io.stdout.write(text);
  return file;
}
