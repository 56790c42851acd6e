import { afterEach, describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { checkHvp, checkOp, maxAbs, randomHost, roundF32, type Host64, type Tolerances } from '../helpers/check-op.js';
import { vjp, type Op, type OpDef } from '../../engine/autodiff.js';
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { ShapeError } from '../../engine/errors.js';
import { overrideRowLayout, softmax, softmaxBackward, type RowLayout } from '../../kernels/softmax.js';
import { attnMix, attnScores, ninApply, ninWeightGrad } from '../../kernels/attention-products.js';
import {
  attentionCore,
  attnBlock,
  autotuneAttention,
  overrideAttentionVariant,
  type AttentionVariant,
  type AttnBlockParams,
} from '../../kernels/attention.js';
import { softmaxRef, softmaxVjpRef } from '../../kernels/reference/activations.js';
import { attnMixRef, attnScoresRef, host, ncs, softmaxBackwardRef } from '../helpers/op-references.js';
import { attnBlockRef, attnBlockVjpRef, type AttnParams } from '../../kernels/reference/attention.js';

// ---------------------------------------------------------------- float64 references for the NIN products

function ninRef(x: Host64, W: Host64, b: Host64 | null, transposed: boolean): Host64 {
  const { n, c, s } = ncs(x);
  const [r, k] = W.shape;
  const cout = transposed ? r : k;
  const y = new Float64Array(n * cout * s);
  for (let ni = 0; ni < n; ni++)
    for (let o = 0; o < cout; o++)
      for (let si = 0; si < s; si++) {
        let acc = b ? b.data[o] : 0;
        for (let ci = 0; ci < c; ci++) acc += (transposed ? W.data[o * k + ci] : W.data[ci * k + o]) * x.data[(ni * c + ci) * s + si];
        y[(ni * cout + o) * s + si] = acc;
      }
  return host([n, cout, ...x.shape.slice(2)], y);
}

function ninWeightGradRef(x: Host64, g: Host64): Host64 {
  const { n, c, s } = ncs(x);
  const cg = g.shape[1];
  const out = new Float64Array(c * cg);
  for (let ni = 0; ni < n; ni++)
    for (let ci = 0; ci < c; ci++)
      for (let o = 0; o < cg; o++)
        for (let si = 0; si < s; si++) out[ci * cg + o] += x.data[(ni * c + ci) * s + si] * g.data[(ni * cg + o) * s + si];
  return host([c, cg], out);
}

const attentionRef = (q: Host64, k: Host64, v: Host64, alpha: number): Host64 =>
  attnMixRef(softmaxRef(attnScoresRef(q, k, alpha)), v, 1, false);

// ---------------------------------------------------------------- tolerances
// Relative to the max-norm of the reference quantity (ε = 6e-8). Products: f32 dot products of K ≤ 64 terms,
// worst case K·ε of the largest term, typically √K·ε: measured ≤ 2.5e-7, so 1e-6. Softmax rows: exp is ≤ 3 ulp
// on lavapipe plus a row sum of ≤ 130 terms: measured ≤ 2.5e-7 (values and tangents), so 1e-6. The attention
// core and block chain several stages (GroupNorm, three NINs, scores, softmax, mix, NIN, skip), each adding its
// own rounding carried through O(1) Jacobians: measured ≤ 3.6e-7 forward and ≤ 6.4e-7 for tangents and
// gradients, so 1e-6 and 2e-6. Finite differences of the float64 references (h = 1e-5) are good to ~1e-9.
const PRODUCT_TOL: Tolerances = { forward: 1e-6, jvp: 1e-6, vjp: 1e-6 };
const SOFTMAX_TOL: Tolerances = { forward: 1e-6, jvp: 1e-6, vjp: 1e-6 };
const BLOCK_TOL: Tolerances = { forward: 1e-6, jvp: 2e-6, vjp: 2e-6 };

describe('softmax', () => {
  const engine = useEngine();
  afterEach(() => overrideRowLayout(null));

  for (const layout of ['thread', 'workgroup'] as RowLayout[]) {
    for (const shape of [[1, 1], [3, 7], [2, 5, 49], [2, 130]]) {
      it(`softmax and softmaxBackward (fused dual) on [${shape}], ${layout} rows`, async () => {
        const e = engine();
        overrideRowLayout(layout);
        const x = randomHost(shape, 1, 3);
        await checkOp(e, { op: softmax, params: {}, inputs: [x], reference: ([a]) => softmaxRef(a!), tol: SOFTMAX_TOL });
        // softmaxBackward(y, g) = y ⊙ (g − ⟨g, y⟩) for any y (the formula is polynomial); y = softmax(x) here.
        const y = softmaxRef(roundF32(x));
        const g = randomHost(shape, 2);
        await checkOp(e, {
          op: softmaxBackward,
          params: {},
          inputs: [y, g],
          reference: ([yy, gg]) => softmaxBackwardRef(yy!, gg!),
          tol: SOFTMAX_TOL,
        });
      });
    }
  }

  it('does not overflow on large logits and HVP of ⟨u, softmax⟩ matches', async () => {
    const e = engine();
    const x = randomHost([4, 33], 3, 3);
    x.data[5] = 500;
    x.data[40] = -800;
    await checkOp(e, { op: softmax, params: {}, inputs: [x], reference: ([a]) => softmaxRef(a!), tol: SOFTMAX_TOL });
    const xs = randomHost([4, 33], 4, 2);
    await checkHvp(e, (a) => softmax(e, [a], {}), xs, (xx, u) => softmaxVjpRef(xx, u), [4, 33], 2e-6);
  });
});

describe('attention products', () => {
  const engine = useEngine();

  // Sizes past 64 columns / 16 rows span several workgroups of the product kernel.
  for (const [n, c, co, h, w] of [[1, 3, 5, 7, 5], [2, 8, 4, 4, 4], [2, 6, 9, 3, 1], [1, 6, 17, 9, 9]]) {
    it(`NIN (both orientations) and its weight gradient on [${n},${c},${h},${w}] → ${co}`, async () => {
      const e = engine();
      const x = randomHost([n, c, h, w], 1);
      for (const transposed of [false, true]) {
        const W = randomHost(transposed ? [co, c] : [c, co], 2);
        const b = randomHost([co], 3);
        await checkOp(e, {
          op: ninApply,
          params: { transposed },
          inputs: [x, W, b],
          reference: ([xx, WW, bb]) => ninRef(xx!, WW!, bb, transposed),
          tol: PRODUCT_TOL,
        });
      }
      const g = randomHost([n, co, h, w], 4);
      await checkOp(e, { op: ninWeightGrad, params: {}, inputs: [x, g], reference: ([a, b]) => ninWeightGradRef(a!, b!), tol: PRODUCT_TOL });
    });
  }

  for (const [n, c, h, w] of [[1, 4, 3, 3], [2, 5, 7, 7], [1, 3, 4, 4], [1, 4, 9, 9]]) {
    it(`scores and mix (both orientations) on [${n},${c},${h},${w}]`, async () => {
      const e = engine();
      const s = h * w;
      const q = randomHost([n, c, h, w], 5);
      const k = randomHost([n, c, h, w], 6);
      await checkOp(e, { op: attnScores, params: { alpha: 0.7 }, inputs: [q, k], reference: ([a, b]) => attnScoresRef(a!, b!, 0.7), tol: PRODUCT_TOL });
      const wt = randomHost([n, s, s], 7);
      for (const transposed of [false, true]) {
        await checkOp(e, {
          op: attnMix,
          params: { alpha: 1.3, transposed },
          inputs: [wt, q],
          reference: ([a, b]) => attnMixRef(a!, b!, 1.3, transposed),
          tol: PRODUCT_TOL,
        });
      }
    });
  }
});

describe('attention core', () => {
  const engine = useEngine();
  afterEach(() => overrideAttentionVariant(null));

  for (const variant of ['flash', 'scores', 'unfused'] as AttentionVariant[]) {
    // HW = 144 ≥ 128 takes the composed JVP on CPU adapters (shorter sequences the fused flash dual).
    for (const shape of [[1, 8, 4, 4], [2, 16, 7, 7], [1, 3, 5, 3], [1, 4, 12, 12]]) {
      it(`${variant}: forward, JVP, VJP on [${shape}]`, async () => {
        const e = engine();
        overrideAttentionVariant(variant);
        const alpha = 1 / Math.sqrt(shape[1]);
        await checkOp(e, {
          op: attentionCore,
          params: { alpha },
          inputs: [randomHost(shape, 1, 2), randomHost(shape, 2, 2), randomHost(shape, 3)],
          reference: ([q, k, v]) => attentionRef(q!, k!, v!, alpha),
          tol: BLOCK_TOL,
        });
      });
    }
  }

  it('the autotuner times every variant and they agree', async () => {
    const e = engine();
    const times = await autotuneAttention(e, 1, 8, 16, 1);
    expect(Object.keys(times).sort()).toEqual(['flash', 'scores', 'unfused']);
  });
});

// ---------------------------------------------------------------- the block

const PARAM_NAMES = ['gamma', 'beta', 'W0', 'b0', 'W1', 'b1', 'W2', 'b2', 'W3', 'b3'] as const;

function blockInputs(c: number, seed: number): Host64[] {
  const w = 1 / Math.sqrt(c);
  return [
    randomHost([c], seed + 1, 1),
    randomHost([c], seed + 2, 0.5),
    ...[0, 1, 2, 3].flatMap((i) => [randomHost([c, c], seed + 10 + i, w), randomHost([c], seed + 20 + i, 0.2)]),
  ];
}

function refParams(p: Host64[]): AttnParams {
  const nin = (i: number) => ({ W: p[2 + 2 * i], b: p[3 + 2 * i] });
  return { gamma: p[0], beta: p[1], nin0: nin(0), nin1: nin(1), nin2: nin(2), nin3: nin(3) };
}

function gpuParams(p: Tensor[]): AttnBlockParams {
  const nin = (i: number) => ({ W: p[2 + 2 * i], b: p[3 + 2 * i] });
  return { gamma: p[0], beta: p[1], nin0: nin(0), nin1: nin(1), nin2: nin(2), nin3: nin(3) };
}

/** attnBlock as an Op-shaped function of (x, ...params) so checkOp can differentiate every input. */
function blockOp(skipRescale: boolean): Op<Record<string, never>> {
  const fn = (e: Engine, inputs: readonly (Tensor | null)[]) =>
    attnBlock(e, inputs[0]!, gpuParams(inputs.slice(1) as Tensor[]), { skipRescale });
  return Object.assign(fn, { def: { name: `attnBlock(skip=${skipRescale})` } as OpDef<Record<string, never>> });
}

describe('attnBlock (AttnBlockpp)', () => {
  const engine = useEngine();
  afterEach(() => overrideAttentionVariant(null));

  for (const shape of [[1, 8, 4, 4], [2, 16, 7, 7]]) {
    for (const skipRescale of [true, false]) {
      it(`forward, JVP, VJP in x and all ${PARAM_NAMES.length} parameters on [${shape}], skipRescale ${skipRescale}`, async () => {
        const e = engine();
        const x = randomHost(shape, 5, 2);
        await checkOp(e, {
          op: blockOp(skipRescale),
          params: {},
          inputs: [x, ...blockInputs(shape[1], 30)],
          // k's bias b1 adds qᵢ·b1 to a whole row of scores, which the softmax ignores: its gradient is exactly 0,
          // and a relative check of f32 noise against 0 is meaningless (checked in absolute terms below).
          differentiable: [true, true, true, true, true, true, false, true, true, true, true],
          reference: ([xx, ...p]) => attnBlockRef(xx!, refParams(p as Host64[]), { skipRescale }),
          tol: BLOCK_TOL,
        });
      });
    }
  }

  // The forward variant does not enter the HVP: the backward recomputes the weights with ops and differentiates
  // those (the forward's own tangent only feeds NIN₃'s weight gradient), so one run covers every variant.
  it('HVP through the whole block (forward-over-reverse)', async () => {
    const e = engine();
    for (const shape of [[1, 8, 4, 4], [2, 16, 7, 7]]) {
      const ps = blockInputs(shape[1], 40).map(roundF32);
      await e.scope(async () => {
        const params = gpuParams(ps.map((p) => e.tensor(Float32Array.from(p.data), p.shape)));
        await checkHvp(
          e,
          (x) => attnBlock(e, x, params),
          randomHost(shape, 6, 2),
          (xx, u) => attnBlockVjpRef(xx, refParams(ps), u).x,
          shape,
          // Second-order chain through every stage (two f32 reductions per stage): measured ≤ 4e-7.
          2e-6,
        );
      });
    }
  });

  it("k's bias gets a zero gradient (softmax shift invariance)", async () => {
    const e = engine();
    const shape = [2, 16, 7, 7];
    await e.scope(async () => {
      const up = (h: Host64) => e.tensor(Float32Array.from(h.data), h.shape);
      const ps = blockInputs(16, 30).map(up);
      const x = up(randomHost(shape, 5, 2));
      const u = up(randomHost(shape, 9));
      const grads = vjp(e, (xx, b0, b1) => {
        const p = gpuParams(ps);
        return attnBlock(e, xx, { ...p, nin0: { W: p.nin0.W, b: b0 }, nin1: { W: p.nin1.W, b: b1 } });
      }, [x, ps[3], ps[5]]).backward(u);
      const gb0 = await grads[1]!.readF64();
      const gb1 = await grads[2]!.readF64();
      // f32 rounding of the cancelling row sums: measured 1e-7 of q's bias gradient.
      expect(maxAbs(gb1)).toBeLessThan(1e-5 * maxAbs(gb0));
    });
  });

  it('rejects bad shapes', () => {
    const e = engine();
    e.scope(() => {
      const q = e.zeros([1, 4, 3, 3]);
      expect(() => attentionCore(e, [q, e.zeros([1, 4, 9]), q], { alpha: 1 })).toThrow(ShapeError);
      expect(() => ninApply(e, [q, e.zeros([5, 4]), null], { transposed: false })).toThrow(/ninApply: W/);
      expect(() => attnBlock(e, e.zeros([1, 4, 9]), gpuParams([]))).toThrow(/attnBlock/);
    });
  });
});
