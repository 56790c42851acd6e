// Checks the float64 GroupNorm and AttnBlockpp references: forward against independent naive loops, JVP against
// central differences, VJP against the JVP through ⟨J v, u⟩ = ⟨v, Jᵀ u⟩, and the forward-over-reverse HVP against
// central differences of the VJP plus Hessian symmetry.
//
// Tolerances. Central differences with h = 1e-5 on these smooth maps have truncation error h²/6·|f'''| ≈ 1e-11 and
// roundoff ≈ 1e-16·|f|/h ≈ 1e-11 for O(1) values, so a relative 1e-6 leaves five orders of margin while still
// catching any wrong term (those show up at 1e-2 or worse). The dot-product identity and Hessian symmetry compare
// two exact float64 evaluations of the same number, so only summation roundoff separates them: relative 1e-12 of
// the Cauchy–Schwarz scale ‖Jv‖·‖u‖.
import { describe, expect, it } from 'vitest';
import {
  attnBlockHvpRef,
  attnBlockJvpRef,
  attnBlockRef,
  attnBlockVjpRef,
  attnParamTensors,
  type AttnParams,
} from '../../../kernels/reference/attention.js';
import {
  groupNormHvpRef,
  groupNormJvpRef,
  groupNormRef,
  groupNormVjpRef,
  scoreSdeGroups,
  type GroupNormGrads,
} from '../../../kernels/reference/group-norm.js';
import { t64, type T64 } from '../../../kernels/reference/norm-types.js';

import { normalSampler, randT, flat, dot, norm, relErr, centralDiff, axpy, expectDotIdentity } from '../../helpers/reference-fd.js';

const FD_TOL = 1e-6;

// ---- GroupNorm ----

/** Independent naive GroupNorm: explicit (n, c, s) indexing, statistics gathered channel by channel. */
function naiveGroupNorm(x: T64, gamma: T64, beta: T64, groups: number, eps: number): T64 {
  const [n, c] = x.shape;
  const s = x.data.length / (n * c);
  const cpg = c / groups;
  const y = t64(x.shape);
  for (let ni = 0; ni < n; ni++) {
    for (let g = 0; g < groups; g++) {
      const vals: number[] = [];
      for (let ci = g * cpg; ci < (g + 1) * cpg; ci++) for (let k = 0; k < s; k++) vals.push(x.data[(ni * c + ci) * s + k]);
      const mean = vals.reduce((a, v) => a + v, 0) / vals.length;
      const variance = vals.reduce((a, v) => a + (v - mean) * (v - mean), 0) / vals.length;
      for (let ci = g * cpg; ci < (g + 1) * cpg; ci++) {
        for (let k = 0; k < s; k++) {
          const i = (ni * c + ci) * s + k;
          y.data[i] = ((x.data[i] - mean) / Math.sqrt(variance + eps)) * gamma.data[ci] + beta.data[ci];
        }
      }
    }
  }
  return y;
}

const gnCases: { shape: number[]; groups: number; eps: number }[] = [
  { shape: [1, 12, 3, 5], groups: 3, eps: 1e-6 },
  { shape: [2, 8, 1, 7], groups: scoreSdeGroups(8), eps: 1e-6 },
  { shape: [3, 4, 2, 3], groups: 1, eps: 1e-6 },
  { shape: [2, 6, 5], groups: 3, eps: 1e-3 },
  { shape: [1, 16, 3, 3], groups: 16, eps: 1e-6 },
];

function gnInputs(shape: number[], seed: number): { x: T64; gamma: T64; beta: T64 } {
  const r = normalSampler(seed);
  const c = shape[1];
  return { x: randT(shape, r, 1.5), gamma: randT([c], r), beta: randT([c], r) };
}
function gnTangents(shape: number[], seed: number): GroupNormGrads {
  const r = normalSampler(seed);
  return { x: randT(shape, r), gamma: randT([shape[1]], r), beta: randT([shape[1]], r) };
}
const gnFlat = (g: GroupNormGrads): Float64Array => flat([g.x, g.gamma, g.beta]);

describe('groupNormRef', () => {
  it('normalises each group to zero mean and unit variance when gamma = 1, beta = 0', () => {
    const shape = [2, 12, 3, 5];
    const { x } = gnInputs(shape, 1);
    const ones = t64([12], new Float64Array(12).fill(1));
    const y = groupNormRef(x, ones, t64([12]), { groups: 4, eps: 0 });
    const m = 3 * 3 * 5;
    for (let b = 0; b < 2 * 4; b++) {
      const blk = y.data.subarray(b * m, (b + 1) * m);
      const mean = blk.reduce((a, v) => a + v, 0) / m;
      const variance = blk.reduce((a, v) => a + (v - mean) ** 2, 0) / m;
      expect(Math.abs(mean)).toBeLessThan(1e-14);
      expect(Math.abs(variance - 1)).toBeLessThan(1e-13);
    }
  });

  it('matches a naive implementation', () => {
    for (const [i, c] of gnCases.entries()) {
      const { x, gamma, beta } = gnInputs(c.shape, 10 + i);
      const y = groupNormRef(x, gamma, beta, c);
      expect(relErr(y.data, naiveGroupNorm(x, gamma, beta, c.groups, c.eps).data)).toBeLessThan(1e-13);
    }
  });

  it('rejects channels not divisible by the group count', () => {
    const { x, gamma, beta } = gnInputs([1, 6, 2, 2], 3);
    expect(() => groupNormRef(x, gamma, beta, { groups: 4, eps: 1e-6 })).toThrow(/groups/);
  });

  it('JVP matches central differences; VJP satisfies the dot-product identity', () => {
    for (const [i, c] of gnCases.entries()) {
      const { x, gamma, beta } = gnInputs(c.shape, 20 + i);
      const t = gnTangents(c.shape, 30 + i);
      const jvp = groupNormJvpRef(x, gamma, beta, t, c);
      expect(relErr(jvp.primal.data, groupNormRef(x, gamma, beta, c).data)).toBe(0);
      const fd = centralDiff((s) => groupNormRef(axpy(x, t.x, s), axpy(gamma, t.gamma, s), axpy(beta, t.beta, s), c).data);
      expect(relErr(jvp.tangent.data, fd)).toBeLessThan(FD_TOL);

      const u = randT(c.shape, normalSampler(40 + i));
      const vjp = groupNormVjpRef(x, gamma, beta, u, c);
      expectDotIdentity(jvp.tangent.data, u.data, gnFlat(t), gnFlat(vjp));
    }
  });

  it('HVP (JVP of the VJP) matches central differences of the VJP and is symmetric', () => {
    for (const [i, c] of gnCases.entries()) {
      const { x, gamma, beta } = gnInputs(c.shape, 50 + i);
      const t = gnTangents(c.shape, 60 + i);
      const r = normalSampler(70 + i);
      const gy = randT(c.shape, r);
      const gyDot = randT(c.shape, r);
      const hvp = groupNormHvpRef(x, gamma, beta, t, gy, gyDot, c);
      expect(relErr(gnFlat(hvp.grad), gnFlat(groupNormVjpRef(x, gamma, beta, gy, c)))).toBeLessThan(1e-15);
      const fd = centralDiff((s) =>
        gnFlat(groupNormVjpRef(axpy(x, t.x, s), axpy(gamma, t.gamma, s), axpy(beta, t.beta, s), axpy(gy, gyDot, s), c)),
      );
      expect(relErr(gnFlat(hvp.gradDot), fd)).toBeLessThan(FD_TOL);

      // With gyDot = 0, gradDot = H·t for the Hessian H of ⟨gy, GN(x, γ, β)⟩, which must be symmetric.
      const t2 = gnTangents(c.shape, 80 + i);
      const zero = t64(c.shape);
      const h1 = gnFlat(groupNormHvpRef(x, gamma, beta, t, gy, zero, c).gradDot);
      const h2 = gnFlat(groupNormHvpRef(x, gamma, beta, t2, gy, zero, c).gradDot);
      expectDotIdentity(h1, gnFlat(t2), gnFlat(t), h2);
    }
  });
});

// ---- AttnBlockpp ----

function randParams(c: number, randn: () => number, zeroOut = false): AttnParams {
  const w = (): T64 => randT([c, c], randn, 1 / Math.sqrt(c));
  const nin = (): { W: T64; b: T64 } => ({ W: w(), b: randT([c], randn, 0.3) });
  return {
    gamma: t64([c], randT([c], randn, 0.5).data.map((v) => 1 + v)),
    beta: randT([c], randn, 0.3),
    nin0: nin(),
    nin1: nin(),
    nin2: nin(),
    nin3: zeroOut ? { W: t64([c, c]), b: t64([c]) } : nin(),
  };
}
function axpyParams(p: AttnParams, t: AttnParams, s: number): AttnParams {
  const nin = (a: AttnParams['nin0'], b: AttnParams['nin0']): AttnParams['nin0'] => ({ W: axpy(a.W, b.W, s), b: axpy(a.b, b.b, s) });
  return {
    gamma: axpy(p.gamma, t.gamma, s),
    beta: axpy(p.beta, t.beta, s),
    nin0: nin(p.nin0, t.nin0),
    nin1: nin(p.nin1, t.nin1),
    nin2: nin(p.nin2, t.nin2),
    nin3: nin(p.nin3, t.nin3),
  };
}
const attnFlat = (g: { x: T64; params: AttnParams }): Float64Array => flat([g.x, ...attnParamTensors(g.params)]);

/** Independent naive AttnBlockpp on nested arrays, following score_sde's einsums literally. */
function naiveAttn(x: T64, p: AttnParams, skipRescale: boolean): T64 {
  const [n, c, hh, ww] = x.shape;
  const s = hh * ww;
  const h = naiveGroupNorm(x, p.gamma, p.beta, Math.min(Math.floor(c / 4), 32), 1e-6);
  const at = (t: T64, ni: number, ci: number, k: number): number => t.data[(ni * c + ci) * s + k];
  const nin = (t: T64, q: AttnParams['nin0']): number[][][] =>
    Array.from({ length: n }, (_, ni) =>
      Array.from({ length: c }, (_, o) =>
        Array.from({ length: s }, (_, k) => {
          let v = q.b.data[o];
          for (let ci = 0; ci < c; ci++) v += q.W.data[ci * c + o] * at(t, ni, ci, k);
          return v;
        }),
      ),
    );
  const q = nin(h, p.nin0);
  const k = nin(h, p.nin1);
  const v = nin(h, p.nin2);
  const a = t64(x.shape);
  for (let ni = 0; ni < n; ni++) {
    for (let i = 0; i < s; i++) {
      const logits = Array.from({ length: s }, (_, j) => {
        let z = 0;
        for (let ci = 0; ci < c; ci++) z += q[ni][ci][i] * k[ni][ci][j];
        return z * c ** -0.5;
      });
      const mx = Math.max(...logits);
      const e = logits.map((z) => Math.exp(z - mx));
      const tot = e.reduce((u, w) => u + w, 0);
      for (let ci = 0; ci < c; ci++) {
        let acc = 0;
        for (let j = 0; j < s; j++) acc += (e[j] / tot) * v[ni][ci][j];
        a.data[(ni * c + ci) * s + i] = acc;
      }
    }
  }
  const o = nin(a, p.nin3);
  const y = t64(x.shape);
  for (let ni = 0; ni < n; ni++) {
    for (let ci = 0; ci < c; ci++) {
      for (let kk = 0; kk < s; kk++) {
        const i = (ni * c + ci) * s + kk;
        y.data[i] = (x.data[i] + o[ni][ci][kk]) * (skipRescale ? Math.SQRT1_2 : 1);
      }
    }
  }
  return y;
}

const attnShapes: number[][] = [
  [1, 8, 3, 3],
  [2, 12, 2, 3],
  [1, 4, 1, 5],
  [2, 8, 4, 4],
];

function attnInputs(shape: number[], seed: number): { x: T64; p: AttnParams } {
  const r = normalSampler(seed);
  return { x: randT(shape, r), p: randParams(shape[1], r) };
}
function attnTangents(shape: number[], seed: number): { x: T64; params: AttnParams } {
  const r = normalSampler(seed);
  return { x: randT(shape, r), params: randParams(shape[1], r) };
}

describe('attnBlockRef (AttnBlockpp)', () => {
  it('matches a naive einsum-style implementation, with and without skip_rescale', () => {
    for (const [i, shape] of attnShapes.entries()) {
      const { x, p } = attnInputs(shape, 100 + i);
      expect(relErr(attnBlockRef(x, p).data, naiveAttn(x, p, true).data)).toBeLessThan(1e-12);
      expect(relErr(attnBlockRef(x, p, { skipRescale: false }).data, naiveAttn(x, p, false).data)).toBeLessThan(1e-12);
    }
  });

  it('is the (rescaled) identity when NIN_3 is zero (init_scale 0)', () => {
    const r = normalSampler(7);
    const x = randT([2, 8, 3, 2], r);
    const p = randParams(8, r, true);
    const y = attnBlockRef(x, p);
    expect(relErr(y.data, x.data.map((v) => v * Math.SQRT1_2))).toBeLessThan(1e-16);
    expect(relErr(attnBlockRef(x, p, { skipRescale: false }).data, x.data)).toBe(0);
  });

  it('JVP matches central differences; VJP satisfies the dot-product identity (x and every parameter)', () => {
    for (const [i, shape] of attnShapes.entries()) {
      const { x, p } = attnInputs(shape, 200 + i);
      const t = attnTangents(shape, 210 + i);
      const jvp = attnBlockJvpRef(x, p, t);
      expect(relErr(jvp.primal.data, attnBlockRef(x, p).data)).toBeLessThan(1e-15);
      const fd = centralDiff((s) => attnBlockRef(axpy(x, t.x, s), axpyParams(p, t.params, s)).data);
      expect(relErr(jvp.tangent.data, fd)).toBeLessThan(FD_TOL);

      const u = randT(shape, normalSampler(220 + i));
      const vjp = attnBlockVjpRef(x, p, u);
      expectDotIdentity(jvp.tangent.data, u.data, attnFlat(t), attnFlat(vjp));
    }
  });

  it('HVP (forward over reverse) matches central differences of the VJP and is symmetric', () => {
    for (const [i, shape] of attnShapes.entries()) {
      const { x, p } = attnInputs(shape, 300 + i);
      const t = attnTangents(shape, 310 + i);
      const r = normalSampler(320 + i);
      const gy = randT(shape, r);
      const gyDot = randT(shape, r);
      const hvp = attnBlockHvpRef(x, p, t, gy, gyDot);
      expect(relErr(attnFlat(hvp.grad), attnFlat(attnBlockVjpRef(x, p, gy)))).toBeLessThan(1e-14);
      const fd = centralDiff((s) => attnFlat(attnBlockVjpRef(axpy(x, t.x, s), axpyParams(p, t.params, s), axpy(gy, gyDot, s))));
      expect(relErr(attnFlat(hvp.gradDot), fd)).toBeLessThan(FD_TOL);

      const t2 = attnTangents(shape, 330 + i);
      const zero = t64(shape);
      const h1 = attnFlat(attnBlockHvpRef(x, p, t, gy, zero).gradDot);
      const h2 = attnFlat(attnBlockHvpRef(x, p, t2, gy, zero).gradDot);
      expectDotIdentity(h1, attnFlat(t2), attnFlat(t), h2);
    }
  });
});
