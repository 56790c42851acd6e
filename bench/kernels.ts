/**
 * `npm run bench -- kernels [--quick] [--no-tfjs] [--no-robustness-run]`: GEMM-shaped kernels (matmul, conv forward,
 * VJP and dual) against the same ops through @tensorflow/tfjs-backend-webgpu on the same adapter.
 *
 * Ours is tuned once per shape (few candidates, the adapter's variants). Then every measured item runs as three
 * contenders — ours, ours under Dawn's 'disable_robustness' toggle (same configuration, a second engine), and
 * tfjs — each warmed up once (compiles) and then timed in interleaved rounds, so a slow spell of a shared machine
 * hits all alike; the median per contender is kept. A repeat is one recorded op plus waiting for the queue
 * (`e.sync()`; tfjs: endComputePassEncoder + submitQueue + onSubmittedWorkDone); tfjs tensors are prepared
 * outside the timing (NHWC, HWIO). Writes bench/results/kernels-<adapter>.json and .md (atomically).
 */
import { enableDawnLimitsLayer } from '../engine/dawn-limits-layer.js';
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
import { availableVariants, subgroupSize, type GemmVariant } from '../kernels/gemm-wgsl.js';

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
  /** Also time the VJP (input + weight gradient) and the dual kernel. */
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
  /** conv2d.vjp / conv2d.dual: our time relative to our forward of the same shape. */
  ratioToForward?: number;
}

/** One timed repeat: record the work and wait until the device finished it. */
type Runner = () => Promise<void>;

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Warm-up (compiles), then `repeats` interleaved rounds; median ms per runner (null runners stay null). */
async function timeInterleaved(runners: Array<Runner | null>, repeats = REPEATS): Promise<Array<number | null>> {
  for (const run of runners) await run?.();
  const ms: number[][] = runners.map(() => []);
  for (let r = 0; r < repeats; r++) {
    for (let i = 0; i < runners.length; i++) {
      const run = runners[i];
      if (!run) continue;
      const t0 = performance.now();
      await run();
      ms[i].push(performance.now() - t0);
    }
  }
  return ms.map((m, i) => (runners[i] ? median(m) : null));
}

const ours = (e: Engine, record: () => void): Runner => () =>
  e.scope(async () => {
    record();
    await e.sync();
  });

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

/** Few candidates per kind keep cold JIT compiles (1–5 s each on lavapipe) inside the time budget. */
function benchCandidates(e: Engine, kind: ConvKind, variant: GemmVariant): ConvConfig[] {
  const all = convCandidates(e, kind, variant);
  return QUICK ? all.slice(0, 1) : all.slice(0, 3);
}

// ---------------------------------------------------------------- the tfjs-backend-webgpu baseline

interface TfjsBackend {
  endComputePassEncoder(): void;
  submitQueue(): void;
  device: GPUDevice;
}
type TfModule = typeof import('@tensorflow/tfjs-core');
interface Disposable {
  dispose(): void;
}
interface TfjsItem {
  run: Runner;
  dispose(): void;
}
type TfjsOp = 'matmul' | 'conv' | 'conv-vjp' | 'conv-twice';

/** tfjs takes its device from navigator.gpu, which Node 20 lacks: Dawn's is installed there (after ours exist). */
async function setupTfjs(): Promise<(c: Case, op: TfjsOp) => TfjsItem> {
  const name = 'webgpu';
  const dawn = (await import(name)) as { create(flags: string[]): GPU; globals: Record<string, unknown> };
  for (const [k, v] of Object.entries(dawn.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  // Like engine/gpu.ts: the Vulkan layer keeps Dawn from printing its two limit warnings (engine/dawn-limits-layer.ts).
  await enableDawnLimitsLayer();
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: dawn.create([]) }, configurable: true, writable: true });
  const tf: TfModule = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs: the webgpu backend did not initialise');
  await tf.ready();
  const backend = tf.backend() as unknown as TfjsBackend;
  const sync = async () => {
    backend.endComputePassEncoder(); // what tfjs itself does before submitting
    backend.submitQueue();
    await backend.device.queue.onSubmittedWorkDone();
  };
  return (c, op) => {
    const keep: Disposable[] = [];
    const rnd = (shape: number[]) => {
      const t = tf.randomUniform(shape, -1, 1);
      keep.push(t);
      return t;
    };
    let record: () => Disposable[];
    if (c.kind === 'matmul') {
      const [a, b] = [rnd([c.M, c.K]), rnd([c.K, c.N])] as [never, never];
      record = () => [tf.matMul(a, b)];
    } else {
      const g = convGeometry(c.name, c.x, c.w, c.p);
      const strides: [number, number] = [g.sh, g.sw];
      const pad: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [g.pt, g.pb], [g.pl, g.pr], [0, 0]];
      const x = rnd([g.N, g.H, g.W, g.Cin]) as never;
      const f = rnd([g.KH, g.KW, g.Cin, g.Cout]) as never;
      const dy = rnd([g.N, g.OH, g.OW, g.Cout]) as never;
      const conv = () => tf.conv2d(x, f, strides, pad);
      const kernel = (k: string, inputs: object, attrs: object) => tf.engine().runKernel(k, inputs as never, attrs as never) as unknown as Disposable;
      if (op === 'conv') record = () => [conv()];
      else if (op === 'conv-twice') record = () => [conv(), conv()];
      else {
        record = () => [
          kernel('Conv2DBackpropInput', { dy, filter: f }, { strides, pad, dataFormat: 'NHWC', inputShape: [g.N, g.H, g.W, g.Cin] }),
          kernel('Conv2DBackpropFilter', { x, dy }, { strides, pad, dataFormat: 'NHWC', filterShape: [g.KH, g.KW, g.Cin, g.Cout] }),
        ];
      }
    }
    return {
      run: async () => {
        const ys = record();
        await sync();
        ys.forEach((y) => y.dispose());
      },
      dispose: () => keep.forEach((t) => t.dispose()),
    };
  };
}

// ---------------------------------------------------------------- measurement

interface Measured {
  name: string;
  op: Entry['op'];
  flops: number;
  variant: string;
  config: string;
  ms: Array<number | null>;
  forward?: string;
}

async function measure(engines: Engine[], tfjs: ((c: Case, op: TfjsOp) => TfjsItem) | null): Promise<Measured[]> {
  const [e] = engines;
  const out: Measured[] = [];
  const variants = availableVariants(e).filter((v) => !(e.info.isCpu && v === 'tiled'));
  const timeItem = async (m: Omit<Measured, 'ms'>, recordOurs: Array<() => void>, tfItem: TfjsItem | null) => {
    let ms: Array<number | null>;
    try {
      ms = await timeInterleaved([ours(engines[0], recordOurs[0]), engines[1] ? ours(engines[1], recordOurs[1]) : null, tfItem?.run ?? null]);
    } finally {
      tfItem?.dispose();
    }
    out.push({ ...m, ms });
    process.stderr.write(`  ${m.name}: ${ms.map((v) => (v === null ? '—' : v.toFixed(1))).join(' / ')} ms (ours / no robustness / tfjs; ${m.variant} ${m.config})\n`);
  };
  for (const c of CASES) {
    if (c.kind === 'matmul') {
      const config = (await tuneMatmul(e, c.M, c.N, c.K, { variants, repeats: 2 })).best;
      engines.slice(1).forEach((o) => setMatmulConfig(o, c.M, c.N, c.K, config));
      const t = engines.map((o) => [random(o, [c.M, c.K], 1), random(o, [c.K, c.N], 2)]);
      const meta = { name: c.name, op: 'matmul' as const, flops: 2 * c.M * c.N * c.K, variant: config.variant, config: JSON.stringify(config.tile) };
      await timeItem(meta, engines.map((o, i) => () => void matmul(o, t[i], {})), tfjs?.(c, 'matmul') ?? null);
      t.flat().forEach((x) => x.dispose());
      continue;
    }
    const g = convGeometry(c.name, c.x, c.w, c.p);
    const flops = 2 * g.N * g.OH * g.OW * g.Cout * g.Cin * g.KH * g.KW;
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
    const fwdMeta = { op: 'conv2d' as const, flops, variant: fwd.variant, config: JSON.stringify(fwd.tile) };
    await timeItem({ name: c.name, ...fwdMeta }, engines.map((o, i) => () => void conv2d(o, [t[i].x, t[i].w, t[i].b], c.p)), tfjs?.(c, 'conv') ?? null);
    if (c.derivatives) {
      const ig = r.inputGrad.best;
      const wg = r.weightGrad.best;
      await timeItem(
        { name: `${c.name} vjp`, op: 'conv2d.vjp', flops: 2 * flops, variant: ig.variant, config: `input ${JSON.stringify(ig.tile)}, weight ${JSON.stringify(wg.tile)}`, forward: c.name },
        engines.map((o, i) => () => {
          conv2dInputGrad(o, [t[i].gy, t[i].w], { ...c.p, inputSize: [g.H, g.W] });
          conv2dWeightGrad(o, [t[i].x, t[i].gy], { ...c.p, kernelSize: [g.KH, g.KW] });
        }),
        tfjs?.(c, 'conv-vjp') ?? null,
      );
      await timeItem(
        { name: `${c.name} dual`, ...fwdMeta, op: 'conv2d.dual', flops: 2 * flops, forward: c.name },
        engines.map((o, i) => () => void conv2dDual(o, t[i].x, t[i].xDot, t[i].w, t[i].b, null, c.p)),
        tfjs?.(c, 'conv-twice') ?? null,
      );
    }
    t.forEach((ts) => Object.values(ts).forEach((x) => x.dispose()));
  }
  return out;
}

// ---------------------------------------------------------------- output

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
      `| ${r.name} | ${r.variant} \`${r.config}\` | ${fmt(r.ms, 2)} | ${fmt(r.gflops)} | ${fmt(r.gflopsNoRobustness)} | ${fmt(r.tfjsGflops)} | ${fmt(r.speedupVsTfjs, 2)}× | ${fmt(r.ratioToForward, 2)} |`,
  );
  return [
    `# Kernel benchmark: ${adapter}`,
    '',
    `${meta.adapter} — ${meta.date}, node ${meta.node}, subgroups: ${meta.subgroups || 'not enabled'}. GFLOP/s from the`,
    `median of ${meta.repeats} interleaved repeats after a warm-up; flops = 2·MACs of the forward op (VJP = input + weight`,
    'gradient = 2× forward; dual = 2× forward). "no robustness": Dawn toggle disable_robustness, same configuration.',
    'tfjs: @tensorflow/tfjs-backend-webgpu on the same adapter (VJP: its Conv2DBackpropInput + Conv2DBackpropFilter',
    'kernels; dual: two tf.conv2d calls).',
    '',
    '| kernel | ours: variant `tile` | ms | GFLOP/s | GFLOP/s no robustness | tfjs GFLOP/s | speed-up vs tfjs | time / our forward |',
    '|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
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
  const info = engines[0].info;
  const subgroups = subgroupSize(engines[0]);
  const tfjs = args.has('--no-tfjs') ? null : await setupTfjs();
  let measured: Measured[];
  try {
    measured = await measure(engines, tfjs);
  } finally {
    for (const o of engines) await o.destroy();
  }
  const entries: Entry[] = measured.map((m) => {
    const [ms, nr, tf] = m.ms;
    const gf = (v: number | null) => (v === null ? null : m.flops / v / 1e6);
    const entry: Entry = {
      name: m.name,
      op: m.op,
      flops: m.flops,
      variant: m.variant,
      config: m.config,
      ms: ms!,
      gflops: gf(ms)!,
      msNoRobustness: nr,
      gflopsNoRobustness: gf(nr),
      tfjsMs: tf,
      tfjsGflops: gf(tf),
      speedupVsTfjs: tf === null ? null : tf / ms!,
    };
    const fwd = m.forward ? measured.find((f) => f.name === m.forward) : undefined;
    if (fwd) entry.ratioToForward = ms! / fwd.ms[0]!;
    return entry;
  });
  const adapter = slug(info);
  const meta = {
    adapter: `${info.vendor} ${info.architecture} ${info.description}`.trim(),
    isCpu: info.isCpu,
    /** Subgroup size the 'subgroup' variants use; 0 when the engine has no subgroups feature. */
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
