/**
 * The conv kernels' launchers (forward and its dual, input gradient, weight gradient; 1×1 convs through the batched
 * CPU matmul). The ops in conv2d.ts pick a configuration and call these; conv2d-tune.ts times them.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import type { MaybeTensor } from '../engine/autodiff.js';
import { grid } from '../engine/wgsl.js';
import { CPU_MATMUL, subgroupSize } from './gemm-wgsl.js';
import { SUM_PARTIALS, type TileConfig } from './gemm-tiled.js';
import { ROW_CONV, WEIGHT_GRAD, forwardTaps, phaseTaps } from './conv2d-wgsl.js';
import { TILED_CONV, tiledUniforms, type TiledConvSpec } from './conv2d-tiled.js';
import { packedWeights } from './conv2d-packed-weights.js';
import type { ConvConfig, ConvGeometry, RowTile, WeightGradTile } from './conv2d-config.js';

const WG = 64;

/** 1×1, stride 1, unpadded: per image a plain matmul, run as the batched CPU matmul (vec4 along pixels, K by 4). */
export function isPointwise(g: ConvGeometry): boolean {
  return g.KH === 1 && g.KW === 1 && g.sh === 1 && g.sw === 1 && g.pt + g.pb + g.pl + g.pr === 0;
}

interface BatchedGemm {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  batch: number;
  /** Batch strides in elements (0 shares the operand). */
  sA: number;
  sB: number;
  sC: number;
  bias: boolean;
  bias2: boolean;
  dual: boolean;
}

function batchedMatmul(e: Engine, m: BatchedGemm, tile: { tm: number; tn: number }, variant: 'register' | 'subgroup', bind: Record<string, Tensor>): void {
  const sg = variant === 'subgroup' ? subgroupSize(e) : 0;
  const tn = Math.max(4, Math.ceil(tile.tn / 4) * 4);
  const spec = {
    tm: tile.tm,
    tn,
    transA: m.transA,
    transB: m.transB,
    vecA: m.transA ? m.M % 4 === 0 && !sg : m.K % 4 === 0,
    vecB: m.transB ? m.K % 4 === 0 : m.N % 4 === 0,
    vecC: m.N % 4 === 0,
    kTail: m.K % 4 !== 0,
    biasAxis: 'rows' as const,
    bias: m.bias,
    bias2: m.bias2,
    batched: true,
    dual: m.dual,
    subgroup: sg,
    wg: WG,
  };
  e.run(CPU_MATMUL, spec, bind, { M: m.M, N: m.N, K: m.K, sA: m.sA, sB: m.sB, sC: m.sC }, [Math.ceil(m.N / tn / WG), Math.ceil(m.M / tile.tm), m.batch]);
}

/** One tiled-GEMM conv dispatch: an M×N output over K (read kChunk at a time), in `parts` split-K slices if given. */
function runTiled(
  e: Engine,
  g: ConvGeometry,
  t: TileConfig,
  flags: Omit<TiledConvSpec, keyof TileConfig>,
  bindings: Record<string, Tensor>,
  { M, N, K, kChunk = K, parts }: { M: number; N: number; K: number; kChunk?: number; parts?: number },
): void {
  const spec = { bm: t.bm, bn: t.bn, bk: t.bk, rm: t.rm, rn: t.rn, ...flags };
  const workgroups: [number, number] = [Math.ceil(N / t.bn), Math.ceil(M / t.bm)];
  e.run(TILED_CONV, spec, bindings, tiledUniforms(g, M, N, K, kChunk), parts === undefined ? workgroups : [...workgroups, parts]);
}

/** conv(x, W) + b, and with x2 also conv(x2, W) + b2 in the same dispatch. */
export function launchForward(e: Engine, g: ConvGeometry, x: Tensor, x2: MaybeTensor, w: Tensor, b: MaybeTensor, b2: MaybeTensor, config: ConvConfig): [Tensor, MaybeTensor] {
  const shape = [g.N, g.Cout, g.OH, g.OW];
  const y = e.empty(shape, 'f32', 'conv2d');
  const y2 = x2 ? e.empty(shape, 'f32', 'conv2d.tangent') : null;
  const bind: Record<string, Tensor> = { X: x, Y: y };
  if (x2) Object.assign(bind, { X2: x2, Y2: y2! });
  if (b) bind.bias = b;
  if (x2 && b2) bind.bias2 = b2;
  const dual = !!x2;
  if (config.variant === 'tiled') {
    const size = { M: g.Cout, N: g.N * g.OH * g.OW, K: g.Cin * g.KH * g.KW };
    runTiled(e, g, config.tile, { kind: 'forward', dual, bias: !!b, bias2: dual && !!b2 }, { ...bind, Wt: w }, size);
    return [y, y2];
  }
  const tile = config.tile as RowTile;
  if (isPointwise(g)) {
    const HW = g.H * g.W;
    const pb: Record<string, Tensor> = { A: w, B: x, C: y };
    if (b) pb.bias = b;
    if (x2) Object.assign(pb, { B2: x2, C2: y2! }, b2 ? { bias2: b2 } : {});
    const m = { M: g.Cout, N: HW, K: g.Cin, transA: false, transB: false, batch: g.N, sA: 0, sB: g.Cin * HW, sC: g.Cout * HW };
    batchedMatmul(e, { ...m, bias: !!b, bias2: !!x2 && !!b2, dual: !!x2 }, tile, config.variant, pb);
    return [y, y2];
  }
  const sg = config.variant === 'subgroup' ? subgroupSize(e) : 0;
  const taps = forwardTaps(g.KW, g.pl);
  const packedW = !!tile.packW && g.KW <= 4;
  const vecX = !!tile.vecX && g.W % 4 === 0 && (tile.tn * g.sw) % 4 === 0;
  const spec = {
    inputGrad: false, tm: tile.tm, tn: tile.tn, subgroup: sg, dual, bias: !!b, bias2: dual && !!b2, inStepW: g.sw, outStepW: 1,
    taps: taps.count, tapW0: taps.w0, tapWStep: taps.wStep, tapD0: taps.d0, tapDStep: taps.dStep, packedW, vecX, wg: WG,
  };
  const wsM = g.Cin * g.KH * g.KW;
  const wsK = g.KH * g.KW;
  const wBound = packedW ? packedWeights(e, w, { M: g.Cout, KC: g.Cin, KH: g.KH, KW: g.KW, wsM, wsK, taps }) : w;
  if (vecX) Object.assign(bind, { X4: x }, x2 ? { X24: x2 } : {});
  const nCb = Math.ceil(g.OW / tile.tn);
  const lanes = g.N * g.OH * nCb;
  const uniforms = {
    M: g.Cout, KC: g.Cin, R: g.OH, CC: g.OW, Hi: g.H, Wi: g.W, OHs: g.OH, OWs: g.OW, ph: 0, outStepH: 1, lanes, nCb,
    wsM, wsK, KW: g.KW, inStepH: g.sh, nT: g.KH, kh0: 0, khStep: 1, d0: -g.pt, dStep: 1, pw: 0, KHp: g.KH,
  };
  e.run(ROW_CONV, spec, { ...bind, W: wBound }, uniforms, [Math.ceil(lanes / WG), Math.ceil(g.Cout / tile.tm)]);
  return [y, y2];
}

/** gx = transposed conv of gy (and of gy2 in the same dispatch). */
export function launchInputGrad(e: Engine, g: ConvGeometry, gy: Tensor, gy2: MaybeTensor, w: Tensor, config: ConvConfig): [Tensor, MaybeTensor] {
  const shape = [g.N, g.Cin, g.H, g.W];
  const gx = e.empty(shape, 'f32', 'conv2d.input-grad');
  const gx2 = gy2 ? e.empty(shape, 'f32', 'conv2d.input-grad.tangent') : null;
  const dual = !!gy2;
  if (config.variant === 'tiled') {
    const bind: Record<string, Tensor> = { Wt: w, G: gy, Y: gx };
    if (dual) Object.assign(bind, { G2: gy2!, Y2: gx2! });
    const size = { M: g.Cin, N: g.N * g.H * g.W, K: g.Cout * g.KH * g.KW };
    runTiled(e, g, config.tile, { kind: 'inputGrad', dual, bias: false, bias2: false }, bind, size);
    return [gx, gx2];
  }
  if (isPointwise(g)) {
    // gx[b] = Wᵀ · gy[b]: W [Cout, Cin] is A transposed.
    const HW = g.H * g.W;
    const pb: Record<string, Tensor> = { A: w, B: gy, C: gx };
    if (gy2) Object.assign(pb, { B2: gy2, C2: gx2! });
    batchedMatmul(e, { M: g.Cin, N: HW, K: g.Cout, transA: true, transB: false, batch: g.N, sA: 0, sB: g.Cout * HW, sC: g.Cin * HW, bias: false, bias2: false, dual }, config.tile as RowTile, config.variant, pb);
    return [gx, gx2];
  }
  const sg = config.variant === 'subgroup' ? subgroupSize(e) : 0;
  const bind: Record<string, Tensor> = { X: gy, W: w, Y: gx };
  if (dual) Object.assign(bind, { X2: gy2!, Y2: gx2! });
  const tile = config.tile as RowTile;
  const wsM = g.KH * g.KW;
  const wsK = g.Cin * g.KH * g.KW;
  const vecX = !!tile.vecX && g.OW % 4 === 0 && tile.tn % 4 === 0;
  if (vecX) Object.assign(bind, { X4: gy }, gy2 ? { X24: gy2 } : {});
  for (let pw = 0; pw < Math.min(g.sw, g.W); pw++) {
    const taps = phaseTaps(pw, g.pl, g.sw, g.KW);
    const packedW = !!tile.packW && taps.count <= 4;
    const spec = {
      inputGrad: true, tm: tile.tm, tn: tile.tn, subgroup: sg, dual, bias: false, bias2: false, inStepW: 1, outStepW: g.sw,
      taps: taps.count, tapW0: taps.w0, tapWStep: taps.wStep, tapD0: taps.d0, tapDStep: taps.dStep, packedW, vecX, wg: WG,
    };
    bind.W = packedW ? packedWeights(e, w, { M: g.Cin, KC: g.Cout, KH: g.KH, KW: g.KW, wsM, wsK, taps }) : w;
    const CC = Math.ceil((g.W - pw) / g.sw);
    const nCb = Math.ceil(CC / tile.tn);
    for (let ph = 0; ph < Math.min(g.sh, g.H); ph++) {
      const rows = phaseTaps(ph, g.pt, g.sh, g.KH);
      const R = Math.ceil((g.H - ph) / g.sh);
      const lanes = g.N * R * nCb;
      const uniforms = {
        M: g.Cin, KC: g.Cout, R, CC, Hi: g.OH, Wi: g.OW, OHs: g.H, OWs: g.W, ph, outStepH: g.sh, lanes, nCb,
        wsM, wsK, KW: g.KW, inStepH: 1, nT: rows.count, kh0: rows.count ? rows.w0 : 0,
        khStep: g.sh, d0: rows.count ? rows.d0 : 0, dStep: -1, pw, KHp: g.KH,
      };
      e.run(ROW_CONV, spec, bind, uniforms, [Math.ceil(lanes / WG), Math.ceil(g.Cin / tile.tm)]);
    }
  }
  return [gx, gx2];
}

/** Pixel-chunk count for the weight gradient: ~512 pixels a chunk (short f32 sums), at most 32 chunks. */
function weightGradChunks(g: ConvGeometry): { parts: number; rowsPerChunk: number } {
  const rows = g.N * g.OH;
  const want = Math.min(32, rows, Math.max(1, Math.ceil((rows * g.OW) / 512)));
  const rowsPerChunk = Math.ceil(rows / want);
  return { parts: Math.ceil(rows / rowsPerChunk), rowsPerChunk };
}

/** out = Σ_z partial[z] (in z order); partial is released. */
function sumParts(e: Engine, partial: Tensor, out: Tensor, parts: number): void {
  const n = out.size;
  e.run(SUM_PARTIALS, {}, { partial, out }, { n, parts }, grid(e, n, 64));
  partial.dispose();
}

/** gW[co, ci, kh, kw] = Σ_{b, oh, ow} gy[b, co, oh, ow] · x[b, ci, oh·sh + kh − pt, ow·sw + kw − pl]. */
export function launchWeightGrad(e: Engine, g: ConvGeometry, x: Tensor, gy: Tensor, config: ConvConfig): Tensor {
  const size = g.Cout * g.Cin * g.KH * g.KW;
  const gw = e.empty([g.Cout, g.Cin, g.KH, g.KW], 'f32', 'conv2d.weight-grad');
  if (config.variant !== 'tiled' && isPointwise(g)) {
    // gW = Σ_b gy[b] · x[b]ᵀ: one matmul per image (K = its pixels) into its own partial, then summed.
    const HW = g.H * g.W;
    const part = g.N > 1 ? e.empty([g.N, size], 'f32', 'conv2d.weight-grad.partial') : gw;
    const m = { M: g.Cout, N: g.Cin, K: HW, transA: false, transB: true, batch: g.N, sA: g.Cout * HW, sB: g.Cin * HW, sC: size };
    batchedMatmul(e, { ...m, bias: false, bias2: false, dual: false }, { tm: (config.tile as WeightGradTile).tm, tn: 4 }, config.variant, { A: gy, B: x, C: part });
    if (g.N > 1) sumParts(e, part, gw, g.N);
    return gw;
  }
  const { parts, rowsPerChunk } = weightGradChunks(g);
  const partial = parts > 1 ? e.empty([parts, size], 'f32', 'conv2d.weight-grad.partial') : gw;
  if (config.variant === 'tiled') {
    const size = { M: g.Cout, N: g.Cin * g.KH * g.KW, K: g.N * g.OH * g.OW, kChunk: rowsPerChunk * g.OW, parts };
    runTiled(e, g, config.tile, { kind: 'weightGrad', dual: false, bias: false, bias2: false }, { X: x, G: gy, P: partial }, size);
  } else {
    const tile = config.tile as WeightGradTile;
    const sg = config.variant === 'subgroup' ? subgroupSize(e) : 0;
    const vecG = !!tile.vecG && g.OW % 4 === 0 && tile.tp % 4 === 0;
    const spec = { tm: tile.tm, tc: tile.tc, tp: tile.tp, subgroup: sg, sw: g.sw, KW: g.KW, pl: g.pl, vecG, wg: WG };
    const lanes = Math.ceil(g.Cin / tile.tc) * g.KH;
    const uniforms = {
      Cout: g.Cout, Cin: g.Cin, H: g.H, W: g.W, OH: g.OH, OW: g.OW, rowsPerChunk, rows: g.N * g.OH, lanes,
      KH: g.KH, KW: g.KW, sh: g.sh, pt: g.pt,
    };
    const bind: Record<string, Tensor> = vecG ? { X: x, G4: gy, P: partial } : { X: x, G: gy, P: partial };
    e.run(WEIGHT_GRAD, spec, bind, uniforms, [Math.ceil(lanes / WG), Math.ceil(g.Cout / tile.tm), parts]);
  }
  if (parts > 1) sumParts(e, partial, gw, parts);
  return gw;
}
