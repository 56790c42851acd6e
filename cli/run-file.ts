/**
 * The results file of classify / likelihood: a header (model, input, settings), one record per image, a summary.
 * Written as plain JSON with one line per record; a resume reads it back and refuses it (naming --out and each
 * difference) when the settings, model or input differ.
 */
import { readFile } from 'node:fs/promises';
import type { FlagReader } from './flag-reader.js';
import type { CommandIo } from './progress.js';

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
