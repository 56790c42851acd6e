/**
 * End to end with the `tiny` network (random init, so the numbers mean nothing as a classifier): the classifier
 * pipeline is finite, deterministic for a seed, and batch-invariant under per-sample step control.
 */
import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { loadPreset } from '../../model/config.js';
import { initWeights } from '../../model/weights.js';
import { NetworkScoreModel } from '../../model/score.js';
import { classify } from '../../eval/probability-flow-likelihood.js';
import { HostRng, randomTensor } from '../../engine/rng.js';
import { hutchinsonTrace } from '../../solvers/divergence.js';

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

  it('Hutchinson by a JVP (εᵀ·Jε) equals Hutchinson by a VJP (εᵀJ·ε) to float32 rounding, on the tiny network', async () => {
    const e = engine();
    const weights = initWeights(e, config, 3);
    const model = new NetworkScoreModel(weights);
    const B = 5;
    const shape = [B, config.channels, config.imageSize, config.imageSize];
    const x = randomTensor(e, shape, 'normal', { seed: 21 });
    const eps = randomTensor(e, shape, 'rademacher', { seed: 22 });
    const times = Float64Array.from({ length: B }, (_, b) => 0.05 + 0.2 * b);
    const labels = Uint32Array.from({ length: B }, (_, b) => b % config.numClasses);
    const score = (xx: typeof x) => model.score(e, xx, times, labels);
    const fwd = hutchinsonTrace(e, score, x, eps, 'forward');
    const rev = hutchinsonTrace(e, score, x, eps, 'reverse');
    // The primal pass: the fused dual kernels sum in another order than the plain forward; measured ≤ 4e-6.
    const [sf, sr] = [await fwd.score.read(), await rev.score.read()];
    let maxScore = 0;
    for (let k = 0; k < sf.length; k++) maxScore = Math.max(maxScore, Math.abs(sf[k] - sr[k]) / (1 + Math.abs(sr[k])));
    expect(maxScore).toBeLessThan(1e-5);
    // Σ_k ε_k (Jε)_k against Σ_k (εᵀJ)_k ε_k: the same number summed in other orders, D = 256 terms larger than
    // their sum; measured ≤ 3e-5 absolute on traces of 1.6–56 (tolerance: 1e-4·(1 + |trace|), ≥ 8× that).
    const [tf, tr] = [await fwd.trace.read(), await rev.trace.read()];
    for (let b = 0; b < B; b++) {
      expect(Number.isFinite(tr[b])).toBe(true);
      expect(Math.abs(tf[b] - tr[b]), `row ${b}: ${tf[b]} vs ${tr[b]}`).toBeLessThan(1e-4 * (1 + Math.abs(tr[b])));
    }
    for (const t of [x, eps, fwd.score, fwd.trace, rev.score, rev.trace]) t.dispose();
    weights.dispose();
  });
});
