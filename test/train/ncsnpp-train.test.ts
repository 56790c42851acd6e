import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useEngine } from '../helpers/engine.js';
import { HostRng } from '../../engine/rng.js';
import { loadPreset, parseConfig } from '../../model/config.js';
import { DEFAULT_ADAM } from '../../train/optimizer.js';
import { DEFAULT_TRAIN_OPTIONS, Trainer, type TrainOptions } from '../../train/trainer.js';
import { ncsnppTrainable } from '../../train/ncsnpp-model.js';
import type { ImageDataset } from '../../data/dataset.js';
import '../../kernels/elementwise.js';

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

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function options(over: Partial<TrainOptions>): TrainOptions {
  return {
    ...DEFAULT_TRAIN_OPTIONS,
    steps: 4,
    batchSize: 4,
    adam: { ...DEFAULT_ADAM, warmupSteps: 2, emaDecay: 0.9 },
    tSampling: 'importance',
    flip: true,
    logEvery: 2,
    checkpointEvery: 0,
    ...over,
  };
}

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

    const dir = mkdtempSync(join(tmpdir(), 'sbgc-ncsnpp-train-'));
    dirs.push(dir);
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
});
