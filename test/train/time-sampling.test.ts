import { describe, expect, it } from 'vitest';
import { HostRng } from '../../engine/rng.js';
import { createSde, type Sde } from '../../model/sde.js';
import {
  importanceCumWeight,
  importanceDensity,
  importanceNormaliser,
  invertImportanceCdf,
  sampleTimes,
} from '../../train/time-sampling.js';

const EPS = 1e-5;

/** g²/std² straight from the SDE (no closed form involved). */
const ratio = (sde: Sde, t: number) => sde.diffusionSquared(t) / sde.marginalStd(t) ** 2;

/**
 * ∫_ε^t g²/std² by composite Simpson in s = log t (the integrand behaves like 1/t near 0, so t·f(t) is smooth in s).
 */
function integrate(sde: Sde, t: number, n = 4000): number {
  const a = Math.log(EPS);
  const b = Math.log(t);
  const h = (b - a) / n;
  let s = 0;
  for (let i = 0; i <= n; i++) {
    const u = Math.exp(a + i * h);
    const w = i === 0 || i === n ? 1 : i % 2 ? 4 : 2;
    s += w * ratio(sde, u) * u;
  }
  return (s * h) / 3;
}

describe.each(['vp', 'subvp'] as const)('importance sampling of t (%s)', (kind) => {
  const sde = createSde(kind, 0.1, 20);
  const Z = importanceNormaliser(sde, EPS);

  it('closed-form CDF equals numerical integration of g²/std²', () => {
    for (const t of [2e-5, 1e-3, 0.05, 0.3, 0.77, 1]) {
      const num = integrate(sde, t);
      // Simpson with 4000 log-spaced panels: ~1e-12 relative; the closed form is exact to float64 rounding.
      expect(Math.abs(importanceCumWeight(sde, t, EPS) - num) / num).toBeLessThan(1e-9);
    }
    if (kind === 'vp') expect(Z).toBeCloseTo(23.87, 1); // log(e^10.05 − 1) − log(e^{1e-6} − 1)
  });

  it('bisection inverts the CDF: W(t(u)) = u·Z', () => {
    for (const u of [0, 1e-9, 0.01, 0.25, 0.5, 0.9, 0.999999, 1]) {
      const t = invertImportanceCdf(sde, u, EPS);
      expect(t).toBeGreaterThanOrEqual(EPS);
      expect(t).toBeLessThanOrEqual(1);
      // Bisection runs to float64 bracket collapse: |ΔW| ≤ q(t)·Z·ulp(t) ≲ 1e-10 here.
      expect(Math.abs(importanceCumWeight(sde, t, EPS) - u * Z)).toBeLessThan(1e-9 * Math.max(1, Z));
    }
  });

  it('the likelihood weight over the proposal is constant: (g²/std²)/q(t) = Z', () => {
    for (const t of [EPS, 1e-4, 0.01, 0.2, 0.5, 0.9, 1]) {
      expect(Math.abs(ratio(sde, t) / importanceDensity(sde, t, EPS) / Z - 1)).toBeLessThan(1e-12);
    }
    expect(importanceDensity(sde, EPS / 2, EPS)).toBe(0);
  });

  it('samples follow q: Kolmogorov–Smirnov distance of 20 000 draws < 0.012 (p ≈ 0.99 bound 1.63/√n)', () => {
    const n = 20000;
    const { t } = sampleTimes(sde, 'importance', n, new HostRng(5), EPS);
    const sorted = Array.from(t).sort((a, b) => a - b);
    let d = 0;
    sorted.forEach((x, i) => {
      const F = importanceCumWeight(sde, x, EPS) / Z;
      d = Math.max(d, Math.abs(F - i / n), Math.abs(F - (i + 1) / n));
    });
    expect(d).toBeLessThan(1.63 / Math.sqrt(n));
  });
});

describe('sampleTimes modes', () => {
  const sde = createSde('vp', 0.1, 20);
  it('uniform covers [ε, 1]; mixture puts the first ⌈B/2⌉ on q; weights are 1; same rng → same times', () => {
    const u = sampleTimes(sde, 'uniform', 1000, new HostRng(1), EPS);
    expect(Math.min(...u.t)).toBeGreaterThanOrEqual(EPS);
    expect(Math.max(...u.t)).toBeLessThan(1);
    expect(u.t.reduce((a, b) => a + b, 0) / 1000).toBeCloseTo(0.5, 1);
    const mix = sampleTimes(sde, 'mixture', 7, new HostRng(2), EPS);
    expect(Array.from(mix.fromImportance)).toEqual([1, 1, 1, 1, 0, 0, 0]);
    expect(Array.from(mix.weight)).toEqual(new Array(7).fill(1));
    expect(sampleTimes(sde, 'mixture', 7, new HostRng(2), EPS).t).toEqual(mix.t);
    expect(() => sampleTimes(sde, 'bogus' as never, 2, new HostRng(2))).toThrow(/t-sampling must be one of/);
  });
});
