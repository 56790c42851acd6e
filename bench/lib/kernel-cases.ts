/**
 * The `kernels` suite's shapes, tuning and timing, shared with `roofline` (which places the same kernels against the
 * adapter's measured peaks). Lives under bench/lib/ so bench/run.ts does not list it as a suite.
 *
 * A timed repeat is one recorded op plus waiting for the queue (`e.sync()`); every runner is warmed up once
 * (compiles) and then timed in interleaved rounds, so a slow spell of a shared machine hits all alike.
 */
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { matmul, setMatmulConfig, tuneMatmul } from '../../kernels/matmul.js';
import { conv2d, conv2dDual, conv2dInputGrad, conv2dWeightGrad, convCandidates, convGeometry, setConvConfig, tuneConv2d } from '../../kernels/conv2d.js';
import type { Conv2dParams, ConvConfig, ConvKind } from '../../kernels/conv2d.js';
import { availableVariants, type GemmVariant } from '../../kernels/gemm-wgsl.js';

export interface MatmulCase {
  kind: 'matmul';
  name: string;
  M: number;
  N: number;
  K: number;
}
export interface ConvCase {
  kind: 'conv';
  name: string;
  x: [number, number, number, number];
  w: [number, number, number, number];
  p: Conv2dParams;
  /** Also time the VJP (input + weight gradient) and the dual kernel. */
  derivatives: boolean;
}
export type Case = MatmulCase | ConvCase;

export const KERNEL_CASES: Case[] = [
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

export type KernelOp = 'matmul' | 'conv2d' | 'conv2d.vjp' | 'conv2d.dual';

/** One timed repeat: record the work and wait until the device finished it. */
export type Runner = () => Promise<void>;

export function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Warm-up (compiles), then `repeats` interleaved rounds; every repeat's ms per runner (null runners stay null). */
export async function timeInterleavedSamples(runners: Array<Runner | null>, repeats: number): Promise<Array<number[] | null>> {
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
  return ms.map((m, i) => (runners[i] ? m : null));
}

/** As timeInterleavedSamples, keeping the median ms per runner. */
export async function timeInterleaved(runners: Array<Runner | null>, repeats: number): Promise<Array<number | null>> {
  return (await timeInterleavedSamples(runners, repeats)).map((m) => (m ? median(m) : null));
}

/** A runner recording `record` in a scope on `e` and waiting for the queue. */
export const ours = (e: Engine, record: () => void): Runner => () =>
  e.scope(async () => {
    record();
    await e.sync();
  });

/** A kept tensor of uniform values in [-1, 1) from a xorshift seed (deterministic, no device RNG needed). */
export function random(e: Engine, shape: readonly number[], seed: number): Tensor {
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

/** The file-name slug of an adapter, e.g. 'llvmpipe' or 'nvidia-hopper'. */
export function adapterSlug(info: Engine['info']): string {
  const base = info.isCpu ? info.description.split(/[:\s]/)[0] || info.vendor : `${info.vendor}-${info.architecture || info.device}`;
  return base.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'adapter';
}

/** One measured item of a case, ready to time on each engine. */
export interface KernelItem {
  name: string;
  op: KernelOp;
  flops: number;
  /** Operands read once + outputs written once, in bytes (f32): the roofline's convention. */
  bytes: number;
  variant: string;
  config: string;
  /** conv2d.vjp / conv2d.dual: the name of the forward item of the same shape. */
  forward?: string;
  /** What tfjs runs as the same work (bench/kernels.ts's baseline). */
  tfjsOp: 'matmul' | 'conv' | 'conv-vjp' | 'conv-twice';
  /** One recorder per engine, in the order given to prepareCase. */
  records: Array<() => void>;
}

export interface PreparedCase {
  items: KernelItem[];
  dispose(): void;
}

export interface PrepareOptions {
  /** Fewer tuning candidates (one per kind). */
  quick: boolean;
}

/** Few candidates per kind keep cold JIT compiles (1–5 s each on lavapipe) inside the time budget. */
function benchCandidates(e: Engine, kind: ConvKind, variant: GemmVariant, quick: boolean): ConvConfig[] {
  const all = convCandidates(e, kind, variant);
  return quick ? all.slice(0, 1) : all.slice(0, 3);
}

const F32 = 4;
const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/**
 * Tunes `c` once on engines[0] (its best configuration is set on the others) and uploads its operands to every
 * engine: the items (forward, and VJP + dual where the case asks) with one recorder per engine.
 */
export async function prepareCase(engines: Engine[], c: Case, o: PrepareOptions): Promise<PreparedCase> {
  const [e] = engines;
  const variants = availableVariants(e).filter((v) => !(e.info.isCpu && v === 'tiled'));
  if (c.kind === 'matmul') {
    const config = (await tuneMatmul(e, c.M, c.N, c.K, { variants, repeats: 2 })).best;
    engines.slice(1).forEach((other) => setMatmulConfig(other, c.M, c.N, c.K, config));
    const t = engines.map((other) => [random(other, [c.M, c.K], 1), random(other, [c.K, c.N], 2)]);
    const item: KernelItem = {
      name: c.name,
      op: 'matmul',
      flops: 2 * c.M * c.N * c.K,
      bytes: F32 * (c.M * c.K + c.K * c.N + c.M * c.N),
      variant: config.variant,
      config: JSON.stringify(config.tile),
      tfjsOp: 'matmul',
      records: engines.map((other, i) => () => void matmul(other, t[i], {})),
    };
    return { items: [item], dispose: () => t.flat().forEach((x) => x.dispose()) };
  }
  const g = convGeometry(c.name, c.x, c.w, c.p);
  const flops = 2 * g.N * g.OH * g.OW * g.Cout * g.Cin * g.KH * g.KW;
  const kinds: ConvKind[] = c.derivatives ? ['forward', 'inputGrad', 'weightGrad'] : ['forward'];
  const r = await tuneConv2d(e, c.x, c.w, c.p, { kinds, variants, candidates: (k, v) => benchCandidates(e, k, v, o.quick), repeats: 2 });
  for (const other of engines.slice(1)) for (const k of kinds) setConvConfig(other, k, g, r[k].best);
  const yShape = [g.N, g.Cout, g.OH, g.OW];
  const t = engines.map((other) => ({
    x: random(other, c.x, 3),
    w: random(other, c.w, 4),
    b: random(other, [c.w[0]], 5),
    gy: random(other, yShape, 6),
    xDot: random(other, c.x, 7),
  }));
  const [nx, nw, nb, ny] = [count(c.x), count(c.w), c.w[0], count(yShape)];
  const fwd = r.forward.best;
  const fwdMeta = { variant: fwd.variant, config: JSON.stringify(fwd.tile) };
  const items: KernelItem[] = [
    {
      name: c.name,
      op: 'conv2d',
      flops,
      bytes: F32 * (nx + nw + nb + ny),
      ...fwdMeta,
      tfjsOp: 'conv',
      records: engines.map((other, i) => () => void conv2d(other, [t[i].x, t[i].w, t[i].b], c.p)),
    },
  ];
  if (c.derivatives) {
    const ig = r.inputGrad.best;
    const wg = r.weightGrad.best;
    items.push(
      {
        name: `${c.name} vjp`,
        op: 'conv2d.vjp',
        flops: 2 * flops,
        // reads gy, w, x; writes gx, gw
        bytes: F32 * (ny + nw + nx + nx + nw),
        variant: ig.variant,
        config: `input ${JSON.stringify(ig.tile)}, weight ${JSON.stringify(wg.tile)}`,
        forward: c.name,
        tfjsOp: 'conv-vjp',
        records: engines.map((other, i) => () => {
          conv2dInputGrad(other, [t[i].gy, t[i].w], { ...c.p, inputSize: [g.H, g.W] });
          conv2dWeightGrad(other, [t[i].x, t[i].gy], { ...c.p, kernelSize: [g.KH, g.KW] });
        }),
      },
      {
        name: `${c.name} dual`,
        op: 'conv2d.dual',
        flops: 2 * flops,
        // reads x, ẋ, w, b; writes y, ẏ
        bytes: F32 * (2 * nx + nw + nb + 2 * ny),
        ...fwdMeta,
        forward: c.name,
        tfjsOp: 'conv-twice',
        records: engines.map((other, i) => () => void conv2dDual(other, t[i].x, t[i].xDot, t[i].w, t[i].b, null, c.p)),
      },
    );
  }
  return { items, dispose: () => t.forEach((ts) => Object.values(ts).forEach((x) => x.dispose())) };
}
