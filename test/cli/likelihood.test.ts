import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { createSde } from '../../model/sde.js';
import { isotropicGaussianModel } from '../../model/analytic-models.js';
import { runLikelihood } from '../../cli/likelihood.js';
import { useEngine } from '../helpers/engine.js';
import { EPS_T, f4, i8, mixtureModel, tempDir, testIo, writeModelFile } from './cli-fixtures.js';

describe('sbgc likelihood', () => {
  const engine = useEngine();
  const dir = tempDir('sbgc-likelihood-');
  const mixtureFile = writeModelFile(dir);
  const mixture = mixtureModel();
  const xs = Float64Array.from([0.31, 0.42, 0.48, 0.62, 0.52, 0.47, 0.41, 0.38, 0.58, 0.33, 0.57, 0.29], Math.fround);
  const xPath = f4(join(dir, 'x.npy'), [3, 1, 2, 2], xs);

  it('an analytic Gaussian (exact prior and divergence, float64 state): log p and bits/dim equal the closed form', async () => {
    const spec = { shape: [1, 2, 2], mean: [0.4, 0.5, 0.45, 0.5], variance: 0.02 };
    const file = writeModelFile(dir, spec, 'gauss.json');
    const gauss = isotropicGaussianModel({ shape: [1, 2, 2], sde: createSde('vp'), mean: spec.mean, variance: spec.variance });
    const io = testIo(engine);
    const r = await runLikelihood(
      ['--model', 'analytic:gaussian', '--model-file', file, '--npy', xPath, '--npy-space', 'model', '--probes', 'exact', '--prior', 'exact', '--state', 'host-f64', '--rtol', '1e-8', '--atol', '1e-8', '--no-progress'],
      io,
    );
    expect(JSON.parse(io.stdout.text).format).toBe('sbgc.likelihood/1');
    expect(r!.settings).toMatchObject({ mode: 'unconditional', state: 'host-f64', prior: 'exact' });
    for (let i = 0; i < 3; i++) {
      const want = gauss.logDensity(xs.subarray(i * 4, (i + 1) * 4), EPS_T);
      const rec = r!.images[i];
      // Float64 state at rtol 1e-8 with an f32 RHS: ~1e-7 relative (SPEC §3's measurement).
      expect(Math.abs(rec.logp - want)).toBeLessThan(1e-5 * Math.abs(want) + 1e-6);
      expect(rec.exact!.logp).toBeCloseTo(want, 6);
      expect(rec.bitsPerDim).toBeCloseTo(-rec.logp / (4 * Math.LN2) + 8, 6);
      expect(rec.label).toBeNull();
    }
  });

  it('given labels (from --labels or --label) and the marginal over classes', async () => {
    const yPath = i8(join(dir, 'y.npy'), [0, 1, 2]);
    const base = ['--model', 'analytic:mixture', '--model-file', mixtureFile, '--npy', xPath, '--npy-space', 'model', '--probes', 'exact', '--prior', 'exact', '--no-progress', '--quiet'];
    const given = await runLikelihood([...base, '--labels', yPath], testIo(engine));
    const fixed = await runLikelihood([...base, '--label', '2'], testIo(engine));
    const marginal = await runLikelihood([...base, '--marginal'], testIo(engine));
    expect(given!.settings).toMatchObject({ mode: 'given-label', label: 'from the input' });
    expect(fixed!.settings).toMatchObject({ mode: 'given-label', label: 2 });
    expect(marginal!.settings).toMatchObject({ mode: 'marginal', label: null });
    for (let i = 0; i < 3; i++) {
      const x = xs.subarray(i * 4, (i + 1) * 4);
      const b = mixture.bayes(x, EPS_T);
      // f32 state at rtol 1e-5: ≤ 3e-4 nats measured (see the classify test).
      expect(given!.images[i].label).toBe(i);
      expect(Math.abs(given!.images[i].logp - b.logp[i])).toBeLessThan(1e-3);
      expect(Math.abs(fixed!.images[i].logp - b.logp[2])).toBeLessThan(1e-3);
      const lse = Math.log(b.logp.reduce((a, l) => a + Math.exp(l), 0) / 3);
      expect(Math.abs(marginal!.images[i].logp - lse)).toBeLessThan(1e-3);
      expect(marginal!.images[i].exact!.logp).toBeCloseTo(lse, 6);
      expect(marginal!.images[i].logpPerClass).toHaveLength(3);
    }
  });

  it('refuses what it cannot do, naming the flag', async () => {
    const run = (argv: string[]) => runLikelihood(argv, testIo(engine));
    const base = ['--model', 'analytic:mixture', '--model-file', mixtureFile, '--npy', xPath, '--npy-space', 'model'];
    await expect(run(base)).rejects.toThrow(/class-conditional \(3 classes\) and the input has no labels: give --label Y, .* or --marginal/);
    await expect(run([...base, '--label', '3'])).rejects.toThrow(/--label 3 is outside \[0, 3\)/);
    await expect(run([...base, '--label', '1', '--marginal'])).rejects.toThrow(/--label and --marginal contradict/);
    await expect(run(['--model', 'analytic:gaussian', '--npy', xPath, '--marginal'])).rejects.toThrow(/does not fit the model's images 1×4×4/);
  });
});
