import { describe, expect, it } from 'vitest';
import { loadPreset } from '../../model/config.js';
import { createSde, perturb, sdeFromConfig, type Sde } from '../../model/sde.js';

/**
 * Moments of the perturbation kernel of the linear SDE dx = a(t)x dt + g(t) dW started at a fixed x₀:
 * m' = a·m (m(0) = 1), v' = 2a·v + g² (v(0) = 0). Integrated with classical RK4 on a fine grid, independently of
 * the closed forms under test.
 */
function momentsByRk4(sde: Sde, t1: number, steps = 4000): { mean: number; variance: number } {
  const rhs = (t: number, [m, v]: [number, number]): [number, number] => {
    const a = sde.driftCoefficient(t);
    return [a * m, 2 * a * v + sde.diffusionSquared(t)];
  };
  let y: [number, number] = [1, 0];
  const h = t1 / steps;
  for (let i = 0; i < steps; i++) {
    const t = i * h;
    const k1 = rhs(t, y);
    const k2 = rhs(t + h / 2, [y[0] + (h / 2) * k1[0], y[1] + (h / 2) * k1[1]]);
    const k3 = rhs(t + h / 2, [y[0] + (h / 2) * k2[0], y[1] + (h / 2) * k2[1]]);
    const k4 = rhs(t + h, [y[0] + h * k3[0], y[1] + h * k3[1]]);
    y = [y[0] + (h / 6) * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]), y[1] + (h / 6) * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])];
  }
  return { mean: y[0], variance: y[1] };
}

const TIMES = [1e-5, 1e-3, 0.05, 0.3, 0.5, 0.77, 1];

describe('SDEs (SPEC §2)', () => {
  for (const kind of ['vp', 'subvp'] as const) {
    const sde = createSde(kind, 0.1, 20);
    it(`${kind}: marginal mean and std equal the integrated moment ODEs`, () => {
      for (const t of TIMES) {
        const { mean, variance } = momentsByRk4(sde, t);
        // RK4 with 4000 steps on a smooth problem with rates ≤ 20: global error ~ (20h)⁴ ≪ 1e-10.
        expect(Math.abs(sde.meanCoefficient(t) - mean)).toBeLessThan(1e-10);
        expect(Math.abs(sde.marginalStd(t) - Math.sqrt(variance)) / sde.marginalStd(t)).toBeLessThan(1e-8);
      }
    });
  }

  it('β, ∫β and the drift follow the linear schedule', () => {
    const sde = createSde('vp', 0.1, 20);
    expect(sde.beta(0)).toBe(0.1);
    expect(sde.beta(1)).toBeCloseTo(20, 14);
    // ∫β by Simpson's rule (exact for the quadratic ∫ of a linear β).
    for (const t of TIMES) {
      const simpson = (t / 6) * (sde.beta(0) + 4 * sde.beta(t / 2) + sde.beta(t));
      expect(sde.integralBeta(t)).toBeCloseTo(simpson, 13);
    }
    expect(sde.integralBeta(1)).toBeCloseTo(10.05, 13);
    const x = [1, -2, 0.5];
    expect([...sde.drift(x, 0.5)]).toEqual(x.map((v) => -0.5 * sde.beta(0.5) * v));
  });

  it('closed forms: VP g² = β, sub-VP g² = β(1 − e^{−2∫β}), std stays accurate as t → 0', () => {
    const vp = createSde('vp');
    const sub = createSde('subvp');
    for (const t of TIMES) {
      const B = vp.integralBeta(t);
      expect(vp.diffusionSquared(t)).toBe(vp.beta(t));
      expect(sub.diffusionSquared(t)).toBeCloseTo(sub.beta(t) * (1 - Math.exp(-2 * B)), 12);
      expect(vp.meanCoefficient(t)).toBeCloseTo(Math.exp(-0.5 * B), 15);
    }
    // At t = 1e-5, B ≈ 1.0001e-6: 1 − e^{−B} = B − B²/2 + …, which naive 1 − exp(−B) gets to only ~1e-10 relative.
    const t = 1e-5;
    const B = 0.1 * t + 0.5 * t * t * 19.9;
    const series = B - (B * B) / 2 + (B * B * B) / 6;
    expect(Math.abs(vp.marginalStd(t) - Math.sqrt(series)) / Math.sqrt(series)).toBeLessThan(1e-14);
    expect(Math.abs(sub.marginalStd(t) - series) / series).toBeLessThan(1e-14);
    expect(vp.marginalStd(0)).toBe(0);
  });

  it('prior log-density is the standard normal, per sample in a batch', () => {
    const sde = createSde('vp');
    const z = [0.5, -1, 2, 0, 0.25, -0.75];
    const direct = (v: number[]): number => v.reduce((s, x) => s - 0.5 * Math.log(2 * Math.PI) - 0.5 * x * x, 0);
    expect(sde.priorLogProb(z)).toBeCloseTo(direct(z), 13);
    const batch = sde.priorLogProbBatch(z, 2);
    expect(batch[0]).toBeCloseTo(direct(z.slice(0, 3)), 13);
    expect(batch[1]).toBeCloseTo(direct(z.slice(3)), 13);
    expect(() => sde.priorLogProbBatch(z, 4)).toThrow(/do not split/);
  });

  it('rejects bad schedules and times; sdeFromConfig reads the config', () => {
    expect(() => createSde('vp', 20, 0.1)).toThrow(/betaMin/);
    expect(() => createSde('vp').marginalStd(Number.NaN)).toThrow(/finite/);
    const sde = sdeFromConfig(loadPreset('cifar10-sbgc'));
    expect(sde.kind).toBe('vp');
    expect([sde.betaMin, sde.betaMax, sde.T]).toEqual([0.1, 20, 1]);
  });

  it('perturb draws x_t = m(t)·x₀ + σ(t)·z in float32 and refuses mismatched noise', () => {
    const vp = createSde('vp');
    const x0 = [0.5, -1, 0.25];
    const z = [1, -2, 0.5];
    const t = 0.3;
    const got = perturb(vp, t, x0, z);
    const m = Math.exp(-0.5 * (0.1 * t + 0.5 * t * t * (20 - 0.1)));
    const s = Math.sqrt(1 - m * m);
    // One float32 rounding of a float64 value: within half an ulp, 2^-24 relative.
    x0.forEach((v, i) => expect(Math.abs(got[i] - (m * v + s * z[i]))).toBeLessThanOrEqual(2 ** -24 * Math.abs(m * v + s * z[i])));
    expect(() => perturb(vp, t, x0, [1, 2])).toThrow(/x₀ has 3 values but the noise z has 2/);
  });
});
