import { describe, expect, it } from 'vitest';
import { HostRng } from '../../engine/rng.js';
import { createSde, type Sde } from '../../model/sde.js';
import { GaussianMixtureScoreModel, classConditionalGaussians, isotropicGaussianModel } from '../../model/analytic-models.js';
import { classify, diffusedStart, logLikelihood, type ClassifyResult } from '../../eval/probability-flow-likelihood.js';
import { randomHost } from '../helpers/check-op.js';
import { useEngine } from '../helpers/engine.js';

const vp = createSde('vp');
const subvp = createSde('subvp');
const EPS_T = 1e-5;

/** Points around μ (seeded), rounded to f32 as the GPU sees them. */
function points(mu: ArrayLike<number>, n: number, spread: number, seed: number): Float64Array {
  const D = mu.length;
  const rng = new HostRng(seed);
  return Float64Array.from({ length: n * D }, (_, i) => Math.fround(mu[i % D] + spread * rng.normal()));
}

/**
 * The probability-flow map of isotropic Gaussian data under VP is affine: x_t − m_t μ = √(v_t/v_s)·(x_s − m_s μ)
 * (d log|x − mμ|/dt = ½β(1/v − 1) = d log √v/dt since dv/dt = β(1 − v)). Gives x(T) in closed form.
 */
function flowEnd(sde: Sde, mu: ArrayLike<number>, s2: number, x: ArrayLike<number>, t0: number, t1: number): Float64Array {
  const m0 = sde.meanCoefficient(t0);
  const m1 = sde.meanCoefficient(t1);
  const v = (m: number) => m * m * s2 + 1 - m * m;
  const k = Math.sqrt(v(m1) / v(m0));
  return Float64Array.from(x, (xi, i) => m1 * mu[i] + k * (xi - m0 * mu[i]));
}

/** A 3-component mixture in D = 8: its score Jacobian is not ∝ I, so Rademacher probes have a real variance. */
function threeComponentMixture(): GaussianMixtureScoreModel {
  const m = (seed: number) => randomHost([8], seed, 1).data;
  return new GaussianMixtureScoreModel({
    shape: [2, 2, 2],
    sde: vp,
    classes: [[{ mean: m(1), variance: 0.1 }, { mean: m(2), variance: 0.4 }, { mean: m(3), variance: 0.2, weight: 2 }]],
  });
}

function marginVariance(r: ClassifyResult, image: number, n: number): number {
  const K = r.numClasses;
  const m = Array.from({ length: n }, (_, k) => r.logpPerDraw[(image * n + k) * K] - r.logpPerDraw[(image * n + k) * K + 1]);
  const mean = m.reduce((a, b) => a + b, 0) / n;
  return m.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
}

describe('probability-flow likelihood (SPEC §3)', () => {
  const engine = useEngine();
  const D = 16;
  const s2 = 0.3;
  const mu = randomHost([D], 3, 0.5).data;
  const gauss = isotropicGaussianModel({ shape: [1, 4, 4], sde: vp, mean: mu, variance: s2 });
  const x = points(mu, 4, 1.7 * Math.sqrt(s2), 9);
  const want = Array.from({ length: 4 }, (_, i) => gauss.logDensity(x.subarray(i * D, (i + 1) * D), EPS_T));

  it('analytic Gaussian, exact p_1 prior, exact divergence, float64 state at rtol 1e-8: the closed form to 1e-6', async () => {
    const e = engine();
    const r = await logLikelihood(e, gauss, { x }, null, {
      probes: 'exact',
      rtol: 1e-8,
      atol: 1e-8,
      state: 'host-f64',
      priorLogDensity: (z) => gauss.logDensity(z, 1),
    });
    expect(r.status).toBe('success');
    expect(r.state).toBe('host-f64');
    // Measured ≤ 2.3e-7 relative: the RHS is float32 (score and divergence to ~1e-7), the state float64.
    for (let i = 0; i < 4; i++) expect(Math.abs(r.logpNats[i] - want[i]) / Math.abs(want[i])).toBeLessThan(1e-6);

    // Standard N(0, I) prior: off by exactly the prior mismatch at the ODE end point (closed-form flow map).
    const s = await logLikelihood(e, gauss, { x }, null, { probes: 'exact', rtol: 1e-8, atol: 1e-8, state: 'host-f64' });
    for (let i = 0; i < 4; i++) {
      const z = flowEnd(vp, mu, s2, x.subarray(i * D, (i + 1) * D), EPS_T, 1);
      const mismatch = vp.priorLogProb(z) - gauss.logDensity(z, 1);
      expect(Math.abs(mismatch)).toBeGreaterThan(1e-3);
      expect(Math.abs(mismatch)).toBeLessThan(0.1);
      // The ODE end point and ℓ(T) agree between the two runs; the difference is the prior term alone.
      expect(Math.abs(s.logpNats[i] - want[i] - mismatch)).toBeLessThan(1e-5);
      expect(s.priorLogpPerRow[i]).toBeCloseTo(vp.priorLogProb(z), 5);
    }
  });

  it('diffused start: the ODE from x_ε = m·x + σ·z plus D·log m (closed form), and a lower bound of log p̃(x) on average', async () => {
    const e = engine();
    const epsT = 0.1;
    const exactPrior = { probes: 'exact' as const, rtol: 1e-8, atol: 1e-8, state: 'host-f64' as const, priorLogDensity: (z: Float64Array) => gauss.logDensity(z, 1) };
    const r = await logLikelihood(e, gauss, { x }, null, { ...exactPrior, epsT, start: 'diffused', seed: 3 });
    expect(r.start).toBe('diffused');
    const m = vp.meanCoefficient(epsT);
    const sd = vp.marginalStd(epsT);
    for (let i = 0; i < 4; i++) {
      const xe = diffusedStart(gauss, x.subarray(i * D, (i + 1) * D), epsT, { seed: 3, stream: 0, imageKey: i });
      // The start is a forward-process draw: not the image, and m·x + σ·z for the keyed z.
      expect(Math.abs(xe[0] - m * x[i * D])).toBeGreaterThan(1e-4);
      const want = gauss.logDensity(xe, epsT) + D * Math.log(m);
      // Same accuracy as the clean-start closed-form check (float32 RHS, float64 state): ≤ 1e-6 relative.
      expect(Math.abs(r.logpNats[i] - want) / Math.abs(want)).toBeLessThan(1e-6);
    }
    // Averaged over z, the estimate bounds the decoder-closed model's log p̃(x) = log N(x; μ, (s² + σ²/m²)I) from below
    // (p̃ = p_ε(m·) convolved back: x_ε/m ~ N(μ, s² + σ²/m²), decoder noise σ/m). 256 draws as nProbes.
    const avg = await logLikelihood(e, gauss, { x: x.subarray(0, D) }, null, { ...exactPrior, rtol: 1e-6, atol: 1e-6, epsT, start: 'diffused', nProbes: 256 });
    const v = s2 + (sd * sd) / (m * m) + (sd * sd) / (m * m);
    let q = 0;
    for (let j = 0; j < D; j++) q += (x[j] - mu[j]) ** 2;
    const logpTilde = -0.5 * D * Math.log(2 * Math.PI * v) - q / (2 * v);
    const se = avg.logpStdNats[0] / Math.sqrt(256);
    expect(avg.logpNats[0]).toBeLessThan(logpTilde + 4 * se);
    // Gap = E KL(q(x_ε|x) ‖ posterior of the model) > 0: not vacuous, a few nats at D = 16, ε = 0.1.
    expect(logpTilde - avg.logpNats[0]).toBeLessThan(10);
  });

  it('sub-VP: the exact-prior check holds as well', async () => {
    const e = engine();
    const g = isotropicGaussianModel({ shape: [1, 4, 4], sde: subvp, mean: mu, variance: s2 });
    const xi = x.subarray(0, D);
    const r = await logLikelihood(e, g, { x: xi }, null, {
      probes: 'exact',
      rtol: 1e-8,
      atol: 1e-8,
      state: 'host-f64',
      priorLogDensity: (z) => g.logDensity(z, 1),
    });
    const w = g.logDensity(xi, EPS_T);
    expect(Math.abs(r.logpNats[0] - w) / Math.abs(w)).toBeLessThan(1e-6);
  });

  it('GPU-resident f32 state at the paper tolerance (rtol = atol = 1e-5): within 2e-5 relative; Rademacher = exact for J ∝ I', async () => {
    const e = engine();
    const opts = { rtol: 1e-5, atol: 1e-5, priorLogDensity: (z: Float64Array) => gauss.logDensity(z, 1) };
    const ex = await logLikelihood(e, gauss, { x }, null, { ...opts, probes: 'exact' });
    const rad = await logLikelihood(e, gauss, { x }, null, { ...opts, probes: 'rademacher' });
    expect(ex.state).toBe('gpu-f32');
    expect(ex.stepControl).toBe('shared');
    // Measured ≤ 6e-6: solver error at rtol 1e-5 plus f32 state rounding.
    for (let i = 0; i < 4; i++) expect(Math.abs(ex.logpNats[i] - want[i]) / Math.abs(want[i])).toBeLessThan(2e-5);
    // εᵀ(−I/v)ε = −D/v exactly for ε ∈ {±1}^D: only f32 summation order differs.
    for (let i = 0; i < 4; i++) expect(rad.logpNats[i]).toBeCloseTo(ex.logpNats[i], 4);
    expect(ex.nfev).toBe(rad.nfev);
    expect(ex.nfev).toBe(2 + 6 * (ex.nSteps + ex.nRejected));
  });

  it('Hutchinson is unbiased: 256 batched draws average to the exact-divergence answer within 4 standard errors', async () => {
    const e = engine();
    const model = threeComponentMixture();
    const xm = Float64Array.from(randomHost([8], 7, 0.8).data);
    const exact = await logLikelihood(e, model, { x: xm }, null, { probes: 'exact' });
    for (const probes of ['rademacher', 'gaussian'] as const) {
      const n = 256;
      const h = await logLikelihood(e, model, { x: xm }, null, { probes, nProbes: n, seed: 11 });
      expect(h.logpPerDraw.length).toBe(n);
      expect(h.logpStdNats[0]).toBeGreaterThan(0.5); // measured 2.0 (Rademacher), 25 (Gaussian)
      const se = h.logpStdNats[0] / Math.sqrt(n);
      expect(Math.abs(h.logpNats[0] - exact.logpNats[0]) / se, probes).toBeLessThan(4);
    }
  });

  it('the Hutchinson pass (forward: εᵀ·Jε by a JVP, reverse: εᵀJ·ε by a VJP) changes float32 rounding only', async () => {
    const e = engine();
    const model = threeComponentMixture();
    const xm = Float64Array.from(randomHost([3 * 8], 7, 0.8).data);
    const opts = { probes: 'rademacher' as const, nProbes: 4, seed: 11, rtol: 1e-6, atol: 1e-6 };
    const f = await logLikelihood(e, model, { x: xm }, null, { ...opts, hutchinsonPass: 'forward' });
    const r = await logLikelihood(e, model, { x: xm }, null, { ...opts, hutchinsonPass: 'reverse' });
    expect(f.hutchinsonPass).toBe('forward');
    expect(r.hutchinsonPass).toBe('reverse');
    await expect(logLikelihood(e, model, { x: xm }, null, { hutchinsonPass: 'sideways' as 'forward' })).rejects.toThrow(/hutchinsonPass must be one of forward, reverse, got 'sideways'/);
    // Per draw (same probes): measured bit-identical — a mixture's score Jacobian is a symmetric Hessian and its
    // JVP and VJP rules do the same float32 arithmetic; 1e-6 nats leaves room for a reordered sum only.
    // (The network's passes differ by rounding: test/solvers/network-end-to-end.test.ts.)
    for (let k = 0; k < f.logpPerDraw.length; k++) {
      expect(Math.abs(f.logpPerDraw[k] - r.logpPerDraw[k]), `row ${k}`).toBeLessThan(1e-6);
    }
  });

  it('the classifier on class-conditional Gaussians equals the Bayes classifier on 32 points', async () => {
    const e = engine();
    const K = 4;
    const means = [0, 1, 2, 3].map((s) => randomHost([8], 40 + s, 0.6).data);
    const variances = [0.2, 0.35, 0.5, 0.3];
    const model = classConditionalGaussians({ shape: [2, 2, 2], sde: vp, means, variances });
    const rng = new HostRng(5);
    const n = 32;
    const xs = new Float64Array(n * 8);
    for (let i = 0; i < n; i++) for (let j = 0; j < 8; j++) xs[i * 8 + j] = Math.fround(means[i % K][j] + Math.sqrt(variances[i % K]) * rng.normal());
    const bayes = Array.from({ length: n }, (_, i) => model.bayes(xs.subarray(i * 8, (i + 1) * 8), EPS_T));
    const exactPrior = await classify(e, model, { x: xs }, { priorLogDensity: (z, y) => model.logDensity(z, 1, y) });
    const standard = await classify(e, model, { x: xs });
    expect(exactPrior.probeSharing).toBe('shared-across-classes');
    let misclassifiedByBayes = 0;
    for (let i = 0; i < n; i++) {
      expect(exactPrior.predicted[i], `point ${i}`).toBe(bayes[i].predicted);
      // The smallest Bayes margin here is 0.22 nats; the N(0, I) prior moves log p by ≤ 0.03 nats.
      expect(standard.predicted[i], `point ${i}`).toBe(bayes[i].predicted);
      if (bayes[i].predicted !== i % K) misclassifiedByBayes++;
      for (let y = 0; y < K; y++) {
        // Measured ≤ 1.1e-5 relative (rtol 1e-5, f32 state) and ≤ 6e-6 absolute on p(y|x).
        expect(Math.abs(exactPrior.logpPerClass[i * K + y] - bayes[i].logp[y]) / Math.abs(bayes[i].logp[y])).toBeLessThan(5e-5);
        expect(exactPrior.posterior[i * K + y]).toBeCloseTo(bayes[i].posterior[y], 4);
      }
      expect(exactPrior.logpMarginal[i]).toBeCloseTo(Math.log(bayes[i].logp.reduce((a, l) => a + Math.exp(l) / K, 0)), 3);
    }
    // The points are not all trivially separable: the Bayes classifier itself errs on some.
    expect(misclassifiedByBayes).toBeGreaterThan(0);
  });

  it('probes shared across classes (common random numbers) cut the variance of the class margin', async () => {
    const e = engine();
    const d = randomHost([16], 3, 0.04).data;
    const a = Float64Array.from(randomHost([16], 1, 0.25).data, (v) => 0.5 + v);
    const b = Float64Array.from(randomHost([16], 2, 0.25).data, (v) => 0.5 + v);
    const shift = (v: Float64Array) => v.map((x, i) => x + d[i]);
    // Two similar classes, each a 2-component mixture (non-isotropic Jacobian: Rademacher probes are noisy), in
    // the uncentred [0, 1] model space; 8-bit pixel input with dequantisation noise.
    const model = new GaussianMixtureScoreModel({
      shape: [1, 4, 4],
      sde: vp,
      classes: [
        [{ mean: a, variance: 0.004 }, { mean: b, variance: 0.02 }],
        [{ mean: shift(a), variance: 0.005 }, { mean: shift(b), variance: 0.02 }],
      ],
    });
    const pixels = Uint8Array.from({ length: 32 }, (_, i) => Math.round(128 * (a[i % 16] + b[i % 16]) + 20 * Math.sin(i)));
    const n = 48;
    const shared = await classify(e, model, { pixels }, { nProbes: n, seed: 3 });
    const indep = await classify(e, model, { pixels }, { nProbes: n, seed: 3, sharedProbesAcrossClasses: false });
    expect(indep.probeSharing).toBe('independent');
    for (let i = 0; i < 2; i++) {
      const ratio = marginVariance(indep, i, n) / marginVariance(shared, i, n);
      // The sample-variance ratio over 48 draws is itself uncertain by ~30 %; a clear reduction is > 5×.
      expect(ratio, `image ${i}`).toBeGreaterThan(5);
    }
    // Per-class values stay unbiased either way: the means agree within their standard errors.
    for (let j = 0; j < 4; j++) {
      const se = Math.hypot(shared.logpStdPerClass[j], indep.logpStdPerClass[j]) / Math.sqrt(n);
      expect(Math.abs(shared.logpPerClass[j] - indep.logpPerClass[j])).toBeLessThan(4 * se + 1e-3);
    }
  });

  it('keyed randomness and per-sample control: a row does not depend on its batch', async () => {
    const e = engine();
    const model = classConditionalGaussians({
      shape: [1, 2, 2],
      sde: vp,
      means: [Float64Array.of(0.2, 0.4, 0.6, 0.8), Float64Array.of(0.7, 0.5, 0.3, 0.1)],
      variances: [0.01, 0.02],
    });
    const pixels = Uint8Array.of(40, 100, 160, 220, 200, 120, 60, 20);
    const opts = { stepControl: 'per-sample' as const, probes: 'gaussian' as const, nProbes: 3, seed: 5 };
    const both = await classify(e, model, { pixels }, opts);
    const live = e.memory().liveTensors; // the model's GPU tables stay; nothing else may
    const second = await classify(e, model, { pixels: pixels.subarray(4) }, { ...opts, imageOffset: 1 });
    expect(Array.from(second.logpPerDraw)).toEqual(Array.from(both.logpPerDraw.subarray(6)));
    const ll = await logLikelihood(e, model, { pixels }, [1, 0], opts);
    for (let i = 0; i < 2; i++) {
      for (let k = 0; k < 3; k++) expect(ll.logpPerDraw[i * 3 + k]).toBe(both.logpPerDraw[(i * 3 + k) * 2 + (1 - i)]);
    }
    // bits/dim of SPEC §1 with the model-space scale explicit (uncentred: scale 1).
    expect(ll.modelSpace).toMatch(/uncentred/);
    expect(ll.bitsPerDim[0]).toBeCloseTo(-ll.logpNats[0] / (4 * Math.LN2) + 8, 10);
    const centred = await logLikelihood(e, model, { pixels }, [1, 0], { ...opts, centered: true });
    expect(centred.modelSpace).toMatch(/centred/);
    expect(centred.bitsPerDim[0]).toBeCloseTo(-(centred.logpNats[0] + 4 * Math.LN2) / (4 * Math.LN2) + 8, 10);
    expect(e.memory().liveTensors).toBe(live);
  });

  it('validates its inputs with clear errors', async () => {
    const e = engine();
    const model = classConditionalGaussians({ shape: [1, 2, 2], sde: vp, means: [new Float64Array(4), new Float64Array(4).fill(1)], variances: 0.1 });
    await expect(logLikelihood(e, model, { pixels: new Uint8Array(6) }, [0], {})).rejects.toThrow(/C×H×W = 1×2×2 = 4 values.*got 6 values/);
    await expect(logLikelihood(e, model, { x: [0, NaN, 0, 0] }, [0])).rejects.toThrow(/x\[1\] \(image 0\) is NaN/);
    await expect(logLikelihood(e, model, { x: [0, 0, 0, 0] }, [2])).rejects.toThrow(/label of image 0 is 2, outside \[0, 2\)/);
    await expect(logLikelihood(e, model, { x: [0, 0, 0, 0] }, null)).rejects.toThrow(/labels are required/);
    await expect(logLikelihood(e, model, { x: [0, 0, 0, 0] }, [0, 1])).rejects.toThrow(/2 labels for 1 images/);
    await expect(logLikelihood(e, model, { x: [0, 0, 0, 0] }, [0], { epsT: 0 })).rejects.toThrow(/epsT/);
    await expect(logLikelihood(e, model, { x: [0, 0, 0, 0] }, [0], { nProbes: 0 })).rejects.toThrow(/nProbes/);
    await expect(classify(e, gauss, { x })).rejects.toThrow(/unconditional/);
    await expect(classify(e, model, { x: [0, 0, 0, 0] }, { logPrior: [0] })).rejects.toThrow(/logPrior needs 2 values/);
    await expect(logLikelihood(e, gauss, { x }, [0])).rejects.toThrow(/unconditional; pass labels = null/);
  });
});
