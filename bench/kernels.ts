/**
 * `npm run bench -- kernels [--quick] [--no-tfjs] [--no-robustness-run]`: GEMM-shaped kernels (matmul, conv forward,
 * VJP and dual) against the same ops through @tensorflow/tfjs-backend-webgpu on the same adapter.
 *
 * Ours: tuned once per shape (few candidates, the adapter's variants), then the median of timed repeats between
 * `e.sync()` boundaries after a warm-up; run twice, with Dawn's default robustness and with 'disable_robustness'
 * (configurations carried over, not re-tuned). tfjs: tensors prepared outside the timing (NHWC, HWIO), each
 * repeat times the op, `submitQueue()` and `onSubmittedWorkDone()`. Writes bench/results/kernels-<adapter>.json
 * and .md (atomically).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { matmul, setMatmulConfig, tuneMatmul } from '../kernels/matmul.js';
import {
  conv2d,
  conv2dDual,
  conv2dInputGrad,
  conv2dWeightGrad,
  convCandidates,
  convGeometry,
  setConvConfig,
  tuneConv2d,
  type Conv2dParams,
  type ConvConfig,
  type ConvKind,
} from '../kernels/conv2d.js';
import { availableVariants, subgroupSize } from '../kernels/gemm-wgsl.js';

const args = new Set(process.argv.slice(2));
const QUICK = args.has('--quick');
const REPEATS = QUICK ? 3 : 7;

interface MatmulCase {
  kind: 'matmul';
  name: string;
  M: number;
  N: number;
  K: number;
}
interface ConvCase {
  kind: 'conv';
  name: string;
  x: [number, number, number, number];
  w: [number, number, number, number];
  p: Conv2dParams;
  /** Also time VJP (input + weight gradient) and the dual kernel. */
  derivatives: boolean;
}
type Case = MatmulCase | ConvCase;

const CASES: Case[] = [
  { kind: 'matmul', name: 'matmul 256', M: 256, N: 256, K: 256 },
  { kind: 'matmul', name: 'matmul 512', M: 512, N: 512, K: 512 },
  { kind: 'matmul', name: 'matmul 1024', M: 1024, N: 1024, K: 1024 },
  { kind: 'conv', name: 'conv3×3 64→64 8×32×32', x: [8, 64, 32, 32], w: [64, 64, 3, 3], p: { padding: 1 }, derivatives: true },
  { kind: 'conv', name: 'conv3×3 128→128 8×16×16', x: [8, 128, 16, 16], w: [128, 128, 3, 3], p: { padding: 1 }, derivatives: false },
  { kind: 'conv', name: 'conv1×1 128→128 8×16×16', x: [8, 128, 16, 16], w: [128, 128, 1, 1], p: {}, derivatives: false },
  {
    kind: 'conv',
    name: 'conv3×3 s2 pad(0,1,0,1) 128→128 8×32×32',
    x: [8, 128, 32, 32],
    w: [128, 128, 3, 3],
    p: { stride: 2, padding: [0, 1, 0, 1] },
    derivatives: false,
  },
];

export interface Entry {
  name: string;
  op: 'matmul' | 'conv2d' | 'conv2d.vjp' | 'conv2d.dual';
  flops: number;
  variant: string;
  config: string;
  ms: number;
  gflops: number;
  msNoRobustness: number | null;
  gflopsNoRobustness: number | null;
  tfjsMs: number | null;
  tfjsGflops: number | null;
  speedupVsTfjs: number | null;
  /** For conv2d.vjp / conv2d.dual: time relative to our forward of the same shape. */
  ratioToForward?: number;
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Median ms of `run` on each engine, repeats interleaved across engines (so a slow spell of a shared machine hits
 * both settings alike), after one untimed warm-up each (compiles).
 */
async function timeInterleaved(engines: Engine[], runs: Array<() => void>, repeats = REPEATS): Promise<number[]> {
  const once = (i: number) =>
    engines[i].scope(async () => {
      runs[i]();
      await engines[i].sync();
    });
  for (let i = 0; i < engines.length; i++) await once(i);
  const ms: number[][] = engines.map(() => []);
  for (let r = 0; r < repeats; r++) {
    for (let i = 0; i < engines.length; i++) {
      const t0 = performance.now();
      await once(i);
      ms[i].push(performance.now() - t0);
    }
  }
  return ms.map(median);
}

function random(e: Engine, shape: readonly number[], seed: number): Tensor {
  let s = seed >>> 0 || 1;
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    data[i] = ((s >>> 0) / 2 ** 32) * 2 - 1;
  }
  return e.keep(e.tensor(data, shape));
}

const convFlops = (c: ConvCase) => {
  const g = convGeometry(c.name, c.x, c.w, c.p);
  return 2 * g.N * g.OH * g.OW * g.Cout * g.Cin * g.KH * g.KW;
};

/** Few candidates per kind keep cold JIT compiles (1–5 s each on lavapipe) inside the time budget. */
function benchCandidates(e: Engine, kind: ConvKind, variant: ReturnType<typeof availableVariants>[number]): ConvConfig[] {
  const all = convCandidates(e, kind, variant);
  return QUICK ? all.slice(0, 1) : all.slice(0, 3);
}

interface OurTime {
  ms: number;
  /** Same configuration with Dawn's disable_robustness toggle (null when that engine is not available). */
  msNoRobustness: number | null;
  variant: string;
  config: string;
}

/** Tunes on the first engine, applies the choice to the second (disable_robustness), times both interleaved. */
async function runOurs(engines: Engine[]): Promise<Map<string, OurTime>> {
  const [e] = engines;
  const times = new Map<string, OurTime>();
  const variants = availableVariants(e).filter((v) => !(e.info.isCpu && v === 'tiled'));
  const record = (name: string, ms: number[], variant: string, config: string) => {
    times.set(name, { ms: ms[0], msNoRobustness: ms[1] ?? null, variant, config });
    process.stderr.write(`  ${name}: ${ms.map((v) => v.toFixed(1)).join(' / ')} ms (${variant} ${config})\n`);
  };
  for (const c of CASES) {
    if (c.kind === 'matmul') {
      const config = (await tuneMatmul(e, c.M, c.N, c.K, { variants, repeats: 2 })).best;
      engines.slice(1).forEach((o) => setMatmulConfig(o, c.M, c.N, c.K, config));
      const t = engines.map((o) => ({ a: random(o, [c.M, c.K], 1), b: random(o, [c.K, c.N], 2) }));
      const ms = await timeInterleaved(engines, engines.map((o, i) => () => void matmul(o, [t[i].a, t[i].b], {})));
      record(c.name, ms, config.variant, JSON.stringify(config.tile));
      t.forEach(({ a, b }) => [a, b].forEach((x) => x.dispose()));
      continue;
    }
    const g = convGeometry(c.name, c.x, c.w, c.p);
    const kinds: ConvKind[] = c.derivatives ? ['forward', 'inputGrad', 'weightGrad'] : ['forward'];
    const r = await tuneConv2d(e, c.x, c.w, c.p, { kinds, variants, candidates: (k, v) => benchCandidates(e, k, v), repeats: 2 });
    for (const o of engines.slice(1)) for (const k of kinds) setConvConfig(o, k, g, r[k].best);
    const t = engines.map((o) => ({
      x: random(o, c.x, 3),
      w: random(o, c.w, 4),
      b: random(o, [c.w[0]], 5),
      gy: random(o, [g.N, g.Cout, g.OH, g.OW], 6),
      xDot: random(o, c.x, 7),
    }));
    const fwd = r.forward.best;
    const ms = await timeInterleaved(engines, engines.map((o, i) => () => void conv2d(o, [t[i].x, t[i].w, t[i].b], c.p)));
    record(c.name, ms, fwd.variant, JSON.stringify(fwd.tile));
    if (c.derivatives) {
      const vjp = await timeInterleaved(
        engines,
        engines.map((o, i) => () => {
          conv2dInputGrad(o, [t[i].gy, t[i].w], { ...c.p, inputSize: [g.H, g.W] });
          conv2dWeightGrad(o, [t[i].x, t[i].gy], { ...c.p, kernelSize: [g.KH, g.KW] });
        }),
      );
      const ig = r.inputGrad.best;
      const wg = r.weightGrad.best;
      record(`${c.name} vjp`, vjp, ig.variant, `input ${JSON.stringify(ig.tile)}, weight ${JSON.stringify(wg.tile)}`);
      const dual = await timeInterleaved(engines, engines.map((o, i) => () => void conv2dDual(o, t[i].x, t[i].xDot, t[i].w, t[i].b, null, c.p)));
      record(`${c.name} dual`, dual, fwd.variant, JSON.stringify(fwd.tile));
    }
    t.forEach((ts) => Object.values(ts).forEach((x) => x.dispose()));
  }
  return times;
}

function tfjsCases(): TfjsCase[] {
  const cases: TfjsCase[] = [];
  for (const c of CASES) {
    if (c.kind === 'matmul') cases.push({ name: c.name, op: 'matmul', M: c.M, N: c.N, K: c.K });
    else {
      cases.push({ name: c.name, op: 'conv', x: c.x, w: c.w, p: c.p });
      if (c.derivatives) {
        cases.push({ name: `${c.name} vjp`, op: 'conv-vjp', x: c.x, w: c.w, p: c.p });
        cases.push({ name: `${c.name} dual`, op: 'conv-twice', x: c.x, w: c.w, p: c.p });
      }
    }
  }
  return cases;
}

function slug(info: Engine['info']): string {
  const base = info.isCpu ? info.description.split(/[:\s]/)[0] || info.vendor : `${info.vendor}-${info.architecture || info.device}`;
  return base.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'adapter';
}

function writeAtomic(path: string, text: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

const fmt = (v: number | null | undefined, d = 1) => (v === null || v === undefined ? '—' : v.toFixed(d));

function markdown(adapter: string, entries: Entry[], meta: Record<string, unknown>): string {
  const rows = entries.map(
    (r) =>
      `| ${r.name} | ${r.variant} \`${r.config}\` | ${fmt(r.ms, 2)} | ${fmt(r.gflops)} | ${fmt(r.gflopsNoRobustness)} | ${fmt(r.tfjsGflops)} | ${fmt(r.speedupVsTfjs, 2)}× |${r.ratioToForward ? ` ${r.ratioToForward.toFixed(2)} |` : ' |'}`,
  );
  return [
    `# Kernel benchmark: ${adapter}`,
    '',
    `${meta.adapter} — ${meta.date}, node ${meta.node}, subgroups ${meta.subgroups || 'not enabled'}. GFLOP/s from the median of ${meta.repeats} repeats after a warm-up; `,
    'flops counted as 2·MACs of the forward op (VJP: input + weight gradient = 2× forward; dual: 2× forward).',
    '"no robustness" = Dawn toggle disable_robustness (same configurations). tfjs = @tensorflow/tfjs-backend-webgpu on the same adapter',
    '(dual: two tf.conv2d calls; VJP: Conv2DBackpropInput + Conv2DBackpropFilter kernels).',
    '',
    '| kernel | ours: variant `tile` | ms | GFLOP/s | GFLOP/s no robustness | tfjs GFLOP/s | speed-up vs tfjs | time / forward |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

// ---------------------------------------------------------------- the tfjs-backend-webgpu baseline

type TfjsCase =
  | { name: string; op: 'matmul'; M: number; N: number; K: number }
  | { name: string; op: 'conv' | 'conv-vjp' | 'conv-twice'; x: number[]; w: number[]; p: Conv2dParams };

interface TfjsBackend {
  endComputePassEncoder(): void;
  submitQueue(): void;
  device: GPUDevice;
}

/** Median ms per case. tfjs picks its device from navigator.gpu, which Node 20 lacks: install Dawn's there. */
async function runTfjs(cases: TfjsCase[], repeats: number, log: (m: string) => void): Promise<Map<string, number>> {
  const name = 'webgpu';
  const dawn = (await import(name)) as { create(flags: string[]): GPU; globals: Record<string, unknown> };
  for (const [k, v] of Object.entries(dawn.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: dawn.create([]) }, configurable: true, writable: true });
  const tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend did not initialise');
  await tf.ready();
  const backend = tf.backend() as unknown as TfjsBackend;
  const sync = async () => {
    backend.endComputePassEncoder(); // what tfjs itself does before submitting
    backend.submitQueue();
    await backend.device.queue.onSubmittedWorkDone();
  };
  const out = new Map<string, number>();
  for (const c of cases) {
    const keep: Array<{ dispose(): void }> = [];
    const rnd = (shape: number[]) => {
      const t = tf.randomUniform(shape, -1, 1);
      keep.push(t);
      return t;
    };
    let run: () => Array<{ dispose(): void }>;
    if (c.op === 'matmul') {
      const a = rnd([c.M, c.K]);
      const b = rnd([c.K, c.N]);
      run = () => [tf.matMul(a as never, b as never)];
    } else {
      const [N, Cin, H, W] = c.x;
      const [Cout, , KH, KW] = c.w;
      const g = convGeometry(c.name, c.x, c.w, c.p);
      const strides: [number, number] = [g.sh, g.sw];
      const pad: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [g.pt, g.pb], [g.pl, g.pr], [0, 0]];
      const x = rnd([N, H, W, Cin]);
      const f = rnd([KH, KW, Cin, Cout]);
      const dy = rnd([N, g.OH, g.OW, Cout]);
      const conv = () => tf.conv2d(x as never, f as never, strides, pad);
      if (c.op === 'conv') run = () => [conv()];
      else if (c.op === 'conv-twice') run = () => [conv(), conv()];
      else {
        run = () => [
          tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: f }, { strides, pad, dataFormat: 'NHWC', inputShape: [N, H, W, Cin] } as never) as never,
          tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { strides, pad, dataFormat: 'NHWC', filterShape: [KH, KW, Cin, Cout] } as never) as never,
        ];
      }
    }
    try {
      for (const t of run()) t.dispose(); // warm-up: compiles tfjs's programs
      await sync();
      const ms: number[] = [];
      for (let r = 0; r < repeats; r++) {
        const t0 = performance.now();
        const ys = run();
        await sync();
        ms.push(performance.now() - t0);
        ys.forEach((y) => y.dispose());
      }
      out.set(c.name, median(ms));
      log(`${c.name}: ${median(ms).toFixed(1)} ms`);
    } catch (err) {
      log(`${c.name}: failed (${(err as Error).message})`);
    }
    keep.forEach((t) => t.dispose());
  }
  return out;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const engines = [await Engine.create()];
  if (!args.has('--no-robustness-run')) {
    try {
      engines.push(await Engine.create({ dawnToggles: ['disable_robustness'] }));
    } catch (err) {
      process.stderr.write(`disable_robustness rejected: ${(err as Error).message}\n`);
    }
  }
  const adapterInfo = engines[0].info;
  const subgroups = subgroupSize(engines[0]);
  process.stderr.write(`ours (${engines.length > 1 ? 'default / disable_robustness, interleaved' : 'default robustness'})\n`);
  let ours: Map<string, OurTime>;
  try {
    ours = await runOurs(engines);
  } finally {
    for (const o of engines) await o.destroy();
  }
  let tf: Map<string, number> = new Map();
  if (!args.has('--no-tfjs')) {
    process.stderr.write('tfjs-backend-webgpu\n');
    tf = await runTfjs(tfjsCases(), REPEATS, (m) => process.stderr.write(`  ${m}\n`));
  }
  const flopsOf = (name: string): { flops: number; op: Entry['op']; forward?: string } => {
    for (const c of CASES) {
      if (c.kind === 'matmul' && c.name === name) return { flops: 2 * c.M * c.N * c.K, op: 'matmul' };
      if (c.kind !== 'conv') continue;
      if (c.name === name) return { flops: convFlops(c), op: 'conv2d' };
      if (`${c.name} vjp` === name) return { flops: 2 * convFlops(c), op: 'conv2d.vjp', forward: c.name };
      if (`${c.name} dual` === name) return { flops: 2 * convFlops(c), op: 'conv2d.dual', forward: c.name };
    }
    throw new Error(name);
  };
  const entries: Entry[] = [...ours].map(([name, t]) => {
    const { flops, op, forward } = flopsOf(name);
    const nr = t.msNoRobustness;
    const tfMs = tf.get(name) ?? null;
    const gf = (ms: number | null) => (ms === null ? null : flops / ms / 1e6);
    const entry: Entry = {
      name,
      op,
      flops,
      variant: t.variant,
      config: t.config,
      ms: t.ms,
      gflops: gf(t.ms)!,
      msNoRobustness: nr,
      gflopsNoRobustness: gf(nr),
      tfjsMs: tfMs,
      tfjsGflops: gf(tfMs),
      speedupVsTfjs: tfMs === null ? null : tfMs / t.ms,
    };
    if (forward) entry.ratioToForward = t.ms / ours.get(forward)!.ms;
    return entry;
  });
  const adapter = slug(adapterInfo);
  const meta = {
    adapter: `${adapterInfo.vendor} ${adapterInfo.architecture} ${adapterInfo.description}`.trim(),
    isCpu: adapterInfo.isCpu,
    /** Subgroup size the 'subgroup' variants use, 0 when unavailable (engine without the subgroups feature). */
    subgroups,
    robustnessToggle: engines.length > 1,
    date: new Date().toISOString(),
    node: process.version,
    repeats: REPEATS,
    command: `npm run bench -- kernels ${process.argv.slice(2).join(' ')}`.trim(),
    seconds: (performance.now() - t0) / 1000,
  };
  const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(dir, { recursive: true });
  writeAtomic(join(dir, `kernels-${adapter}.json`), `${JSON.stringify({ ...meta, entries }, null, 2)}\n`);
  writeAtomic(join(dir, `kernels-${adapter}.md`), markdown(adapter, entries, meta));
  process.stdout.write(markdown(adapter, entries, meta));
  process.stderr.write(`done in ${meta.seconds.toFixed(0)} s → bench/results/kernels-${adapter}.{json,md}\n`);
}

await main();
