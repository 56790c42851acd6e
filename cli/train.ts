/**
 * sbgc train: maximum-likelihood (or ε-MSE) training of an NCSN++ score model (SPEC §6).
 *
 *   sbgc train --preset mnist-small [--steps N] [--batch 64] [--lr 2e-4] [--warmup N] [--ema 0.999]
 *              [--t-sampling importance|uniform|mixture] [--seed S] [--out DIR] [--resume]
 *              [--log-every K] [--checkpoint-every K] [--data SPEC] [--clip 1] [--eval-weights auto|ema|raw]
 *              [--flip | --no-flip] [--reduce sum|mean] [--eps-t 1e-5] [--no-progress]
 *
 * Writes DIR/checkpoint.safetensors (rolling), DIR/train-log.jsonl, DIR/loss.svg and DIR/weights.safetensors
 * (the evaluation weights; raw or EMA, see --eval-weights and the file's metadata).
 */
import { SbgcError } from '../engine/errors.js';
import { parseCommandLine, switchFlags, valueFlags } from './flag-reader.js';
import { loadPreset, parseConfig, presetNames, type NcsnppConfig } from '../model/config.js';
import { loadDataset, DATASET_SPEC_HELP } from '../data/load.js';
import { DEFAULT_ADAM } from '../train/optimizer.js';
import { TIME_SAMPLINGS, type TimeSampling } from '../train/time-sampling.js';
import { CHECKPOINT_FILE, DEFAULT_TRAIN_OPTIONS, Trainer, type EvalWeights, type TrainOptions } from '../train/trainer.js';
import { readCheckpointState } from '../train/checkpoint.js';
import { ncsnppTrainable } from '../train/ncsnpp-model.js';
import { createEngine } from './context.js';

export const TRAIN_USAGE = `usage: sbgc train --preset NAME | --config FILE.json [options]

  --preset NAME            model preset (${presetNames().join(', ')})
  --config FILE            a model config JSON instead of a preset
  --data SPEC              training data (default mnist:train for 28×28×1 models), one of:
${DATASET_SPEC_HELP.split('\n').map((l) => `                             ${l}`).join('\n')}
  --steps N                optimizer updates (default 2000)
  --batch B                batch size (default 64)
  --lr X                   peak learning rate (default 2e-4)
  --warmup N               linear warm-up updates (default min(5000, steps/10))
  --clip X                 global gradient-norm clip, 0 = off (default 1)
  --ema D                  EMA decay (default 0.999; 0.999 keeps 22 % of the init after 1 500 steps)
  --eval-weights W         auto | ema | raw — weights exported and evaluated (auto: EMA once d^steps < 1 %)
  --t-sampling S           importance | uniform | mixture (default importance)
  --reduce R               sum | mean over pixels of each sample's loss (default sum, as score_flow)
  --eps-t X                smallest diffusion time (default 1e-5)
  --flip / --no-flip       random horizontal flips (default: off for MNIST, on otherwise)
  --seed S                 run seed (default 0)
  --out DIR                output directory (default runs/<preset>-<t-sampling>-s<seed>)
  --resume                 continue from DIR/checkpoint.safetensors (bit-identical)
  --log-every K            read back and log the loss every K steps (default 10)
  --checkpoint-every K     rolling checkpoint every K steps (default 500)
  --no-progress            no progress bar on stderr`;

export interface TrainCliArgs {
  config: NcsnppConfig;
  dataSpec: string;
  options: TrainOptions;
}

function num(flag: string, v: string | undefined, check: (x: number) => boolean, want: string): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || !check(x)) throw new SbgcError(`train: --${flag} must be ${want}, got '${v}'`);
  return x;
}

const isInt = (min: number) => (x: number) => Number.isInteger(x) && x >= min;

const TRAIN_FLAGS = {
  ...valueFlags('preset', 'config', 'data', 'steps', 'batch', 'lr', 'warmup', 'clip', 'ema', 'eval-weights', 't-sampling', 'reduce', 'eps-t', 'seed'),
  ...valueFlags('out', 'log-every', 'checkpoint-every'),
  ...switchFlags('flip', 'no-flip', 'resume', 'no-progress'),
} as const;

/** Parses and validates the flags (every error names its flag); null after printing the usage for --help. */
export async function parseTrainArgs(argv: string[]): Promise<TrainCliArgs | null> {
  const parsed = parseCommandLine('train', TRAIN_USAGE, argv, TRAIN_FLAGS);
  if (!parsed) return null;
  const { values } = parsed;
  if (!values.preset === !values.config) throw new SbgcError(`train: give exactly one of --preset or --config\n\n${TRAIN_USAGE}`);
  let config: NcsnppConfig;
  if (values.preset) config = loadPreset(values.preset);
  else {
    const { readFile } = await import('node:fs/promises');
    let text: string;
    try {
      text = await readFile(values.config!, 'utf8');
    } catch (e) {
      throw new SbgcError(`train: --config ${values.config}: cannot read: ${(e as Error).message}`);
    }
    config = parseConfig(text, values.config!);
  }
  const isMnist = config.channels === 1 && config.imageSize === 28;
  const dataSpec = values.data ?? (isMnist ? 'mnist:train' : undefined);
  if (!dataSpec) throw new SbgcError(`train: --data is required for config "${config.name}" (no default dataset)`);
  const tSamplingFlag = values['t-sampling'] as TimeSampling | undefined;
  if (tSamplingFlag !== undefined && !TIME_SAMPLINGS.includes(tSamplingFlag)) {
    throw new SbgcError(`train: --t-sampling must be one of ${TIME_SAMPLINGS.join(', ')}, got '${tSamplingFlag}'`);
  }
  const evalFlag = values['eval-weights'] as EvalWeights | undefined;
  if (evalFlag !== undefined && !['auto', 'ema', 'raw'].includes(evalFlag)) throw new SbgcError(`train: --eval-weights must be auto, ema or raw, got '${evalFlag}'`);
  const reduceFlag = values.reduce;
  if (reduceFlag !== undefined && reduceFlag !== 'sum' && reduceFlag !== 'mean') throw new SbgcError(`train: --reduce must be sum or mean, got '${reduceFlag}'`);
  if (values.flip && values['no-flip']) throw new SbgcError('train: --flip and --no-flip contradict each other');
  const seedFlag = num('seed', values.seed, (x) => isInt(0)(x) && x <= 2 ** 32 - 1, 'an integer in [0, 2^32)');
  const outDir = values.out ?? `runs/${config.name}-${tSamplingFlag ?? 'importance'}-s${seedFlag ?? 0}`;
  // On --resume, every flag not given takes the checkpoint's value, so a plain `--resume` (or one that only
  // raises --steps) continues bit-identically; a flag that contradicts the checkpoint is refused by the trainer.
  const saved: Partial<TrainOptions> = values.resume
    ? ((await readCheckpointState(`${outDir.replace(/\/+$/, '')}/${CHECKPOINT_FILE}`)).options as Partial<TrainOptions>)
    : {};
  const steps = num('steps', values.steps, isInt(1), 'a positive integer') ?? saved.steps ?? 2000;
  const adam = { ...DEFAULT_ADAM, emaDecay: 0.999, warmupSteps: Math.min(5000, Math.round(steps / 10)), ...saved.adam };
  const options: TrainOptions = {
    ...DEFAULT_TRAIN_OPTIONS,
    ...saved,
    steps,
    batchSize: num('batch', values.batch, isInt(1), 'a positive integer') ?? saved.batchSize ?? 64,
    adam: {
      ...adam,
      lr: num('lr', values.lr, (x) => x > 0, 'a positive number') ?? adam.lr,
      warmupSteps: num('warmup', values.warmup, isInt(0), 'a non-negative integer') ?? adam.warmupSteps,
      gradClipNorm: num('clip', values.clip, (x) => x >= 0, 'a number >= 0 (0 = off)') ?? adam.gradClipNorm,
      emaDecay: num('ema', values.ema, (x) => x >= 0 && x < 1, 'in [0, 1)') ?? adam.emaDecay,
    },
    tSampling: tSamplingFlag ?? saved.tSampling ?? 'importance',
    epsT: num('eps-t', values['eps-t'], (x) => x > 0 && x < 1, 'in (0, 1)') ?? saved.epsT ?? DEFAULT_TRAIN_OPTIONS.epsT,
    reduce: reduceFlag ?? saved.reduce ?? 'sum',
    seed: seedFlag ?? saved.seed ?? 0,
    flip: values.flip ? true : values['no-flip'] ? false : (saved.flip ?? !dataSpec.startsWith('mnist')),
    logEvery: num('log-every', values['log-every'], isInt(1), 'a positive integer') ?? saved.logEvery ?? 10,
    checkpointEvery: num('checkpoint-every', values['checkpoint-every'], isInt(0), 'a non-negative integer') ?? saved.checkpointEvery ?? 500,
    evalEvery: saved.evalEvery ?? 0,
    evalWeights: evalFlag ?? saved.evalWeights ?? 'auto',
    outDir,
    resume: values.resume ?? false,
    progress: !values['no-progress'],
  };
  return { config, dataSpec, options };
}

/** `sbgc train …`: trains, prints a summary (steps/s, final loss, which weights were exported). */
export async function trainCommand(argv: string[]): Promise<boolean> {
  const args = await parseTrainArgs(argv);
  if (!args) return true;
  const { config, dataSpec, options } = args;
  const { mkdir } = await import('node:fs/promises');
  await mkdir(options.outDir!, { recursive: true });
  const dataset = await loadDataset(dataSpec, { shape: [config.channels, config.imageSize, config.imageSize] });
  const e = await createEngine();
  const model = ncsnppTrainable(config);
  const trainer = await Trainer.create(e, model, dataset, options);
  try {
    const n = trainer.arena.numParams;
    console.error(
      `sbgc train: ${config.name} (${n.toLocaleString('en-US')} params) on ${dataset.name} (${dataset.length} images), ` +
        `${options.steps} steps × batch ${options.batchSize}, t-sampling ${options.tSampling}, ` +
        `EMA ${options.adam.emaDecay}, flips ${options.flip ? 'on' : 'off'}, ${e.info.description || e.info.device}` +
        (trainer.step > 0 ? `; resuming at step ${trainer.step}` : ''),
    );
    // Ctrl-C / SIGTERM: finish the step, checkpoint, export weights, then exit — no work lost.
    const stop = () => {
      process.stderr.write('\nsbgc train: stopping after this step (checkpoint + weights)…\n');
      trainer.requestStop();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const summary = await trainer.train();
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    console.log(
      JSON.stringify({
        step: summary.step,
        // null when the run was too short for a steady-state window (two log read-backs).
        stepsPerSecond: summary.stepsPerSecond > 0 ? Number(summary.stepsPerSecond.toPrecision(4)) : null,
        lastLoss: summary.lastLoss,
        weights: summary.evalWeights,
        out: options.outDir,
      }),
    );
    return true;
  } finally {
    trainer.dispose();
  }
}
