/** What every classifier estimate shares once it has log p(x|y): the class prior, Bayes' rule, draw statistics. */
import { SbgcError } from '../engine/errors.js';

/** The number of classes of a class-conditional model; an error naming `what` for an unconditional one. */
export function requireClasses(model: { numClasses: number }, what: string): number {
  const K = model.numClasses;
  if (!(K >= 1)) throw new SbgcError(`${what}: the model is unconditional (numClasses = 0); a classifier needs class-conditional scores`);
  return K;
}

/** Mean and sample standard deviation (0 for fewer than two values). */
export function meanStd(xs: ArrayLike<number>): { mean: number; std: number } {
  const n = xs.length;
  let s = 0;
  for (let i = 0; i < n; i++) s += xs[i];
  const mean = s / n;
  if (n < 2) return { mean, std: 0 };
  let q = 0;
  for (let i = 0; i < n; i++) q += (xs[i] - mean) ** 2;
  return { mean, std: Math.sqrt(q / (n - 1)) };
}

/** log p(y) for `classes` classes: the given values (checked: one per class, no NaN) or uniform. */
export function classLogPrior(given: ArrayLike<number> | undefined, classes: number, what: string): Float64Array {
  const logPrior = given ? Float64Array.from(given) : new Float64Array(classes).fill(-Math.log(classes));
  if (logPrior.length !== classes || logPrior.some((v) => Number.isNaN(v))) {
    throw new RangeError(`${what}: logPrior needs ${classes} values (one per class), not NaN`);
  }
  return logPrior;
}

/**
 * Bayes' rule per image from log p(x|y) ([images, classes]) and log p(y): p(y|x), log p(x) = logsumexp_y and
 * ŷ = argmax_y (the first on ties), shared by every classifier estimate (ODE, ELBO).
 */
export function classPosterior(
  logpPerClass: Float64Array,
  logPrior: Float64Array,
  images: number,
  classes: number,
): { posterior: Float64Array; logpMarginal: Float64Array; predicted: Uint32Array } {
  const posterior = new Float64Array(images * classes);
  const logpMarginal = new Float64Array(images);
  const predicted = new Uint32Array(images);
  for (let i = 0; i < images; i++) {
    const joint = (y: number) => logpPerClass[i * classes + y] + logPrior[y];
    let mx = -Infinity;
    let best = 0;
    for (let y = 0; y < classes; y++) {
      if (joint(y) > mx) {
        mx = joint(y);
        best = y;
      }
    }
    let z = 0;
    for (let y = 0; y < classes; y++) z += Math.exp(joint(y) - mx);
    logpMarginal[i] = mx + Math.log(z);
    for (let y = 0; y < classes; y++) posterior[i * classes + y] = Math.exp(joint(y) - logpMarginal[i]);
    predicted[i] = best;
  }
  return { posterior, logpMarginal, predicted };
}

