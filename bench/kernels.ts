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
import { mkdirSync } from 'node:fs';
import { writeFileAtomic } from '../engine/files.js';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Engine } from '../engine/engine.js';
import { convGeometry } from '../kernels/conv2d.js';
import { subgroupSize } from '../kernels/gemm-wgsl.js';
import { adapterSlug, KERNEL_CASES, ours, prepareCase, timeInterleaved, type Case, type KernelItem, type KernelOp, type Runner } from './lib/kernel-cases.js';

const args = new Set(process.argv.slice(2));
const QUICK = args.has('--quick');
const REPEATS = QUICK ? 3 : 7;

export interface Entry {
  name: string;
  op: KernelOp;
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
type TfjsOp = KernelItem['tfjsOp'];

/** tfjs takes its device from navigator.gpu, which Node 20 lacks: Dawn's is installed there (after ours exist). */
async function setupTfjs(): Promise<(c: Case, op: TfjsOp) => TfjsItem> {
  const name = 'webgpu';
  const dawn = (await import(name)) as { create(flags: string[]): GPU; globals: Record<string, unknown> };
  for (const [k, v] of Object.entries(dawn.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  // Engine.create() ran first and enabled the Dawn limits layer for this process (engine/dawn-limits-layer.ts).
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
  op: KernelOp;
  flops: number;
  variant: string;
  config: string;
  ms: Array<number | null>;
  forward?: string;
}

async function measure(engines: Engine[], tfjs: ((c: Case, op: TfjsOp) => TfjsItem) | null): Promise<Measured[]> {
  const out: Measured[] = [];
  for (const c of KERNEL_CASES) {
    const prepared = await prepareCase(engines, c, { quick: QUICK });
    try {
      for (const item of prepared.items) out.push(await timeItem(engines, item, tfjs?.(c, item.tfjsOp) ?? null));
    } finally {
      prepared.dispose();
    }
  }
  return out;
}

async function timeItem(engines: Engine[], item: KernelItem, tfItem: TfjsItem | null): Promise<Measured> {
  let ms: Array<number | null>;
  try {
    ms = await timeInterleaved([ours(engines[0], item.records[0]), engines[1] ? ours(engines[1], item.records[1]) : null, tfItem?.run ?? null], REPEATS);
  } finally {
    tfItem?.dispose();
  }
  process.stderr.write(`  ${item.name}: ${ms.map((v) => (v === null ? '—' : v.toFixed(1))).join(' / ')} ms (ours / no robustness / tfjs; ${item.variant} ${item.config})\n`);
  const { name, op, flops, variant, config, forward } = item;
  return { name, op, flops, variant, config, ms, forward };
}

// ---------------------------------------------------------------- output

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
  const adapter = adapterSlug(info);
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
  await writeFileAtomic(join(dir, `kernels-${adapter}.json`), `${JSON.stringify({ ...meta, entries }, null, 2)}\n`);
  await writeFileAtomic(join(dir, `kernels-${adapter}.md`), markdown(adapter, entries, meta));
  process.stdout.write(markdown(adapter, entries, meta));
  process.stderr.write(`done in ${meta.seconds.toFixed(0)} s → bench/results/kernels-${adapter}.{json,md}\n`);
}

await main();
