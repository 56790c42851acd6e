/**
 * Summaries of `sbgc classify` result files (format sbgc.classify/1): one row per file — the training step of its
 * weights (from the weights file's metadata, recorded in the run header), the estimator and its settings, images,
 * accuracy with a Wilson 95 % interval, mean bits/dim and NFE, seconds per image — as a markdown table, JSON and
 * an SVG of accuracy against training step, one series per estimator setting. Paired rows (the same images, two
 * settings) also get the count of images where only one of them was right, so small differences can be judged.
 */
import { plotSvg, type PlotPanel, type PlotSeries } from './svg-plot.js';

export interface ClassifyRunFile {
  format: string;
  model: { source: string; weights?: Record<string, string> };
  input: { id: string; description: string };
  settings: Record<string, unknown>;
  /** The adapter that made the images (files written before it was recorded lack it). */
  adapter?: string;
  complete?: boolean;
  summary: Record<string, unknown>;
  timing?: { seconds: number; parts: number };
  images: Array<{ index: number; label?: number | null; predicted: number; bitsPerDim: number; nfe: number; status: string }>;
}

export interface ReportRow {
  file: string;
  /** Training step of the weights (null: not recorded). */
  step: number | null;
  /** The estimator and the settings that distinguish runs, e.g. "ODE rtol 1e-2, n 1 shared, ε 1e-5". */
  setting: string;
  /** The lower time limit ε_t of the run (null: not recorded). */
  epsT: number | null;
  images: number;
  /** Global indices of the images (for pairing). */
  indices: number[];
  correct: number;
  accuracy: number;
  /** Wilson 95 % interval of the accuracy. */
  interval: [number, number];
  meanBitsPerDim: number;
  meanNfe: number;
  secondsPerImage: number | null;
  /** Per image (same order as indices): right or wrong. */
  right: boolean[];
}

/** Wilson score interval for k successes in n trials at z = 1.96. */
export function wilsonInterval(k: number, n: number, z = 1.96): [number, number] {
  if (n === 0) return [0, 1];
  const p = k / n;
  const denom = 1 + (z * z) / n;
  const centre = (p + (z * z) / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / denom;
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** Numbers as written on a command line: 1e-5, 0.5, 16. */
const num = (v: unknown): string => {
  if (typeof v !== 'number') return String(v ?? '?');
  if (v !== 0 && Math.abs(v) < 0.01) return v.toExponential().replace(/\.?0+e/, 'e');
  return String(v);
};

/** A short label of the settings that matter for a comparison. */
export function settingLabel(s: Record<string, unknown>): string {
  const eps = `ε ${num(s.epsT)}`;
  if (s.estimator === 'elbo') {
    const times = String(s.timeSampling ?? '');
    const kind = times.startsWith('half') ? 'mixture t' : times.includes('uniform') ? 'uniform t' : 'importance t';
    return `ELBO K ${num(s.k)}, ${kind}, ${eps}`;
  }
  const probes = s.probes === 'rademacher' || s.probes === undefined ? '' : ` ${String(s.probes)}`;
  const mode = s.probesMode === 'independent' ? 'independent' : 'shared';
  const tol = s.rtol === s.atol ? `rtol=atol ${num(s.rtol)}` : `rtol ${num(s.rtol)} atol ${num(s.atol)}`;
  const start = s.start === 'diffused' ? ', diffused start' : '';
  return `ODE ${tol}, n ${num(s.nProbes)}${probes} ${mode}${start}, ${eps}`;
}

/** Which weights of a checkpoint were evaluated, when not the raw parameters (export-weights --which). */
export function weightsLabel(kind: string | undefined): string {
  return kind === 'ema' ? ', EMA weights' : kind === 'ema-debiased' ? ', debiased EMA weights' : '';
}

/**
 * Runs made on a GPU adapter get its device name, so the same settings on lavapipe and on a GPU are two rows (and
 * a paired comparison). CPU adapters and files without the record get none (every earlier run was lavapipe).
 */
export function adapterLabel(adapter: string | undefined): string {
  if (!adapter || /, CPU\)$/.test(adapter)) return '';
  const ids = adapter.split(' — ')[0].replace(/ \([^)]*\)$/, '').split(' ');
  return `, GPU ${ids[ids.length - 1]}`;
}

export function reportRow(file: string, run: ClassifyRunFile): ReportRow {
  if (run.format !== 'sbgc.classify/1') throw new Error(`${file}: not an sbgc classify result (format ${JSON.stringify(run.format)})`);
  const done = run.images.filter((r) => r.status === 'success' && typeof r.label === 'number');
  const right = done.map((r) => r.predicted === r.label);
  const correct = right.filter(Boolean).length;
  const stepRaw = run.model.weights?.step;
  const step = stepRaw !== undefined && /^\d+$/.test(stepRaw) ? Number(stepRaw) : null;
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  return {
    file,
    step,
    setting: settingLabel(run.settings) + weightsLabel(run.model.weights?.weights) + adapterLabel(run.adapter),
    epsT: typeof run.settings.epsT === 'number' ? run.settings.epsT : null,
    images: done.length,
    indices: done.map((r) => r.index),
    correct,
    accuracy: done.length ? correct / done.length : NaN,
    interval: wilsonInterval(correct, done.length),
    meanBitsPerDim: mean(done.map((r) => r.bitsPerDim)),
    meanNfe: mean(done.map((r) => r.nfe)),
    secondsPerImage: run.timing && run.images.length ? run.timing.seconds / run.images.length : null,
    right,
  };
}

/**
 * For two rows on overlapping images: images where only a was right, only b was right, and how many were
 * compared (McNemar's discordant pairs: a difference is solid when one side clearly dominates them).
 */
export function pairedCounts(a: ReportRow, b: ReportRow): { onlyA: number; onlyB: number; common: number } {
  const bRight = new Map(b.indices.map((idx, j) => [idx, b.right[j]]));
  let onlyA = 0;
  let onlyB = 0;
  let common = 0;
  a.indices.forEach((idx, j) => {
    const rb = bRight.get(idx);
    if (rb === undefined) return;
    common++;
    if (a.right[j] && !rb) onlyA++;
    if (!a.right[j] && rb) onlyB++;
  });
  return { onlyA, onlyB, common };
}

const pct = (x: number) => `${(100 * x).toFixed(0)} %`;

export function reportMarkdown(rows: ReportRow[]): string {
  const sorted = [...rows].sort((a, b) => (a.step ?? -1) - (b.step ?? -1) || a.setting.localeCompare(b.setting));
  const lines = [
    '| step | classifier | images | accuracy | 95 % interval | mean bits/dim | mean NFE | s / image |',
    '|---:|---|---:|---:|---|---:|---:|---:|',
    ...sorted.map(
      (r) =>
        `| ${r.step ?? '?'} | ${r.setting} | ${r.images} | ${pct(r.accuracy)} (${r.correct}/${r.images}) | ${pct(r.interval[0])}–${pct(r.interval[1])} | ` +
        `${r.meanBitsPerDim.toFixed(3)} | ${r.meanNfe.toFixed(0)} | ${r.secondsPerImage === null ? '?' : r.secondsPerImage.toFixed(1)} |`,
    ),
  ];
  return lines.join('\n');
}

/** A setting label without its ε field: the series of an accuracy-vs-ε_t plot. */
const withoutEps = (setting: string): string => setting.split(', ').filter((f) => !f.startsWith('ε ')).join(', ');

/**
 * Accuracy against training step, one series per setting; and, where runs of one step and setting differ only in
 * ε_t (three values or more), a second panel of accuracy against ε_t (log axis), one series per (setting, step).
 */
export function reportFigure(rows: ReportRow[], title: string): string {
  // Settings measured at two or more steps (a curve); single runs are in the table and, if they vary ε_t, the ε panel.
  const stepsOf = (name: string) => new Set(rows.filter((r) => r.setting === name && r.step !== null).map((r) => r.step)).size;
  const settings = [...new Set(rows.filter((r) => r.step !== null).map((r) => r.setting))].filter((name) => stepsOf(name) >= 2).sort();
  const series: PlotSeries[] = settings.map((name) => ({
    name,
    dashed: name.startsWith('ELBO'),
    points: rows
      .filter((r) => r.setting === name && r.step !== null)
      .sort((a, b) => a.step! - b.step!)
      .map((r) => [r.step!, r.accuracy] as const),
  }));
  const panels: PlotPanel[] = [{ title: 'accuracy (dashed: ELBO, solid: ODE)', xLabel: 'training steps', yLabel: 'accuracy', series, yRange: [0, 1] }];
  const byEps = new Map<string, ReportRow[]>();
  for (const r of rows) {
    if (r.epsT === null) continue;
    const key = `${withoutEps(r.setting)} @ step ${r.step ?? '?'}`;
    byEps.set(key, [...(byEps.get(key) ?? []), r]);
  }
  const epsSeries: PlotSeries[] = [...byEps]
    // A sweep (≥ 3 values of ε_t); two-point pairs are in the paired table, and many of them would bury the sweeps.
    .filter(([, rs]) => new Set(rs.map((r) => r.epsT)).size >= 3)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, rs]) => ({
      name,
      dashed: name.startsWith('ELBO'),
      points: [...rs].sort((a, b) => a.epsT! - b.epsT!).map((r) => [r.epsT!, r.accuracy] as const),
    }));
  if (epsSeries.length) {
    panels.push({ title: 'accuracy vs the lower time limit ε_t', xLabel: 'ε_t', yLabel: 'accuracy', series: epsSeries, yRange: [0, 1], xLog: true });
  }
  return plotSvg({
    title,
    // Wide enough for a title of ~60 characters and the settings labels in the legend.
    panelWidth: 560,
    panels,
  });
}

/**
 * Whether two settings make a comparison worth a paired row: they differ in one field of their labels (one knob
 * turned), or they are the two estimators at the same ε_t. Every pair of a long study would bury those.
 */
function comparable(a: string, b: string): boolean {
  const fa = a.split(', ');
  const fb = b.split(', ');
  if (fa.length === fb.length && fa.filter((f, i) => f !== fb[i]).length === 1) return true;
  // One field present in only one of them (e.g. "diffused start"), the rest equal.
  const [longer, shorter] = fa.length > fb.length ? [fa, fb] : [fb, fa];
  if (longer.length === shorter.length + 1 && longer.some((_, i) => longer.filter((_f, j) => j !== i).join(', ') === shorter.join(', '))) return true;
  const estimator = (f: string[]) => f[0]!.split(' ')[0];
  return estimator(fa) !== estimator(fb) && fa[fa.length - 1] === fb[fb.length - 1];
}

/** Paired comparisons: two rows of the same step that share images and differ in one knob (see comparable). */
export function pairedMarkdown(rows: ReportRow[]): string {
  const lines: string[] = [];
  for (let i = 0; i < rows.length; i++) {
    for (let j = i + 1; j < rows.length; j++) {
      const [a, b] = [rows[i], rows[j]];
      if (a.step !== b.step || !comparable(a.setting, b.setting)) continue;
      const p = pairedCounts(a, b);
      if (p.common === 0) continue;
      lines.push(`| ${a.step ?? '?'} | ${a.setting} | ${b.setting} | ${p.common} | ${p.onlyA} | ${p.onlyB} |`);
    }
  }
  if (!lines.length) return '';
  return ['| step | A | B | common images | only A right | only B right |', '|---:|---|---|---:|---:|---:|', ...lines].join('\n');
}
