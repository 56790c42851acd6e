import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseTrainArgs as parseOrHelp } from '../../cli/train.js';
import { encodeSafetensors } from '../../formats/safetensors.js';
import { CHECKPOINT_FORMAT } from '../../train/checkpoint.js';

/** The flags parsed (none of these calls asks for --help, which would return null). */
async function parseTrainArgs(argv: string[]) {
  const args = await parseOrHelp(argv);
  if (!args) throw new Error('parseTrainArgs returned null (help) for a call without --help');
  return args;
}

describe('sbgc train flags', () => {
  it('defaults for mnist-small: MNIST train split, no flips, EMA 0.999, warm-up steps/10', async () => {
    const a = await parseTrainArgs(['--preset', 'mnist-small', '--steps', '300']);
    expect(a.dataSpec).toBe('mnist:train');
    expect(a.options.flip).toBe(false);
    expect(a.options.adam.emaDecay).toBe(0.999);
    expect(a.options.adam.warmupSteps).toBe(30);
    expect(a.options.batchSize).toBe(64);
    expect(a.options.tSampling).toBe('importance');
    expect(a.options.outDir).toBe('runs/mnist-small-importance-s0');
  });

  it('parses every flag', async () => {
    const a = await parseTrainArgs([
      '--preset', 'mnist-small', '--steps', '10', '--batch', '16', '--lr', '1e-3', '--warmup', '0', '--ema', '0.99',
      '--t-sampling', 'mixture', '--seed', '7', '--out', '/tmp/x', '--log-every', '2', '--checkpoint-every', '5',
      '--clip', '0', '--eval-weights', 'raw', '--reduce', 'mean', '--eps-t', '1e-3', '--flip', '--no-progress',
    ]);
    expect(a.options).toMatchObject({
      steps: 10, batchSize: 16, tSampling: 'mixture', seed: 7, outDir: '/tmp/x', resume: false, logEvery: 2,
      checkpointEvery: 5, evalWeights: 'raw', reduce: 'mean', epsT: 1e-3, flip: true, progress: false,
    });
    expect(a.options.adam).toMatchObject({ lr: 1e-3, warmupSteps: 0, emaDecay: 0.99, gradClipNorm: 0 });
  });

  it('--resume takes every flag not given from the checkpoint (only --steps changes)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sbgc-cli-'));
    try {
      const saved = {
        steps: 100, batchSize: 16, seed: 9, tSampling: 'mixture', reduce: 'mean', epsT: 1e-4, flip: false, logEvery: 5,
        checkpointEvery: 20, evalEvery: 0, evalWeights: 'ema',
        adam: { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, warmupSteps: 7, gradClipNorm: 2, emaDecay: 0.99 },
      };
      const state = { step: 40, rng: {}, philox: {}, model: {}, options: saved };
      const bytes = encodeSafetensors(new Map(), { format: CHECKPOINT_FORMAT, 'sbgc.train': JSON.stringify(state) });
      writeFileSync(join(dir, 'checkpoint.safetensors'), bytes);
      const a = await parseTrainArgs(['--preset', 'mnist-small', '--out', dir, '--resume', '--steps', '500']);
      expect(a.options).toMatchObject({ ...saved, steps: 500, outDir: dir, resume: true });
      await expect(parseTrainArgs(['--preset', 'mnist-small', '--out', join(dir, 'none'), '--resume'])).rejects.toThrow(/cannot read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [['--preset', 'mnist-small', '--steps', '0'], /--steps must be a positive integer, got '0'/],
    [['--preset', 'mnist-small', '--batch', 'x'], /--batch must be a positive integer/],
    [['--preset', 'mnist-small', '--lr=-1'], /--lr must be a positive number/],
    [['--preset', 'mnist-small', '--ema', '1'], /--ema must be in \[0, 1\)/],
    [['--preset', 'mnist-small', '--t-sampling', 'lognormal'], /--t-sampling must be one of importance, uniform, mixture/],
    [['--preset', 'mnist-small', '--bogus'], /Unknown option '--bogus'/],
    [['--preset', 'nope'], /unknown preset/],
    [['--steps', '3'], /exactly one of --preset or --config/],
    [['--preset', 'tiny'], /--data is required/],
    [['--preset', 'mnist-small', '--flip', '--no-flip'], /contradict/],
  ])('%j is refused with a message naming the flag', async (argv, message) => {
    await expect(parseTrainArgs(argv)).rejects.toThrow(message);
  });
});
