/**
 * The convolutions on the GPU variant: the tiled GEMM of gemm-wgsl.ts over loader functions that read the conv
 * operands in place (implicit GEMM, no im2col buffer). All geometry is in uniforms, so one pipeline per (kind,
 * tile, dual, bias flags) serves every shape.
 */
import { defineProgram } from '../engine/program.js';
import type { BufferDecl } from '../engine/kernel.js';
import { TILE_SPEC_FIELDS, tiledGemmKernel, type TileConfig } from './gemm-tiled.js';
import type { ConvGeometry, ConvKind } from './conv2d-config.js';

/** Geometry uniforms shared by the three tiled conv kernels (pads as i32 so index math stays signed). */
const TILED_CONV_UNIFORMS: Array<[string, 'u32' | 'i32']> = [
  ['M', 'u32'],
  ['N', 'u32'],
  ['K', 'u32'],
  ['kChunk', 'u32'],
  ['Cin', 'u32'],
  ['Cout', 'u32'],
  ['H', 'u32'],
  ['W', 'u32'],
  ['OH', 'u32'],
  ['OW', 'u32'],
  ['KH', 'u32'],
  ['KW', 'u32'],
  ['sh', 'u32'],
  ['sw', 'u32'],
  ['pt', 'i32'],
  ['pl', 'i32'],
];

/** x[b, ci, oh·sh + kh − pt, ow·sw + kw − pl] for GEMM row k = (ci, kh, kw) and column n = (b, oh, ow). */
const IM2COL = (name: string) => `
fn im2col${name}(k: u32, n: u32) -> f32 {
  let khw = params.KH * params.KW; let ci = k / khw; let tap = k - ci * khw; let kh = tap / params.KW; let kw = tap - kh * params.KW;
  let ohw = params.OH * params.OW; let b = n / ohw; let p = n - b * ohw; let oh = p / params.OW; let ow = p - oh * params.OW;
  let ih = i32(oh * params.sh + kh) - params.pt; let iw = i32(ow * params.sw + kw) - params.pl;
  if (ih < 0 || iw < 0 || ih >= i32(params.H) || iw >= i32(params.W)) { return 0.0; }
  return ${name}[((b * params.Cin + ci) * params.H + u32(ih)) * params.W + u32(iw)];
}`;

/**
 * Helpers of the forward and input-gradient GEMMs: B is `${fn}${operand}(k, n)` (defined by `define`), and with
 * `dual` also `${fn}${operand}2` into loadB2 and the second output Y2 through storeC2.
 */
function dualHelpers(
  dual: boolean,
  h: { operand: string; fn: string; define: (name: string) => string; loadA: string; store: (y: string, acc: string) => string },
): string {
  const src = `${h.fn}${h.operand}`;
  return [
    h.define(h.operand),
    dual ? h.define(`${h.operand}2`) : '',
    h.loadA,
    `fn loadB(k: u32, n: u32) -> f32 { return ${src}(k, n); }`,
    dual ? `fn loadB2(k: u32, n: u32) -> f32 { return ${src}2(k, n); }` : '',
    h.store('Y', 'C'),
    dual ? h.store('Y2', 'C2') : '',
  ].join('\n');
}

/** Forward (and dual): M = Cout, N = B·OH·OW, K = Cin·KH·KW. */
function tiledForwardHelpers(dual: boolean, bias: boolean, bias2: boolean): string {
  const store = (y: string, acc: string, b: boolean) =>
    `fn store${acc}(m: u32, n: u32, z: u32, v: f32) { let ohw = params.OH * params.OW; let b = n / ohw; ${y}[(b * params.M + m) * ohw + n - b * ohw] = v${b ? ` + ${acc === 'C' ? 'bias' : 'bias2'}[m]` : ''}; }`;
  return dualHelpers(dual, {
    operand: 'X',
    fn: 'im2col',
    define: IM2COL,
    loadA: 'fn loadA(m: u32, k: u32) -> f32 { return Wt[m * params.K + k]; }',
    store: (y, acc) => store(y, acc, acc === 'C' ? bias : bias2),
  });
}

/** Input gradient: M = Cin, N = B·H·W, K = Cout·KH·KW; a tap contributes where (i + pad − k) is a stride multiple. */
function tiledInputGradHelpers(dual: boolean): string {
  const gather = (name: string) => `
fn gather${name}(k: u32, n: u32) -> f32 {
  let khw = params.KH * params.KW; let co = k / khw; let tap = k - co * khw; let kh = tap / params.KW; let kw = tap - kh * params.KW;
  let hw = params.H * params.W; let b = n / hw; let p = n - b * hw; let ih = p / params.W; let iw = p - ih * params.W;
  let th = i32(ih) + params.pt - i32(kh); let tw = i32(iw) + params.pl - i32(kw);
  if (th < 0 || tw < 0) { return 0.0; }
  let oh = u32(th) / params.sh; let ow = u32(tw) / params.sw;
  if (oh * params.sh != u32(th) || ow * params.sw != u32(tw) || oh >= params.OH || ow >= params.OW) { return 0.0; }
  return ${name}[((b * params.Cout + co) * params.OH + oh) * params.OW + ow];
}`;
  const store = (y: string, acc: string) =>
    `fn store${acc}(m: u32, n: u32, z: u32, v: f32) { let hw = params.H * params.W; let b = n / hw; ${y}[(b * params.M + m) * hw + n - b * hw] = v; }`;
  return dualHelpers(dual, {
    operand: 'G',
    fn: 'gather',
    define: gather,
    loadA: 'fn loadA(m: u32, k: u32) -> f32 { let khw = params.KH * params.KW; let co = k / khw; return Wt[(co * params.M + m) * khw + k - co * khw]; }',
    store,
  });
}

/** Weight gradient: M = Cout, N = Cin·KH·KW, K = B·OH·OW (split over workgroup z into partial sums). */
function tiledWeightGradHelpers(): string {
  return [
    IM2COL('X'),
    'fn loadA(m: u32, k: u32) -> f32 { let ohw = params.OH * params.OW; let b = k / ohw; return G[(b * params.M + m) * ohw + k - b * ohw]; }',
    'fn loadB(k: u32, n: u32) -> f32 { return im2colX(n, k); }',
    'fn storeC(m: u32, n: u32, z: u32, v: f32) { P[(z * params.M + m) * params.N + n] = v; }',
  ].join('\n');
}

export type TiledConvSpec = TileConfig & {
  kind: ConvKind;
  /** Primal and tangent in one dispatch (forward and input gradient). */
  dual: boolean;
  /** Forward only: bias[Cout] added to Y, bias2 to Y2. */
  bias: boolean;
  bias2: boolean;
};

const f32 = (name: string, access?: 'read_write'): BufferDecl => ({ name, type: 'f32', ...(access ? { access } : {}) });

/** Buffers, loaders and name of each kind, derived from the spec on a pipeline-cache miss only. */
function layoutOf(s: TiledConvSpec): { name: string; buffers: BufferDecl[]; helpers: string } {
  const { dual } = s;
  if (s.kind === 'forward') {
    return {
      name: dual ? 'conv2d.dual.tiled' : 'conv2d.tiled',
      buffers: [
        f32('Wt'),
        f32('X'),
        ...(dual ? [f32('X2')] : []),
        ...(s.bias ? [f32('bias')] : []),
        ...(dual && s.bias2 ? [f32('bias2')] : []),
        f32('Y', 'read_write'),
        ...(dual ? [f32('Y2', 'read_write')] : []),
      ],
      helpers: tiledForwardHelpers(dual, s.bias, dual && s.bias2),
    };
  }
  if (s.kind === 'inputGrad') {
    return {
      name: dual ? 'conv2d.input-grad.dual.tiled' : 'conv2d.input-grad.tiled',
      buffers: [f32('Wt'), f32('G'), ...(dual ? [f32('G2')] : []), f32('Y', 'read_write'), ...(dual ? [f32('Y2', 'read_write')] : [])],
      helpers: tiledInputGradHelpers(dual),
    };
  }
  return { name: 'conv2d.weight-grad.tiled', buffers: [f32('X'), f32('G'), f32('P', 'read_write')], helpers: tiledWeightGradHelpers() };
}

export const TILED_CONV = defineProgram<TiledConvSpec>({
  name: 'conv2d.tiled',
  spec: { ...TILE_SPEC_FIELDS, kind: true, dual: true, bias: true, bias2: true },
  build(s) {
    const { name, buffers, helpers } = layoutOf(s);
    const { bm, bn, bk, rm, rn } = s;
    return tiledGemmKernel({
      name,
      bm,
      bn,
      bk,
      rm,
      rn,
      dual: s.kind !== 'weightGrad' && s.dual,
      splitK: s.kind === 'weightGrad',
      buffers,
      uniforms: TILED_CONV_UNIFORMS,
      helpers,
    });
  },
});

/** The uniforms of TILED_CONV: GEMM sizes, the reduction chunk (weight gradient) and the conv geometry. */
export function tiledUniforms(g: ConvGeometry, M: number, N: number, K: number, kChunk: number): Record<string, number> {
  const { Cin, Cout, H, W, OH, OW, KH, KW, sh, sw, pt, pl } = g;
  return { M, N, K, kChunk, Cin, Cout, H, W, OH, OW, KH, KW, sh, sw, pt, pl };
}
