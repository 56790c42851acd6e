/**
 * The per-query attention kernels: one invocation per (sample, query) keeps its C-long accumulators in private
 * arrays and walks the keys in blocks of 4 with an online (max-shifted) softmax, so the S×S matrix never exists.
 *   flashForward  a = Σ softmax(α·qᵢ·k)·v                    (the 'flash' forward variant)
 *   softmaxMix    a = Σ softmax(z)·v over precomputed scores  (the 'scores' variant's fused softmax·V)
 *   flashDual     a and ȧ in one pass                         (attentionCore's fused JVP)
 * C is baked into the WGSL (private array sizes must be constant), so each channel count is its own pipeline.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import type { MaybeTensor } from '../engine/autodiff.js';
import { defineProgram } from '../engine/program.js';
import { reads, u32s, writes, type UniformDecl } from '../engine/kernel.js';

/** The sequence length S and the score scale α of the kernels that compute q·k themselves. */
const SCALED_UNIFORMS: UniformDecl[] = [...u32s('s'), ['alpha', 'f32']];

/** Queries per workgroup of the per-query kernels: small, so HW = 7×7 still spreads over several workgroups. */
const WG_QUERY = 16;

function perQueryHead(c: number): string {
  return `
const C: u32 = ${c}u;
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  let n = gid.y;
  let S = params.s;
  if (i >= S) { return; }
  let base = n * C * S;`;
}

/**
 * Keys go in blocks of 4: one walk over the channels yields 4 scores and one walk updates the accumulators with 4
 * values, so each private-array element is loaded once per 4 keys (lavapipe keeps those arrays in memory). Keys
 * past the end are clamped for loading and masked to −∞, i.e. weight 0.
 */
function keyBlock(): string {
  return `
    let jj = min(vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u), vec4<u32>(S - 1u));
    let live = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u) < vec4<u32>(S);`;
}

function load4(buf: string, at: string): string {
  return `vec4<f32>(${buf}[${at} + jj.x], ${buf}[${at} + jj.y], ${buf}[${at} + jj.z], ${buf}[${at} + jj.w])`;
}

/** Online softmax update for a block of scores z: rescales the running sums only when the row maximum grows. */
function onlineUpdate(rescale: string): string {
  return `
    let zs = select(vec4<f32>(-3.402823e38), z, live);
    let zmax = max(max(zs.x, zs.y), max(zs.z, zs.w));
    if (zmax > m) {
      let corr = exp(m - zmax);
      l *= corr;
      ${rescale}
      m = zmax;
    }
    let p = select(vec4<f32>(0.0), exp(zs - m), live);
    l += p.x + p.y + p.z + p.w;`;
}

const FLASH_FORWARD = defineProgram<{ c: number }>({
  name: 'attention.flash',
  spec: { c: true },
  build: ({ c }) => ({
    name: 'attention.flash',
    buffers: [...reads('q', 'k', 'v'), ...writes('out')],
    uniforms: SCALED_UNIFORMS,
    workgroupSize: [WG_QUERY],
    body: `${perQueryHead(c)}
  var qr: array<f32, C>;
  var acc: array<f32, C>;
  for (var ch = 0u; ch < C; ch++) { qr[ch] = q[base + ch * S + i] * params.alpha; acc[ch] = 0.0; }
  var m = -3.402823e38;
  var l = 0.0;
  for (var j0 = 0u; j0 < S; j0 += 4u) {${keyBlock()}
    var z = vec4<f32>(0.0);
    for (var ch = 0u; ch < C; ch++) { z += qr[ch] * ${load4('k', 'base + ch * S')}; }
    ${onlineUpdate('for (var ch = 0u; ch < C; ch++) { acc[ch] *= corr; }')}
    for (var ch = 0u; ch < C; ch++) { acc[ch] += dot(p, ${load4('v', 'base + ch * S')}); }
  }
  let inv = 1.0 / l;
  for (var ch = 0u; ch < C; ch++) { out[base + ch * S + i] = acc[ch] * inv; }
}`,
  }),
});

export function flashForward(e: Engine, q: Tensor, k: Tensor, v: Tensor, out: Tensor, alpha: number, n: number, c: number, s: number): void {
  e.run(FLASH_FORWARD, { c }, { q, k, v, out }, { s, alpha }, [Math.ceil(s / WG_QUERY), n]);
}

/** Fused softmax·V over precomputed scores z [N, S, S]: per query, row max, then Σ exp(z − m)·v in one pass. */
const SOFTMAX_MIX = defineProgram<{ c: number }>({
  name: 'attention.softmax_mix',
  spec: { c: true },
  build: ({ c }) => ({
    name: 'attention.softmax_mix',
    buffers: [...reads('z', 'v'), ...writes('out')],
    uniforms: u32s('s'),
    workgroupSize: [WG_QUERY],
    body: `${perQueryHead(c)}
  let zo = (n * S + i) * S;
  var m = -3.402823e38;
  for (var j = 0u; j < S; j++) { m = max(m, z[zo + j]); }
  var acc: array<f32, C>;
  for (var ch = 0u; ch < C; ch++) { acc[ch] = 0.0; }
  var l = 0.0;
  for (var j0 = 0u; j0 < S; j0 += 4u) {${keyBlock()}
    let p = select(vec4<f32>(0.0), exp(${load4('z', 'zo')} - m), live);
    l += p.x + p.y + p.z + p.w;
    for (var ch = 0u; ch < C; ch++) { acc[ch] += dot(p, ${load4('v', 'base + ch * S')}); }
  }
  let inv = 1.0 / l;
  for (var ch = 0u; ch < C; ch++) { out[base + ch * S + i] = acc[ch] * inv; }
}`,
  }),
});

export function softmaxMix(e: Engine, z: Tensor, v: Tensor, out: Tensor, n: number, c: number, s: number): void {
  e.run(SOFTMAX_MIX, { c }, { z, v, out }, { s }, [Math.ceil(s / WG_QUERY), n]);
}

type FlashDualSpec = { c: number; tq: boolean; tk: boolean; tv: boolean };

/** The dual kernel: one pipeline per channel count and set of tangents present. */
const FLASH_DUAL = defineProgram<FlashDualSpec>({
  name: 'attention.flash.dual',
  spec: { c: true, tq: true, tk: true, tv: true },
  build: ({ c, tq, tk, tv }) => {
    const tz = tq || tk;
    const zd = [tq ? 'qd[ch] * kk' : '', tk ? `qr[ch] * ${load4('tk', 'base + ch * S')}` : ''].filter(Boolean).join(' + ');
    return {
      name: `attention.flash.dual.${+tq}${+tk}${+tv}`,
      buffers: [
        ...reads('q', 'k', 'v', ...(tq ? ['tq'] : []), ...(tk ? ['tk'] : []), ...(tv ? ['tv'] : [])),
        ...writes('out', 'tout'),
      ],
      uniforms: SCALED_UNIFORMS,
      workgroupSize: [WG_QUERY],
      body: `${perQueryHead(c)}
  var qr: array<f32, C>;
  ${tq ? 'var qd: array<f32, C>;' : ''}
  var acc: array<f32, C>;
  var accd: array<f32, C>;
  for (var ch = 0u; ch < C; ch++) {
    qr[ch] = q[base + ch * S + i] * params.alpha;
    ${tq ? 'qd[ch] = tq[base + ch * S + i] * params.alpha;' : ''}
    acc[ch] = 0.0;
    accd[ch] = 0.0;
  }
  var m = -3.402823e38;
  var l = 0.0;
  var sz = 0.0;
  for (var j0 = 0u; j0 < S; j0 += 4u) {${keyBlock()}
    var z = vec4<f32>(0.0);
    var zd = vec4<f32>(0.0);
    for (var ch = 0u; ch < C; ch++) {
      let kk = ${load4('k', 'base + ch * S')};
      z += qr[ch] * kk;
      ${tz ? `zd += ${zd};` : ''}
    }
    ${onlineUpdate('sz *= corr; for (var ch = 0u; ch < C; ch++) { acc[ch] *= corr; accd[ch] *= corr; }')}
    sz += dot(p, zd);
    let pz = p * zd;
    for (var ch = 0u; ch < C; ch++) {
      let vv = ${load4('v', 'base + ch * S')};
      acc[ch] += dot(p, vv);
      accd[ch] += ${tz ? 'dot(pz, vv)' : '0.0'}${tv ? ` + dot(p, ${load4('tv', 'base + ch * S')})` : ''};
    }
  }
  let inv = 1.0 / l;
  let mz = sz * inv;
  for (var ch = 0u; ch < C; ch++) {
    let a = acc[ch] * inv;
    out[base + ch * S + i] = a;
    tout[base + ch * S + i] = accd[ch] * inv - mz * a;
  }
}`,
    };
  },
});

/**
 * Flash-style dual: per query, online over keys, z and ż = α(q̇ᵢ·kⱼ + qᵢ·k̇ⱼ), then
 * a = Σp·v / l and ȧ = (Σ p·ż·v + Σ p·v̇)/l − (Σ p·ż / l)·a. Missing tangents drop their terms at compile time.
 */
export function flashDual(
  e: Engine,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  t: { q: MaybeTensor; k: MaybeTensor; v: MaybeTensor },
  alpha: number,
): [Tensor, Tensor] {
  const [n, c] = q.shape;
  const s = q.size / Math.max(n * c, 1);
  const out = e.empty(q.shape, 'f32', 'attention');
  const tout = e.empty(q.shape, 'f32', 'attention.tangent');
  const bindings: Record<string, Tensor> = { q, k, v, out, tout };
  if (t.q) bindings.tq = t.q;
  if (t.k) bindings.tk = t.k;
  if (t.v) bindings.tv = t.v;
  e.run(FLASH_DUAL, { c, tq: !!t.q, tk: !!t.k, tv: !!t.v }, bindings, { s, alpha }, [Math.ceil(s / WG_QUERY), n]);
  return [out, tout];
}
