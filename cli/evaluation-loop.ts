/**
 * The per-image evaluation loop of classify / likelihood around its results file (cli/run-file.ts).
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
import { formatRunFile, readForResume, type ImageRecord, type JsonValue, type RunFile, type RunHeader } from './run-file.js';

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
