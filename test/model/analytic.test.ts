import { describe, expect, it } from 'vitest';
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { createSde } from '../../model/sde.js';
import {
  GaussianMixtureScoreModel,
  classConditionalGaussians,
  isotropicGaussianModel,
  mixtureJacobianVector,
  mixtureScore,
  type MixtureParams,
} from '../../model/analytic-models.js';
import { checkHvp, checkOp, randomHost, type Host64 } from '../helpers/check-op.js';
import { useEngine } from '../helpers/engine.js';
import { testMixture } from '../helpers/mixture-model.js';

const vp = createSde('vp');
const subvp = createSde('subvp');

function params(e: Engine, model: GaussianMixtureScoreModel, t: number[], labels: number[]): MixtureParams {
  const rows = new Float32Array(3 * t.length);
  t.forEach((tb, b) => {
    const { m, sigma2 } = model.coefficients(tb);
    rows.set([m, sigma2, 1], 3 * b);
  });
  return {
    model,
    rows: e.tensor(rows, [t.length, 3]),
    labels: e.tensor(Uint32Array.from(labels), [labels.length], 'u32'),
  };
}

/** Applies a per-sample host function to a [B, …] Host64. */
function perRow(x: Host64, D: number, f: (row: Float64Array, b: number) => Float64Array): Host64 {
  const out = new Float64Array(x.data.length);
  for (let b = 0; b < x.data.length / D; b++) out.set(f(x.data.slice(b * D, (b + 1) * D), b), b * D);
  return { shape: x.shape, data: out };
}

describe('analytic Gaussian-mixture score models', () => {
  const engine = useEngine();

  // f32 kernel: per-row reductions over D = 15 and exp/log of the responsibilities (measured ≤ 2e-7 of the
  // max-norm); the JVP is J·v, whose covariance term Σ r_c(α_c − ᾱ)u_c cancels (measured ≤ 1.2e-6).
  const TOL = { forward: 1e-6, jvp: 5e-6, vjp: 5e-6 };
  // J·v and its third-order derivative: products of three u_c factors with more cancellation (measured ≤ 2.2e-6).
  const TOL_JV = { forward: 3e-6, jvp: 1e-5, vjp: 1e-5 };

  for (const [name, t, labels] of [
    ['batch 1, t = 0.05', [0.05], [1]],
    ['batch 5, mixed t', [1e-5, 0.1, 0.3, 0.6, 1], [0, 1, 1, 0, 1]],
  ] as const) {
    it(`mixture score op (K = 3): forward, JVP, VJP vs float64, ${name}`, async () => {
      const e = engine();
      const model = testMixture();
      const D = model.dim;
      const B = t.length;
      const p = params(e, model, [...t], [...labels]);
      const x = randomHost([B, 1, 3, 5], 11, 1.5);
      await checkOp(e, {
        op: mixtureScore,
        params: p,
        inputs: [x],
        reference: ([xx]) => perRow(xx!, D, (row, b) => model.scoreHost(row, t[b], labels[b])),
        tol: TOL,
      });
      // J·v is an op of its own (the VJP and JVP of the score); its derivative is the third-order kernel.
      const v = randomHost([B, 1, 3, 5], 12);
      await checkOp(e, {
        op: mixtureJacobianVector,
        params: p,
        inputs: [x, v],
        reference: ([xx, vv]) =>
          perRow(xx!, D, (row, b) => model.jacobianVectorHost(row, t[b], labels[b], vv!.data.subarray(b * D, (b + 1) * D))),
        tol: TOL_JV,
      });
      // Forward-over-reverse HVP of ⟨u, s(x)⟩ against differences of the float64 VJP Jᵀu = J u.
      await checkHvp(
        e,
        (xx: Tensor) => mixtureScore(e, [xx], p),
        x,
        (xx, u) => perRow(xx, D, (row, b) => model.jacobianVectorHost(row, t[b], labels[b], u.data.subarray(b * D, (b + 1) * D))),
        [B, 1, 3, 5],
        1e-5, // measured ≤ 2.5e-6

      );
    });
  }

  it('host formulas: score = ∇ log p_t, divergence = tr(∂s/∂x), Gaussian marginals of SPEC §2 (VP and sub-VP)', () => {
    for (const sde of [vp, subvp]) {
      const model = testMixture(sde);
      const x = randomHost([15], 21).data;
      const t = 0.2;
      const h = 1e-6;
      const s = model.scoreHost(x, t, 1);
      let div = 0;
      for (let i = 0; i < 15; i++) {
        const xp = x.slice();
        const xm = x.slice();
        xp[i] += h;
        xm[i] -= h;
        expect(s[i]).toBeCloseTo((model.logDensity(xp, t, 1) - model.logDensity(xm, t, 1)) / (2 * h), 6);
        div += (model.scoreHost(xp, t, 1)[i] - model.scoreHost(xm, t, 1)[i]) / (2 * h);
      }
      expect(model.scoreDivergenceHost(x, t, 1)).toBeCloseTo(div, 5);
      // Isotropic Gaussian: p_t = N(mμ, (m²s² + σ²)I) with σ² = 1 − m² (VP) or (1 − m²)² (sub-VP).
      const g = isotropicGaussianModel({ shape: [1, 1, 15], sde, mean: 0.4, variance: 0.3 });
      const m = Math.exp(-0.5 * sde.integralBeta(t));
      const sig2 = sde.kind === 'vp' ? 1 - m * m : (1 - m * m) ** 2;
      const v = m * m * 0.3 + sig2;
      let sq = 0;
      for (const xi of x) sq += (xi - m * 0.4) ** 2;
      expect(g.logDensity(x, t)).toBeCloseTo(-7.5 * Math.log(2 * Math.PI * v) - sq / (2 * v), 10);
      expect(g.numClasses).toBe(0);
    }
  });

  it('GPU score of the model interface: labels as host array or tensor, ε = −σ(t)·score, clear errors', async () => {
    const e = engine();
    const model = classConditionalGaussians({
      shape: [2, 2, 2],
      sde: vp,
      means: [new Float64Array(8).fill(0.5), new Float64Array(8).fill(-0.5), new Float64Array(8).fill(0)],
      variances: [0.1, 0.2, 0.3],
    });
    const xh = randomHost([3, 2, 2, 2], 31);
    const x = e.tensor(Float32Array.from(xh.data), [3, 2, 2, 2]);
    const t = Float64Array.of(0.01, 0.5, 0.9);
    const labels = [2, 0, 1];
    const s = await model.score(e, x, t, labels).readF64();
    const s2 = await model.score(e, x, t, e.tensor(Uint32Array.from(labels), [3], 'u32')).readF64();
    const eps = await model.epsilon(e, x, t, labels).readF64();
    for (let b = 0; b < 3; b++) {
      const want = model.scoreHost(xh.data.subarray(b * 8, (b + 1) * 8), t[b], labels[b]);
      const std = vp.marginalStd(t[b]);
      for (let i = 0; i < 8; i++) {
        expect(s[b * 8 + i]).toBeCloseTo(want[i], 4);
        expect(s2[b * 8 + i]).toBe(s[b * 8 + i]);
        expect(eps[b * 8 + i]).toBeCloseTo(-std * want[i], 5);
      }
    }
    expect(() => model.score(e, x, t, null)).toThrow(/labels are required/);
    expect(() => model.score(e, x, t, [0, 3, 1])).toThrow(/label 1 is 3/);
    expect(() => model.score(e, x, Float64Array.of(0.1, 0.2), labels)).toThrow(/2 times for a batch of 3/);
    const bad = e.tensor(new Float32Array(3 * 9), [3, 1, 3, 3]);
    expect(() => model.score(e, bad, t, labels)).toThrow(/must have shape/);
    const bayes = model.bayes(new Float64Array(8).fill(0.45), 1e-5);
    expect(bayes.predicted).toBe(0);
    expect(bayes.posterior.reduce((a, p) => a + p, 0)).toBeCloseTo(1, 12);
  });
});
