// Checks the float64 SiLU / softmax, reduction and time-embedding references: forward against known values and
// naive formulas, JVP against central differences, VJP against the JVP through ⟨J v, u⟩ = ⟨v, Jᵀ u⟩, and the
// second-order (JVP-of-VJP) pieces against central differences of the VJP.
//
// Tolerances. Central differences with h = 1e-5 have truncation error h²/6·|f'''| ≈ 1e-11 and roundoff
// ≈ 1e-16·|f|/h ≈ 1e-11 for O(1) values (the embeddings' |f'''| ≤ max f³ = 1), so relative 1e-6 has wide margin yet
// catches any wrong term. The dot-product identity compares two float64 evaluations of one number: relative 1e-12
// of the Cauchy–Schwarz scale ‖Jv‖·‖u‖.
import { describe, expect, it } from 'vitest';
import {
  sigmoid,
  siluDerivatives,
  siluHvpRef,
  siluJvpRef,
  siluRef,
  siluVjpRef,
  softmaxHvpRef,
  softmaxJvpRef,
  softmaxRef,
  softmaxVjpRef,
} from '../../../kernels/reference/activations.js';
import {
  gaussianFourierJvpRef,
  gaussianFourierRef,
  gaussianFourierVjpRef,
  gaussianFourierWeights,
  timestepEmbeddingJvpRef,
  timestepEmbeddingRef,
  timestepEmbeddingVjpRef,
} from '../../../kernels/reference/embeddings.js';
import { t64, type T64 } from '../../../kernels/reference/norm-types.js';
import {
  logSumExpHvpRef,
  logSumExpJvpRef,
  logSumExpRef,
  logSumExpVjpRef,
  perSampleDotHvpRef,
  perSampleDotJvpRef,
  perSampleDotRef,
  perSampleDotVjpRef,
  perSampleSumJvpRef,
  perSampleSumRef,
  perSampleSumSqHvpRef,
  perSampleSumSqJvpRef,
  perSampleSumSqRef,
  perSampleSumSqVjpRef,
  perSampleSumVjpRef,
} from '../../../kernels/reference/reductions.js';

import { normalSampler, randT, flat, dot, norm, relErr, centralDiff, axpy, expectDotIdentity } from '../../helpers/reference-fd.js';

const FD_TOL = 1e-6;
const shapes: number[][] = [[1, 1], [7], [2, 3, 5], [3, 1, 4, 2]];

/** A unary elementwise-or-row op with all four rules, checked the same way. */
interface UnaryOp {
  f: (x: T64) => T64;
  vjp: (x: T64, g: T64) => T64;
  jvp: (x: T64, xDot: T64) => { primal: T64; tangent: T64 };
  hvp: (x: T64, xDot: T64, g: T64, gDot: T64) => { grad: T64; gradDot: T64 };
}

function checkUnary(op: UnaryOp, seed: number, scale: number): void {
  for (const [i, shape] of shapes.entries()) {
    const r = normalSampler(seed + i);
    const x = randT(shape, r, scale);
    const xd = randT(shape, r);
    const jvp = op.jvp(x, xd);
    expect(relErr(jvp.primal.data, op.f(x).data)).toBe(0);
    expect(relErr(jvp.tangent.data, centralDiff((s) => op.f(axpy(x, xd, s)).data))).toBeLessThan(FD_TOL);
    const u = randT(shape, r);
    expectDotIdentity(jvp.tangent.data, u.data, xd.data, op.vjp(x, u).data);
    const ud = randT(shape, r);
    const hvp = op.hvp(x, xd, u, ud);
    expect(relErr(hvp.grad.data, op.vjp(x, u).data)).toBeLessThan(1e-15);
    const fd = centralDiff((s) => op.vjp(axpy(x, xd, s), axpy(u, ud, s)).data);
    expect(relErr(hvp.gradDot.data, fd)).toBeLessThan(FD_TOL);
  }
}

describe('SiLU', () => {
  it('matches known values and stays finite at large |x|', () => {
    const y = siluRef(t64([5], new Float64Array([0, 1, -1, 800, -800])));
    expect(y.data[0]).toBe(0);
    expect(y.data[1]).toBeCloseTo(0.7310585786300049, 15);
    expect(y.data[2]).toBeCloseTo(-0.2689414213699951, 15);
    expect(y.data[3]).toBe(800);
    expect(y.data[4] === 0).toBe(true);
    expect(sigmoid(-800)).toBe(0);
    expect(siluDerivatives(0)).toEqual({ value: 0, d1: 0.5, d2: 0.5 });
  });

  it('silu\'\' matches central differences of silu\'', () => {
    for (const x of [-7.5, -2, -0.3, 0, 0.4, 3, 9]) {
      const fd = (siluDerivatives(x + 1e-5).d1 - siluDerivatives(x - 1e-5).d1) / 2e-5;
      expect(Math.abs(fd - siluDerivatives(x).d2)).toBeLessThan(1e-9);
    }
  });

  it('JVP, VJP and JVP-of-VJP agree with finite differences and each other', () => {
    checkUnary({ f: siluRef, vjp: siluVjpRef, jvp: siluJvpRef, hvp: siluHvpRef }, 1000, 3);
  });
});

describe('softmax (last axis)', () => {
  it('rows sum to 1, is shift invariant and stable for large logits', () => {
    const r = normalSampler(5);
    const x = randT([3, 4, 6], r, 2);
    const y = softmaxRef(x);
    for (let o = 0; o < y.data.length; o += 6) {
      expect(Math.abs(y.data.subarray(o, o + 6).reduce((a, v) => a + v, 0) - 1)).toBeLessThan(1e-15);
    }
    const shifted = t64(x.shape, x.data.map((v, i) => v + 1000 * Math.floor(i / 6)));
    expect(relErr(softmaxRef(shifted).data, y.data)).toBeLessThan(1e-12);
    const big = softmaxRef(t64([2], new Float64Array([1000, 1000])));
    expect(Array.from(big.data)).toEqual([0.5, 0.5]);
    const naive = x.data.slice(0, 6).map(Math.exp);
    const z = naive.reduce((a, v) => a + v, 0);
    expect(relErr(y.data.slice(0, 6), naive.map((v) => v / z))).toBeLessThan(1e-15);
  });

  it('JVP, VJP and JVP-of-VJP agree with finite differences and each other', () => {
    checkUnary({ f: softmaxRef, vjp: softmaxVjpRef, jvp: softmaxJvpRef, hvp: softmaxHvpRef }, 2000, 2);
  });
});

describe('per-sample reductions', () => {
  const redShapes: number[][] = [[1, 5], [3, 2, 3], [2, 1, 3, 3], [4]];

  it('forward matches naive sums', () => {
    const r = normalSampler(11);
    const a = randT([3, 2, 5], r);
    const b = randT([3, 2, 5], r);
    for (let n = 0; n < 3; n++) {
      let d = 0;
      let s = 0;
      let q = 0;
      for (let j = 0; j < 10; j++) {
        d += a.data[n * 10 + j] * b.data[n * 10 + j];
        s += a.data[n * 10 + j];
        q += a.data[n * 10 + j] ** 2;
      }
      expect(perSampleDotRef(a, b).data[n]).toBeCloseTo(d, 14);
      expect(perSampleSumRef(a).data[n]).toBeCloseTo(s, 14);
      expect(perSampleSumSqRef(a).data[n]).toBeCloseTo(q, 14);
    }
    expect(perSampleDotRef(a, b).shape).toEqual([3]);
  });

  it('dot: JVP, VJP and JVP-of-VJP', () => {
    for (const [i, shape] of redShapes.entries()) {
      const r = normalSampler(3000 + i);
      const [a, b, ad, bd] = [randT(shape, r), randT(shape, r), randT(shape, r), randT(shape, r)];
      const jvp = perSampleDotJvpRef(a, b, ad, bd);
      const fd = centralDiff((s) => perSampleDotRef(axpy(a, ad, s), axpy(b, bd, s)).data);
      expect(relErr(jvp.tangent.data, fd)).toBeLessThan(FD_TOL);
      const g = randT([shape[0]], r);
      const vjp = perSampleDotVjpRef(a, b, g);
      expectDotIdentity(jvp.tangent.data, g.data, flat([ad, bd]), flat([vjp.a, vjp.b]));
      const gd = randT([shape[0]], r);
      const hvp = perSampleDotHvpRef(a, b, ad, bd, g, gd);
      const fdh = centralDiff((s) => {
        const v = perSampleDotVjpRef(axpy(a, ad, s), axpy(b, bd, s), axpy(g, gd, s));
        return flat([v.a, v.b]);
      });
      expect(relErr(flat([hvp.gradDot.a, hvp.gradDot.b]), fdh)).toBeLessThan(FD_TOL);
      expect(relErr(flat([hvp.grad.a, hvp.grad.b]), flat([vjp.a, vjp.b]))).toBe(0);
    }
  });

  it('sum and sum of squares: JVP, VJP (and JVP-of-VJP for the squares)', () => {
    for (const [i, shape] of redShapes.entries()) {
      const r = normalSampler(4000 + i);
      const [x, xd] = [randT(shape, r), randT(shape, r)];
      const g = randT([shape[0]], r);
      const sj = perSampleSumJvpRef(x, xd);
      expect(relErr(sj.tangent.data, centralDiff((s) => perSampleSumRef(axpy(x, xd, s)).data))).toBeLessThan(FD_TOL);
      expectDotIdentity(sj.tangent.data, g.data, xd.data, perSampleSumVjpRef(x, g).data);

      const qj = perSampleSumSqJvpRef(x, xd);
      expect(relErr(qj.tangent.data, centralDiff((s) => perSampleSumSqRef(axpy(x, xd, s)).data))).toBeLessThan(FD_TOL);
      expectDotIdentity(qj.tangent.data, g.data, xd.data, perSampleSumSqVjpRef(x, g).data);
      const gd = randT([shape[0]], r);
      const hvp = perSampleSumSqHvpRef(x, xd, g, gd);
      const fd = centralDiff((s) => perSampleSumSqVjpRef(axpy(x, xd, s), axpy(g, gd, s)).data);
      expect(relErr(hvp.gradDot.data, fd)).toBeLessThan(FD_TOL);
    }
  });
});

describe('logsumexp', () => {
  it('matches the naive formula, is stable for large values and handles all −∞', () => {
    const r = normalSampler(21);
    const x = randT([3, 4, 5], r);
    const y = logSumExpRef(x, 1);
    expect(y.shape).toEqual([3, 5]);
    for (let o = 0; o < 3; o++) {
      for (let i = 0; i < 5; i++) {
        let z = 0;
        for (let l = 0; l < 4; l++) z += Math.exp(x.data[(o * 4 + l) * 5 + i]);
        expect(y.data[o * 5 + i]).toBeCloseTo(Math.log(z), 14);
      }
    }
    expect(logSumExpRef(t64([2], new Float64Array([1000, 1000])), 0).data[0]).toBeCloseTo(1000 + Math.LN2, 12);
    const inf = logSumExpRef(t64([1, 2], new Float64Array([-Infinity, -Infinity])), -1);
    expect(inf.data[0]).toBe(-Infinity);
    expect(logSumExpRef(t64([1, 2], new Float64Array([-Infinity, 0])), 1).data[0]).toBe(0);
  });

  it('JVP, VJP and JVP-of-VJP over every axis', () => {
    const shape = [3, 4, 5];
    for (const axis of [0, 1, 2, -1]) {
      const r = normalSampler(5000 + axis);
      const [x, xd] = [randT(shape, r, 2), randT(shape, r)];
      const outShape = shape.filter((_, i) => i !== (axis + 3) % 3);
      const [g, gd] = [randT(outShape, r), randT(outShape, r)];
      const jvp = logSumExpJvpRef(x, axis, xd);
      expect(relErr(jvp.tangent.data, centralDiff((s) => logSumExpRef(axpy(x, xd, s), axis).data))).toBeLessThan(FD_TOL);
      expectDotIdentity(jvp.tangent.data, g.data, xd.data, logSumExpVjpRef(x, axis, g).data);
      const hvp = logSumExpHvpRef(x, axis, xd, g, gd);
      const fd = centralDiff((s) => logSumExpVjpRef(axpy(x, xd, s), axis, axpy(g, gd, s)).data);
      expect(relErr(hvp.gradDot.data, fd)).toBeLessThan(FD_TOL);
    }
  });
});

describe('time embeddings', () => {
  it('sinusoidal embedding of t = 0 is [0…, 1…], odd dims get a zero pad', () => {
    const y = timestepEmbeddingRef(t64([2], new Float64Array([0, 0])), 8);
    expect(Array.from(y.data.subarray(0, 8))).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    const odd = timestepEmbeddingRef(t64([1], new Float64Array([0.37])), 7);
    expect(odd.shape).toEqual([1, 7]);
    expect(odd.data[6]).toBe(0);
    expect(() => timestepEmbeddingRef(t64([1]), 3)).toThrow(/dim/);
  });

  it('sinusoidal frequencies are 10000^(−k/(half−1))', () => {
    // dim 6: half 3, frequencies 1, 1e-2, 1e-4.
    const t = 998.001;
    const y = timestepEmbeddingRef(t64([1], new Float64Array([t])), 6);
    const f = [1, 1e-2, 1e-4];
    const want = [...f.map((v) => Math.sin(t * v)), ...f.map((v) => Math.cos(t * v))];
    expect(relErr(y.data, new Float64Array(want))).toBeLessThan(1e-13);
  });

  it('Gaussian Fourier projection: [sin(2πtW), cos(2πtW)]', () => {
    const W = gaussianFourierWeights(3, 16, normalSampler(9));
    const t = t64([2], new Float64Array([0, 0.25]));
    const y = gaussianFourierRef(t, W);
    expect(y.shape).toEqual([2, 6]);
    // + 0 folds sin(−0) = −0 (negative W) into 0.
    expect(Array.from(y.data.subarray(0, 6), (v) => v + 0)).toEqual([0, 0, 0, 1, 1, 1]);
    for (let k = 0; k < 3; k++) {
      expect(y.data[6 + k]).toBeCloseTo(Math.sin(2 * Math.PI * 0.25 * W.data[k]), 14);
      expect(y.data[9 + k]).toBeCloseTo(Math.cos(2 * Math.PI * 0.25 * W.data[k]), 14);
    }
  });

  it('JVP and VJP with respect to t', () => {
    const r = normalSampler(6000);
    // Continuous VP feeds 999·t with t ∈ (0, 1]; batch 1 and an odd dim are included.
    for (const [n, dim] of [[1, 7], [3, 16], [2, 10]]) {
      const t = t64([n], new Float64Array(n).map(() => 999 * Math.abs(r()) / 3));
      const td = randT([n], r);
      const jvp = timestepEmbeddingJvpRef(t, td, dim);
      const fd = centralDiff((s) => timestepEmbeddingRef(axpy(t, td, s), dim).data);
      expect(relErr(jvp.tangent.data, fd)).toBeLessThan(FD_TOL);
      const g = randT([n, dim], r);
      expectDotIdentity(jvp.tangent.data, g.data, td.data, timestepEmbeddingVjpRef(t, g).data);

      const W = gaussianFourierWeights(dim, 1, r);
      const ft = t64([n], t.data.map((v) => Math.log(v)));
      const fj = gaussianFourierJvpRef(ft, W, td);
      const ffd = centralDiff((s) => gaussianFourierRef(axpy(ft, td, s), W).data);
      expect(relErr(fj.tangent.data, ffd)).toBeLessThan(FD_TOL);
      const fg = randT([n, 2 * dim], r);
      expectDotIdentity(fj.tangent.data, fg.data, td.data, gaussianFourierVjpRef(ft, W, fg).data);
    }
  });
});
