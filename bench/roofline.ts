/**
 * `npm run bench -- roofline [--quick] [--smoke] [--out DIR]`: the adapter's measured roofs — an FMA-bound kernel
 * (GFLOP/s) and a copy-bound kernel (GB/s), f32 and f16 where the device has `shader-f16` — and every kernel of the
 * `kernels` suite (same shapes, same tuning, same timing: bench/lib/kernel-cases.ts) placed against them.
 *
 * Arithmetic intensity = FLOPs / bytes moved, where bytes = every operand's size read once plus every output's size
 * written once (the minimum traffic; caches and re-reads are the kernel's business). The roof at intensity I is
 * min(FMA peak, copy bandwidth × I). Times are medians of interleaved repeats after a warm-up; the spread is
 * (max − min) / median. Writes roofline-<adapter>.{json,md,svg} to bench/results/ (or --out) atomically.
 * `--smoke`: tiny sizes, two repeats, results in a temp dir — seconds; what test/bench/roofline.test.ts runs.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Engine } from '../engine/engine.js';
import { writeFileAtomic } from '../engine/files.js';
import { plotSvg, type PlotSeries } from '../eval/svg-plot.js';
import { adapterSlug, KERNEL_CASES, median, ours, prepareCase, timeInterleavedSamples, type Case, type KernelOp, type PreparedCase } from './lib/kernel-cases.js';
import { FMA_FLOPS_PER_ITERATION, peakKernels, type PeakKernel, type PeakSizes, type PeakType } from './lib/peak-kernels.js';

const USAGE = 'usage: npm run bench -- roofline [--quick] [--smoke] [--out DIR]';
let flags: { quick?: boolean; smoke?: boolean; out?: string; help?: boolean };
try {
  flags = parseArgs({
    options: { quick: { type: 'boolean' }, smoke: { type: 'boolean' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  }).values;
} catch (err) {
  process.stderr.write(`roofline: ${(err as Error).message}\n${USAGE}\n`);
  process.exit(2);
}
if (flags.help) {
  process.stdout.write(
    `${USAGE}\n  --quick    fewer repeats\n  --smoke    tiny sizes, results in a temp folder (seconds; what the test runs)\n` +
      '  --out DIR  write the results there instead of bench/results/\n',
  );
  process.exit(0);
}
const SMOKE = flags.smoke === true;
const QUICK = flags.quick === true || SMOKE;
const REPEATS = SMOKE ? 2 : QUICK ? 3 : 7;
/** The peaks are cheap to repeat: more rounds than the kernels. */
const PEAK_REPEATS = SMOKE ? 2 : QUICK ? 5 : 9;
/** Above this spread a result is flagged: the machine was probably busy. */
const NOISY_SPREAD = 0.25;

/**
 * Per-dispatch sizes. CPU adapters (lavapipe): FMA ~4 GFLOP, copy 64 MiB of f32 read + written — tens of ms each.
 * GPUs: FMA ~1 TFLOP, copy 128 MiB (WebGPU's default largest storage binding) — untested on a GPU so far.
 * f16 arithmetic may be emulated (lavapipe: ~15× slower than f32), so its FMA kernel runs 16× fewer iterations.
 */
function peakSizes(isCpu: boolean): Record<PeakType, PeakSizes> {
  const f32: PeakSizes = SMOKE
    ? { fmaInvocations: 256, fmaIterations: 1, copyElements: 4096 }
    : isCpu
      ? { fmaInvocations: 65536, fmaIterations: 64, copyElements: 16 * 1024 * 1024 }
      : { fmaInvocations: 1 << 22, fmaIterations: 256, copyElements: 32 * 1024 * 1024 };
  return { f32, f16: { ...f32, fmaIterations: Math.max(1, f32.fmaIterations / 16) } };
}

const SMOKE_CASES: Case[] = [
  { kind: 'matmul', name: 'matmul 32', M: 32, N: 32, K: 32 },
  { kind: 'conv', name: 'conv3×3 4→4 1×8×8', x: [1, 4, 8, 8], w: [4, 4, 3, 3], p: { padding: 1 }, derivatives: true },
];

interface Timing {
  ms: number;
  minMs: number;
  maxMs: number;
  /** (max − min) / median. */
  spread: number;
}

interface Peak extends Timing {
  name: string;
  type: PeakType;
  kind: 'fma' | 'copy';
  /** GFLOP/s (fma) or GB/s (copy). */
  value: number;
}

interface KernelPoint extends Timing {
  name: string;
  op: KernelOp;
  variant: string;
  config: string;
  flops: number;
  bytes: number;
  /** FLOP per byte moved. */
  intensity: number;
  gflops: number;
  /** gflops / the f32 FMA peak. */
  fractionOfPeak: number;
  /** min(FMA peak, bandwidth × intensity), GFLOP/s. */
  roofGflops: number;
  fractionOfRoof: number;
  bound: 'memory' | 'compute';
}

function timing(samples: number[]): Timing {
  const ms = median(samples);
  const [minMs, maxMs] = [Math.min(...samples), Math.max(...samples)];
  return { ms, minMs, maxMs, spread: (maxMs - minMs) / ms };
}

async function measurePeaks(e: Engine, sizes: Record<PeakType, PeakSizes>): Promise<Peak[]> {
  const types: PeakType[] = e.hasF16 ? ['f32', 'f16'] : ['f32'];
  const kernels: PeakKernel[] = types.flatMap((t) => peakKernels(e, t, sizes[t]));
  try {
    const samples = await timeInterleavedSamples(kernels.map((k) => ours(e, k.record)), PEAK_REPEATS);
    return kernels.map((k, i) => {
      const t = timing(samples[i]!);
      return { name: k.name, type: k.type, kind: k.kind, ...t, value: k.work / t.ms / 1e6 };
    });
  } finally {
    kernels.forEach((k) => k.dispose());
  }
}

async function measureKernels(e: Engine, fma: number, bandwidth: number): Promise<KernelPoint[]> {
  const prepared: PreparedCase[] = [];
  try {
    for (const c of SMOKE ? SMOKE_CASES : KERNEL_CASES) {
      prepared.push(await prepareCase([e], c, { quick: QUICK }));
      process.stderr.write(`  tuned ${c.name}\n`);
    }
    const items = prepared.flatMap((p) => p.items);
    // Timed item by item, as the kernels suite does: interleaving all items per round measured 2–3× slower on
    // lavapipe (matmul 512: 15–20 ms against 8.6 ms; cold caches, probably), which would not be the kernel's own speed.
    const samples: number[][] = [];
    for (const item of items) samples.push((await timeInterleavedSamples([ours(e, item.records[0])], REPEATS))[0]!);
    return items.map((item, i) => {
      const t = timing(samples[i]);
      const gflops = item.flops / t.ms / 1e6;
      const intensity = item.flops / item.bytes;
      const roofGflops = Math.min(fma, bandwidth * intensity);
      const { name, op, variant, config, flops, bytes } = item;
      const bound = bandwidth * intensity < fma ? 'memory' : 'compute';
      return { name, op, variant, config, flops, bytes, ...t, intensity, gflops, fractionOfPeak: gflops / fma, roofGflops, fractionOfRoof: gflops / roofGflops, bound };
    });
  } finally {
    prepared.forEach((p) => p.dispose());
  }
}

// ---------------------------------------------------------------- output

const fmt = (v: number, d = 1) => v.toFixed(d);
const pct = (v: number) => `${(100 * v).toFixed(0)}%`;
const noisy = (t: Timing) => (t.spread > NOISY_SPREAD ? ' ⚠' : '');

interface Report {
  adapter: string;
  slug: string;
  isCpu: boolean;
  f16: string;
  date: string;
  node: string;
  command: string;
  repeats: number;
  peakRepeats: number;
  sizes: Record<PeakType, PeakSizes>;
  seconds: number;
  peaks: Peak[];
  ridgeFlopPerByte: number;
  kernels: KernelPoint[];
}

function markdown(r: Report): string {
  const peakRows = r.peaks.map(
    (p) => `| ${p.name} | ${fmt(p.value)} ${p.kind === 'fma' ? 'GFLOP/s' : 'GB/s'} | ${fmt(p.ms, 2)} | ${fmt(p.minMs, 2)}–${fmt(p.maxMs, 2)} (${pct(p.spread)})${noisy(p)} |`,
  );
  const kernelRows = r.kernels.map(
    (k) =>
      `| ${k.name} | ${k.variant} | ${fmt(k.flops / 1e9, 3)} | ${fmt(k.bytes / 1e6, 2)} | ${fmt(k.intensity)} | ${fmt(k.ms, 2)} | ${pct(k.spread)}${noisy(k)} | ${fmt(k.gflops)} | ${pct(k.fractionOfPeak)} | ${fmt(k.roofGflops)} (${k.bound}) | ${pct(k.fractionOfRoof)} |`,
  );
  const anyNoisy = [...r.peaks, ...r.kernels].some((t) => t.spread > NOISY_SPREAD);
  return [
    `# Roofline: ${r.slug}`,
    '',
    `${r.adapter} — ${r.date}, node ${r.node}, \`${r.command}\` (${fmt(r.seconds, 0)} s). f16: ${r.f16}.`,
    '',
    `## Measured roofs (median of ${r.peakRepeats} interleaved repeats after a warm-up)`,
    '',
    `FMA: ${r.sizes.f32.fmaInvocations} invocations × ${r.sizes.f32.fmaIterations} iterations (f16: ${r.sizes.f16.fmaIterations}) of`,
    `${FMA_FLOPS_PER_ITERATION} FLOP each (8 independent vec4 FMA chains × 16 unrolled steps). Copy: vec4 copy of`,
    `${r.sizes.f32.copyElements} elements, bytes read + written counted.`,
    '',
    '| kernel | peak | ms (median) | ms min–max (spread) |',
    '|---|---|---|---|',
    ...peakRows,
    '',
    `Ridge point (f32): ${fmt(r.ridgeFlopPerByte, 2)} FLOP/byte.`,
    '',
    `## The kernels suite against the f32 roofs (median of ${r.repeats} repeats after a warm-up, item by item)`,
    '',
    'Intensity = FLOPs / bytes moved, bytes = every operand read once + every output written once (f32). Roof at',
    'intensity I = min(FMA peak, copy bandwidth × I).',
    '',
    '| kernel | variant | GFLOP | MB moved | FLOP/byte | ms | spread | GFLOP/s | % of FMA peak | roof GFLOP/s | % of roof |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...kernelRows,
    '',
    anyNoisy ? `⚠ spread above ${pct(NOISY_SPREAD)}: the machine was probably busy; rerun on an idle machine.\n` : '',
  ].join('\n');
}

function rooflineSvg(r: Report): string {
  const xs = r.kernels.map((k) => k.intensity);
  const lo = Math.min(0.1, ...xs.map((x) => x / 2));
  const hi = Math.max(r.ridgeFlopPerByte * 4, ...xs.map((x) => x * 2));
  const roof = (type: PeakType): PlotSeries | null => {
    const fma = r.peaks.find((p) => p.type === type && p.kind === 'fma');
    const copy = r.peaks.find((p) => p.type === type && p.kind === 'copy');
    if (!fma || !copy) return null;
    const ridge = fma.value / copy.value;
    const points: Array<[number, number]> = [[lo, copy.value * lo], [ridge, fma.value], [hi, fma.value]];
    return { name: `${type} roof (${fmt(fma.value)} GFLOP/s, ${fmt(copy.value)} GB/s)`, points, color: type === 'f32' ? '#000000' : '#7f7f7f', dashed: type === 'f16' };
  };
  const series = [roof('f32'), roof('f16')].filter((s): s is PlotSeries => s !== null);
  for (const k of r.kernels) series.push({ name: `${k.name} (${pct(k.fractionOfRoof)} of roof)`, points: [[k.intensity, k.gflops]] });
  return plotSvg({
    title: `Roofline: ${r.slug}`,
    panelWidth: 520,
    panelHeight: 360,
    panels: [{ title: r.adapter, xLabel: 'arithmetic intensity (FLOP/byte)', yLabel: 'GFLOP/s', xLog: true, yLog: true, series }],
  });
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const e = await Engine.create();
  const sizes = peakSizes(e.info.isCpu);
  let peaks: Peak[];
  let kernels: KernelPoint[];
  try {
    process.stderr.write('roofline: measuring peaks\n');
    peaks = await measurePeaks(e, sizes);
    for (const p of peaks) process.stderr.write(`  ${p.name}: ${fmt(p.value)} ${p.kind === 'fma' ? 'GFLOP/s' : 'GB/s'} (${fmt(p.ms, 2)} ms)\n`);
    const fma = peaks.find((p) => p.type === 'f32' && p.kind === 'fma')!.value;
    const bandwidth = peaks.find((p) => p.type === 'f32' && p.kind === 'copy')!.value;
    process.stderr.write('roofline: tuning and timing the kernels suite\n');
    kernels = await measureKernels(e, fma, bandwidth);
  } finally {
    await e.destroy();
  }
  const info = e.info;
  const slug = adapterSlug(info);
  const f32Fma = peaks.find((p) => p.type === 'f32' && p.kind === 'fma')!.value;
  const f32Copy = peaks.find((p) => p.type === 'f32' && p.kind === 'copy')!.value;
  const report: Report = {
    adapter: `${info.vendor} ${info.architecture} ${info.description}`.trim(),
    slug,
    isCpu: info.isCpu,
    f16: e.hasF16 ? 'shader-f16 present, measured' : 'not measured: the adapter has no shader-f16',
    date: new Date().toISOString(),
    node: process.version,
    command: `npm run bench -- roofline ${process.argv.slice(2).join(' ')}`.trim(),
    repeats: REPEATS,
    peakRepeats: PEAK_REPEATS,
    sizes,
    seconds: (performance.now() - t0) / 1000,
    peaks,
    ridgeFlopPerByte: f32Fma / f32Copy,
    kernels,
  };
  const dir = flags.out ?? (SMOKE ? mkdtempSync(join(tmpdir(), 'sbgc-roofline-')) : join(dirname(fileURLToPath(import.meta.url)), 'results'));
  mkdirSync(dir, { recursive: true });
  const base = join(dir, `roofline-${slug}`);
  const md = markdown(report);
  await writeFileAtomic(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  await writeFileAtomic(`${base}.md`, md);
  await writeFileAtomic(`${base}.svg`, rooflineSvg(report));
  process.stdout.write(md);
  process.stderr.write(`done in ${fmt(report.seconds, 0)} s → ${base}.{json,md,svg}\n`);
}

await main();
