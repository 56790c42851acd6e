/**
 * Diffusion-time sampling for the denoising score-matching loss (SPEC §6), float64 on the host.
 *
 * Likelihood weighting λ(t) = g(t)² turns the per-sample DSM term into
 *   λ(t)·‖s(x_t) − ∇log p_{0t}(x_t|x₀)‖² = g²/std² · ‖ε̂ − z‖²     (s = −ε̂/std, ∇log p_{0t} = −z/std),
 * so with t drawn from the proposal q(t) = (g²/std²)/Z on [ε_t, T] the importance weight λ/q reduces the term to
 *   Z · ‖ε̂ − z‖²,   Z = ∫_{ε_t}^{T} g²/std² dt
 * — a plain ε-prediction MSE up to the constant Z. We optimise ‖ε̂ − z‖² (weight 1) and report Z, so the
 * maximum-likelihood bound's score-matching part is Z × the importance loss (Z ≈ 23.9 for VP, ε_t = 1e-5).
 *
 * The proposal's CDF has a closed form. With B(t) = ∫₀ᵗβ:
 *   VP:     g²/std² = β/(1 − e^{−B}) = d/dt log(e^{B} − 1)          → W(t) = log(e^{B(t)} − 1) − log(e^{B(ε)} − 1)
 *   sub-VP: g²/std² = β(1 + e^{−B})/(1 − e^{−B}) = d/dt [2 log(e^{B} − 1) − B]
 * (score_flow's `likelihood_importance_cum_weight` is the VP case written as log(1 − e^{−B}) + B.) Sampling:
 * u ~ U[0, 1), find t with W(t) = u·Z by bisection on [ε_t, T] (W is increasing).
 */
import type { HostRng } from '../engine/rng.js';
import { SbgcError } from '../engine/errors.js';
import type { Sde } from '../model/sde.js';

export type TimeSampling = 'importance' | 'uniform' | 'mixture';
export const TIME_SAMPLINGS: readonly TimeSampling[] = ['importance', 'uniform', 'mixture'];

/** score_flow's ε_t: the smallest diffusion time trained on (and integrated from). */
export const DEFAULT_EPS_T = 1e-5;

/** log(e^{B} − 1) without overflow for large B or cancellation for small B. */
function logExpm1(b: number): number {
  return b > 30 ? b + Math.log1p(-Math.exp(-b)) : Math.log(Math.expm1(b));
}

/** Antiderivative of g²/std² up to a constant (see the module comment). */
function antiderivative(sde: Sde, t: number): number {
  const b = sde.integralBeta(t);
  return sde.kind === 'vp' ? logExpm1(b) : 2 * logExpm1(b) - b;
}

/** W(t) = ∫_{ε_t}^{t} g(s)²/std(s)² ds, the proposal's unnormalised CDF. */
export function importanceCumWeight(sde: Sde, t: number, epsT = DEFAULT_EPS_T): number {
  return antiderivative(sde, t) - antiderivative(sde, epsT);
}

/** Z = W(T): the proposal's normaliser, and the constant λ(t)/q(t) (in ε-units: g²/std² / q). */
export function importanceNormaliser(sde: Sde, epsT = DEFAULT_EPS_T): number {
  return importanceCumWeight(sde, sde.T, epsT);
}

/** The proposal density q(t) = g²/std² / Z on [ε_t, T] (0 outside). */
export function importanceDensity(sde: Sde, t: number, epsT = DEFAULT_EPS_T): number {
  if (t < epsT || t > sde.T) return 0;
  const std = sde.marginalStd(t);
  return sde.diffusionSquared(t) / (std * std) / importanceNormaliser(sde, epsT);
}

/**
 * The t with W(t) = u·Z (u ∈ [0, 1)), by bisection on [ε_t, T] until the bracket stops shrinking in float64
 * (≤ ~60 halvings; score_flow runs a fixed 100 in float32).
 */
export function invertImportanceCdf(sde: Sde, u: number, epsT = DEFAULT_EPS_T): number {
  if (!(u >= 0 && u <= 1)) throw new RangeError(`invertImportanceCdf: u must be in [0, 1], got ${u}`);
  const target = u * importanceNormaliser(sde, epsT);
  const ref = antiderivative(sde, epsT);
  let lo = epsT;
  let hi = sde.T;
  for (let i = 0; i < 200; i++) {
    const mid = 0.5 * (lo + hi);
    if (mid <= lo || mid >= hi) break;
    if (antiderivative(sde, mid) - ref < target) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

export interface TimeBatch {
  /** Diffusion times in [ε_t, T], one per sample. */
  t: Float64Array;
  /** Per-sample weight of ‖ε̂ − z‖² in the loss (1 for every mode here; kept so other weightings can plug in). */
  weight: Float64Array;
  /** Which proposal each sample came from (1 = importance, 0 = uniform). */
  fromImportance: Uint8Array;
}

/**
 * Times for one batch:
 * - 'importance': every t from q(t) (the likelihood-weighted ML loss / Z);
 * - 'uniform': t ~ U[ε_t, T] (score_sde's unweighted ε-MSE);
 * - 'mixture': the first ⌈B/2⌉ samples from q, the rest uniform — half the batch trains the likelihood bound,
 *   half the noisy middle where the label matters (SPEC §6's open question).
 * One `rng.uniform()` per sample, in batch order.
 */
export function sampleTimes(sde: Sde, mode: TimeSampling, batch: number, rng: HostRng, epsT = DEFAULT_EPS_T): TimeBatch {
  if (!TIME_SAMPLINGS.includes(mode)) throw new SbgcError(`t-sampling must be one of ${TIME_SAMPLINGS.join(', ')}, got '${String(mode)}'`);
  if (!(epsT > 0 && epsT < sde.T)) throw new RangeError(`sampleTimes: ε_t must be in (0, T), got ${epsT}`);
  const t = new Float64Array(batch);
  const fromImportance = new Uint8Array(batch);
  const half = Math.ceil(batch / 2);
  for (let i = 0; i < batch; i++) {
    const u = rng.uniform();
    const importance = mode === 'importance' || (mode === 'mixture' && i < half);
    fromImportance[i] = importance ? 1 : 0;
    t[i] = importance ? invertImportanceCdf(sde, u, epsT) : epsT + (sde.T - epsT) * u;
  }
  return { t, weight: new Float64Array(batch).fill(1), fromImportance };
}
