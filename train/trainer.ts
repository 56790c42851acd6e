/**
 * The training loop (SPEC §6). One step records, with no host wait: the batch upload, the z draw, x_t, the
 * network forward, the loss, the backward pass, the gradient copies into the arena, the gradient-norm reduction
 * and the fused Adam+EMA update — then ONE flush. The loss and gradient norm are copied into small GPU ring
 * buffers and read back every `logEvery` steps (one wait per `logEvery` steps). Each step runs inside
 * `engine.scope`, so GPU memory is flat across steps.
 *
 * Randomness (all keyed by the run's seed, see data-stream.ts STREAMS): batch order, flips, dequantisation, t and
 * z are functions of (seed, step) or of host RNG streams whose state the checkpoint stores — resuming continues
 * bit-identically.
 */
import type { Engine } from '../engine/engine.js';
import { blocksFor, HostRng, philox4x32, seedKey } from '../engine/rng.js';
import { SbgcError } from '../engine/errors.js';
import type { Tensor } from '../engine/tensor.js';
import type { ImageDataset } from '../data/dataset.js';
import { AdamOptimizer, learningRateAt, type AdamOptions } from './optimizer.js';
import { ParamArena } from './param-arena.js';
import { denoisingLossWithGradients, type LossReduce } from './loss.js';
import { DEFAULT_EPS_T, importanceNormaliser, sampleTimes, type TimeSampling } from './time-sampling.js';
import { DataStream, STREAMS } from './data-stream.js';
import { autoEvalWeights, loadCheckpoint, restoreArena, sameJson, saveCheckpoint, saveWeightsFile, type TrainingState } from './checkpoint.js';
import { lossCurveSvg, ProgressBar } from './progress.js';
import type { TrainableModel } from './model.js';

export type EvalWeights = 'ema' | 'raw' | 'auto';

export interface TrainOptions {
  /** Total optimizer updates of the run. */
  steps: number;
  batchSize: number;
  adam: AdamOptions;
  tSampling: TimeSampling;
  /** Smallest diffusion time (score_flow 1e-5). */
  epsT: number;
  reduce: LossReduce;
  seed: number;
  /** Horizontal flips of the training images (off for MNIST digits). */
  flip: boolean;
  /** Read back and log the loss every k steps. */
  logEvery: number;
  /** Write the rolling checkpoint every k steps (0 = only at the end). */
  checkpointEvery: number;
  /** Call `evaluate` every k steps (0 = only at the end). */
  evalEvery: number;
  /** Which weights the evaluation and the exported weights use; 'auto' = EMA once d^step < 1 %, else raw. */
  evalWeights: EvalWeights;
  /** Output directory (checkpoint, log, loss curve, weights); null = keep nothing on disk. */
  outDir: string | null;
  /** Continue from `<outDir>/checkpoint.safetensors`. */
  resume: boolean;
  /** Progress bar on stderr. */
  progress: boolean;
}

export const DEFAULT_TRAIN_OPTIONS: Omit<TrainOptions, 'steps' | 'adam'> = {
  batchSize: 64,
  tSampling: 'importance',
  epsT: DEFAULT_EPS_T,
  reduce: 'sum',
  seed: 0,
  flip: false,
  logEvery: 10,
  checkpointEvery: 1000,
  evalEvery: 0,
  evalWeights: 'auto',
  outDir: null,
  resume: false,
  progress: false,
};

export interface EvalContext {
  engine: Engine;
  step: number;
  /** The weights being evaluated (views into the arena: do not dispose or keep past the call). */
  weights: ReadonlyMap<string, Tensor>;
  which: 'ema' | 'raw';
}

/** Held-out evaluation (e.g. classification accuracy); the numbers are logged with the step. */
export type EvalHook = (ctx: EvalContext) => Promise<Record<string, number>>;

export interface LogEntry {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
  epoch: number;
}

export interface TrainSummary {
  step: number;
  /** Steady-state steps/s (wall clock, excluding the first log window, which compiles the kernels). */
  stepsPerSecond: number;
  lastLoss: number | null;
  evalWeights: 'ema' | 'raw';
}

export const CHECKPOINT_FILE = 'checkpoint.safetensors';
export const LOG_FILE = 'train-log.jsonl';
export const CURVE_FILE = 'loss.svg';
export const WEIGHTS_FILE = 'weights.safetensors';

export class Trainer {
  readonly arena: ParamArena;
  readonly optimizer: AdamOptimizer;
  readonly data: DataStream;
  private timeRng: HostRng;
  private readonly lossRing: Tensor;
  private readonly normRing: Tensor;
  private pending: Array<Omit<LogEntry, 'loss' | 'gradNorm'>> = [];
  private stopRequested = false;

  /** Ends `train()` after the current step, with the usual final checkpoint and weights export (for SIGINT/SIGTERM). */
  requestStop(): void {
    this.stopRequested = true;
  }
  readonly history: LogEntry[] = [];
  evaluate: EvalHook | null = null;
  private steadyStart: { time: number; step: number } | null = null;
  private lastRate = 0;

  private constructor(
    readonly engine: Engine,
    readonly model: TrainableModel,
    readonly dataset: ImageDataset,
    readonly options: TrainOptions,
  ) {
    checkOptions(options);
    const [c, h, w] = model.imageShape;
    const s = dataset.shape;
    if (s[0] !== c || s[1] !== h || s[2] !== w) {
      throw new SbgcError(`dataset ${dataset.name} has images [${s.join('×')}], the model ${model.name} takes [${c}×${h}×${w}]`);
    }
    if (model.numClasses > 0 && dataset.numClasses !== model.numClasses) {
      throw new SbgcError(`dataset ${dataset.name} has ${dataset.numClasses} classes, the model ${model.name} ${model.numClasses}`);
    }
    const e = engine;
    this.arena = ParamArena.create(e, model.params, { ema: options.adam.emaDecay !== null });
    this.optimizer = new AdamOptimizer(e, this.arena, options.adam);
    this.data = new DataStream(dataset, options.batchSize, options.seed, { flip: options.flip, centered: model.centered });
    this.timeRng = new HostRng(options.seed, STREAMS.time);
    this.lossRing = e.keep(e.zeros([options.logEvery], 'f32', 'loss ring'));
    this.normRing = e.keep(e.zeros([options.logEvery], 'f32', 'grad-norm² ring'));
  }

  /** A trainer at step 0 (fresh init from the seed) or, with `resume`, at the checkpoint's step. */
  static async create(e: Engine, model: TrainableModel, dataset: ImageDataset, options: TrainOptions): Promise<Trainer> {
    const t = new Trainer(e, model, dataset, options);
    try {
      if (options.resume) await t.resumeFrom(t.checkpointPath('resume'));
      else {
        t.arena.upload('param', model.initialParams(options.seed), `init of ${model.name}`);
        if (t.arena.hasEma) t.arena.resetEmaToParams();
      }
    } catch (err) {
      t.dispose();
      throw err;
    }
    return t;
  }

  get step(): number {
    return this.optimizer.step;
  }

  /** Runs until `options.steps` (or `untilStep`), logging, checkpointing and evaluating on schedule. */
  async train(untilStep = this.options.steps): Promise<TrainSummary> {
    const o = this.options;
    const bar = o.progress ? new ProgressBar(o.steps) : null;
    while (this.step < untilStep && !this.stopRequested) {
      this.recordStep();
      await this.engine.flush();
      const k = this.step;
      if (this.pending.length === o.logEvery || k === untilStep) await this.drainLog(bar);
      if (o.outDir && o.checkpointEvery > 0 && k % o.checkpointEvery === 0 && k < untilStep) await this.checkpoint();
      if (this.evaluate && o.evalEvery > 0 && k % o.evalEvery === 0 && k < untilStep) await this.runEval();
    }
    await this.drainLog(bar);
    bar?.done();
    if (o.outDir) await this.checkpoint();
    if (this.evaluate) await this.runEval();
    if (o.outDir) await this.exportWeights();
    return {
      step: this.step,
      stepsPerSecond: this.stepsPerSecond(),
      lastLoss: this.history.at(-1)?.loss ?? null,
      evalWeights: this.evalWhich(),
    };
  }

  /** Records one training step (no host wait) and advances the step counter. */
  recordStep(): void {
    const e = this.engine;
    const o = this.options;
    const k = this.step; // 0-based index of this update
    const batch = this.data.batch(k);
    const times = sampleTimes(this.model.sde, o.tSampling, o.batchSize, this.timeRng, o.epsT);
    e.scope(() => {
      const x0 = e.tensor(batch.x0, [o.batchSize, ...this.model.imageShape], 'f32', 'x₀');
      const labels = this.model.numClasses > 0 ? e.tensor(batch.labels, [o.batchSize], 'u32', 'labels') : null;
      const { loss, gradients } = denoisingLossWithGradients(e, this.model, this.arena.paramList(), {
        x0,
        labels,
        times,
        noiseSeed: o.seed,
        noiseOffset: k * blocksFor(x0.size, 'normal'),
        dropoutSeed: dropoutSeedFor(o.seed, k),
        reduce: o.reduce,
      });
      this.arena.loadGradients(gradients());
      this.optimizer.update();
      const slot = this.pending.length;
      e.copy(loss, this.lossRing.slice0(slot, slot + 1));
      e.copy(this.optimizer.gradNormSq, this.normRing.slice0(slot, slot + 1));
    });
    this.pending.push({ step: k + 1, lr: learningRateAt(o.adam, k + 1), epoch: batch.epoch });
  }

  /** Reads the ring buffers back (one wait) and appends the entries to the history and the JSONL log. */
  async drainLog(bar: ProgressBar | null = null): Promise<LogEntry[]> {
    if (this.pending.length === 0) return [];
    const [losses, norms] = (await this.engine.readMany([this.lossRing, this.normRing])) as Float32Array[];
    const entries = this.pending.map((p, i) => ({ ...p, loss: losses[i], gradNorm: Math.sqrt(norms[i]) }));
    this.pending = [];
    const now = performance.now();
    const last = entries.at(-1)!;
    if (!this.steadyStart) this.steadyStart = { time: now, step: last.step };
    else this.lastRate = (last.step - this.steadyStart.step) / ((now - this.steadyStart.time) / 1000);
    this.history.push(...entries);
    if (this.options.outDir) {
      const { appendFile } = await import('node:fs/promises');
      await appendFile(this.outPath(LOG_FILE), entries.map((x) => JSON.stringify(x)).join('\n') + '\n');
    }
    bar?.update(last.step, this.lastRate, last.loss);
    const bad = entries.find((x) => !Number.isFinite(x.loss));
    if (bad) throw new SbgcError(`training diverged: loss ${bad.loss} at step ${bad.step} (grad norm ${bad.gradNorm}); the last checkpoint is kept`);
    return entries;
  }

  /** Steady-state steps/s so far (0 until two log windows have completed). */
  stepsPerSecond(): number {
    return this.lastRate;
  }

  /** Which weights are evaluated now: 'auto' picks EMA once its initial-weight share d^step is under 1 %. */
  evalWhich(): 'ema' | 'raw' {
    const d = this.options.adam.emaDecay;
    if (d === null || this.options.evalWeights === 'raw') return 'raw';
    if (this.options.evalWeights === 'ema') return 'ema';
    return autoEvalWeights(this.step, d);
  }

  async runEval(): Promise<Record<string, number>> {
    if (!this.evaluate) return {};
    const which = this.evalWhich();
    const weights = which === 'ema' ? this.arena.emaParams() : this.arena.params();
    const result = await this.evaluate({ engine: this.engine, step: this.step, weights, which });
    if (this.options.outDir) {
      const { appendFile } = await import('node:fs/promises');
      await appendFile(this.outPath(LOG_FILE), JSON.stringify({ step: this.step, eval: result, weights: which }) + '\n');
    }
    return result;
  }

  /** The full training state (besides the arena tensors). */
  state(): TrainingState {
    const o = this.options;
    return {
      step: this.step,
      rng: { time: this.timeRng.state(), flip: this.data.flipState() },
      philox: {
        seed: o.seed,
        streams: { ...STREAMS },
        note:
          'z: GPU normal draw at offset step·⌈BD/2⌉; dequantisation: uniform at step·⌈BD/4⌉; epoch k order: ' +
          'HostRng(seed, shuffle, k·n); dropout seed: Philox(step) under the seed; t and flips: the rng states above',
      },
      model: this.model.describe(),
      options: { ...o, resume: false, progress: false },
      extra: {
        importanceZ: importanceNormaliser(this.model.sde, o.epsT),
        lastLoss: this.history.at(-1)?.loss ?? null,
      },
    };
  }

  async checkpoint(path = this.checkpointPath('checkpoint')): Promise<void> {
    await this.drainLog();
    await saveCheckpoint(path, this.arena, this.state());
    if (this.options.outDir) {
      const { writeFileAtomic } = await import('../engine/files.js');
      await writeFileAtomic(this.outPath(CURVE_FILE), lossCurveSvg(this.history, `${this.model.name}: loss (${this.options.tSampling} t)`));
    }
  }

  /** Restores arena, step and RNG streams from a checkpoint, checking that model and data options match. */
  async resumeFrom(path: string): Promise<void> {
    const ckpt = await loadCheckpoint(path);
    if (!sameJson(ckpt.state.model, this.model.describe())) {
      throw new SbgcError(`${path}: the checkpoint's model config differs from ${this.model.name}'s; resume with the same preset`);
    }
    const saved = ckpt.state.options as Partial<TrainOptions>;
    const mismatch = (key: string, was: unknown, now: unknown) =>
      new SbgcError(`${path}: the checkpoint was trained with ${key} = ${JSON.stringify(was)}, not ${JSON.stringify(now)}; resuming bit-identically needs the same value`);
    for (const key of ['batchSize', 'seed', 'tSampling', 'epsT', 'reduce', 'flip'] as const) {
      if (saved[key] !== this.options[key]) throw mismatch(key, saved[key], this.options[key]);
    }
    // Only `steps` (and logging/IO options) may change: the schedule and the update rule must not.
    for (const key of Object.keys(this.options.adam) as Array<keyof AdamOptions>) {
      if (saved.adam?.[key] !== this.options.adam[key]) throw mismatch(`adam.${key}`, saved.adam?.[key], this.options.adam[key]);
    }
    restoreArena(this.arena, ckpt, path);
    this.optimizer.step = ckpt.state.step;
    this.timeRng = HostRng.restore(ckpt.state.rng.time);
    this.data.restoreFlipState(ckpt.state.rng.flip);
    if (this.options.outDir) await this.trimLog(ckpt.state.step);
  }

  /** Exports the evaluation weights (raw or EMA, recorded in the metadata) under the plain parameter names. */
  async exportWeights(): Promise<string> {
    const path = this.outPath(WEIGHTS_FILE);
    await saveWeightsFile(path, this.arena, this.evalWhich() === 'ema' ? 'ema' : 'param', {
      model: JSON.stringify(this.model.describe()),
      step: String(this.step),
      emaDecay: String(this.options.adam.emaDecay),
    });
    return path;
  }

  dispose(): void {
    this.arena.dispose();
    this.optimizer.dispose();
    this.lossRing.dispose();
    this.normRing.dispose();
  }

  private checkpointPath(what: string): string {
    if (!this.options.outDir) throw new SbgcError(`${what}: no output directory set (--out)`);
    return this.outPath(CHECKPOINT_FILE);
  }

  private outPath(file: string): string {
    return `${this.options.outDir!.replace(/\/+$/, '')}/${file}`;
  }

  /** Drops log lines past the checkpoint's step (a crashed run logged steps that will now be redone). */
  private async trimLog(step: number): Promise<void> {
    const { readFile } = await import('node:fs/promises');
    const { writeFileAtomic } = await import('../engine/files.js');
    let text: string;
    try {
      text = await readFile(this.outPath(LOG_FILE), 'utf8');
    } catch {
      return;
    }
    const keep: string[] = [];
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const entry = JSON.parse(line) as Partial<LogEntry> & { eval?: unknown };
        if ((entry.step ?? Infinity) > step) continue;
        if (entry.eval === undefined && typeof entry.loss === 'number') this.history.push(entry as LogEntry);
        keep.push(line);
      } catch {
        // A torn last line of a crashed run: drop it.
      }
    }
    await writeFileAtomic(this.outPath(LOG_FILE), keep.length ? keep.join('\n') + '\n' : '');
  }
}

/** Step k's dropout seed: one Philox block of (k) under the run's seed, folded into a safe integer. */
export function dropoutSeedFor(seed: number, step: number): number {
  const w = philox4x32([step >>> 0, Math.floor(step / 2 ** 32) >>> 0, STREAMS.dropout, 0], seedKey(seed));
  return w[0] + (w[1] & 0x1fffff) * 2 ** 32;
}

function checkOptions(o: TrainOptions): void {
  const int = (name: keyof TrainOptions, min: number) => {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new SbgcError(`training option ${name} must be an integer >= ${min}, got ${String(v)}`);
  };
  int('steps', 1);
  int('batchSize', 1);
  int('seed', 0);
  int('logEvery', 1);
  int('checkpointEvery', 0);
  int('evalEvery', 0);
  if (!(o.epsT > 0 && o.epsT < 1)) throw new SbgcError(`training option epsT must be in (0, 1), got ${o.epsT}`);
  if (o.reduce !== 'sum' && o.reduce !== 'mean') throw new SbgcError(`training option reduce must be 'sum' or 'mean', got ${String(o.reduce)}`);
  if (!['ema', 'raw', 'auto'].includes(o.evalWeights)) throw new SbgcError(`training option evalWeights must be ema, raw or auto, got ${String(o.evalWeights)}`);
  if (o.resume && !o.outDir) throw new SbgcError('resume needs an output directory holding checkpoint.safetensors (--out)');
}
