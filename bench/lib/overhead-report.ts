/** The overhead suite's results and their markdown table (bench/overhead.ts writes both; one formatter for both trees). */
import { median } from './kernel-cases.js';

export interface OverheadTree {
  /** 'this tree' or 'baseline REV'. */
  tree: string;
  rev: string;
  recordUs: number[];
  endToEndUs: number[];
  trainStepsPerSecond: number[];
  classifySecondsPerDigit: number[];
}

export interface OverheadResult {
  suite: 'overhead';
  date: string;
  command: string;
  adapter: string;
  machine: { cpus: number; cpuModel?: string; loadAverageBefore: number; loadAverageAfter: number };
  trees: OverheadTree[];
}

/** The best repeat: interference from other work only ever slows a run, so the best one is the least disturbed. */
function best(xs: number[], higherIsBetter: boolean): number {
  return higherIsBetter ? Math.max(...xs) : Math.min(...xs);
}

function cell(xs: number[], digits: number, higherIsBetter = false): string {
  if (!xs.length) return '—';
  const all = xs.map((x) => x.toFixed(digits)).join(', ');
  return `${best(xs, higherIsBetter).toFixed(digits)} / ${median(xs).toFixed(digits)} (${all})`;
}

export function overheadMarkdown(r: OverheadResult): string {
  const m = r.machine;
  return [
    `# Engine overhead (${r.adapter})`,
    '',
    `\`${r.command}\`, ${r.date}; ${m.cpus} cores (${m.cpuModel}); load average ${m.loadAverageBefore.toFixed(2)} → ${m.loadAverageAfter.toFixed(2)}.`,
    '',
    '| tree | dispatch, host record (µs) | dispatch, end to end (µs) | train mnist-small (steps/s) | classify, s per digit |',
    '|---|---|---|---|---|',
    ...r.trees.map(
      (t) =>
        `| ${t.tree === 'this tree' ? `this tree (${t.rev})` : t.tree} | ${cell(t.recordUs, 2)} | ${cell(t.endToEndUs, 2)} | ` +
        `${cell(t.trainStepsPerSecond, 3, true)} | ${cell(t.classifySecondsPerDigit, 2)} |`,
    ),
    '',
    'Each cell: best repeat / median (every repeat in brackets); the trees ran interleaved (baseline, this tree, baseline, …). The best repeat is the least disturbed by other work on the machine.',
    '',
  ].join('\n');
}
