// The Estimator interface: both estimators answer on model-space images exactly what their functions answer on the
// same pixels, plus per-image cost and status.
import { describe, expect, it } from 'vitest';
import { createSde } from '../../model/sde.js';
import { classConditionalGaussians } from '../../model/analytic-models.js';
import { imagesInModelSpace } from '../../data/model-space-images.js';
import { classify } from '../../eval/probability-flow-likelihood.js';
import { elboClassify } from '../../eval/elbo.js';
import { elboEstimator, maxNfe, probabilityFlowEstimator, rowStatus, type ClassLogpEstimate } from '../../eval/estimator.js';
import { useEngine } from '../helpers/engine.js';

const engine = useEngine();
const shape: [number, number, number] = [1, 2, 2];
const model = classConditionalGaussians({
  shape,
  sde: createSde('vp'),
  means: [
    [0.3, 0.4, 0.5, 0.6],
    [0.6, 0.5, 0.4, 0.3],
  ],
  variances: 0.02,
});
const pixels = Uint8Array.from({ length: 3 * 4 }, (_, i) => (i * 53 + 90) % 256);
const images = imagesInModelSpace({ pixels }, shape, { centered: false, dequantise: true }, 'test');

/** What an estimator's answer shares with the function it wraps; `spread` is that function's name for the spread. */
function expectSameAnswer(
  est: ClassLogpEstimate,
  ref: { logpPerClass: Float64Array; predicted: Uint32Array },
  spread: Float64Array,
): void {
  expect(est.logpPerClass).toEqual(ref.logpPerClass);
  expect(est.logpSpreadPerClass).toEqual(spread);
  expect(est.predicted).toEqual(ref.predicted);
}

describe('Estimator', () => {
  it('the ODE estimator is classify on the same images, with per-image NFE and status', async () => {
    const options = { rtol: 1e-4, atol: 1e-4, nProbes: 2, seed: 5 };
    const est = await probabilityFlowEstimator(options).logpPerClass(engine(), model, images, { imageOffset: 7 });
    const ref = await classify(engine(), model, { pixels }, { ...options, imageOffset: 7 });
    expect(est.estimator).toBe('ode');
    expectSameAnswer(est, ref, ref.logpStdPerClass);
    expect(est.posterior).toEqual(ref.posterior);
    expect(est.logpPerDraw).toEqual(ref.logpPerDraw);
    expect(est.draws).toBe(2);
    expect(Array.from(est.nfePerImage)).toEqual([0, 1, 2].map((i) => maxNfe(ref.rows, i * 4, (i + 1) * 4)));
    expect(est.statusPerImage).toEqual([0, 1, 2].map((i) => rowStatus(ref.rows, i * 4, (i + 1) * 4)));
  });

  it('the ELBO estimator is elboClassify on the same images', async () => {
    const options = { k: 8, seed: 3 };
    const est = await elboEstimator(options).logpPerClass(engine(), model, images, { imageOffset: 2 });
    const ref = await elboClassify(engine(), model, { pixels }, { ...options, imageOffset: 2 });
    expect(est.estimator).toBe('elbo');
    expectSameAnswer(est, ref, ref.logpStdErrPerClass);
    expect(Array.from(est.nfePerImage)).toEqual([8, 8, 8]);
    expect(est.statusPerImage).toEqual([{ status: 'success' }, { status: 'success' }, { status: 'success' }]);
    expect(est.logpPerDraw).toBeNull();
  });
});
