/**
 * WGSL generators for the implicit-GEMM convolutions (NCHW, weights [Cout, Cin, kh, kw]); no im2col buffer.
 *
 * CPU variants (register / subgroup), see gemm-wgsl.ts for why loads per FMA are what counts on lavapipe:
 * - `rowConvKernel`: an invocation computes TM output channels × TN consecutive output columns of one row. For
 *   each input channel and kernel row it loads the input row segment once (TN + kw − 1 values at stride 1) and
 *   reuses it for every kernel column and output channel. The same generator serves the forward conv, its dual
 *   (x and ẋ share every weight load) and each stride phase of the input gradient (a transposed conv is, per
 *   output phase, a plain correlation with a subset of the taps — so stride 2 needs no scatter and no atomics).
 *   Weights are packed as vec4 over the column taps (conv2d-packed-weights.ts, cached per weight tensor until it
 *   is written): one load per (channel, kernel row) instead of one per tap, +50 % on 3×3 convs.
 * - `weightGradKernel`: gW = Σ_pixels gy ⊗ x-patch. Invocations own (TM output channels × TC input channels × one
 *   kernel row of taps); the pixel reduction is split into chunks of rows (workgroup z), each summed in its own
 *   partial buffer and then added in order: short f32 sums and parallelism over pixels.
 * Both are program objects whose specs hold primitives only (tiles, flags, the column taps as an arithmetic run),
 * so a cached dispatch builds no WGSL. The GPU variant's loaders are in conv2d-tiled.ts, weight packing in
 * conv2d-packed-weights.ts.
 */
import { reads, u32s, writes, type KernelSource } from '../engine/kernel.js';
import { defineProgram } from '../engine/program.js';

export interface Tap {
  /** Offset of the input row/column read, relative to (output position × inStep). */
  d: number;
  /** Kernel row/column index of the weight used. */
  w: number;
}

/**
 * Taps as an arithmetic run — tap u reads offset d0 + u·dStep with kernel index w0 + u·wStep — which is what every
 * conv here uses (forward: all columns; input gradient: one stride phase), and what a spec can hold as numbers.
 */
export interface TapRun {
  count: number;
  w0: number;
  wStep: number;
  d0: number;
  dStep: number;
}

/** The forward taps of a kernel KW wide with left padding pl: tap kw reads column kw − pl. */
export function forwardTaps(KW: number, pl: number): TapRun {
  return { count: KW, w0: 0, wStep: 1, d0: -pl, dStep: 1 };
}

/** Taps of one stride phase of the transposed conv: kernel indices k ≡ phase + pad (mod stride), d = (phase + pad − k)/stride. */
export function phaseTaps(phase: number, pad: number, stride: number, K: number): TapRun {
  const w0 = (((phase + pad) % stride) + stride) % stride;
  return { count: w0 < K ? Math.ceil((K - w0) / stride) : 0, w0, wStep: stride, d0: (phase + pad - w0) / stride, dStep: -1 };
}

export function tapList(t: TapRun): Tap[] {
  return Array.from({ length: t.count }, (_, u) => ({ d: t.d0 + u * t.dStep, w: t.w0 + u * t.wStep }));
}

export type RowConvSpec = {
  /** Names the kernel (conv2d.input-grad.* rather than conv2d.*); the WGSL does not depend on it otherwise. */
  inputGrad: boolean;
  tm: number;
  tn: number;
  /** Subgroup size when weights are shared by subgroupBroadcast (tm a multiple of it), 0 for plain loads. */
  subgroup: number;
  dual: boolean;
  bias: boolean;
  bias2: boolean;
  /** Input column positions advanced per computed output column (forward: the stride; input-grad: 1). */
  inStepW: number;
  /** Output storage column positions per computed column (forward: 1; input-grad phase: the stride). */
  outStepW: number;
  /**
   * Column taps (a TapRun), unrolled at compile time so one loaded input row segment serves all of them. Row taps
   * are a runtime loop described by uniforms (kernel row kh0 + t·khStep reads input row r·inStepH + d0 + t·dStep):
   * a third of the code, and lavapipe's JIT time grows fast with code size (seconds per kernel).
   */
  taps: number;
  tapW0: number;
  tapWStep: number;
  tapD0: number;
  tapDStep: number;
  /**
   * Weights pre-packed as vec4 per (k, kernel row, m) with the column taps as components (packedWeights): one
   * load instead of one per tap. Needs ≤ 4 column taps.
   */
  packedW: boolean;
  /**
   * Input row segments read as aligned vec4 blocks (a second binding X4 of the same tensor) plus scalar edges.
   * Needs Wi % 4 = 0 and tn·inStepW % 4 = 0.
   */
  vecX: boolean;
  wg: number;
};

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** `main` of the row-conv and weight-grad kernels: lane li of workgroup wg (and subgroup lane sl when sg > 0). */
function laneMain(sg: number, lines: string[]): string {
  return `
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32${sg ? ', @builtin(subgroup_invocation_id) sl: u32' : ''}) {
  ${lines.join('\n  ')}
}`;
}

/** Uniforms of rowConvKernel. */
export const ROW_CONV_UNIFORMS: Array<[string, 'u32' | 'i32']> = [
  ['M', 'u32'], ['KC', 'u32'], ['R', 'u32'], ['CC', 'u32'], ['Hi', 'u32'], ['Wi', 'u32'], ['OHs', 'u32'], ['OWs', 'u32'],
  ['ph', 'u32'], ['outStepH', 'u32'], ['lanes', 'u32'], ['nCb', 'u32'], ['wsM', 'u32'], ['wsK', 'u32'], ['KW', 'u32'],
  ['inStepH', 'u32'], ['nT', 'u32'], ['kh0', 'u32'], ['khStep', 'u32'], ['d0', 'i32'], ['dStep', 'i32'], ['pw', 'u32'],
  ['KHp', 'u32'],
];

/**
 * out[b, m, r·outStepH + ph, c·outStepW + pw] = Σ_k Σ_t Σ_u W[m·wsM + k·wsK + kh_t·KW + kw_u] ·
 * in[b, k, r·inStepH + d_t, c·inStepW + d_u] (+ bias[m]), zero outside the input. Lanes beyond the work are clamped
 * for loads and skip their stores, so every lane of a subgroup stays active for the broadcasts and no read leaves
 * its buffer.
 */
function rowConvKernel(s: RowConvSpec): KernelSource {
  const { tm, tn, inStepW: inW } = s;
  const sg = s.subgroup;
  const colTaps = tapList({ count: s.taps, w0: s.tapW0, wStep: s.tapWStep, d0: s.tapD0, dStep: s.tapDStep });
  const rels = [...new Set(range(tn).flatMap((j) => colTaps.map((u) => j * inW + u.d)))].sort((a, b) => a - b);
  const ins = s.dual ? ['X', 'X2'] : ['X'];
  const L: string[] = [];
  L.push('let M = params.M; let Hi = params.Hi; let Wi = params.Wi;');
  L.push(`let laneRaw = wg.x * ${s.wg}u + li;`);
  L.push('let lane = min(laneRaw, params.lanes - 1u);');
  L.push('let cb = lane % params.nCb; let t1 = lane / params.nCb; let r = t1 % params.R; let b = t1 / params.R;');
  L.push(`let c0 = cb * ${tn}u; let m0 = wg.y * ${tm}u;`);
  L.push(`let cBase = i32(c0 * ${inW}u);`);
  // Which rels come from aligned vec4 blocks (≥ 3 of the block's 4 columns used) and which are scalar loads.
  const blockOf = (rel: number) => Math.floor(rel / 4);
  const blocks = s.vecX
    ? [...new Set(rels.map(blockOf))].filter((q) => rels.filter((rel) => blockOf(rel) === q).length >= 3)
    : [];
  const scalarRels = rels.filter((rel) => !blocks.includes(blockOf(rel)));
  const xName = (n: number, rel: number) => {
    const v = n ? 'y' : 'x';
    return blocks.includes(blockOf(rel)) ? `${v}b${blockOf(rel) + 8}.${'xyzw'[rel - 4 * blockOf(rel)]}` : `${v}${rels.indexOf(rel)}`;
  };
  scalarRels.forEach((rel) => {
    const q = rels.indexOf(rel);
    L.push(`let cc${q} = cBase + ${rel}; let cx${q} = u32(clamp(cc${q}, 0, i32(Wi) - 1)); let cok${q} = cc${q} >= 0 && cc${q} < i32(Wi);`);
  });
  blocks.forEach((q) => {
    L.push(`let cb${q + 8} = cBase + ${4 * q}; let cbx${q + 8} = u32(clamp(cb${q + 8}, 0, i32(Wi) - 4)) / 4u; let cbok${q + 8} = cb${q + 8} >= 0 && cb${q + 8} < i32(Wi);`);
  });
  L.push('let rBase = i32(r * params.inStepH) + params.d0;');
  const wStride = s.packedW ? '1u' : 'params.wsM';
  if (sg) for (let g = 0; g < tm / sg; g++) L.push(`let wl${g} = min(m0 + ${g * sg}u + sl, M - 1u) * ${wStride};`);
  else for (let i = 0; i < tm; i++) L.push(`let wb${i} = min(m0 + ${i}u, M - 1u) * ${wStride};`);
  L.push('let xb = b * params.KC * Hi * Wi;');
  for (let i = 0; i < tm; i++) {
    const bm = `bias[min(m0 + ${i}u, M - 1u)]`;
    L.push(range(tn).map((j) => `var c${i}_${j} = ${s.bias ? bm : '0.0'};`).join(' '));
    if (s.dual) L.push(range(tn).map((j) => `var d${i}_${j} = ${s.bias2 ? bm.replace('bias', 'bias2') : '0.0'};`).join(' '));
  }
  const B: string[] = [];
  B.push('let rr = rBase + i32(t) * params.dStep; let rok = rr >= 0 && rr < i32(Hi);');
  B.push('let xr = xk + u32(clamp(rr, 0, i32(Hi) - 1)) * Wi;');
  if (blocks.length) B.push('let xr4 = xr / 4u;');
  B.push(s.packedW
    ? 'let wt = (wk + params.kh0 + t * params.khStep) * M;'
    : 'let wt = wk + (params.kh0 + t * params.khStep) * params.KW;');
  scalarRels.forEach((rel) => {
    const q = rels.indexOf(rel);
    B.push(`let ok${q} = rok && cok${q};`);
    ins.forEach((name, n) => B.push(`let ${n ? 'y' : 'x'}${q} = select(0.0, ${name}[xr + cx${q}], ok${q});`));
  });
  blocks.forEach((q) => {
    B.push(`let okb${q + 8} = rok && cbok${q + 8};`);
    ins.forEach((name, n) => B.push(`let ${n ? 'y' : 'x'}b${q + 8} = select(vec4<f32>(0.0), ${name}4[xr4 + cbx${q + 8}], okb${q + 8});`));
  });
  const C4 = 'xyzw';
  if (s.packedW) {
    // One vec4 per (k, kernel row, m): component ui is column tap ui.
    if (sg) {
      for (let g = 0; g < tm / sg; g++) B.push(`let wl${g}_v = W[wt + wl${g}];`);
      for (let i = 0; i < tm; i++) B.push(`let w${i}_v = subgroupBroadcast(wl${Math.floor(i / sg)}_v, ${i % sg}u);`);
    } else {
      for (let i = 0; i < tm; i++) B.push(`let w${i}_v = W[wt + wb${i}];`);
    }
  }
  colTaps.forEach((u, ui) => {
    if (s.packedW) {
      for (let i = 0; i < tm; i++) B.push(`let w${i}_${ui} = w${i}_v.${C4[ui]};`);
    } else if (sg) {
      for (let g = 0; g < tm / sg; g++) B.push(`let wl${g}_${ui} = W[wl${g} + wt + ${u.w}u];`);
      for (let i = 0; i < tm; i++) B.push(`let w${i}_${ui} = subgroupBroadcast(wl${Math.floor(i / sg)}_${ui}, ${i % sg}u);`);
    } else {
      for (let i = 0; i < tm; i++) B.push(`let w${i}_${ui} = W[wb${i} + wt + ${u.w}u];`);
    }
    for (let i = 0; i < tm; i++) {
      B.push(range(tn).map((j) => `c${i}_${j} += w${i}_${ui} * ${xName(0, j * inW + u.d)};`).join(' '));
      if (s.dual) B.push(range(tn).map((j) => `d${i}_${j} += w${i}_${ui} * ${xName(1, j * inW + u.d)};`).join(' '));
    }
  });
  L.push(`for (var k = 0u; k < params.KC; k++) {
    let xk = xb + k * Hi * Wi; let wk = ${s.packedW ? 'k * params.KHp' : 'k * params.wsK'};
    for (var t = 0u; t < params.nT; t++) {
      ${B.join('\n      ')}
    }
  }`);
  L.push('let rowOut = (r * params.outStepH + params.ph) * params.OWs;');
  for (let i = 0; i < tm; i++) {
    const S: string[] = [];
    for (let j = 0; j < tn; j++) {
      const at = `ob + rowOut + (c0 + ${j}u) * ${s.outStepW}u + params.pw`;
      S.push(`if (c0 + ${j}u < params.CC) { Y[${at}] = c${i}_${j};${s.dual ? ` Y2[${at}] = d${i}_${j};` : ''} }`);
    }
    L.push(`{ let m = m0 + ${i}u; if (laneRaw < params.lanes && m < M) {\n    let ob = (b * M + m) * params.OHs * params.OWs;\n    ${S.join('\n    ')}\n  } }`);
  }
  return {
    name: `conv2d${s.inputGrad ? '.input-grad' : ''}${s.dual ? '.dual' : ''}.${sg ? 'subgroup' : 'register'}`,
    buffers: [
      ...reads(...ins),
      ...(blocks.length ? ins.map((name) => ({ name: `${name}4`, type: 'vec4<f32>' as const })) : []),
      { name: 'W', type: s.packedW ? 'vec4<f32>' : 'f32' },
      ...reads(...(s.bias ? ['bias'] : []), ...(s.bias2 ? ['bias2'] : [])),
      ...writes('Y', ...(s.dual ? ['Y2'] : [])),
    ],
    uniforms: ROW_CONV_UNIFORMS,
    workgroupSize: [s.wg],
    body: laneMain(sg, L),
  };
}

export const ROW_CONV = defineProgram<RowConvSpec>({
  name: 'conv2d.row',
  spec: {
    inputGrad: true, tm: true, tn: true, subgroup: true, dual: true, bias: true, bias2: true, inStepW: true, outStepW: true,
    taps: true, tapW0: true, tapWStep: true, tapD0: true, tapDStep: true, packedW: true, vecX: true, wg: true,
  },
  build: rowConvKernel,
});

export type WeightGradSpec = {
  /** Output channels per invocation (shared by the lanes; a multiple of the subgroup size in subgroup mode). */
  tm: number;
  /** Input channels per invocation; lanes run along (input-channel block, kernel row). */
  tc: number;
  /** Consecutive output columns per inner step. */
  tp: number;
  subgroup: number;
  sw: number;
  /** Kernel width and left padding: the column taps are forwardTaps(KW, pl); kernel rows are spread over lanes. */
  KW: number;
  pl: number;
  /** gy read as vec4 (a second binding G4 of the same tensor): needs OW % 4 = 0 and tp % 4 = 0. */
  vecG: boolean;
  wg: number;
};

export const WEIGHT_GRAD_UNIFORMS = ['Cout', 'Cin', 'H', 'W', 'OH', 'OW', 'rowsPerChunk', 'rows', 'lanes', 'KH', 'KW', 'sh', 'pt'] as const;

/** partial[z, co, ci, kh, kw] = Σ over the rows (b, oh) of chunk z and all ow of gy[b, co, oh, ow] · x[b, ci, ·, ·]. */
function weightGradKernel(s: WeightGradSpec): KernelSource {
  const { tm, tc, tp, sw } = s;
  const sg = s.subgroup;
  const colTaps = tapList(forwardTaps(s.KW, s.pl));
  const rels = [...new Set(range(tp).flatMap((p) => colTaps.map((u) => p * sw + u.d)))].sort((a, b) => a - b);
  const relOf = (p: number, u: number): number => rels.indexOf(p * sw + colTaps[u].d);
  const nU = colTaps.length;
  const acc = (i: number, c: number, u: number) => `a${i}_${c}_${u}`;
  const L: string[] = [];
  L.push('let Cout = params.Cout; let Cin = params.Cin; let H = params.H; let Wd = params.W; let OH = params.OH; let OW = params.OW;');
  L.push(`let laneRaw = wg.x * ${s.wg}u + li; let lane = min(laneRaw, params.lanes - 1u);`);
  L.push(`let kh = lane % params.KH; let ci0 = (lane / params.KH) * ${tc}u; let m0 = wg.y * ${tm}u;`);
  for (let c = 0; c < tc; c++) L.push(`let cin${c} = min(ci0 + ${c}u, Cin - 1u);`);
  if (sg) for (let g = 0; g < tm / sg; g++) L.push(`let ml${g} = min(m0 + ${g * sg}u + sl, Cout - 1u) * OH * OW;`);
  else for (let i = 0; i < tm; i++) L.push(`let mg${i} = min(m0 + ${i}u, Cout - 1u) * OH * OW;`);
  for (let i = 0; i < tm; i++) for (let c = 0; c < tc; c++) L.push(range(nU).map((u) => `var ${acc(i, c, u)} = 0.0;`).join(' '));
  L.push('let rowBegin = wg.z * params.rowsPerChunk; let rowEnd = min(params.rows, rowBegin + params.rowsPerChunk);');
  const inner: string[] = [];
  // gy values for tp columns (zero past the row end, so clamped x reads contribute nothing).
  if (s.vecG) {
    for (let q = 0; q < tp / 4; q++) {
      const at = (m: string) => `G4[(gb + ${m} + min(ow0 + ${4 * q}u, OW - 4u)) / 4u]`;
      const ok = `ow0 + ${4 * q}u < OW`;
      const comps = (v: string) => range(4).map((c) => `let ${v.replace('#', String(4 * q + c))} = `);
      if (sg) {
        for (let g = 0; g < tm / sg; g++) {
          inner.push(`let glv${g}_${q} = select(vec4<f32>(0.0), ${at(`ml${g}`)}, ${ok});`);
          inner.push(comps(`gl${g}_#`).map((d, c) => `${d}glv${g}_${q}.${'xyzw'[c]};`).join(' '));
        }
      } else {
        for (let i = 0; i < tm; i++) {
          inner.push(`let gv${i}_${q} = select(vec4<f32>(0.0), ${at(`mg${i}`)}, ${ok});`);
          inner.push(comps(`g${i}_#`).map((d, c) => `${d}gv${i}_${q}.${'xyzw'[c]};`).join(' '));
        }
      }
    }
    if (sg) for (let p = 0; p < tp; p++) for (let i = 0; i < tm; i++) inner.push(`let g${i}_${p} = subgroupBroadcast(gl${Math.floor(i / sg)}_${p}, ${i % sg}u);`);
  }
  for (let p = 0; p < (s.vecG ? 0 : tp); p++) {
    const col = `min(ow0 + ${p}u, OW - 1u)`;
    const okp = `ow0 + ${p}u < OW`;
    if (sg) {
      for (let g = 0; g < tm / sg; g++) inner.push(`let gl${g}_${p} = select(0.0, G[gb + ml${g} + ${col}], ${okp});`);
      for (let i = 0; i < tm; i++) inner.push(`let g${i}_${p} = subgroupBroadcast(gl${Math.floor(i / sg)}_${p}, ${i % sg}u);`);
    } else {
      for (let i = 0; i < tm; i++) inner.push(`let g${i}_${p} = select(0.0, G[gb + mg${i} + ${col}], ${okp});`);
    }
  }
  rels.forEach((rel, q) => {
    inner.push(`let cc${q} = i32(ow0 * ${sw}u) + ${rel}; let cx${q} = u32(clamp(cc${q}, 0, i32(Wd) - 1)); let ok${q} = rok && cc${q} >= 0 && cc${q} < i32(Wd);`);
  });
  for (let c = 0; c < tc; c++) {
    rels.forEach((_, q) => inner.push(`let x${c}_${q} = select(0.0, X[xr${c} + cx${q}], ok${q});`));
    for (let i = 0; i < tm; i++) {
      for (let u = 0; u < nU; u++) {
        inner.push(`${acc(i, c, u)} += ${range(tp).map((p) => `g${i}_${p} * x${c}_${relOf(p, u)}`).join(' + ')};`);
      }
    }
  }
  const rowSetup = [
    'let b = row / OH; let oh = row - b * OH;',
    'let gb = b * Cout * OH * OW + oh * OW;',
    'let rr = i32(oh * params.sh + kh) - i32(params.pt); let rok = rr >= 0 && rr < i32(H); let rx = u32(clamp(rr, 0, i32(H) - 1)) * Wd;',
    ...range(tc).map((c) => `let xr${c} = (b * Cin + cin${c}) * H * Wd + rx;`),
  ];
  L.push(`for (var row = rowBegin; row < rowEnd; row++) {
    ${rowSetup.join('\n    ')}
    for (var ow0 = 0u; ow0 < OW; ow0 += ${tp}u) {
      ${inner.join('\n      ')}
    }
  }`);
  L.push('let part = wg.z * Cout * Cin * params.KH * params.KW;');
  for (let i = 0; i < tm; i++) {
    for (let c = 0; c < tc; c++) {
      const S = range(nU).map((u) => `P[base + ${colTaps[u].w}u] = ${acc(i, c, u)};`);
      L.push(`if (laneRaw < params.lanes && m0 + ${i}u < Cout && ci0 + ${c}u < Cin) {
    let base = part + (((m0 + ${i}u) * Cin + ci0 + ${c}u) * params.KH + kh) * params.KW;
    ${S.join(' ')}
  }`);
    }
  }
  return {
    name: `conv2d.weight-grad.${sg ? 'subgroup' : 'register'}`,
    buffers: [...reads('X'), s.vecG ? { name: 'G4', type: 'vec4<f32>' } : { name: 'G', type: 'f32' }, ...writes('P')],
    uniforms: u32s(...WEIGHT_GRAD_UNIFORMS),
    workgroupSize: [s.wg],
    body: laneMain(sg, L),
  };
}

export const WEIGHT_GRAD = defineProgram<WeightGradSpec>({
  name: 'conv2d.weight-grad',
  spec: { tm: true, tc: true, tp: true, subgroup: true, sw: true, KW: true, pl: true, vecG: true, wg: true },
  build: weightGradKernel,
});
