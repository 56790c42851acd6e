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
import { flashDual, flashForward, softmaxMix } from './attention-flash.js';

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

// ---------------------------------------------------------------- forward variants

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

// ---------------------------------------------------------------- the op

function checkCore([q, k, v]: readonly [Tensor, Tensor, Tensor]): { q: Tensor; k: Tensor; v: Tensor; n: number; c: number; s: number } {
  for (const [t, what] of [[q, 'q'], [k, 'k'], [v, 'v']] as const) {
    if (t.rank < 2) throw new ShapeError(`attentionCore: ${what} ${t.describe()} must be [N, C, ...spatial]`);
    t.assertShape(q.shape, `attentionCore ${what}`);
  }
  const [n, c] = q.shape;
  return { q, k, v, n, c, s: q.size / Math.max(n * c, 1) };
}

/** a[n,c,i] = Σ_j softmax_j(α·Σ_c' q[n,c',i]·k[n,c',j])·v[n,c,j], for q, k, v of shape [N, C, ...spatial]. */
export const attentionCore: Op<AttentionParams> = defineOp({
  name: 'attentionCore',
  inputs: ['q', 'k', 'v'],
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
