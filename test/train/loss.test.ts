import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { drawHost, blocksFor, HostRng } from '../../engine/rng.js';
import { jvp, vjp } from '../../engine/autodiff.js';
import type { Tensor } from '../../engine/tensor.js';
import {
  denoisingLossWithGradients,
  NOISE_STREAM,
  perturbationCoefficients,
  perturbSamples,
  weightedSquaredError,
} from '../../train/loss.js';
import { sampleTimes } from '../../train/time-sampling.js';
import { toyModel } from './toy-model.js';
import '../../kernels/elementwise.js';

const rand = (n: number, seed: number) => {
  const r = new HostRng(seed);
  return Float32Array.from({ length: n }, () => r.normal());
};

describe('denoising score-matching loss', () => {
  const engine = useEngine();

  it('x_t = mean(t)·x₀ + std(t)·z per sample (odd sizes, batch 1 and 3)', async () => {
    const e = engine();
    const sde = toyModel().sde;
    for (const [b, inner] of [
      [1, 7],
      [3, 13],
    ]) {
      const x0 = rand(b * inner, 1);
      const z = rand(b * inner, 2);
      const t = [0.001, 0.5, 0.99].slice(0, b);
      const coefs = perturbationCoefficients(sde, t);
      const out = (await perturbSamples(e, e.tensor(x0, [b, inner]), e.tensor(z, [b, inner]), e.tensor(coefs, [2, b])).read()) as Float32Array;
      for (let i = 0; i < out.length; i++) {
        const k = Math.floor(i / inner);
        const ref = sde.meanCoefficient(t[k]) * x0[i] + sde.marginalStd(t[k]) * z[i];
        expect(Math.abs(out[i] - ref)).toBeLessThan(2e-6); // two f32 products and a sum of |·| ≲ 4
      }
    }
  });

  it('weighted squared error: value and VJP vs float64', async () => {
    const e = engine();
    const [b, d] = [5, 11];
    const p = rand(b * d, 3);
    const q = rand(b * d, 4);
    const c = Float32Array.from([0.1, 0.2, 0.3, 0.05, 1]);
    const pt = e.tensor(p, [b, d]);
    const r = vjp(e, (x) => weightedSquaredError(e, x, e.tensor(q, [b, d]), e.tensor(c, [b])), [pt]);
    const [grad] = r.backward(e.tensor([2], [1]));
    const [value] = (await r.output.read()) as Float32Array;
    let ref = 0;
    for (let i = 0; i < p.length; i++) ref += c[Math.floor(i / d)] * (p[i] - q[i]) ** 2;
    expect(Math.abs(value - ref) / ref).toBeLessThan(1e-6); // f32 sums of 11 and 5 terms
    const g = (await grad!.read()) as Float32Array;
    for (let i = 0; i < p.length; i++) {
      const gref = 2 * 2 * c[Math.floor(i / d)] * (p[i] - q[i]);
      expect(Math.abs(g[i] - gref)).toBeLessThan(1e-6 * Math.max(1, Math.abs(gref)));
    }
  });

  it('the toy loss equals its host recomputation from the Philox twin of z, and ⟨∇L, v⟩ matches the JVP', async () => {
    const e = engine();
    const model = toyModel();
    const b = 4;
    const dims = 16;
    const params = model.initialParams(3);
    const ws = model.params.map((p) => e.keep(e.tensor(params.get(p.name)!, p.shape)));
    const x0host = rand(b * dims, 9).map((v) => Math.tanh(v));
    const x0 = e.tensor(x0host, [b, 1, 4, 4]);
    const labels = e.tensor([0, 2, 1, 1], [b], 'u32');
    const times = sampleTimes(model.sde, 'mixture', b, new HostRng(4));
    const offset = 3 * blocksFor(b * dims, 'normal');
    const inputs = { x0, labels, times, noiseSeed: 77, noiseOffset: offset, dropoutSeed: 0, reduce: 'sum' as const };
    const { loss, gradients } = denoisingLossWithGradients(e, model, ws, inputs);
    const grads = gradients();
    const [value] = (await loss.read()) as Float32Array;

    // Host twin: z from drawHost (a few ulp from the GPU's), x_t on the host, ε̂ from the GPU network.
    const z = drawHost(b * dims, 'normal', { seed: 77, stream: NOISE_STREAM, offset }) as Float32Array;
    const coefs = perturbationCoefficients(model.sde, times.t);
    const xt = Float32Array.from(x0host, (v, i) => coefs[Math.floor(i / dims)] * v + coefs[b + Math.floor(i / dims)] * z[i]);
    const pred = (await model.predictNoise(e, new Map(model.params.map((p, i) => [p.name, ws[i]])), e.tensor(xt, [b, 1, 4, 4]), times.t, labels, { train: true, dropoutSeed: 0 }).read()) as Float32Array;
    let ref = 0;
    for (let i = 0; i < pred.length; i++) ref += (pred[i] - z[i]) ** 2 / b;
    // z differs by a few ulp (WGSL log/cos), propagated through a 3-layer MLP: ~1e-5 relative.
    expect(Math.abs(value - ref) / ref).toBeLessThan(3e-5);

    // Reverse vs forward mode along a random direction in parameter space.
    const dirs = model.params.map((p, i) => e.tensor(rand(ws[i].size, 100 + i), p.shape));
    let dot = 0;
    for (let i = 0; i < ws.length; i++) {
      const [g, v] = (await e.readMany([grads[i]!, dirs[i]])) as Float32Array[];
      for (let j = 0; j < g.length; j++) dot += g[j] * v[j];
    }
    const { tangent } = jvp(e, (...w: Tensor[]) => denoisingLossWithGradients(e, model, w, inputs).loss, ws, dirs);
    const [tj] = (await tangent!.read()) as Float32Array;
    // Both are f32 contractions of the same products over ~1.5k parameters.
    expect(Math.abs(dot - tj) / Math.abs(tj)).toBeLessThan(1e-4);
    for (const w of ws) w.dispose();
  });
});
