import { GaussianMixtureScoreModel } from '../../model/analytic-models.js';
import { createSde, type Sde } from '../../model/sde.js';
import { randomHost } from './check-op.js';

/**
 * The model tests' Gaussian mixture: 2 classes × 3 components on D = 15 (odd, [1, 3, 5]), means spread so that
 * the responsibilities are mixed; the first class's components weighted unequally.
 */
export function testMixture(sde: Sde = createSde('vp')): GaussianMixtureScoreModel {
  const mean = (seed: number) => randomHost([15], seed, 1.2).data;
  return new GaussianMixtureScoreModel({
    shape: [1, 3, 5],
    sde,
    classes: [
      [
        { mean: mean(1), variance: 0.3, weight: 1 },
        { mean: mean(2), variance: 0.8, weight: 2 },
        { mean: mean(3), variance: 0.5, weight: 0.5 },
      ],
      [
        { mean: mean(4), variance: 0.2 },
        { mean: mean(5), variance: 1.1 },
        { mean: mean(6), variance: 0.6 },
      ],
    ],
  });
}
