/**
 * sbgc report FILE.json… [--out-dir DIR] [--title T]
 *
 * Summarises `sbgc classify` result files (eval/results-report.ts): a markdown table (training step, classifier
 * settings, accuracy with a Wilson 95 % interval, bits/dim, NFE, seconds per image), paired comparisons of runs
 * on the same images, and an SVG of accuracy against training step. Prints the tables; with --out-dir also writes
 * report.md, report.json and report.svg there (atomically).
 */
import { readFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { SbgcError } from '../engine/errors.js';
import { parseCommandLine } from './flag-reader.js';
import { writeFileAtomic } from '../engine/files.js';
import { pairedMarkdown, reportFigure, reportMarkdown, reportRow, type ClassifyRunFile } from '../eval/results-report.js';

export const REPORT_USAGE = 'usage: sbgc report RESULTS.json… [--out-dir DIR] [--title TEXT]';

export async function reportCommand(argv: string[]): Promise<boolean> {
  const parsed = parseCommandLine('report', REPORT_USAGE, argv, { 'out-dir': { type: 'string' }, title: { type: 'string', default: 'Held-out accuracy' } }, true);
  if (!parsed) return true;
  const { values, positionals } = parsed;
  if (positionals.length === 0) throw new SbgcError(`report: give one or more sbgc classify result files\n${REPORT_USAGE}`);
  const rows = [];
  for (const file of positionals) {
    let run: ClassifyRunFile;
    try {
      run = JSON.parse(await readFile(file, 'utf8')) as ClassifyRunFile;
    } catch (e) {
      throw new SbgcError(`report: ${file}: cannot read a JSON result (${(e as Error).message})`);
    }
    try {
      rows.push(reportRow(file, run));
    } catch (e) {
      throw new SbgcError(`report: ${(e as Error).message}`);
    }
  }
  const table = reportMarkdown(rows);
  const paired = pairedMarkdown(rows);
  const md = `${table}\n${paired ? `\nPaired (same images):\n\n${paired}\n` : ''}`;
  console.log(md);
  const dir = values['out-dir'];
  if (dir) {
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(join(dir, 'report.md'), md);
    await writeFileAtomic(join(dir, 'report.json'), `${JSON.stringify(rows.map(({ right: _r, indices: _i, ...rest }) => rest), null, 1)}\n`);
    await writeFileAtomic(join(dir, 'report.svg'), reportFigure(rows, values.title!));
    console.error(`report: ${rows.length} runs → ${join(dir, 'report.{md,json,svg}')}`);
  }
  return true;
}
