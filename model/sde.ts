// The forward SDEs of SPEC §2 as pure float64 host math (score_sde's VPSDE / subVPSDE with a linear β schedule).
// Everything here is a scalar function of t; tensors never enter, so solvers and tests can use it freely.
//
//   β(t) = β_min + t(β_max − β_min),   B(t) = ∫₀ᵗ β = β_min·t + ½t²(β_max − β_min)
//   drift f(x, t) = −½β(t)·x            (both SDEs)
//   VP:     g² = β,                     mean = x₀·e^{−B/2},  std = √(1 − e^{−B})
//   sub-VP: g² = β·(1 − e^{−2B}),       mean = x₀·e^{−B/2},  std = 1 − e^{−B}
//   prior p_T = N(0, I)

import type { NcsnppConfig, SdeType } from './config.js';

const LOG_2PI = Math.log(2 * Math.PI);

export interface Sde {
  readonly kind: SdeType;
  readonly betaMin: number;
  readonly betaMax: number;
  /** End time T (= 1). */
  readonly T: number;
  /** β(t). */
  beta(t: number): number;
  /** ∫₀ᵗ β(s) ds. */
  integralBeta(t: number): number;
  /** Coefficient a(t) of the linear drift f(x, t) = a(t)·x, i.e. −½β(t). */
  driftCoefficient(t: number): number;
  /** f(x, t) = −½β(t)·x, elementwise into a new array. */
  drift(x: ArrayLike<number>, t: number): Float64Array;
  /** g(t)², the squared diffusion coefficient. */
  diffusionSquared(t: number): number;
  /** Marginal (perturbation kernel) mean coefficient: mean(x_t | x₀) = meanCoefficient(t)·x₀. */
  meanCoefficient(t: number): number;
  /** Marginal (perturbation kernel) standard deviation std(x_t | x₀). */
  marginalStd(t: number): number;
  /** log N(z; 0, I) for one sample of D = z.length dims. */
  priorLogProb(z: ArrayLike<number>): number;
  /** log N(z_i; 0, I) for each of `batch` samples stored back to back in z. */
  priorLogProbBatch(z: ArrayLike<number>, batch: number): Float64Array;
}

/**
 * One draw of the perturbation kernel, x_t = m(t)·x₀ + σ(t)·z (z ~ N(0, I) given), as float32: the ELBO's noised
 * images and the ODE's diffused start are the same operation.
 */
export function perturb(sde: Sde, t: number, x0: ArrayLike<number>, z: ArrayLike<number>): Float32Array {
  if (z.length !== x0.length) throw new RangeError(`perturb: x₀ has ${x0.length} values but the noise z has ${z.length}`);
  const m = sde.meanCoefficient(t);
  const s = sde.marginalStd(t);
  return Float32Array.from(x0, (v, i) => m * v + s * z[i]);
}

function checkTime(t: number, what: string): void {
  if (!Number.isFinite(t)) throw new RangeError(`${what}: t must be finite, got ${t}`);
}

function logNormalStd(z: ArrayLike<number>, start: number, end: number): number {
  let sq = 0;
  for (let i = start; i < end; i++) sq += z[i] * z[i];
  return -0.5 * (end - start) * LOG_2PI - 0.5 * sq;
}

/** A VP or sub-VP SDE with the linear schedule β(t) = β_min + t(β_max − β_min) on t ∈ [0, 1]. */
export function createSde(kind: SdeType, betaMin = 0.1, betaMax = 20): Sde {
  if (!(betaMin > 0 && betaMax > betaMin && Number.isFinite(betaMax))) {
    throw new RangeError(`createSde: need 0 < betaMin < betaMax, got betaMin ${betaMin}, betaMax ${betaMax}`);
  }
  const slope = betaMax - betaMin;
  const beta = (t: number): number => betaMin + t * slope;
  const integralBeta = (t: number): number => betaMin * t + 0.5 * t * t * slope;
  const sde: Sde = {
    kind,
    betaMin,
    betaMax,
    T: 1,
    beta(t) {
      checkTime(t, 'beta');
      return beta(t);
    },
    integralBeta(t) {
      checkTime(t, 'integralBeta');
      return integralBeta(t);
    },
    driftCoefficient(t) {
      checkTime(t, 'driftCoefficient');
      return -0.5 * beta(t);
    },
    drift(x, t) {
      const a = sde.driftCoefficient(t);
      const out = new Float64Array(x.length);
      for (let i = 0; i < out.length; i++) out[i] = a * x[i];
      return out;
    },
    diffusionSquared(t) {
      checkTime(t, 'diffusionSquared');
      // −expm1(−2B) = 1 − e^{−2B} without cancellation for small t.
      return kind === 'vp' ? beta(t) : beta(t) * -Math.expm1(-2 * integralBeta(t));
    },
    meanCoefficient(t) {
      checkTime(t, 'meanCoefficient');
      return Math.exp(-0.5 * integralBeta(t));
    },
    marginalStd(t) {
      checkTime(t, 'marginalStd');
      const oneMinus = -Math.expm1(-integralBeta(t)); // 1 − e^{−B}, accurate near t = 0
      return kind === 'vp' ? Math.sqrt(oneMinus) : oneMinus;
    },
    priorLogProb(z) {
      return logNormalStd(z, 0, z.length);
    },
    priorLogProbBatch(z, batch) {
      if (!Number.isInteger(batch) || batch < 1 || z.length % batch !== 0) {
        throw new RangeError(`priorLogProbBatch: ${z.length} values do not split into ${batch} samples`);
      }
      const d = z.length / batch;
      const out = new Float64Array(batch);
      for (let b = 0; b < batch; b++) out[b] = logNormalStd(z, b * d, (b + 1) * d);
      return out;
    },
  };
  return sde;
}

/** The SDE a network config was trained with. */
export function sdeFromConfig(config: NcsnppConfig): Sde {
  return createSde(config.sde, config.betaMin, config.betaMax);
}
