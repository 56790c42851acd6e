/**
 * The NCSN++ network (model/ncsnpp.ts) as a TrainableModel: parameters from `paramSpec`, initial values from
 * model/init.ts, ε̂ = net(x_t, timeInputScale·t, y) (score_sde `get_score_fn` for continuous VP / sub-VP).
 */
import { SbgcError } from '../engine/errors.js';
import type { NcsnppConfig } from '../model/config.js';
import { initParams } from '../model/init.js';
import { ncsnppForward } from '../model/ncsnpp.js';
import { paramSpec } from '../model/param-spec.js';
import { timeInputScale } from '../model/score.js';
import { sdeFromConfig } from '../model/sde.js';
import { NetworkWeights } from '../model/weights.js';
import type { TrainableModel } from './model.js';

export function ncsnppTrainable(config: NcsnppConfig): TrainableModel {
  if (!config.continuous) {
    throw new SbgcError(`config "${config.name}": training implements the continuous-time loss of SPEC §6 (continuous: true); this config is discrete`);
  }
  const timeScale = timeInputScale(config);
  return {
    name: config.name,
    imageShape: [config.channels, config.imageSize, config.imageSize],
    numClasses: config.numClasses,
    sde: sdeFromConfig(config),
    centered: config.centered,
    params: paramSpec(config).map((p) => ({ name: p.name, shape: p.shape, trainable: p.trainable })),
    initialParams: (seed) => initParams(config, seed),
    predictNoise(e, weights, x, t, labels, options) {
      // The time input is data, not a parameter: it needs no tape, and the scope of the step frees it.
      const tNet = e.tensor(Float32Array.from(t, (v) => timeScale * v), [t.length], 'f32', 'time input');
      return ncsnppForward(e, new NetworkWeights(e, config, weights), config, x, tNet, config.numClasses > 0 ? labels : null, {
        train: options.train,
        dropoutSeed: options.dropoutSeed,
      });
    },
    describe: () => config,
  };
}
