import { describe, expect, it } from 'vitest';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { useEngine } from '../helpers/engine.js';
import type { Engine } from '../../engine/engine.js';
import { DEFAULT_ADAM } from '../../train/optimizer.js';
import { CHECKPOINT_FILE, CURVE_FILE, LOG_FILE, Trainer, WEIGHTS_FILE } from '../../train/trainer.js';
import { loadCheckpoint, saveCheckpoint } from '../../train/checkpoint.js';
import { parseSafetensors } from '../../formats/safetensors.js';
import { toyDataset, toyModel } from './toy-model.js';
import { shortRunOptions } from './short-run-options.js';
import { useTempDirs } from '../helpers/temp-dir.js';
import '../../kernels/elementwise.js';

const tempDir = useTempDirs('sbgc-train-');

const options = shortRunOptions({
  steps: 8,
  batchSize: 8,
  adam: { ...DEFAULT_ADAM, lr: 3e-3, warmupSteps: 3, emaDecay: 0.9 },
  logEvery: 3,
});

async function arenaState(t: Trainer): Promise<Record<string, Map<string, Float32Array>>> {
  return { param: await t.arena.read('param'), m: await t.arena.read('m'), v: await t.arena.read('v'), ema: await t.arena.read('ema') };
}

function bits(m: Map<string, Float32Array>): Map<string, number[]> {
  return new Map([...m].map(([k, v]) => [k, Array.from(new Uint32Array(v.buffer, v.byteOffset, v.length))]));
}

describe('trainer', () => {
  const engine = useEngine();
  const model = toyModel();
  const data = toyDataset(96);

  /** A trainer with its own folder, run for `steps` steps (the final checkpoint written there). */
  async function trainedInNewDir(steps: number): Promise<{ e: Engine; dir: string; t: Trainer }> {
    const e = engine();
    const dir = tempDir();
    const t = await Trainer.create(e, model, data, options({ outDir: dir, steps }));
    await t.train();
    return { e, dir, t };
  }

  it('loss decreases over 60 steps on the toy data (uniform t)', async () => {
    const e: Engine = engine();
    const t = await Trainer.create(e, model, data, options({ steps: 60, batchSize: 32, tSampling: 'uniform', logEvery: 10, adam: { ...DEFAULT_ADAM, lr: 1e-2, warmupSteps: 5, emaDecay: 0.99 } }));
    const summary = await t.train();
    const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
    const first = mean(t.history.slice(0, 10).map((h) => h.loss));
    const last = mean(t.history.slice(-10).map((h) => h.loss));
    // At init ε̂ ≈ noise of the random MLP (loss ≈ D = 16 plus); a denoiser of 3 stripe classes does far better.
    expect(last).toBeLessThan(0.6 * first);
    expect(t.history.map((h) => h.step)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(summary.step).toBe(60);
    expect(summary.stepsPerSecond).toBeGreaterThan(0);
    console.log(`toy MLP (${t.arena.numParams} params, batch 32): ${summary.stepsPerSecond.toFixed(1)} steps/s; loss ${first.toFixed(2)} → ${last.toFixed(2)}`);
    t.dispose();
  });

  it('memory is flat across steps (bytes in use, live tensors, pool allocations)', async () => {
    const e = engine();
    const t = await Trainer.create(e, model, data, options({ steps: 40, logEvery: 4 }));
    await t.train(8); // warm: pipelines compiled, pool populated
    const before = e.memory();
    for (let k = 0; k < 4; k++) {
      await t.train(t.step + 4);
      const now = e.memory();
      expect(now.bytesInUse).toBe(before.bytesInUse);
      expect(now.liveTensors).toBe(before.liveTensors);
    }
    // The pool serves every step from buffers it already has (no growth over 16 more steps).
    expect(e.memory().peakBytesAllocated).toBe(before.peakBytesAllocated);
    t.dispose();
  });

  it('resume is bit-identical: 8 steps straight = 4 + checkpoint + load + 4 (mixture t, flips, EMA)', async () => {
    const e = engine();
    const base = { tSampling: 'mixture' as const, flip: true, seed: 1234 };
    const a = await Trainer.create(e, model, data, options({ ...base, outDir: tempDir() }));
    await a.train();
    const straight = await arenaState(a);

    const dir = tempDir();
    const b = await Trainer.create(e, model, data, options({ ...base, outDir: dir }));
    await b.train(4);
    b.dispose();
    const c = await Trainer.create(e, model, data, options({ ...base, outDir: dir, resume: true }));
    expect(c.step).toBe(4);
    await c.train();
    const resumed = await arenaState(c);
    for (const kind of ['param', 'm', 'v', 'ema']) expect(bits(resumed[kind])).toEqual(bits(straight[kind]));
    // The resumed run's log has each step once, and matches the straight run's losses exactly.
    const lines = readFileSync(join(dir, LOG_FILE), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss?: number });
    const steps = lines.filter((l) => l.loss !== undefined).map((l) => l.step);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(lines.filter((l) => l.loss !== undefined).map((l) => l.loss)).toEqual(a.history.map((h) => h.loss));
    expect(readFileSync(join(dir, CURVE_FILE), 'utf8')).toMatch(/^<svg[\s\S]*<polyline[\s\S]*<\/svg>\n$/);
    const weights = parseSafetensors(readFileSync(join(dir, WEIGHTS_FILE)));
    expect(weights.metadata.weights).toBe('raw'); // auto: 0.9^8 = 43 % of the init is still in the EMA
    expect([...weights.tensors.keys()].sort()).toEqual(model.params.map((p) => p.name).sort());
    const ckpt = await loadCheckpoint(join(dir, CHECKPOINT_FILE));
    expect(ckpt.state.step).toBe(8);
    expect(ckpt.state.model).toEqual(model.describe());
    a.dispose();
    c.dispose();
  });

  it('a resume with a different seed or batch is refused, naming the option', async () => {
    const { e, dir, t: a } = await trainedInNewDir(2);
    a.dispose();
    await expect(Trainer.create(e, model, data, options({ outDir: dir, resume: true, seed: 5 }))).rejects.toThrow(/seed = 0, not 5/);
    await expect(Trainer.create(e, model, data, options({ outDir: dir, resume: true, batchSize: 4 }))).rejects.toThrow(/batchSize/);
    const lr = { ...options({}).adam, lr: 1e-3 };
    await expect(Trainer.create(e, model, data, options({ outDir: dir, resume: true, adam: lr }))).rejects.toThrow(/adam.lr = 0.003, not 0.001/);
    // A longer run (only `steps` differs) resumes.
    const more = await Trainer.create(e, model, data, options({ outDir: dir, resume: true, steps: 3 }));
    expect(more.step).toBe(2);
    more.dispose();
  });

  it('a failed checkpoint write leaves the previous file intact and no partial file behind', async () => {
    const { dir, t } = await trainedInNewDir(2);
    const path = join(dir, CHECKPOINT_FILE);
    const good = readFileSync(path);
    // 1. Non-finite parameters (a diverged run) are refused before anything is written.
    const saved = await t.arena.read('param');
    const broken = new Map(saved);
    broken.set(model.params[0].name, saved.get(model.params[0].name)!.map((v, i) => (i === 3 ? NaN : v)));
    t.arena.upload('param', broken);
    await expect(saveCheckpoint(path, t.arena, t.state())).rejects.toThrow(/not saved: param of 'in.weight' is NaN at element 3/);
    expect(readFileSync(path).equals(good)).toBe(true);
    // 2. The rename fails (the target is a non-empty directory): the temp file is removed.
    t.arena.upload('param', saved);
    const blocked = join(dir, 'blocked.safetensors');
    mkdirSync(blocked);
    writeFileSync(join(blocked, 'x'), 'x');
    await expect(saveCheckpoint(blocked, t.arena, t.state())).rejects.toThrow(/write failed/);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    t.dispose();
  });

  it('rejects a dataset that does not fit the model, naming both', async () => {
    const e = engine();
    const wrong = toyDataset(10, { channels: 1, size: 5, hidden: 4, numClasses: 3, timeDim: 4 });
    await expect(Trainer.create(e, model, wrong, options({}))).rejects.toThrow(/toy-stripes has images \[1×5×5\], the model toy-mlp takes \[1×4×4\]/);
  });
});
