import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { checkHvp, checkOp, randomHost, relErr, roundF32, type Host64 } from '../helpers/check-op.js';
import {
  channelBroadcast,
  channelSum,
  groupNorm,
  groupNormBackward,
  groupNormGammaGrad,
  groupNormSilu,
  overrideGroupNormWorkgroup,
  scoreSdeGroupNorm,
} from '../../kernels/group-norm.js';
import { silu } from '../../kernels/elementwise.js';
import { channelBroadcastRef } from '../helpers/op-references.js';
import { jvp } from '../../engine/autodiff.js';
import { ShapeError } from '../../engine/errors.js';
import {
  groupNormHvpRef,
  groupNormRef,
  groupNormVjpRef,
} from '../../kernels/reference/group-norm.js';
import { siluRef, siluVjpRef } from '../../kernels/reference/activations.js';

// Tolerances (relative to the max-norm of the reference quantity; ε = 6e-8). x̂ = (x − μ)·r in f32 is a few ulp
// from the float64 value, and μ, var are group sums of ≤ 300 terms here (a few sequential adds per lane, then a
// tree): measured ≤ 3e-7, so 1e-6. Tangents and gradients add a second layer of f32 group sums (ā, b̄ and their
// tangents) with cancellation inside u − ā − x̂·b̄: measured ≤ 6e-7, so 2e-6. Finite differences of the float64
// reference (h = 1e-5) are good to ~1e-9, far below either.
const TOL = { forward: 1e-6, jvp: 2e-6, vjp: 2e-6 };

const zeros = (n: number): Host64 => ({ shape: [n], data: new Float64Array(n) });

const cases: Array<{ shape: number[]; groups: number }> = [
  { shape: [1, 8, 7, 5], groups: 2 },
  { shape: [2, 12, 9, 9], groups: 3 },
  { shape: [3, 8, 4, 4], groups: 8 },
  { shape: [1, 4, 1, 1], groups: 1 },
];

describe('groupNorm', () => {
  const engine = useEngine();

  for (const { shape, groups } of cases) {
    const c = shape[1];
    const p = { groups, eps: 1e-6 };
    const x = randomHost(shape, 11, 2);
    const gamma = randomHost([c], 12);
    const beta = randomHost([c], 13);
    const gy = randomHost(shape, 14);

    it(`forward, JVP (fused dual), VJP on [${shape}] / ${groups} groups`, async () => {
      await checkOp(engine(), {
        op: groupNorm,
        params: p,
        inputs: [x, gamma, beta],
        reference: ([a, g, b]) => groupNormRef(a!, g!, b!, p),
        tol: TOL,
      });
    });

    it(`groupNormSilu (SiLU in the write pass): forward, JVP (fused dual), VJP on [${shape}] / ${groups} groups`, async () => {
      await checkOp(engine(), {
        op: groupNormSilu,
        params: p,
        inputs: [x, gamma, beta],
        reference: ([a, g, b]) => siluRef(groupNormRef(a!, g!, b!, p)),
        // SiLU's slope is ≤ 1.1, so GroupNorm's f32 error passes through at most slightly amplified: same bounds.
        tol: TOL,
      });
    });

    it(`groupNormBackward (fused dual JVP), gamma grad, channel sum on [${shape}]`, async () => {
      const e = engine();
      await checkOp(e, {
        op: groupNormBackward,
        params: p,
        inputs: [x, gamma, gy],
        reference: ([a, g, t]) => groupNormVjpRef(a!, g!, zeros(c), t!, p).x,
        tol: TOL,
      });
      await checkOp(e, {
        op: groupNormGammaGrad,
        params: p,
        inputs: [x, gy],
        reference: ([a, t]) => groupNormVjpRef(a!, gamma, zeros(c), t!, p).gamma,
        tol: TOL,
      });
      await checkOp(e, {
        op: channelSum,
        params: {},
        inputs: [gy],
        reference: ([t]) => groupNormVjpRef(x, gamma, zeros(c), t!, p).beta,
        // Sums of N·S ≤ 162 terms: f32 error well under 1e-6 of the largest.
        tol: { forward: 1e-6, jvp: 1e-6, vjp: 1e-6 },
      });
    });
  }

  // [2,12,5,3] takes the scalar path, [2,12,4,2] the vec4 one (spatial size a multiple of 4).
  for (const shape of [[2, 12, 5, 3], [2, 12, 4, 2]]) it(`the dual of groupNormBackward matches groupNormHvpRef with every tangent on [${shape}]`, async () => {
    const e = engine();
    const p = { groups: 3, eps: 1e-6 };
    const h = (seed: number, s: number[], k = 1) => roundF32(randomHost(s, seed, k));
    const [x, gamma, gy, tx, tgamma, tgy] = [h(1, shape, 3), h(2, [12]), h(3, shape), h(4, shape), h(5, [12]), h(6, shape)];
    const ref = groupNormHvpRef(x, gamma, zeros(12), { x: tx, gamma: tgamma, beta: zeros(12) }, gy, tgy, p);
    await e.scope(async () => {
      const up = (t: Host64) => e.tensor(Float32Array.from(t.data), t.shape);
      const [dx, tdx] = groupNormBackward.def.dual!(e, [up(x), up(gamma), up(gy)], [up(tx), up(tgamma), up(tgy)], p);
      expect(relErr(await dx.readF64(), ref.grad.x.data)).toBeLessThan(TOL.forward);
      expect(relErr(await tdx!.readF64(), ref.gradDot.x.data)).toBeLessThan(TOL.jvp);
    });
  });

  // The unfused pair and the fused op against the same float64 reference (groupNorm → SiLU).
  for (const fused of [false, true]) {
    it(`HVP through ${fused ? 'the fused groupNormSilu' : 'groupNorm → SiLU'} (forward-over-reverse with the fused duals)`, async () => {
      const e = engine();
      for (const { shape, groups } of [
        { shape: [1, 8, 7, 5], groups: 2 },
        { shape: [2, 12, 9, 9], groups: 3 },
        { shape: [2, 16, 4, 4], groups: 4 },
      ]) {
        const c = shape[1];
        const p = { groups, eps: 1e-6 };
        const gamma = roundF32(randomHost([c], 21));
        const beta = roundF32(randomHost([c], 22));
        await e.scope(async () => {
          const g = e.tensor(Float32Array.from(gamma.data), [c]);
          const b = e.tensor(Float32Array.from(beta.data), [c]);
          await checkHvp(
            e,
            (t) => (fused ? groupNormSilu(e, [t, g, b], p) : silu(e, [groupNorm(e, [t, g, b], p)], {})),
            randomHost(shape, 23, 2),
            (xx, u) => groupNormVjpRef(xx, gamma, beta, siluVjpRef(groupNormRef(xx, gamma, beta, p), u), p).x,
            shape,
            // Two f32 group-reduction layers (forward dual, backward dual) with cancellation: measured ≤ 3e-7.
            2e-6,
          );
        });
      }
    });
  }

  it('keeps digits for a large block with a large mean (two-pass variance)', async () => {
    const e = engine();
    // score_sde's widest 32×32 GroupNorm block: C = 128, 32 groups → 4·1024 = 4096 values per (sample, group).
    const shape = [1, 128, 32, 32];
    const p = scoreSdeGroupNorm(128);
    const x = randomHost(shape, 31);
    for (let i = 0; i < x.data.length; i++) x.data[i] = 100 + x.data[i];
    const gamma = randomHost([128], 32);
    const beta = randomHost([128], 33);
    const xr = roundF32(x);
    const ref = groupNormRef(xr, roundF32(gamma), roundF32(beta), p);
    await e.scope(async () => {
      const up = (t: Host64) => e.tensor(Float32Array.from(t.data), t.shape);
      const y = groupNorm(e, [up(xr), up(gamma), up(beta)], p);
      // Values ~100 ± 1: the f32 inputs carry ulp(100) ≈ 8e-6 of a unit standard deviation, exact in the
      // reference too; the E[x²] − E[x]² formula would lose all digits here (var ≈ 1e-4 of E[x²]), and even a
      // two-pass mean rounded to f32 would put ulp(100)/2 ≈ 7e-6·σ into x̂ (measured 2e-6 before the kernel kept
      // μ as pivot + offset; 1.4e-7 after).
      expect(relErr(await y.readF64(), ref.data)).toBeLessThan(1e-6);
    });
  });

  it("the GPU layout (256 lanes per block) on whatever adapter runs the tests", async () => {
    const e = engine();
    overrideGroupNormWorkgroup(256);
    try {
      for (const { shape, groups } of [
        { shape: [2, 12, 9, 9], groups: 3 },
        { shape: [2, 16, 8, 8], groups: 4 },
      ]) {
        const p = { groups, eps: 1e-6 };
        const c = shape[1];
        await checkOp(e, {
          op: groupNorm,
          params: p,
          inputs: [randomHost(shape, 51, 2), randomHost([c], 52), randomHost([c], 53)],
          reference: ([a, g, b]) => groupNormRef(a!, g!, b!, p),
          tol: TOL,
        });
        await checkOp(e, {
          op: groupNormBackward,
          params: p,
          inputs: [randomHost(shape, 54, 2), randomHost([c], 55), randomHost(shape, 56)],
          reference: ([a, g, t]) => groupNormVjpRef(a!, g!, zeros(c), t!, p).x,
          tol: TOL,
        });
      }
    } finally {
      overrideGroupNormWorkgroup(null);
    }
  });

  it('channelBroadcast is channelSum transposed', async () => {
    const e = engine();
    const w = randomHost([6], 41);
    await checkOp(e, {
      op: channelBroadcast,
      params: { shape: [2, 6, 3, 1] },
      inputs: [w],
      reference: ([t]) => channelBroadcastRef(t!, [2, 6, 3, 1], 1),
      tol: { forward: 0, jvp: 1e-6, vjp: 1e-6 },
    });
  });

  it('rejects bad shapes with the op and tensor named', () => {
    const e = engine();
    e.scope(() => {
      const x = e.zeros([2, 6, 3, 3]);
      expect(() => groupNorm(e, [x, e.zeros([6]), e.zeros([6])], { groups: 4, eps: 1e-6 })).toThrow(ShapeError);
      expect(() => groupNorm(e, [x, e.zeros([5]), null], { groups: 3, eps: 1e-6 })).toThrow(/groupNorm gamma/);
      expect(() => groupNormBackward(e, [x, e.zeros([6]), e.zeros([2, 6, 9])], { groups: 3, eps: 1e-6 })).toThrow(
        /cotangent/,
      );
      void jvp;
    });
  });
});
