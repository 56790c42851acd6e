import { DEFAULT_TRAIN_OPTIONS, type TrainOptions } from '../../train/trainer.js';

/**
 * The trainer options of a test file's short runs: the defaults without periodic checkpoints, the file's `base`
 * on top (it sets what the defaults leave out: steps, adam), then each run's own `over`.
 */
export function shortRunOptions(
  base: Pick<TrainOptions, 'steps' | 'adam'> & Partial<TrainOptions>,
): (over: Partial<TrainOptions>) => TrainOptions {
  return (over) => ({ ...DEFAULT_TRAIN_OPTIONS, checkpointEvery: 0, ...base, ...over });
}
