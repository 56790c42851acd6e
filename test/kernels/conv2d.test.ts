import { beforeAll, describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { checkHvp, checkOp, randomHost, relErr, roundF32, type Host64 } from '../helpers/check-op.js';
import {
  conv2d,
  conv2dDual,
  conv2dInputGrad,
  conv2dWeightGrad,
  convCandidates,
  convGeometry,
  launchForward,
  launchInputGrad,
  launchWeightGrad,
  setConvDefault,
  type Conv2dParams,
} from '../../kernels/conv2d.js';
import { subgroupRows } from '../../kernels/conv2d-config.js';
import { availableVariants, subgroupSize, type GemmVariant } from '../../kernels/gemm-wgsl.js';
import { silu } from '../../kernels/elementwise.js';
import { conv2dInputVjpRef, conv2dRef, conv2dWeightVjpRef } from '../../kernels/reference/conv2d.js';
import { ShapeError } from '../../engine/errors.js';

// Each output is an f32 dot product of Cin·kh·kw ≤ 54 terms (weight grad: N·OH·OW ≤ 162 pixels × ...): rounding
// ≲ √K·2⁻²⁴ relative to max|ref| ≈ 1e-6, so 1e-5 is a safe bound that any indexing error (error ~1) fails.
// Finite differences of the float64 reference are exact for these bilinear ops up to ~1e-11 roundoff.
const TOL = { forward: 1e-5, jvp: 1e-5, vjp: 1e-5 };

interface Case {
  name: string;
  x: number[];
  w: number[];
  p: Conv2dParams;
  bias: boolean;
}

const CASES: Case[] = [
  { name: '3×3 pad 1, batch 1, odd 7×9', x: [1, 3, 7, 9], w: [4, 3, 3, 3], p: { padding: 1 }, bias: true },
  { name: '3×3 stride 2, asymmetric pad (0,1,0,1)', x: [2, 5, 8, 8], w: [6, 5, 3, 3], p: { stride: 2, padding: [0, 1, 0, 1] }, bias: true },
  { name: '1×1 (batched-matmul path, scalar loads)', x: [2, 6, 5, 3], w: [3, 6, 1, 1], p: {}, bias: false },
  { name: '1×1 (batched-matmul path, vec4 loads)', x: [2, 8, 4, 6], w: [12, 8, 1, 1], p: {}, bias: true },
  { name: '3×3 stride 2 pad 1, odd 9×7', x: [1, 4, 9, 7], w: [5, 4, 3, 3], p: { stride: 2, padding: 1 }, bias: false },
];

const refConv = (p: Conv2dParams) => ([x, w, b]: Array<Host64 | null>) => conv2dRef(x!, w!, b, p);

describe('conv2d', () => {
  const engine = useEngine();
  const variants: GemmVariant[] = ['register', 'subgroup', 'tiled'];

  // The op-level checks compile a pipeline per (kind, bias, dual, taps) and lavapipe's JIT time grows with the
  // tile (0.5 s at 4×4, 2–3 s at 8×8): they run on small tiles; the defaults and other candidates are checked in
  // 'tile candidates' below (same generator, only the unrolled sizes differ).
  beforeAll(() => {
    const e = engine();
    const sg = subgroupSize(e);
    for (const [variant, tm] of [['register', 4], ['subgroup', sg]] as const) {
      if (!tm) continue;
      setConvDefault(e, 'forward', { variant, tile: { tm, tn: 4, packW: true } });
      setConvDefault(e, 'inputGrad', { variant, tile: { tm, tn: 4, packW: true } });
      setConvDefault(e, 'weightGrad', { variant, tile: { tm, tc: 1, tp: 4, vecG: true } });
    }
  });

  for (const variant of variants) {
    it(`${variant}: conv2d forward / JVP / VJP (x, W, b) on odd shapes, stride 2, asymmetric padding, 1×1`, async (ctx) => {
      const e = engine();
      if (!availableVariants(e).includes(variant)) ctx.skip();
      let seed = 1;
      for (const c of CASES) {
        const p = { ...c.p, variant };
        const inputs = [randomHost(c.x, seed++), randomHost(c.w, seed++), c.bias ? randomHost([c.w[0]], seed++) : null];
        await checkOp(e, { op: conv2d, params: p, inputs: c.bias ? inputs : inputs.slice(0, 2), reference: refConv(c.p), tol: TOL, seed });
      }
    });

    it(`${variant}: conv2dInputGrad and conv2dWeightGrad (bilinear ops with their own VJP/JVP)`, async (ctx) => {
      const e = engine();
      if (!availableVariants(e).includes(variant)) ctx.skip();
      let seed = 50;
      for (const c of CASES) {
        const g = convGeometry('test', c.x, c.w, c.p);
        const gyShape = [g.N, g.Cout, g.OH, g.OW];
        await checkOp(e, {
          op: conv2dInputGrad,
          params: { ...c.p, variant, inputSize: [g.H, g.W] },
          inputs: [randomHost(gyShape, seed++), randomHost(c.w, seed++)],
          reference: ([gy, w]) => conv2dInputVjpRef(gy!, w!, c.x, c.p),
          tol: TOL,
          seed,
        });
        await checkOp(e, {
          op: conv2dWeightGrad,
          params: { ...c.p, variant, kernelSize: [g.KH, g.KW] },
          inputs: [randomHost(c.x, seed++), randomHost(gyShape, seed++)],
          reference: ([x, gy]) => conv2dWeightVjpRef(x!, gy!, c.w, c.p),
          tol: TOL,
          seed,
        });
      }
    });
  }

  // Every candidate compiles its own pipeline (~1–5 s each in lavapipe's JIT): by default the first candidate of
  // each CPU variant (the untuned default's tile, taller than this problem's channel counts: ragged edges; 'tiled'
  // already ran its CPU default above), all of them with SBGC_SLOW.
  const pick = <T extends { variant: GemmVariant }>(all: T[]): T[] =>
    process.env.SBGC_SLOW ? all : all.slice(0, 1).filter((c) => c.variant !== 'tiled');
  it('tile candidates of every variant (tiles larger than the problem, ragged edges)', async () => {
    const e = engine();
    const c = CASES[1];
    const g = convGeometry('test', c.x, c.w, c.p);
    const x = roundF32(randomHost(c.x, 7));
    const w = roundF32(randomHost(c.w, 8));
    const b = roundF32(randomHost([c.w[0]], 9));
    const gy = roundF32(randomHost([g.N, g.Cout, g.OH, g.OW], 10));
    const want = {
      forward: conv2dRef(x, w, b, c.p).data,
      inputGrad: conv2dInputVjpRef(gy, w, c.x, c.p).data,
      weightGrad: conv2dWeightVjpRef(x, gy, c.w, c.p).data,
    };
    await e.scope(async () => {
      const t = (h: Host64) => e.tensor(Float32Array.from(h.data), h.shape);
      const [X, Wt, B, GY] = [t(x), t(w), t(b), t(gy)];
      for (const variant of availableVariants(e)) {
        for (const config of pick(convCandidates(e, 'forward', variant))) {
          expect(relErr(await launchForward(e, g, X, null, Wt, B, null, config)[0].readF64(), want.forward), JSON.stringify(config)).toBeLessThan(TOL.forward);
        }
        for (const config of pick(convCandidates(e, 'inputGrad', variant))) {
          expect(relErr(await launchInputGrad(e, g, GY, null, Wt, config)[0].readF64(), want.inputGrad), JSON.stringify(config)).toBeLessThan(TOL.forward);
        }
        for (const config of pick(convCandidates(e, 'weightGrad', variant))) {
          expect(relErr(await launchWeightGrad(e, g, X, GY, config).readF64(), want.weightGrad), JSON.stringify(config)).toBeLessThan(TOL.forward);
        }
      }
    });
  });

  it('subgroup rows: 2 or 3 subgroups per invocation, whichever pads the channel count less', () => {
    expect([5, 8, 9, 16, 24, 40, 48, 64, 96, 128].map((m) => subgroupRows(m, 8))).toEqual([8, 8, 16, 16, 24, 24, 24, 16, 24, 16]);
    expect(subgroupRows(48, 4)).toBe(12);
  });

  it('three subgroups of rows (the default at 24 and 48 channels), ragged: forward, dual, input gradient; 3×3 and 1×1', async () => {
    const e = engine();
    const sg = subgroupSize(e);
    if (!sg) return; // no subgroups on this adapter: the variant does not exist
    const config = { variant: 'subgroup' as const, tile: { tm: 3 * sg, tn: 4, packW: true } };
    const cases: Case[] = [
      { name: '3×3 pad 1', x: [2, 5, 6, 7], w: [3 * sg + 3, 5, 3, 3], p: { padding: 1 }, bias: true },
      { name: '1×1', x: [2, 4, 3, 4], w: [3 * sg + 6, 4, 1, 1], p: {}, bias: true },
    ];
    for (const c of cases) {
      const g = convGeometry('test', c.x, c.w, c.p);
      const [x, xDot, w, b] = [roundF32(randomHost(c.x, 31)), roundF32(randomHost(c.x, 32)), roundF32(randomHost(c.w, 33)), roundF32(randomHost([c.w[0]], 34))];
      const gy = roundF32(randomHost([g.N, g.Cout, g.OH, g.OW], 35));
      await e.scope(async () => {
        const t = (h: Host64) => e.tensor(Float32Array.from(h.data), h.shape);
        const [X, XD, Wt, B, GY] = [t(x), t(xDot), t(w), t(b), t(gy)];
        const [y, yDot] = launchForward(e, g, X, XD, Wt, B, null, config);
        expect(relErr(await y.readF64(), conv2dRef(x, w, b, c.p).data), `${c.name} dual primal`).toBeLessThan(TOL.forward);
        expect(relErr(await yDot!.readF64(), conv2dRef(xDot, w, null, c.p).data), `${c.name} dual tangent`).toBeLessThan(TOL.forward);
        expect(relErr(await launchForward(e, g, X, null, Wt, B, null, config)[0].readF64(), conv2dRef(x, w, b, c.p).data), `${c.name} forward`).toBeLessThan(TOL.forward);
      });
      // Input gradient: rows are the conv's input channels, so give it 3·sg + 1 of them.
      const xg = [c.x[0], 3 * sg + 1, c.x[2], c.x[3]];
      const wg = [5, 3 * sg + 1, c.w[2], c.w[3]];
      const gg = convGeometry('test', xg, wg, c.p);
      const [w2, gy2] = [roundF32(randomHost(wg, 36)), roundF32(randomHost([gg.N, gg.Cout, gg.OH, gg.OW], 37))];
      await e.scope(async () => {
        const t = (h: Host64) => e.tensor(Float32Array.from(h.data), h.shape);
        const got = await launchInputGrad(e, gg, t(gy2), null, t(w2), config)[0].readF64();
        expect(relErr(got, conv2dInputVjpRef(gy2, w2, xg, c.p).data), `${c.name} input gradient`).toBeLessThan(TOL.forward);
      });
    }
  });

  it('the dual kernel equals forward + JVP (conv(x, W) + b, conv(ẋ, W) + ḃ), every variant', async () => {
    const e = engine();
    for (const c of CASES) {
      const x = roundF32(randomHost(c.x, 21));
      const xDot = roundF32(randomHost(c.x, 22));
      const w = roundF32(randomHost(c.w, 23));
      const b = roundF32(randomHost([c.w[0]], 24));
      const bDot = roundF32(randomHost([c.w[0]], 25));
      const wantY = conv2dRef(x, w, b, c.p).data;
      const wantT = conv2dRef(xDot, w, bDot, c.p).data;
      for (const variant of availableVariants(e)) {
        await e.scope(async () => {
          const t = (h: Host64) => e.tensor(Float32Array.from(h.data), h.shape);
          const [y, yDot] = conv2dDual(e, t(x), t(xDot), t(w), t(b), t(bDot), { ...c.p, variant });
          expect(relErr(await y.readF64(), wantY), `${variant} ${c.name} primal`).toBeLessThan(TOL.forward);
          expect(relErr(await yDot.readF64(), wantT), `${variant} ${c.name} tangent`).toBeLessThan(TOL.forward);
        });
      }
    }
  });

  it('HVP through conv → silu → conv (stride 2, asymmetric padding) against differences of the float64 gradient', async () => {
    const e = engine();
    const p1: Conv2dParams = { padding: 1 };
    const p2: Conv2dParams = { stride: 2, padding: [0, 1, 0, 1] };
    const w1 = roundF32(randomHost([4, 3, 3, 3], 31));
    const b1 = roundF32(randomHost([4], 32));
    const w2 = roundF32(randomHost([5, 4, 3, 3], 33));
    const xShape = [2, 3, 6, 7];
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    // ∇ₓ⟨u, conv2(silu(conv1(x)))⟩ = conv1ᵀ(silu'(z) ⊙ conv2ᵀ(u)) in float64.
    const refGrad = (x: Host64, u: Host64): Host64 => {
      const z = conv2dRef(x, w1, b1, p1);
      const back = conv2dInputVjpRef(u, w2, z.shape, p2);
      back.data.forEach((gv, i) => (back.data[i] = gv * sig(z.data[i]) * (1 + z.data[i] * (1 - sig(z.data[i])))));
      return conv2dInputVjpRef(back, w1, xShape, p1);
    };
    const outShape = [2, 5, 3, 3];
    for (const variant of availableVariants(e)) {
      const [W1, B1, W2] = [w1, b1, w2].map((h) => e.keep(e.tensor(Float32Array.from(h.data), h.shape)));
      // Two conv contractions of ≤ 36 terms around silu'': f32 rounding ~1e-6 relative.
      await checkHvp(
        e,
        (x) => conv2d(e, [silu(e, [conv2d(e, [x, W1, B1], { ...p1, variant })], {}), W2], { ...p2, variant }),
        randomHost(xShape, 34),
        refGrad,
        outShape,
        2e-5,
      );
      [W1, B1, W2].forEach((t) => t.dispose());
    }
  });

  it('weight gradient over many pixels stays accurate (chunked reduction)', async () => {
    const e = engine();
    const x = roundF32(randomHost([4, 8, 32, 32], 41));
    const gy = roundF32(randomHost([4, 8, 32, 32], 42));
    const want = conv2dWeightVjpRef(x, gy, [8, 8, 3, 3], { padding: 1 });
    for (const variant of availableVariants(e)) {
      const got = await e.scope(async () =>
        conv2dWeightGrad(e, [e.tensor(Float32Array.from(x.data), x.shape), e.tensor(Float32Array.from(gy.data), gy.shape)], {
          padding: 1,
          kernelSize: [3, 3],
          variant,
        }).readF64(),
      );
      // 4096-pixel sums in chunks of ≤ 512: rounding ~√512·2⁻²⁴·(a few) ≈ 1e-6 relative to max|ref|.
      expect(relErr(got, want.data), variant).toBeLessThan(5e-6);
    }
  });

  it('rejects bad shapes with ShapeErrors naming the op', () => {
    const e = engine();
    e.scope(() => {
      const x = e.zeros([1, 3, 5, 5]);
      expect(() => conv2d(e, [x, e.zeros([4, 2, 3, 3])], {})).toThrow(ShapeError);
      expect(() => conv2d(e, [x, e.zeros([4, 3, 3, 3])], { padding: -1 })).toThrow(/conv2d/);
      expect(() => conv2d(e, [x, e.zeros([4, 3, 7, 7])], {})).toThrow(/empty output/);
      expect(() => conv2d(e, [x, e.zeros([4, 3, 3, 3]), e.zeros([5])], {})).toThrow(/bias/);
      expect(() => conv2d(e, [e.zeros([3, 5, 5]), e.zeros([4, 3, 3, 3])], {})).toThrow(/NCHW/);
      expect(() => conv2dInputGrad(e, [e.zeros([1, 4, 3, 3]), e.zeros([4, 3, 3, 3])], { inputSize: [6, 6] })).toThrow(/conv2dInputGrad/);
    });
  });
});

