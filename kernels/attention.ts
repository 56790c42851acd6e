/**
 * score_sde's AttnBlockpp (NCSN++ self-attention over all H·W positions) and its attention core:
 *
 *   h = GroupNorm(x); q, k, v = NIN₀,₁,₂(h); a = Σ_j softmax_j(qᵢ·kⱼ/√C)·vⱼ; out = NIN₃(a);
 *   result = (x + out)/√2 (skip_rescale, as ncsnpp builds it) or x + out.
 *
 * `attentionCore(q, k, v)` is one op whose forward has three variants (forced with `overrideAttentionVariant`,
 * timed and cached per shape by `autotuneAttention`):
 *   'flash'     one invocation per query: scores, online max-shifted softmax and Σ p·v in one pass over the keys
 *               (blocks of 4), the S×S matrix never exists;
 *   'scores'    the scores product, then one fused softmax·V kernel per query row (exp computed once per score);
 *   'unfused'   scores product, softmax rows, mix product (three dispatches, all register-blocked).
 * Measured on lavapipe (report of this commit): 'unfused' is 2–4× faster than both fused variants at HW = 256
 * (the per-query kernels keep C-long accumulators in private arrays, which lavapipe spills to memory, while the
 * products run 4×4 register tiles), and all three are within noise at HW = 49 — so 'unfused' is the default.
 * The JVP: a fused flash-style dual kernel computing a and ȧ in one pass over the keys — used for short sequences
 * on CPU adapters (HW = 49: 1.2–1.6× faster than the composed dual) and whenever a per-query variant is forced —
 * or else the composed one (scores' bilinear tangent → softmax's fused dual → mix; 1.6–2.7× faster at HW = 256).
 * The VJP is written with ops (scores, softmax, softmaxBackward, mix), so forward-over-reverse gives
 * Hessian-vector products.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { add, scale } from './elementwise.js';
import { groupNorm, scoreSdeGroupNorm } from './group-norm.js';
import { softmax, softmaxBackward } from './softmax.js';
import { attnMix, attnScores, ninApply, stridedProduct } from './attention-products.js';

export type AttentionVariant = 'flash' | 'scores' | 'unfused';

export interface AttentionParams {
  /** Scale of the scores, 1/√C in AttnBlockpp. */
  alpha: number;
}

// ---------------------------------------------------------------- variant choice

const tuned = new Map<string, AttentionVariant>();
let forcedVariant: AttentionVariant | null = null;

/** Forces a forward variant (tests and benchmarks); null restores the tuned / default choice. */
export function overrideAttentionVariant(v: AttentionVariant | null): void {
  forcedVariant = v;
}

function shapeClass(e: Engine, n: number, c: number, s: number): string {
  return `${e.info.isCpu ? 'cpu' : 'gpu'}:${n}:${c}:${s}`;
}

/** The largest channel count the per-query kernels keep in private arrays (5·C floats per lane in the dual). */
const MAX_PRIVATE_CHANNELS = 512;

export function attentionVariant(e: Engine, n: number, c: number, s: number): AttentionVariant {
  if (forcedVariant) return c <= MAX_PRIVATE_CHANNELS || forcedVariant === 'unfused' ? forcedVariant : 'unfused';
  const hit = tuned.get(shapeClass(e, n, c, s));
  if (hit) return hit;
  // Measured on lavapipe: 'unfused' wins at HW = 256 for C = 32…256 and ties at HW = 49 (see the header). GPUs
  // would spill the per-query kernels' private arrays too.
  return 'unfused';
}

/** Times every variant once on random data of this shape and caches the fastest for later forwards. */
export async function autotuneAttention(e: Engine, n: number, c: number, s: number, reps = 3): Promise<Record<AttentionVariant, number>> {
  const times = {} as Record<AttentionVariant, number>;
  const variants: AttentionVariant[] = c <= MAX_PRIVATE_CHANNELS ? ['flash', 'scores', 'unfused'] : ['unfused'];
  await e.scope(async () => {
    const rand = () => e.tensor(Float32Array.from({ length: n * c * s }, () => Math.random() - 0.5), [n, c, s]);
    const [q, k, v] = [rand(), rand(), rand()];
    for (const variant of variants) {
      e.scope(() => attentionForward(e, q, k, v, 1 / Math.sqrt(c), variant)); // compile + warm
      await e.sync();
      let best = Infinity;
      for (let r = 0; r < reps; r++) {
        const t0 = performance.now();
        e.scope(() => attentionForward(e, q, k, v, 1 / Math.sqrt(c), variant));
        await e.sync();
        best = Math.min(best, performance.now() - t0);
      }
      times[variant] = best;
    }
  });
  const fastest = variants.reduce((a, b) => (times[a] <= times[b] ? a : b));
  tuned.set(shapeClass(e, n, c, s), fastest);
  return times;
}

// ---------------------------------------------------------------- kernels

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

function flashForward(e: Engine, q: Tensor, k: Tensor, v: Tensor, out: Tensor, alpha: number, n: number, c: number, s: number): void {
  const program = e.program({
    name: 'attention.flash',
    buffers: [
      { name: 'q', type: 'f32' },
      { name: 'k', type: 'f32' },
      { name: 'v', type: 'f32' },
      { name: 'out', type: 'f32', access: 'read_write' },
    ],
    uniforms: [
      ['s', 'u32'],
      ['alpha', 'f32'],
    ],
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
  });
  e.dispatch(program, { q, k, v, out }, { s, alpha }, [Math.ceil(s / WG_QUERY), n]);
}

/** Fused softmax·V over precomputed scores z [N, S, S]: per query, row max, then Σ exp(z − m)·v in one pass. */
function softmaxMix(e: Engine, z: Tensor, v: Tensor, out: Tensor, n: number, c: number, s: number): void {
  const program = e.program({
    name: 'attention.softmax_mix',
    buffers: [
      { name: 'z', type: 'f32' },
      { name: 'v', type: 'f32' },
      { name: 'out', type: 'f32', access: 'read_write' },
    ],
    uniforms: [['s', 'u32']],
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
  });
  e.dispatch(program, { z, v, out }, { s }, [Math.ceil(s / WG_QUERY), n]);
}

function scoresOf(e: Engine, q: Tensor, k: Tensor, alpha: number, n: number, c: number, s: number): Tensor {
  const z = e.empty([n, s, s], 'f32', 'attn.scores');
  stridedProduct(e, 'scores', q, k, null, z, {
    batch: n, I: s, J: s, K1: 1, K2: c, a: [c * s, 1, 0, s], b: [c * s, 1, 0, s], out: [s * s, s, 1], alpha,
  });
  return z;
}

function attentionForward(e: Engine, q: Tensor, k: Tensor, v: Tensor, alpha: number, variant: AttentionVariant): Tensor {
  const [n, c] = q.shape;
  const s = q.size / Math.max(n * c, 1);
  if (variant === 'unfused') {
    const z = scoresOf(e, q, k, alpha, n, c, s);
    const w = softmax.def.forward(e, [z], {});
    z.dispose();
    const a = attnMix.def.forward(e, [w, v], { alpha: 1, transposed: false });
    w.dispose();
    return a;
  }
  const out = e.empty(q.shape, 'f32', 'attention');
  if (variant === 'flash') {
    flashForward(e, q, k, v, out, alpha, n, c, s);
  } else {
    const z = scoresOf(e, q, k, alpha, n, c, s);
    softmaxMix(e, z, v, out, n, c, s);
    z.dispose();
  }
  return out;
}

/**
 * Flash-style dual: per query, online over keys, z and ż = α(q̇ᵢ·kⱼ + qᵢ·k̇ⱼ), then
 * a = Σp·v / l and ȧ = (Σ p·ż·v + Σ p·v̇)/l − (Σ p·ż / l)·a. Missing tangents drop their terms at compile time.
 */
function flashDual(
  e: Engine,
  q: Tensor,
  k: Tensor,
  v: Tensor,
  t: { q: MaybeTensor; k: MaybeTensor; v: MaybeTensor },
  alpha: number,
): [Tensor, Tensor] {
  const [n, c] = q.shape;
  const s = q.size / Math.max(n * c, 1);
  const tz = !!(t.q || t.k);
  const zd = [t.q ? 'qd[ch] * kk' : '', t.k ? `qr[ch] * ${load4('tk', 'base + ch * S')}` : ''].filter(Boolean).join(' + ');
  const program = e.program({
    name: `attention.flash.dual.${+!!t.q}${+!!t.k}${+!!t.v}`,
    buffers: [
      { name: 'q', type: 'f32' },
      { name: 'k', type: 'f32' },
      { name: 'v', type: 'f32' },
      ...(['q', 'k', 'v'] as const).filter((x) => t[x]).map((x) => ({ name: `t${x}`, type: 'f32' as const })),
      { name: 'out', type: 'f32', access: 'read_write' },
      { name: 'tout', type: 'f32', access: 'read_write' },
    ],
    uniforms: [
      ['s', 'u32'],
      ['alpha', 'f32'],
    ],
    workgroupSize: [WG_QUERY],
    body: `${perQueryHead(c)}
  var qr: array<f32, C>;
  ${t.q ? 'var qd: array<f32, C>;' : ''}
  var acc: array<f32, C>;
  var accd: array<f32, C>;
  for (var ch = 0u; ch < C; ch++) {
    qr[ch] = q[base + ch * S + i] * params.alpha;
    ${t.q ? 'qd[ch] = tq[base + ch * S + i] * params.alpha;' : ''}
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
      accd[ch] += ${tz ? 'dot(pz, vv)' : '0.0'}${t.v ? ` + dot(p, ${load4('tv', 'base + ch * S')})` : ''};
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
  });
  const out = e.empty(q.shape, 'f32', 'attention');
  const tout = e.empty(q.shape, 'f32', 'attention.tangent');
  const bindings: Record<string, Tensor> = { q, k, v, out, tout };
  if (t.q) bindings.tq = t.q;
  if (t.k) bindings.tk = t.k;
  if (t.v) bindings.tv = t.v;
  e.dispatch(program, bindings, { s, alpha }, [Math.ceil(s / WG_QUERY), n]);
  return [out, tout];
}

// ---------------------------------------------------------------- the op

function checkCore(inputs: readonly MaybeTensor[]): { q: Tensor; k: Tensor; v: Tensor; n: number; c: number; s: number } {
  const [q, k, v] = inputs;
  if (!q || !k || !v) throw new ShapeError('attentionCore: q, k and v are all required');
  for (const [t, what] of [[q, 'q'], [k, 'k'], [v, 'v']] as const) {
    t.assertDType('f32', `attentionCore ${what}`);
    if (t.rank < 2) throw new ShapeError(`attentionCore: ${what} ${t.describe()} must be [N, C, ...spatial]`);
    t.assertShape(q.shape, `attentionCore ${what}`);
  }
  const [n, c] = q.shape;
  return { q, k, v, n, c, s: q.size / Math.max(n * c, 1) };
}

/** a[n,c,i] = Σ_j softmax_j(α·Σ_c' q[n,c',i]·k[n,c',j])·v[n,c,j], for q, k, v of shape [N, C, ...spatial]. */
export const attentionCore: Op<AttentionParams> = defineOp<AttentionParams>({
  name: 'attentionCore',
  forward(e, inputs, { alpha }) {
    const { q, k, v, n, c, s } = checkCore(inputs);
    return attentionForward(e, q, k, v, alpha, attentionVariant(e, n, c, s));
  },
  vjp(e, { inputs, params: { alpha } }, ga, needs) {
    const { q, k, v } = checkCore(inputs);
    // Recompute the weights with ops (the forward never stored them), then chain the products' VJPs.
    const w = softmax(e, [attnScores(e, [q, k], { alpha })], {});
    const gv = needs[2] ? attnMix(e, [w, ga], { alpha: 1, transposed: true }) : null;
    let gq: MaybeTensor = null;
    let gk: MaybeTensor = null;
    if (needs[0] || needs[1]) {
      const gz = softmaxBackward(e, [w, attnScores(e, [ga, v], { alpha: 1 })], {});
      if (needs[0]) gq = attnMix(e, [gz, k], { alpha, transposed: false });
      if (needs[1]) gk = attnMix(e, [gz, q], { alpha, transposed: true });
    }
    return [gq, gk, gv];
  },
  jvp: (e, ctx, tangents) => attentionCore.def.dual!(e, ctx.inputs, tangents, ctx.params)[1],
  dual(e, inputs, [tq, tk, tv], { alpha }) {
    const { q, k, v, n, c, s } = checkCore(inputs);
    for (const [t, what] of [[tq, 'q'], [tk, 'k'], [tv, 'v']] as const) {
      if (t) t.assertShape(q.shape, `attentionCore ${what} tangent`);
    }
    if (c <= MAX_PRIVATE_CHANNELS && (attentionVariant(e, n, c, s) !== 'unfused' || (e.info.isCpu && s < 128))) {
      return flashDual(e, q, k, v, { q: tq, k: tk, v: tv }, alpha);
    }
    // Composed: ż from the bilinear scores, softmax's fused dual, then the bilinear mix.
    const z = attnScores.def.forward(e, [q, k], { alpha });
    const zq = tq ? attnScores.def.forward(e, [tq, k], { alpha }) : null;
    const zk = tk ? attnScores.def.forward(e, [q, tk], { alpha }) : null;
    const tz = zq && zk ? add.def.forward(e, [zq, zk], {}) : (zq ?? zk);
    const [w, tw] = softmax.def.dual!(e, [z], [tz], {});
    const mix = { alpha: 1, transposed: false };
    const a = attnMix.def.forward(e, [w, v], mix);
    const fromW = tw ? attnMix.def.forward(e, [tw, v], mix) : null;
    const fromV = tv ? attnMix.def.forward(e, [w, tv], mix) : null;
    const ta = fromW && fromV ? add.def.forward(e, [fromW, fromV], {}) : (fromW ?? fromV)!;
    return [a, ta];
  },
});

// ---------------------------------------------------------------- the block

export interface NinWeights {
  /** [in, out], score_sde's layout. */
  W: Tensor;
  b: Tensor;
}

/** AttnBlockpp's parameters, named after its state dict (GroupNorm_0.weight/bias, NIN_0..NIN_3.W/b). */
export interface AttnBlockParams {
  gamma: Tensor;
  beta: Tensor;
  nin0: NinWeights;
  nin1: NinWeights;
  nin2: NinWeights;
  nin3: NinWeights;
}

export interface AttnBlockOptions {
  /** (x + h)/√2 instead of x + h; ncsnpp's blocks use skip_rescale = True, the default here. */
  skipRescale?: boolean;
  /** Default: score_sde's min(C // 4, 32). */
  groups?: number;
  /** Default: score_sde's 1e-6. */
  eps?: number;
}

/** AttnBlockpp on x [N, C, H, W], composed of differentiable ops. */
export function attnBlock(e: Engine, x: Tensor, p: AttnBlockParams, opts: AttnBlockOptions = {}): Tensor {
  if (x.rank !== 4) throw new ShapeError(`attnBlock: x ${x.describe()} must be [N, C, H, W]`);
  const c = x.shape[1];
  const gn = scoreSdeGroupNorm(c);
  const h = groupNorm(e, [x, p.gamma, p.beta], { groups: opts.groups ?? gn.groups, eps: opts.eps ?? gn.eps });
  const nin = (t: Tensor, w: NinWeights) => ninApply(e, [t, w.W, w.b], { transposed: false });
  const q = nin(h, p.nin0);
  const k = nin(h, p.nin1);
  const v = nin(h, p.nin2);
  const a = attentionCore(e, [q, k, v], { alpha: 1 / Math.sqrt(c) });
  const sum = add(e, [x, nin(a, p.nin3)], {});
  return (opts.skipRescale ?? true) ? scale(e, [sum], { alpha: Math.SQRT1_2 }) : sum;
}

/** AttnBlockpp's weights named by role; NIN_0..NIN_3 are q, k, v and out. */
export interface AttentionBlockWeights {
  gamma: Tensor;
  beta: Tensor;
  q: NinWeights;
  k: NinWeights;
  v: NinWeights;
  out: NinWeights;
}

/** `attnBlock` with role-named weights (the form model/ncsnpp.ts builds). */
export function attentionBlock(e: Engine, x: Tensor, w: AttentionBlockWeights, opts: AttnBlockOptions = {}): Tensor {
  return attnBlock(e, x, { gamma: w.gamma, beta: w.beta, nin0: w.q, nin1: w.k, nin2: w.v, nin3: w.out }, opts);
}
