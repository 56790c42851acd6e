import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { checkHvp, checkOp, randomHost, type Host64 } from '../helpers/check-op.js';
import {
  gaussianFourierProjection,
  gaussianFourierWeights,
  oneHot,
  sinusoidContract,
  sinusoidEmbed,
  timestepEmbedding,
  timestepFrequencies,
} from '../../kernels/embeddings.js';
import {
  gaussianFourierRef,
  timestepEmbeddingRef,
  timestepEmbeddingVjpRef,
  timestepFrequencies as timestepFrequencies64,
} from '../../kernels/reference/embeddings.js';
import { sinusoidContractRef, sinusoidDerivRef } from '../helpers/op-references.js';
import { jvp, vjp } from '../../engine/autodiff.js';
import { DTypeError, SbgcError, ShapeError } from '../../engine/errors.js';

const TWO_PI_F32 = Math.fround(2 * Math.PI);

const host = (data: ArrayLike<number>, shape: number[]): Host64 => ({ shape, data: Float64Array.from(data) });

// sin/cos of |a| ≤ 1 with the reduction + Cephes polynomials: ≤ 2 ulp, and the f32 angle t·f adds ≤ 1 ulp of a:
// 3e-7 of the max-norm (1) for values and tangents (f ≤ 1; observed 7e-8). VJPs sum ≤ 64 such terms per sample: 2e-6.
const TOL = { forward: 3e-7, jvp: 3e-7, vjp: 2e-6 };

describe('time embeddings and one-hot labels', () => {
  const engine = useEngine();

  it('frequencies are score_sde’s, rounded once to f32', () => {
    for (const dim of [4, 7, 128]) {
      expect(Array.from(timestepFrequencies(dim))).toEqual(Array.from(Float32Array.from(timestepFrequencies64(dim))));
    }
    expect(() => timestepFrequencies(3)).toThrow(/dim must be an integer ≥ 4/);
  });

  for (const [n, dim] of [[1, 4], [3, 7], [5, 128]]) {
    it(`timestep embedding N=${n}, dim=${dim} (odd dim: zero last column)`, async () => {
      const e = engine();
      const f = host(timestepFrequencies(dim), [Math.floor(dim / 2)]);
      await checkOp(e, {
        op: sinusoidEmbed,
        params: { order: 0, angleScale: 1, dim },
        inputs: [randomHost([n], 70 + n), f, null],
        differentiable: [true, false, false],
        reference: ([t]) => timestepEmbeddingRef(t!, dim),
        tol: TOL,
      });
    });
  }

  it('t = 0 and t = 999: exact at 0, accurate sin/cos of the f32 angle up to |a| = 999', async () => {
    const e = engine();
    const dim = 128;
    const ts = [0, 999, 998.5, 0.001, 500.25];
    const y = await timestepEmbedding(e, e.tensor(ts, [ts.length]), dim).readF64();
    const f32 = timestepFrequencies(dim);
    const h = dim / 2;
    // t = 0: sin 0 = 0 and cos 0 = 1 exactly.
    for (let k = 0; k < h; k++) {
      expect(y[k]).toBe(0);
      expect(y[h + k]).toBe(1);
    }
    let errF32Angle = 0;
    let errExact = 0;
    const exact = timestepEmbeddingRef({ shape: [ts.length], data: Float64Array.from(ts) }, dim);
    ts.forEach((t, i) => {
      for (let k = 0; k < h; k++) {
        const a = Math.fround(Math.fround(t) * f32[k]); // the angle score_sde's f32 code computes
        errF32Angle = Math.max(errF32Angle, Math.abs(y[i * dim + k] - Math.sin(a)), Math.abs(y[i * dim + h + k] - Math.cos(a)));
        errExact = Math.max(errExact, Math.abs(y[i * dim + k] - exact.data[i * dim + k]));
      }
    });
    // Against the f32 angle: reduction (j·parts exact for |j| < 2048) + polynomial, ≤ 2 ulp of |r| ≤ π/4.
    expect(errF32Angle).toBeLessThan(3e-7);
    // Against the exact float64 angle: f and t·f are each rounded to f32, ≤ 2·|a|·2⁻²⁴ = 1.2e-4 at |a| = 999.
    expect(errExact).toBeLessThan(1.2e-4);
  });

  it('Gaussian Fourier projection (differentiable in t; W constant)', async () => {
    const e = engine();
    const m = 8;
    const W = randomHost([m], 81); // |W| < 1 here so |a| < 2π·|t|·|W| ≤ 6.3: three f32 roundings of a ≤ 1.1e-6
    await checkOp(e, {
      op: sinusoidEmbed,
      params: { order: 0, angleScale: TWO_PI_F32, dim: 2 * m },
      inputs: [randomHost([4], 82), W, null],
      differentiable: [true, false, false],
      reference: ([t, w]) => gaussianFourierRef(t!, w!),
      // Values: 1.1e-6 + 2 ulp; tangents carry the factor 2πW ≤ 6.3 (relative to a max-norm of the same size).
      tol: { forward: 1.5e-6, jvp: 1.5e-6, vjp: 3e-6 },
    });
    // The public wrapper, with score_sde's scale 16 weights: |a| ≤ 2π·16·4·|t| ≈ 400, checked against the f32 angle.
    const w16 = gaussianFourierWeights(e, m, 16, 7);
    const t = e.tensor([0, 0.25, 0.9], [3]);
    const [y, wv] = await Promise.all([gaussianFourierProjection(e, t, w16).readF64(), w16.readF64()]);
    let err = 0;
    [0, 0.25, 0.9].forEach((tv, i) => {
      for (let k = 0; k < m; k++) {
        const a = Math.fround(Math.fround(Math.fround(tv) * wv[k]) * TWO_PI_F32); // (t·W)·2π in f32
        err = Math.max(err, Math.abs(y[i * 2 * m + k] - Math.sin(a)), Math.abs(y[i * 2 * m + m + k] - Math.cos(a)));
      }
    });
    expect(err).toBeLessThan(3e-7);
    // W is frozen (requires_grad=False): no gradient on a tape, and a tangent on it is rejected, not dropped.
    const ones = e.tensor(new Float32Array(3 * 2 * m).fill(1), [3, 2 * m]);
    expect(vjp(e, (ww) => gaussianFourierProjection(e, t, ww), [w16]).backward(ones)[0]).toBeNull();
    expect(() => jvp(e, (ww) => gaussianFourierProjection(e, t, ww), [w16], [w16])).toThrow(/constants/);
  });

  // Derivative ops of every order, with the scale input s / the contracted g differentiable as well as t.
  for (const order of [1, 2]) {
    it(`derivative ops of order ${order} (D_m with s, R_m with g)`, async () => {
      const e = engine();
      const dim = 9;
      const f = host(timestepFrequencies(dim), [4]);
      const t = randomHost([3], 90 + order);
      const s = randomHost([3], 92 + order);
      const g = randomHost([3, dim], 94 + order);
      // f ≤ 1: same per-element bounds as the embedding; R sums 8 terms: 1e-6.
      const tol = { forward: 1e-6, jvp: 1e-6, vjp: 2e-6 };
      await checkOp(e, {
        op: sinusoidEmbed,
        params: { order, angleScale: 1, dim },
        inputs: [t, f, s],
        differentiable: [true, false, true],
        reference: ([a, b, c]) => sinusoidDerivRef(a!, b!, c, order, 1, dim),
        tol,
      });
      await checkOp(e, {
        op: sinusoidContract,
        params: { order: order - 1, angleScale: 1, dim },
        inputs: [t, f, g],
        differentiable: [true, false, true],
        reference: ([a, b, c]) => sinusoidContractRef(a!, b!, c!, order - 1, 1, dim),
        tol,
      });
    });
  }

  it('forward-over-reverse in t (HVP of ⟨u, E(t)⟩)', async () => {
    const e = engine();
    const dim = 16;
    // The HVP is ṫ·R₂(t, u): 8 terms of size ≤ 1: 2e-6.
    await checkHvp(e, (t) => timestepEmbedding(e, t, dim), randomHost([3], 99), (t, u) => timestepEmbeddingVjpRef(t, u), [3, dim], 2e-6);
  });

  it('oneHot: host labels validated, device labels never written out of bounds (NaN row)', async () => {
    const e = engine();
    expect(Array.from(await oneHot(e, [2, 0, 1], 3).readF64())).toEqual([0, 0, 1, 1, 0, 0, 0, 1, 0]);
    expect(() => oneHot(e, [0, 10], 10)).toThrow(ShapeError);
    expect(() => oneHot(e, [0, 10], 10)).toThrow(/label 1 is 10, outside \[0, 10\)/);
    expect(() => oneHot(e, [0.5], 10)).toThrow(/label 0 is 0.5/);
    expect(() => oneHot(e, e.tensor([1], [1], 'f32', 'y'), 10)).toThrow(DTypeError);
    expect(() => oneHot(e, [1], 0)).toThrow(/numClasses/);
    const dev = await oneHot(e, e.tensor([1, 7, 0], [3], 'u32', 'y'), 4).readF64();
    expect(Array.from(dev.slice(0, 4))).toEqual([0, 1, 0, 0]);
    expect(Array.from(dev.slice(4, 8)).every(Number.isNaN)).toBe(true);
    expect(Array.from(dev.slice(8))).toEqual([1, 0, 0, 0]);
  });

  it('clear errors for bad shapes', () => {
    const e = engine();
    expect(() => timestepEmbedding(e, e.zeros([2, 1], 'f32', 'time'), 8)).toThrow(/t time\[2×1\] f32 must be 1-D/);
    expect(() => timestepEmbedding(e, e.zeros([2], 'f32'), 2)).toThrow(ShapeError);
    expect(() => sinusoidEmbed(e, [e.zeros([2]), e.zeros([4]), null], { order: 0, angleScale: 1, dim: 10 })).toThrow(/dim 10/);
    expect(() => sinusoidEmbed(e, [e.zeros([2]), e.zeros([4]), null], { order: -1, angleScale: 1, dim: 8 })).toThrow(SbgcError);
  });
});
