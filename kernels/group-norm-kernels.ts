/**
 * WGSL builders and launchers of the GroupNorm kernels (the ops, their rules and the math are in group-norm.ts).
 * One workgroup owns one contiguous (sample, group) block: pass 1 reduces Σ(x − pivot), pass 2 every other sum
 * around the mean, pass 3 writes. Per-element tensors are read as vec4 when a channel's spatial size allows.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import type { MaybeTensor } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { defineProgram } from '../engine/program.js';
import { channelReduce, reductionWorkgroup } from './reduce.js';
import { treeReduceWgsl, vectorWgsl } from './reduce-wgsl.js';
import { grid } from '../engine/wgsl.js';

export interface Layout {
  n: number;
  c: number;
  /** Spatial elements per channel. */
  s: number;
  groups: number;
  /** Channels per group. */
  cpg: number;
  /** Elements per (sample, group) block. */
  m: number;
  /** Elements per vector load: 4 when a channel's spatial size is a multiple of 4 (a vec4 never straddles two
   * channels), else 1. vec4 loads halve lavapipe's time here (measured) and help GPUs too. */
  vw: 1 | 4;
}

export function layoutOf(op: string, x: Tensor, groups: number): Layout {
  if (x.rank < 2) throw new ShapeError(`${op}: x ${x.describe()} must be [N, C, ...spatial]`);
  const [n, c] = x.shape;
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    throw new ShapeError(`${op}: ${c} channels of ${x.describe()} cannot be split into ${groups} groups`);
  }
  const s = x.size / Math.max(n * c, 1);
  return { n, c, s, groups, cpg: c / groups, m: (c / groups) * s, vw: s % 4 === 0 ? 4 : 1 };
}

/** The bindings plus those optional tensors that are present (absent ones have no buffer in the spec's kernel). */
function withPresent(bindings: Record<string, Tensor>, optional: Record<string, MaybeTensor | undefined>): Record<string, Tensor> {
  for (const [name, t] of Object.entries(optional)) if (t) bindings[name] = t;
  return bindings;
}

/**
 * Workgroup size of the per-block kernels: the family's reduction workgroup (reduce.ts). On lavapipe each barrier
 * round costs a coroutine switch per 8-lane slice, so small workgroups win: [8,128,32,32] forward 3.1 ms at 32
 * lanes vs 4.1 at 64 and 8.5 at 256 (vec4).
 */
const blockWg = reductionWorkgroup;

// m and s count vectors (of L.vw elements); inv_m is 1/(elements per block).
const UNIFORMS: Array<[string, 'u32' | 'f32']> = [
  ['blocks', 'u32'],
  ['m', 'u32'],
  ['s', 'u32'],
  ['cpg', 'u32'],
  ['groups', 'u32'],
  ['eps', 'f32'],
  ['inv_m', 'f32'],
];

function uniformsOf(L: Layout, eps: number): Record<string, number> {
  return { blocks: L.n * L.groups, m: L.m / L.vw, s: L.s / L.vw, cpg: L.cpg, groups: L.groups, eps, inv_m: 1 / L.m };
}

function vtype(vw: number): 'f32' | 'vec4<f32>' {
  return vw === 4 ? 'vec4<f32>' : 'f32';
}

/** Tree reduction of a vec4 over the workgroup (log₂ WG barrier rounds); every invocation gets the total. */
function reduceWgsl(wg: number, fn = 'reduce4', arr = 'red4'): string {
  return treeReduceWgsl({ wg, fn, arr, type: 'vec4<f32>', combine: 'sum', reusable: true });
}

/**
 * Preamble shared by the block kernels: block index, base offset, group, and the block mean (pass 1). The mean is
 * kept as pivot + offset (pivot = the block's first value): x − pivot is exact within a binade, the partial sums
 * scale with the spread rather than |μ|, and d = (x − pivot) − offset never rounds μ to f32 — for values 100 ± 1
 * a rounded f32 μ alone would put 4e-6·σ into every x̂ (test 'large mean').
 */
function blockHead(wg: number): string {
  return `
  let blk = wid.x + wid.y * nwg.x;
  if (blk >= params.blocks) { return; }
  let base = blk * params.m;
  let c0 = (blk % params.groups) * params.cpg;
  let inv_m = params.inv_m;
  let pivot = first(x[base]);
  var s1 = V(0.0);
  for (var i = lid; i < params.m; i += ${wg}u) { s1 += x[base + i] - pivot; }
  let mo = reduce4(lid, vec4<f32>(hdot(s1, V(1.0)), 0.0, 0.0, 0.0)).x * inv_m;`;
}

const MAIN_SIG =
  'fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32)';

// ---------------------------------------------------------------- forward (and its dual)

/** Storage declaration of a per-element tensor (vectorised) or a per-channel vector. */
function buf(name: string, type: 'f32' | 'vec4<f32>', out = false) {
  return out ? { name, type, access: 'read_write' as const } : { name, type };
}

type ForwardSpec = { silu: boolean; beta: boolean; tx: boolean; tgamma: boolean; tbeta: boolean; vw: number; wg: number };

/** y = γ·x̂ + β (then SiLU), and with any tangent present its tangent ẏ in the same pass. */
const FORWARD = defineProgram<ForwardSpec>({
  name: 'groupnorm.fwd',
  spec: { silu: true, beta: true, tx: true, tgamma: true, tbeta: true, vw: true, wg: true },
  build(f) {
    const dual = f.tx || f.tgamma || f.tbeta;
    const vt = vtype(f.vw);
    const wg = f.wg;
    const tangentOut = [
      f.tgamma ? 'tgamma[ch] * xh' : '',
      f.tx ? 'gamma[ch] * rstd * (tx[k] - mtx - xh * mxtx)' : '',
      f.tbeta ? 'V(tbeta[ch])' : '',
    ].filter(Boolean);
    // SiLU applied in registers (the same formula as the silu kernels): saves a pass over y (and ẏ).
    const tangentWrite = f.silu ? `(${tangentOut.join(' + ')}) * (sz * (1.0 + z * (1.0 - sz)))` : tangentOut.join(' + ');
    return {
      name: `groupnorm${f.silu ? '-silu' : ''}.fwd${dual ? `.dual.${+f.tx}${+f.tgamma}${+f.tbeta}` : ''}${f.beta ? '' : '.nobeta'}`,
      buffers: [
        buf('x', vt),
        buf('gamma', 'f32'),
        ...(f.beta ? [buf('beta', 'f32')] : []),
        ...(f.tx ? [buf('tx', vt)] : []),
        ...(f.tgamma ? [buf('tgamma', 'f32')] : []),
        ...(f.tbeta ? [buf('tbeta', 'f32')] : []),
        buf('y', vt, true),
        ...(dual ? [buf('ty', vt, true)] : []),
      ],
      uniforms: UNIFORMS,
      workgroupSize: [wg],
      // Pass 2 sums around the exact mean: Σd², Σẋ, Σd·ẋ (d = x − μ).
      body: `${vectorWgsl(f.vw)}
${reduceWgsl(wg)}
${MAIN_SIG} {${blockHead(wg)}
  var acc = vec4<f32>(0.0);
  for (var i = lid; i < params.m; i += ${wg}u) {
    let d = (x[base + i] - pivot) - mo;
    ${
      f.tx
        ? 'let t = tx[base + i]; acc += vec4<f32>(hdot(d, d), hdot(t, V(1.0)), hdot(d, t), 0.0);'
        : 'acc.x += hdot(d, d);'
    }
  }
  let sums = reduce4(lid, acc) * inv_m;
  let rstd = inverseSqrt(sums.x + params.eps);
  ${f.tx ? 'let mtx = sums.y; let mxtx = sums.z * rstd;' : ''}
  for (var i = lid; i < params.m; i += ${wg}u) {
    let k = base + i;
    let ch = c0 + i / params.s;
    let xh = ((x[k] - pivot) - mo) * rstd;
    let z = gamma[ch] * xh${f.beta ? ' + beta[ch]' : ''};
    ${f.silu ? 'let sz = 1.0 / (1.0 + exp(-z)); y[k] = z * sz;' : 'y[k] = z;'}
    ${dual ? `ty[k] = ${tangentWrite};` : ''}
  }
}`,
    };
  },
});

export function launchForward(
  e: Engine,
  L: Layout,
  eps: number,
  x: Tensor,
  gamma: Tensor,
  beta: MaybeTensor,
  tangents: { x: MaybeTensor; gamma: MaybeTensor; beta: MaybeTensor } | null,
  activation: 'none' | 'silu' = 'none',
): [Tensor, MaybeTensor] {
  const spec: ForwardSpec = {
    silu: activation === 'silu',
    beta: !!beta,
    tx: !!tangents?.x,
    tgamma: !!tangents?.gamma,
    tbeta: !!tangents?.beta,
    vw: L.vw,
    wg: blockWg(e),
  };
  const dual = spec.tx || spec.tgamma || spec.tbeta;
  const y = e.empty(x.shape, 'f32', 'groupnorm');
  const ty = dual ? e.empty(x.shape, 'f32', 'groupnorm.tangent') : null;
  const bindings = withPresent({ x, gamma, y }, { beta, tx: tangents?.x, tgamma: tangents?.gamma, tbeta: tangents?.beta, ty });
  e.run(FORWARD, spec, bindings, uniformsOf(L, eps), grid(e, L.n * L.groups, 1));
  return [y, ty];
}

// ---------------------------------------------------------------- backward dx = P(γ·gy) (and its fused dual)

type BackwardSpec = { tx: boolean; tgamma: boolean; tgy: boolean; vw: number; wg: number };

const BACKWARD = defineProgram<BackwardSpec>({
  name: 'groupnorm.bwd',
  spec: { tx: true, tgamma: true, tgy: true, vw: true, wg: true },
  build({ tx, tgamma: tg, tgy, vw, wg }) {
    const tu = tg || tgy;
    const dual = tx || tu;
    const vt = vtype(vw);
    // u = γ·gy and its tangent u̇ = γ̇·gy + γ·ġy, per element.
    const uDot = [tg ? 'tgamma[ch] * gy[k]' : '', tgy ? 'gamma[ch] * tgy[k]' : ''].filter(Boolean).join(' + ');
    const loadU = `let ch = c0 + i / params.s; let k = base + i; let d = (x[k] - pivot) - mo; let u = gamma[ch] * gy[k];${
      tu ? ` let ud = ${uDot};` : ''
    }${tx ? ' let t = tx[k];' : ''}`;
    return {
      name: `groupnorm.bwd${dual ? `.dual.${+tx}${+tg}${+tgy}` : ''}`,
      buffers: [
        buf('x', vt),
        buf('gamma', 'f32'),
        buf('gy', vt),
        ...(tx ? [buf('tx', vt)] : []),
        ...(tg ? [buf('tgamma', 'f32')] : []),
        ...(tgy ? [buf('tgy', vt)] : []),
        buf('dx', vt, true),
        ...(dual ? [buf('tdx', vt, true)] : []),
      ],
      uniforms: UNIFORMS,
      workgroupSize: [wg],
      // Pass 2: a = (Σd², Σu, Σd·u, Σd·u̇) and b = (Σẋ, Σd·ẋ, Σẋ·u, Σu̇).
      body: `${vectorWgsl(vw)}
${reduceWgsl(wg)}
${dual ? reduceWgsl(wg, 'reduce4b', 'red4b') : ''}
${MAIN_SIG} {${blockHead(wg)}
  var a = vec4<f32>(0.0);
  ${dual ? 'var b = vec4<f32>(0.0);' : ''}
  for (var i = lid; i < params.m; i += ${wg}u) {
    ${loadU}
    a += vec4<f32>(hdot(d, d), hdot(u, V(1.0)), hdot(d, u), ${tu ? 'hdot(d, ud)' : '0.0'});
    ${dual ? `b += vec4<f32>(${tx ? 'hdot(t, V(1.0)), hdot(d, t), hdot(t, u)' : '0.0, 0.0, 0.0'}, ${tu ? 'hdot(ud, V(1.0))' : '0.0'});` : ''}
  }
  let sa = reduce4(lid, a) * inv_m;
  ${dual ? 'let sb = reduce4b(lid, b) * inv_m;' : ''}
  let r = inverseSqrt(sa.x + params.eps);
  let abar = sa.y;
  let bbar = r * sa.z;
  ${
    dual
      ? `let mt = sb.x;
  let mxt = r * sb.y;
  let rdot = -r * r * mxt;
  let adot = sb.w;
  let bdot = r * (sb.z - mt * abar - mxt * bbar) + r * sa.w;`
      : ''
  }
  for (var i = lid; i < params.m; i += ${wg}u) {
    ${loadU}
    let xh = d * r;
    let inner = u - abar - xh * bbar;
    dx[k] = r * inner;
    ${
      dual
        ? `let xhd = ${tx ? 'r * (t - mt - xh * mxt)' : 'V(0.0)'};
    tdx[k] = rdot * inner + r * (${tu ? 'ud' : 'V(0.0)'} - adot - xhd * bbar - xh * bdot);`
        : ''
    }
  }
}`,
    };
  },
});

export function launchBackward(
  e: Engine,
  L: Layout,
  eps: number,
  x: Tensor,
  gamma: Tensor,
  gy: Tensor,
  tangents: { x: MaybeTensor; gamma: MaybeTensor; gy: MaybeTensor } | null,
): [Tensor, MaybeTensor] {
  const spec: BackwardSpec = { tx: !!tangents?.x, tgamma: !!tangents?.gamma, tgy: !!tangents?.gy, vw: L.vw, wg: blockWg(e) };
  const dual = spec.tx || spec.tgamma || spec.tgy;
  const dx = e.empty(x.shape, 'f32', 'groupnorm.dx');
  const tdx = dual ? e.empty(x.shape, 'f32', 'groupnorm.dx.tangent') : null;
  const bindings = withPresent({ x, gamma, gy, dx }, { tx: tangents?.x, tgamma: tangents?.gamma, tgy: tangents?.gy, tdx });
  e.run(BACKWARD, spec, bindings, uniformsOf(L, eps), grid(e, L.n * L.groups, 1));
  return [dx, tdx];
}

// ---------------------------------------------------------------- statistics and the γ gradient

const STATS = defineProgram<{ vw: number; wg: number }>({
  name: 'groupnorm.stats',
  spec: { vw: true, wg: true },
  build: ({ vw, wg }) => ({
    name: 'groupnorm.stats',
    buffers: [buf('x', vtype(vw)), buf('stats', 'f32', true)],
    uniforms: UNIFORMS,
    workgroupSize: [wg],
    body: `${vectorWgsl(vw)}
${reduceWgsl(wg)}
${MAIN_SIG} {${blockHead(wg)}
  var acc = 0.0;
  for (var i = lid; i < params.m; i += ${wg}u) { let d = (x[base + i] - pivot) - mo; acc += hdot(d, d); }
  let v = reduce4(lid, vec4<f32>(acc, 0.0, 0.0, 0.0)).x * inv_m;
  if (lid == 0u) { stats[3u * blk] = pivot; stats[3u * blk + 1u] = mo; stats[3u * blk + 2u] = inverseSqrt(v + params.eps); }
}`,
  }),
});

/** Per-block [pivot, mean − pivot, rstd] (blocks = N·G), for the per-channel kernels. Not an op: its users differentiate. */
export function blockStats(e: Engine, x: Tensor, L: Layout, eps: number): Tensor {
  const stats = e.empty([L.n * L.groups, 3], 'f32', 'groupnorm.stats');
  e.run(STATS, { vw: L.vw, wg: blockWg(e) }, { x, stats }, uniformsOf(L, eps), grid(e, L.n * L.groups, 1));
  return stats;
}

/** dγ's term: g·x̂ with x̂ from the block statistics (the block of (n, ch) is n·G + ch / cpg). */
const GAMMA_GRAD_BODY = `let blk = n * (params.c / params.cpg) + ch / params.cpg;
    acc += hdot(g[k], (x[k] - stats[3u * blk]) - stats[3u * blk + 1u]) * stats[3u * blk + 2u];`;

/** dγ[c] = Σ_{n,s} g[n,c,s]·x̂[n,c,s]: the family's channelReduce with the x̂ weighting. */
export function gammaGradReduce(e: Engine, g: Tensor, L: Layout, x: Tensor, stats: Tensor): Tensor {
  return channelReduce(
    e,
    { name: 'groupnorm.gammagrad', inputs: { g, x }, extras: { stats }, body: GAMMA_GRAD_BODY, channelsPerGroup: L.cpg },
    { outer: L.n, len: L.c, inner: L.s },
  );
}
