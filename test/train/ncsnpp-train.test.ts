import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { useEngine } from '../helpers/engine.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import { shortRunOptions } from './short-run-options.js';
import { HostRng } from '../../engine/rng.js';
import { loadPreset, parseConfig } from '../../model/config.js';
import { DEFAULT_ADAM } from '../../train/optimizer.js';
import { DEFAULT_TRAIN_OPTIONS, Trainer } from '../../train/trainer.js';
import { ncsnppTrainable } from '../../train/ncsnpp-model.js';
import type { ImageDataset } from '../../data/dataset.js';
import '../../kernels/elementwise.js';
import { exportWeightsCommand } from '../../cli/export-weights.js';
import { loadHostWeights } from '../../model/weights.js';
import { initParams } from '../../model/init.js';

// The `tiny` preset (8×8×3, 3 classes, attention at 4×4) with dropout on, so dropout masks are part of the state.
const config = parseConfig({ ...loadPreset('tiny'), dropout: 0.1 }, 'tiny+dropout');
const model = ncsnppTrainable(config);

function randomImages(n: number): ImageDataset {
  const rng = new HostRng(42);
  const dims = 3 * 8 * 8;
  const pixels = Uint8Array.from({ length: n * dims }, () => rng.int(256));
  return {
    name: 'random-8x8',
    length: n,
    shape: [3, 8, 8],
    numClasses: 3,
    image: (i) => pixels.slice(i * dims, (i + 1) * dims),
    label: (i) => i % 3,
  };
}

const tempDir = useTempDirs('sbgc-ncsnpp-train-');

const options = shortRunOptions({
  steps: 4,
  batchSize: 4,
  adam: { ...DEFAULT_ADAM, warmupSteps: 2, emaDecay: 0.9 },
  tSampling: 'importance',
  flip: true,
  logEvery: 2,
});

describe('training the NCSN++ network (tiny preset + dropout)', () => {
  const engine = useEngine();
  const data = randomImages(16);

  it('4 steps straight = 2 + checkpoint + resume + 2, bit for bit; memory flat across steps', async () => {
    const e = engine();
    const a = await Trainer.create(e, model, data, options({}));
    await a.train(2);
    const mem = e.memory();
    await a.train(4);
    expect(e.memory().bytesInUse).toBe(mem.bytesInUse);
    expect(e.memory().liveTensors).toBe(mem.liveTensors);
    const straight = await a.arena.read('param');
    const straightEma = await a.arena.read('ema');
    expect(a.history.every((h) => Number.isFinite(h.loss) && h.loss > 0)).toBe(true);

    const dir = tempDir();
    const b = await Trainer.create(e, model, data, options({ outDir: dir }));
    await b.train(2);
    b.dispose();
    const c = await Trainer.create(e, model, data, options({ outDir: dir, resume: true }));
    await c.train(4);
    const resumed = await c.arena.read('param');
    const resumedEma = await c.arena.read('ema');
    for (const p of model.params) {
      expect(new Uint32Array(resumed.get(p.name)!.buffer)).toEqual(new Uint32Array(straight.get(p.name)!.buffer));
      expect(new Uint32Array(resumedEma.get(p.name)!.buffer)).toEqual(new Uint32Array(straightEma.get(p.name)!.buffer));
    }
    expect(c.history.map((h) => h.loss)).toEqual(a.history.map((h) => h.loss));
    a.dispose();
    c.dispose();
  });

  it('sbgc export-weights: the raw or EMA weights of a checkpoint, bit for bit, loadable by evaluation commands', async () => {
    const e = engine();
    const dir = tempDir('sbgc-export-');
    const t = await Trainer.create(e, model, data, options({ outDir: dir, steps: 2 }));
    await t.train(2);
    const raw = await t.arena.read('param');
    const ema = await t.arena.read('ema');
    const exported = await t.exportWeights(); // auto at step 2 with decay 0.9 (0.81 of the init left): raw
    t.dispose();
    const ckpt = join(dir, 'checkpoint.safetensors');
    for (const [which, want] of [['raw', raw], ['ema', ema], ['auto', raw]] as const) {
      const out = join(dir, `w-${which}.safetensors`);
      expect(await exportWeightsCommand([ckpt, '--out', out, '--which', which])).toBe(true);
      const { params, metadata } = await loadHostWeights(config, out);
      expect(metadata).toMatchObject({ step: '2', weights: which === 'ema' ? 'ema' : 'raw' });
      for (const p of model.params) expect(new Uint32Array(params.get(p.name)!.buffer), `${which} ${p.name}`).toEqual(new Uint32Array(want.get(p.name)!.buffer));
    }
    const trainerExport = await loadHostWeights(config, exported);
    const auto = await loadHostWeights(config, join(dir, 'w-auto.safetensors'));
    for (const p of model.params) expect(auto.params.get(p.name)).toEqual(trainerExport.params.get(p.name));
    await expect(exportWeightsCommand([ckpt, '--out', join(dir, 'x'), '--which', 'best'])).rejects.toThrow(/--which must be auto, ema, ema-debiased or raw, got 'best'/);
    await expect(exportWeightsCommand([ckpt])).rejects.toThrow(/--out W.safetensors is required/);
    await expect(exportWeightsCommand([exported, '--out', join(dir, 'y')])).rejects.toThrow(new RegExp(exported.replace(/[.]/g, '\\.')));
  });

  it('sbgc export-weights --which ema-debiased: the EMA without the initialisation, (d·θ₁ + θ₂)/(1 + d) after 2 steps', async () => {
    const e = engine();
    const dir = tempDir('sbgc-debias-');
    const t = await Trainer.create(e, model, data, options({ outDir: dir, steps: 2 }));
    const theta0 = await t.arena.read('param');
    await t.train(1);
    const theta1 = await t.arena.read('param');
    await t.train(2);
    const theta2 = await t.arena.read('param');
    t.dispose();
    // The debiasing re-draws θ₀ from the seed: it must be the trainer's own initialisation, bit for bit.
    const init = initParams(config, DEFAULT_TRAIN_OPTIONS.seed);
    for (const p of model.params) expect(init.get(p.name), p.name).toEqual(theta0.get(p.name));
    const out = join(dir, 'w-debiased.safetensors');
    expect(await exportWeightsCommand([join(dir, 'checkpoint.safetensors'), '--out', out, '--which', 'ema-debiased'])).toBe(true);
    const { params, metadata } = await loadHostWeights(config, out);
    expect(metadata).toMatchObject({ step: '2', weights: 'ema-debiased' });
    const d = 0.9;
    let worst = 0;
    for (const p of model.params) {
      const got = params.get(p.name)!;
      const a = theta1.get(p.name)!;
      const b = theta2.get(p.name)!;
      const t0 = theta0.get(p.name)!;
      for (let i = 0; i < got.length; i++) {
        const want = (d * a[i] + b[i]) / (1 + d);
        // float32 EMA updates and the division by 1 − d² = 0.19 amplify rounding of |θ| to a few ulp of max |θ|.
        const scale = Math.max(Math.abs(t0[i]), Math.abs(a[i]), Math.abs(b[i]), 1e-3);
        worst = Math.max(worst, Math.abs(got[i] - want) / scale);
      }
    }
    expect(worst).toBeLessThan(1e-5);
  });
});
