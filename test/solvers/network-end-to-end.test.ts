/**
 * End to end with the `tiny` network (random init, so the numbers mean nothing as a classifier): the classifier
 * pipeline is finite, deterministic for a seed, and batch-invariant under per-sample step control.
 */
import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { loadPreset } from '../../model/config.js';
import { initWeights } from '../../model/weights.js';
import { NetworkScoreModel } from '../../model/score.js';
import { classify } from '../../solvers/likelihood.js';
import { HostRng } from '../../engine/rng.js';

describe('classifier end to end on the tiny network', () => {
  const engine = useEngine();
  const config = loadPreset('tiny');
  const D = config.channels * config.imageSize * config.imageSize;
  const rng = new HostRng(11);
  const pixels = Uint8Array.from({ length: 2 * D }, () => rng.int(256));
  // Loose tolerance: an untrained net is stiff (≈2 300 NFE at 1e-5); 1e-2 keeps this test to seconds.
  const opts = { rtol: 1e-2, atol: 1e-2, nProbes: 1, seed: 5, stepControl: 'per-sample' as const };

  it('is finite, deterministic for a seed, and batch-invariant with per-sample step control', async () => {
    const e = engine();
    const weights = initWeights(e, config, 3);
    const model = new NetworkScoreModel(weights);
    const both = await classify(e, model, { pixels }, opts);
    expect(both.status).toBe('success');
    expect(both.logpPerClass.every(Number.isFinite)).toBe(true);
    expect(both.bitsPerDimMarginal.every((b) => Number.isFinite(b) && b > 0)).toBe(true);
    const sum = both.posterior.slice(0, config.numClasses).reduce((a, b) => a + b, 0);
    expect(sum).toBeCloseTo(1, 10);

    const again = await classify(e, model, { pixels }, opts);
    expect(again.logpPerDraw).toEqual(both.logpPerDraw);

    // Image 1 solved alone (same keyed probes via imageOffset) equals its row in the batch of two, bit for bit.
    const alone = await classify(e, model, { pixels: pixels.subarray(D) }, { ...opts, imageOffset: 1 });
    const K = config.numClasses;
    expect(Array.from(alone.logpPerClass)).toEqual(Array.from(both.logpPerClass.subarray(K, 2 * K)));
    weights.dispose();
  });
});
