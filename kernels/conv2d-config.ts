/**
 * Conv geometry, parameter types, and the kernel configurations per variant: untuned defaults (measured on
 * lavapipe), tuning candidates, and the per-engine lookup the ops use (tuned choice, else override, else default).
 */
import type { Engine } from '../engine/engine.js';
import { ShapeError } from '../engine/errors.js';
import { autotuner, shapeClass } from './autotune.js';
import { availableVariants, subgroupSize, type GemmVariant } from './gemm-wgsl.js';
import { TILED_CANDIDATES, tiledDefault, type TileConfig } from './gemm-tiled.js';

export type Conv2dPadding = number | [number, number] | [number, number, number, number];

export interface Conv2dParams {
  /** n or [sh, sw]; default 1. */
  stride?: number | [number, number];
  /** n, [ph, pw] (per axis) or [top, bottom, left, right]; default 0. */
  padding?: Conv2dPadding;
  /** Force a kernel variant (tests, benchmarks); default: tuned, else the adapter's preferred one. */
  variant?: GemmVariant;
}

export interface Conv2dInputGradParams extends Conv2dParams {
  /** [H, W] of the convolution's input (several sizes give the same output size when the stride is > 1). */
  inputSize: [number, number];
}

export interface Conv2dWeightGradParams extends Conv2dParams {
  kernelSize: [number, number];
}

export interface ConvGeometry {
  N: number;
  Cin: number;
  H: number;
  W: number;
  Cout: number;
  KH: number;
  KW: number;
  sh: number;
  sw: number;
  pt: number;
  pb: number;
  pl: number;
  pr: number;
  OH: number;
  OW: number;
}

/** Tiles of the CPU row-conv kernels: tm output channels × tn output columns per invocation. */
export interface RowTile {
  tm: number;
  tn: number;
  /** Pre-pack weights as vec4 over the column taps (kernels ≤ 4 wide). */
  packW?: boolean;
  /** Read input rows as aligned vec4 blocks where the width allows. */
  vecX?: boolean;
}
/** Tiles of the CPU weight-gradient kernel: tm × tc (out × in channels) per invocation, tp columns per step. */
export interface WeightGradTile {
  tm: number;
  tc: number;
  tp: number;
  /** Read gy as vec4 where OW allows. */
  vecG?: boolean;
}
export type ConvKind = 'forward' | 'inputGrad' | 'weightGrad';
export type ConvConfig =
  | { variant: 'register' | 'subgroup'; tile: RowTile | WeightGradTile }
  | { variant: 'tiled'; tile: TileConfig };

export function convGeometry(op: string, xShape: readonly number[], wShape: readonly number[], p: Conv2dParams): ConvGeometry {
  if (xShape.length !== 4) throw new ShapeError(`${op}: input must be NCHW, got [${xShape.join('×')}]`);
  if (wShape.length !== 4) throw new ShapeError(`${op}: weight must be [Cout, Cin, kh, kw], got [${wShape.join('×')}]`);
  const [N, Cin, H, W] = xShape;
  const [Cout, Cin2, KH, KW] = wShape;
  if (Cin !== Cin2) throw new ShapeError(`${op}: input has ${Cin} channels, weight [${wShape.join('×')}] expects ${Cin2}`);
  const s = p.stride ?? 1;
  const [sh, sw] = typeof s === 'number' ? [s, s] : s;
  const pad = p.padding ?? 0;
  const [pt, pb, pl, pr] = typeof pad === 'number' ? [pad, pad, pad, pad] : pad.length === 2 ? [pad[0], pad[0], pad[1], pad[1]] : pad;
  const ints = [sh, sw, pt, pb, pl, pr, KH, KW];
  if (!ints.every((v) => Number.isInteger(v) && v >= 0) || sh < 1 || sw < 1 || KH < 1 || KW < 1) {
    throw new ShapeError(`${op}: bad stride [${sh}, ${sw}], padding [${pt}, ${pb}, ${pl}, ${pr}] or kernel ${KH}×${KW}`);
  }
  const OH = Math.floor((H + pt + pb - KH) / sh) + 1;
  const OW = Math.floor((W + pl + pr - KW) / sw) + 1;
  if (!(OH >= 1 && OW >= 1) || N < 1) throw new ShapeError(`${op}: empty output for input [${xShape.join('×')}] and kernel ${KH}×${KW}`);
  return { N, Cin, H, W, Cout, KH, KW, sh, sw, pt, pb, pl, pr, OH, OW };
}

// ---------------------------------------------------------------- configuration

export function tuneKey(kind: ConvKind, g: ConvGeometry): string {
  return `conv2d.${kind}|${shapeClass([g.N * g.OH * g.OW, g.Cout, g.Cin])}|${g.KH}x${g.KW}|s${g.sh}x${g.sw}`;
}

export function defaultConvConfig(e: Engine, kind: ConvKind, variant: GemmVariant, g: ConvGeometry): ConvConfig {
  if (variant === 'tiled') return { variant, tile: tiledDefault(e) };
  const sg = variant === 'subgroup' ? subgroupSize(e) : 1;
  const roundUp = (v: number, m: number) => Math.ceil(v / m) * m;
  if (kind === 'weightGrad') {
    return { variant, tile: { tm: variant === 'subgroup' ? Math.min(2 * sg, roundUp(g.Cout, sg)) : Math.min(4, g.Cout), tc: 1, tp: 4, vecG: true } };
  }
  const M = kind === 'forward' ? g.Cout : g.Cin;
  // Measured on lavapipe (conv3×3 64→64, 8×32×32): subgroup 16×4 packed ≈ 22 GFLOP/s, register 8×8 packed ≈ 13.
  const tm = variant === 'subgroup' ? subgroupRows(M, sg) : Math.min(8, M);
  return { variant, tile: { tm, tn: variant === 'subgroup' ? 4 : 8, packW: true } };
}

/**
 * Output channels per invocation of the subgroup variant: 2 or 3 subgroups' worth, whichever pads M less (3 on a
 * tie: fewer input loads per FMA); M ≤ 2·sg takes M rounded up. Measured on lavapipe (mnist-small's convs, batch
 * 200, 3×3): 3·sg = 24 against 16 — forward 28 % faster at 24→24 channels on 28×28 (16 leaves a third of the second
 * tile empty), 3–28 % at 48 channels, and the fused dual (primal + tangent) 7–32 % faster.
 */
export function subgroupRows(M: number, sg: number): number {
  const roundUp = (v: number, m: number) => Math.ceil(v / m) * m;
  if (M <= 2 * sg) return roundUp(M, sg);
  return roundUp(M, 3 * sg) <= roundUp(M, 2 * sg) ? 3 * sg : 2 * sg;
}

export function convCandidates(e: Engine, kind: ConvKind, variant: GemmVariant): ConvConfig[] {
  if (variant === 'tiled') return TILED_CANDIDATES.map((tile) => ({ variant, tile }));
  const sg = subgroupSize(e);
  if (kind === 'weightGrad') {
    const tiles: WeightGradTile[] =
      variant === 'subgroup'
        ? [{ tm: 2 * sg, tc: 1, tp: 4 }, { tm: sg, tc: 1, tp: 8 }, { tm: 2 * sg, tc: 1, tp: 8 }, { tm: sg, tc: 2, tp: 4 }]
        : [{ tm: 4, tc: 1, tp: 4 }, { tm: 4, tc: 2, tp: 4 }, { tm: 8, tc: 1, tp: 4 }, { tm: 4, tc: 1, tp: 8 }];
    return tiles.map((tile) => ({ variant, tile: { ...tile, vecG: true } }));
  }
  const tiles: RowTile[] =
    variant === 'subgroup'
      ? [{ tm: 2 * sg, tn: 4 }, { tm: 3 * sg, tn: 4 }, { tm: sg, tn: 8 }, { tm: 2 * sg, tn: 8 }, { tm: 4 * sg, tn: 4 }]
      : [{ tm: 8, tn: 8 }, { tm: 4, tn: 8 }, { tm: 8, tn: 4 }, { tm: 4, tn: 4 }];
  return tiles.map((tile) => ({ variant, tile: { ...tile, packW: true } }));
}

export function resolveConvConfig(e: Engine, kind: ConvKind, g: ConvGeometry, forced?: GemmVariant): ConvConfig {
  const key = tuneKey(kind, g);
  const tuner = autotuner(e);
  const fallback = (v: GemmVariant) => tuner.choice<ConvConfig>(`conv2d.${kind}.default|${v}`) ?? defaultConvConfig(e, kind, v, g);
  if (forced) {
    if (forced === 'subgroup' && !subgroupSize(e)) {
      throw new ShapeError(`conv2d: the 'subgroup' variant needs the subgroups feature with a fixed subgroup size`);
    }
    return tuner.choice<ConvConfig>(`${key}|${forced}`) ?? fallback(forced);
  }
  return tuner.choice<ConvConfig>(key) ?? fallback(availableVariants(e)[0]);
}

/**
 * Overrides the untuned default of one kind and variant for this engine (e.g. smaller tiles where lavapipe's JIT
 * time matters more than speed: tests, one-off runs).
 */
export function setConvDefault(e: Engine, kind: ConvKind, config: ConvConfig): void {
  autotuner(e).set(`conv2d.${kind}.default|${config.variant}`, config);
}

/** Stores a configuration (what `tuneConv2d` does after timing). */
export function setConvConfig(e: Engine, kind: ConvKind, g: ConvGeometry, config: ConvConfig, perVariantOnly = false): void {
  const key = tuneKey(kind, g);
  autotuner(e).set(`${key}|${config.variant}`, config);
  if (!perVariantOnly) autotuner(e).set(key, config);
}

