/**
 * Dense linear algebra: `matmul` (C = op(A)·op(B) + bias, with transposes because VJPs need Aᵀ·G and G·Bᵀ) and
 * `dense` (y = x·Wᵀ + b with W [out, in], PyTorch nn.Linear's layout, as score_sde's state dict stores it).
 *
 * The kernel variant (gemm-wgsl.ts) is chosen per adapter and the tile per shape class by the autotuner;
 * `params.variant` forces one (tests run every variant on every adapter).
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { biasedLayerJvp, channelSum } from './bias.js';
import { autotuner, shapeClass, type TuneResult } from './autotune.js';
import { defineProgram } from '../engine/program.js';
import { reads, u32s, writes } from '../engine/kernel.js';
import { CPU_MATMUL, availableVariants, subgroupSize, type GemmVariant } from './gemm-wgsl.js';
import { TILED_CANDIDATES, TILE_SPEC_FIELDS, tiledDefault, tiledGemmKernel, type TileConfig } from './gemm-tiled.js';

export interface MatmulParams {
  /** A is given as [K, M]. */
  transA?: boolean;
  /** B is given as [N, K]. */
  transB?: boolean;
  /** Force a kernel variant (tests, benchmarks); default: tuned, else the adapter's preferred one. */
  variant?: GemmVariant;
}

export interface DenseParams {
  variant?: GemmVariant;
}

/** Per-invocation tile of the CPU variants. */
export interface CpuTile {
  tm: number;
  tn: number;
}

export type MatmulConfig =
  | { variant: 'register'; tile: CpuTile }
  | { variant: 'subgroup'; tile: CpuTile }
  | { variant: 'tiled'; tile: TileConfig };

const CPU_WG = 64;
const REGISTER_DEFAULT: CpuTile = { tm: 4, tn: 4 };
const REGISTER_CANDIDATES: CpuTile[] = [REGISTER_DEFAULT, { tm: 8, tn: 4 }, { tm: 4, tn: 8 }, { tm: 8, tn: 8 }];
const SUBGROUP_CANDIDATES = (sg: number): CpuTile[] => [
  { tm: 4 * sg, tn: 4 },
  { tm: 2 * sg, tn: 4 },
  { tm: 2 * sg, tn: 8 },
  { tm: sg, tn: 8 },
  { tm: sg, tn: 4 },
];

interface MatmulShape {
  M: number;
  N: number;
  K: number;
}

function shapeOf(op: string, a: Tensor, b: Tensor, bias: MaybeTensor, transA: boolean, transB: boolean): MatmulShape {
  if (a.rank !== 2) throw new ShapeError(`${op}: ${a.describe()} must be a matrix`);
  if (b.rank !== 2) throw new ShapeError(`${op}: ${b.describe()} must be a matrix`);
  const [M, Ka] = transA ? [a.shape[1], a.shape[0]] : [a.shape[0], a.shape[1]];
  const [Kb, N] = transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
  if (Ka !== Kb) {
    throw new ShapeError(`${op}: inner sizes differ: ${a.describe()}${transA ? 'ᵀ' : ''} · ${b.describe()}${transB ? 'ᵀ' : ''}`);
  }
  if (bias && bias.size !== N) throw new ShapeError(`${op}: bias ${bias.describe()} must have ${N} elements`);
  if (M === 0 || N === 0) throw new ShapeError(`${op}: empty output [${M}×${N}]`);
  return { M, N, K: Ka };
}

function tuneKey(s: MatmulShape, transA: boolean, transB: boolean): string {
  return `matmul|${shapeClass([s.M, s.N, s.K])}|${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}`;
}

function defaultConfig(e: Engine, variant: GemmVariant, s: MatmulShape): MatmulConfig {
  if (variant === 'tiled') return { variant, tile: tiledDefault(e) };
  if (variant === 'register') return { variant, tile: REGISTER_DEFAULT };
  const sg = subgroupSize(e);
  // A tall tile amortises the broadcast A rows over many columns; small M does not fill it.
  return { variant, tile: { tm: Math.min(4 * sg, Math.ceil(s.M / sg) * sg), tn: 4 } };
}

function resolveConfig(e: Engine, s: MatmulShape, transA: boolean, transB: boolean, forced?: GemmVariant): MatmulConfig {
  const tuner = autotuner(e);
  const key = tuneKey(s, transA, transB);
  if (forced) {
    if (forced === 'subgroup' && !subgroupSize(e)) {
      throw new ShapeError(`matmul: the 'subgroup' variant needs the subgroups feature with a fixed subgroup size`);
    }
    return tuner.choice<MatmulConfig>(`${key}|${forced}`) ?? defaultConfig(e, forced, s);
  }
  return tuner.choice<MatmulConfig>(key) ?? defaultConfig(e, availableVariants(e)[0], s);
}

/** The tiled GPU GEMM for matmul: the loaders follow the transposes, storeC adds the bias. */
const MATMUL_TILED = defineProgram<TileConfig & { transA: boolean; transB: boolean; bias: boolean }>({
  name: 'matmul.tiled',
  spec: { ...TILE_SPEC_FIELDS, transA: true, transB: true, bias: true },
  build: ({ transA, transB, bias, ...tile }) =>
    tiledGemmKernel({
      name: 'matmul.tiled',
      ...tile,
      dual: false,
      splitK: false,
      buffers: [...reads('A', 'B', ...(bias ? ['bias'] : [])), ...writes('C')],
      uniforms: u32s('M', 'N', 'K'),
      helpers: `
fn loadA(m: u32, k: u32) -> f32 { return A[${transA ? 'k * params.M + m' : 'm * params.K + k'}]; }
fn loadB(k: u32, n: u32) -> f32 { return B[${transB ? 'n * params.K + k' : 'k * params.N + n'}]; }
fn storeC(m: u32, n: u32, z: u32, v: f32) { C[m * params.N + n] = v${bias ? ' + bias[n]' : ''}; }`,
    }),
});

/** Records C = op(A)·op(B) (+ bias) with the given configuration. */
function launch(
  e: Engine,
  a: Tensor,
  b: Tensor,
  bias: MaybeTensor,
  transA: boolean,
  transB: boolean,
  s: MatmulShape,
  config: MatmulConfig,
): Tensor {
  const { M, N, K } = s;
  const out = e.empty([M, N], 'f32', 'matmul');
  const bindings: Record<string, Tensor> = { A: a, B: b, C: out };
  if (bias) bindings.bias = bias;
  if (config.variant === 'tiled') {
    const t = config.tile;
    const spec = { bm: t.bm, bn: t.bn, bk: t.bk, rm: t.rm, rn: t.rn, transA, transB, bias: !!bias };
    e.run(MATMUL_TILED, spec, bindings, { M, N, K }, [Math.ceil(N / t.bn), Math.ceil(M / t.bm)]);
    return out;
  }
  const sg = config.variant === 'subgroup' ? subgroupSize(e) : 0;
  const { tm, tn } = config.tile;
  const spec = {
    tm,
    tn,
    transA,
    transB,
    vecA: transA ? M % 4 === 0 && !sg : K % 4 === 0,
    vecB: transB ? K % 4 === 0 : N % 4 === 0,
    vecC: N % 4 === 0,
    kTail: K % 4 !== 0,
    biasAxis: 'cols' as const,
    bias: !!bias,
    bias2: false,
    batched: false,
    dual: false,
    subgroup: sg,
    wg: CPU_WG,
  };
  e.run(CPU_MATMUL, spec, bindings, { M, N, K }, [Math.ceil(N / tn / CPU_WG), Math.ceil(M / tm)]);
  return out;
}

/** The matmul and dense ops' forward (their declared inputs are checked f32 by defineOp). */
function matmulForward(e: Engine, a: Tensor, b: Tensor, bias: MaybeTensor, params: MatmulParams, op = 'matmul'): Tensor {
  const transA = !!params.transA;
  const transB = !!params.transB;
  const s = shapeOf(op, a, b, bias, transA, transB);
  return launch(e, a, b, bias, transA, transB, s, resolveConfig(e, s, transA, transB, params.variant));
}

/** Stores a configuration for a shape class (what `tuneMatmul` does after timing; benchmarks reuse choices). */
export function setMatmulConfig(e: Engine, M: number, N: number, K: number, config: MatmulConfig, transA = false, transB = false): void {
  const key = tuneKey({ M, N, K }, transA, transB);
  autotuner(e).set(key, config);
  autotuner(e).set(`${key}|${config.variant}`, config);
}

/**
 * Times every variant × tile candidate for this shape class and caches the fastest (overall, and per variant for
 * forced-variant calls). Call ahead of time; ops use the cached choice synchronously.
 */
export async function tuneMatmul(
  e: Engine,
  M: number,
  N: number,
  K: number,
  options: { transA?: boolean; transB?: boolean; variants?: GemmVariant[]; repeats?: number } = {},
): Promise<TuneResult<MatmulConfig>> {
  const transA = !!options.transA;
  const transB = !!options.transB;
  const s = { M, N, K };
  const key = tuneKey(s, transA, transB);
  const tuner = autotuner(e);
  const a = e.keep(e.zeros(transA ? [K, M] : [M, K], 'f32', 'tune A'));
  const b = e.keep(e.zeros(transB ? [N, K] : [K, N], 'f32', 'tune B'));
  const all: MatmulConfig[] = [];
  const timings: TuneResult<MatmulConfig>['timings'] = [];
  try {
    for (const variant of options.variants ?? availableVariants(e)) {
      const candidates: MatmulConfig[] =
        variant === 'tiled'
          ? TILED_CANDIDATES.map((tile) => ({ variant, tile }))
          : variant === 'register'
            ? REGISTER_CANDIDATES.map((tile) => ({ variant, tile }))
            : SUBGROUP_CANDIDATES(subgroupSize(e)).map((tile) => ({ variant, tile }));
      const r = await tuner.tune(e, `${key}|${variant}`, candidates, (c) => launch(e, a, b, null, transA, transB, s, c), {
        repeats: options.repeats,
        force: true,
      });
      all.push(r.best);
      timings.push(...r.timings);
    }
  } finally {
    a.dispose();
    b.dispose();
  }
  const best = all
    .map((c) => ({ c, ms: Math.min(...timings.filter((t) => t.config === c).map((t) => t.ms)) }))
    .reduce((p, q) => (q.ms < p.ms ? q : p)).c;
  tuner.set(key, best);
  return { best, timings };
}

// ---------------------------------------------------------------- ops

/** Cotangents of C = op(A)·op(B): each is again a matmul with transposes (no explicit transpose kernels). */
function matmulGrads(e: Engine, a: Tensor, b: Tensor, g: Tensor, p: MatmulParams, needs: readonly boolean[]): MaybeTensor[] {
  const v = p.variant;
  const mm = (x: Tensor, y: Tensor, transA: boolean, transB: boolean) => matmul(e, [x, y], { transA, transB, variant: v });
  let ga: MaybeTensor = null;
  let gb: MaybeTensor = null;
  if (needs[0]) {
    // A: G·Bᵀ | B·Gᵀ (A given [K,M]) | G·B (B given [N,K]) | Bᵀ·Gᵀ
    if (!p.transA) ga = p.transB ? mm(g, b, false, false) : mm(g, b, false, true);
    else ga = p.transB ? mm(b, g, true, true) : mm(b, g, false, true);
  }
  if (needs[1]) {
    // B: Aᵀ·G | A·G (A given [K,M]) | Gᵀ·A (B given [N,K]) | Gᵀ·Aᵀ
    if (!p.transB) gb = p.transA ? mm(a, g, false, false) : mm(a, g, true, false);
    else gb = p.transA ? mm(g, a, true, true) : mm(g, a, true, false);
  }
  const gbias = needs[2] ? channelSum(e, [g], { axis: 1 }) : null;
  return [ga, gb, gbias];
}

export const matmul: Op<MatmulParams> = defineOp({
  name: 'matmul',
  inputs: ['A', 'B', 'bias?'],
  forward: (e, [a, b, bias], p) => matmulForward(e, a, b, bias ?? null, p),
  vjp: (e, { inputs: [a, b], params }, ct, needs) => matmulGrads(e, a, b, ct, params, needs),
  jvp: (e, { inputs, output, params }, tangents) =>
    biasedLayerJvp(e, (a, b, bias) => matmul(e, [a, b, bias], params), inputs, output, tangents),
});

/** y = x·Wᵀ + b: x [batch, in], W [out, in], b [out] (optional). */
export const dense: Op<DenseParams> = defineOp({
  name: 'dense',
  inputs: ['x', 'W', 'b?'],
  forward(e, [x, w, b], { variant }) {
    if (x.rank !== 2 || w.rank !== 2 || x.shape[1] !== w.shape[1]) {
      throw new ShapeError(`dense: x ${x.describe()} must be [batch, in] and W ${w.describe()} [out, in] with equal in`);
    }
    return matmulForward(e, x, w, b ?? null, { transB: true, variant }, 'dense');
  },
  vjp(e, { inputs: [x, w], params }, ct, needs) {
    const v = params.variant;
    return [
      needs[0] ? matmul(e, [ct, w], { variant: v }) : null, // G·W
      needs[1] ? matmul(e, [ct, x], { transA: true, variant: v }) : null, // Gᵀ·x
      needs[2] ? channelSum(e, [ct], { axis: 1 }) : null,
    ];
  },
  jvp: (e, { inputs, output, params }, tangents) =>
    biasedLayerJvp(e, (x, w, b) => dense(e, [x, w, b], params), inputs, output, tangents),
});
