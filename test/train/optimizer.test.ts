import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { HostRng } from '../../engine/rng.js';
import type { MaybeTensor } from '../../engine/autodiff.js';
import { ParamArena, type ArenaParam } from '../../train/param-arena.js';
import { AdamOptimizer, emaUpdate, learningRateAt, type AdamOptions } from '../../train/optimizer.js';
import '../../kernels/elementwise.js';

/** Float64 reference of one clipped Adam + EMA update over all parameters (same formulas as optimizer.ts). */
function adamReference(
  o: AdamOptions,
  k: number,
  p: Float64Array[],
  m: Float64Array[],
  v: Float64Array[],
  ema: Float64Array[],
  g: Float64Array[],
): number {
  let sq = 0;
  for (const gi of g) for (const x of gi) sq += x * x;
  const norm = Math.sqrt(sq);
  const c = o.gradClipNorm > 0 ? o.gradClipNorm / Math.max(norm, o.gradClipNorm) : 1;
  const lr = learningRateAt(o, k);
  const bc1 = 1 - o.beta1 ** k;
  const bc2 = 1 - o.beta2 ** k;
  p.forEach((pi, t) => {
    for (let i = 0; i < pi.length; i++) {
      const gi = g[t][i] * c;
      m[t][i] = o.beta1 * m[t][i] + (1 - o.beta1) * gi;
      v[t][i] = o.beta2 * v[t][i] + (1 - o.beta2) * gi * gi;
      pi[i] -= (lr * (m[t][i] / bc1)) / (Math.sqrt(v[t][i] / bc2) + o.eps);
      if (o.emaDecay !== null) ema[t][i] = o.emaDecay * ema[t][i] + (1 - o.emaDecay) * pi[i];
    }
  });
  return norm;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

describe('Adam + clipping + EMA over a parameter arena', () => {
  const engine = useEngine();
  // Odd sizes, a scalar, one frozen parameter; a small segment limit forces several segments.
  const params: ArenaParam[] = [
    { name: 'a', shape: [3, 5], trainable: true },
    { name: 'b', shape: [7], trainable: true },
    { name: 'frozen', shape: [4], trainable: false },
    { name: 'c', shape: [1], trainable: true },
    { name: 'd', shape: [33, 2], trainable: true },
    { name: 'e', shape: [130], trainable: true },
  ];

  it('lays parameters out aligned, in several segments, as shaped views', () => {
    const e = engine();
    const arena = ParamArena.create(e, params, { ema: true, maxSegmentBytes: 1024 });
    const align = Math.max(4, e.limits.minStorageBufferOffsetAlignment / 4);
    expect(arena.segments.length).toBeGreaterThan(1);
    for (const s of arena.slots) expect(s.offset % align).toBe(0);
    expect([...arena.params().get('d')!.shape]).toEqual([33, 2]);
    expect(arena.numParams).toBe(15 + 7 + 4 + 1 + 66 + 130);
    arena.dispose();
  });

  for (const emaDecay of [0.9, null] as const) {
    it(`matches a float64 reference over 6 steps (clip on/off, warm-up, null gradient, frozen${emaDecay ? ', EMA' : ''})`, async () => {
      const e = engine();
      const arena = ParamArena.create(e, params, { ema: emaDecay !== null, maxSegmentBytes: 1024 });
      const o: AdamOptions = { lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, warmupSteps: 3, gradClipNorm: 1.5, emaDecay };
      const opt = new AdamOptimizer(e, arena, o);
      const rng = new HostRng(11);
      const init = new Map(params.map((p) => [p.name, Float32Array.from({ length: p.shape.reduce((a, b) => a * b, 1) }, () => rng.normal())]));
      arena.upload('param', init);
      if (arena.hasEma) arena.resetEmaToParams();
      const p = params.map((q) => Float64Array.from(init.get(q.name)!));
      const m = p.map((x) => new Float64Array(x.length));
      const v = p.map((x) => new Float64Array(x.length));
      const ema = p.map((x) => Float64Array.from(x));
      for (let k = 1; k <= 6; k++) {
        // Gradient scales alternate so the global norm is above (clipped) and below the threshold.
        const scale = k % 2 ? 2 : 0.05;
        const g = p.map((x, t) => (params[t].trainable ? Float64Array.from(x, () => scale * rng.normal()) : new Float64Array(x.length)));
        const nullAt = k === 4 ? 1 : -1; // parameter 'b' gets no gradient at step 4 (= zero)
        if (nullAt >= 0) g[nullAt].fill(0);
        const gf = g.map((x) => Float32Array.from(x));
        g.forEach((x, t) => x.set(gf[t])); // the reference sees the f32-rounded gradients
        const norm = adamReference(o, k, p, m, v, ema, g);
        e.scope(() => {
          const tensors: MaybeTensor[] = gf.map((x, t) => (t === nullAt ? null : e.tensor(x, params[t].shape)));
          arena.loadGradients(tensors);
          opt.update();
        });
        const [gpuNormSq] = (await opt.gradNormSq.read()) as Float32Array;
        // f32 sum of ~230 squares: relative error ≲ 230·2⁻²⁴.
        expect(Math.abs(Math.sqrt(gpuNormSq) - norm) / norm).toBeLessThan(2e-5);
      }
      const [gp, gm, gv] = await Promise.all([arena.read('param'), arena.read('m'), arena.read('v')]);
      const gema = arena.hasEma ? await arena.read('ema') : null;
      params.forEach((q, t) => {
        // p moves by ≤ lr per step; f32 rounding of p (|p| ≲ 4) and of the update ratio: ~1e-6 absolute.
        expect(maxAbsDiff(gp.get(q.name)!, p[t])).toBeLessThan(4e-6);
        const mScale = Math.max(1e-3, ...Array.from(m[t], Math.abs));
        const vScale = Math.max(1e-6, ...Array.from(v[t], Math.abs));
        expect(maxAbsDiff(gm.get(q.name)!, m[t]) / mScale).toBeLessThan(1e-5);
        expect(maxAbsDiff(gv.get(q.name)!, v[t]) / vScale).toBeLessThan(1e-5);
        if (gema) expect(maxAbsDiff(gema.get(q.name)!, ema[t])).toBeLessThan(4e-6);
        if (!q.trainable) expect(Array.from(gp.get(q.name)!)).toEqual(Array.from(init.get(q.name)!));
      });
      opt.dispose();
      arena.dispose();
    });
  }

  it('unfused EMA kernel matches d·ema + (1 − d)·p, and leaves ema = p exactly when equal', async () => {
    const e = engine();
    const arena = ParamArena.create(e, params, { ema: true });
    const rng = new HostRng(3);
    const val = () => new Map(params.map((p) => [p.name, Float32Array.from({ length: p.shape.reduce((a, b) => a * b, 1) }, () => rng.normal())]));
    const p0 = val();
    arena.upload('param', p0);
    arena.resetEmaToParams();
    emaUpdate(e, arena, 0.99);
    const same = await arena.read('ema');
    for (const q of params) expect(Array.from(same.get(q.name)!)).toEqual(Array.from(p0.get(q.name)!));
    const p1 = val();
    arena.upload('param', p1);
    emaUpdate(e, arena, 0.99);
    const got = await arena.read('ema');
    for (const q of params) {
      const ref = Array.from(p0.get(q.name)!, (x, i) => 0.99 * x + 0.01 * p1.get(q.name)![i]);
      expect(maxAbsDiff(got.get(q.name)!, ref)).toBeLessThan(1e-6); // one f32 fma-ish rounding of |x| ≲ 4
    }
    arena.dispose();
  });

  it('warm-up is linear from the first update', () => {
    const o = { lr: 2e-4, warmupSteps: 4 };
    expect([1, 2, 4, 5, 100].map((k) => learningRateAt(o, k))).toEqual([5e-5, 1e-4, 2e-4, 2e-4, 2e-4]);
    expect(learningRateAt({ lr: 1, warmupSteps: 0 }, 1)).toBe(1);
  });
});
