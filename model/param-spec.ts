// The exact parameter list of an NCSN++ config: names, shapes and reference inits in score_sde_pytorch's
// state-dict order (plus the label-conditioning modules documented in network-plan.ts).

import type { NcsnppConfig } from './config.js';
import { networkPlan } from './network-plan.js';
import { numel, type ParamEntry } from './params.js';

export type { InitSpec, ParamEntry } from './params.js';
export { defaultInit } from './params.js';

/**
 * Every parameter, in order. score_sde names: `all_modules.N.weight|bias` for top-level Linear / Conv2d /
 * GroupNorm modules, `all_modules.N.<Sub>_k.<param>` inside blocks (Conv_0, Dense_0, GroupNorm_0, NIN_0.W, …),
 * `all_modules.0.W` for the Fourier projection. Label conditioning: `label_embed.Dense_{0,1}.*` and
 * `all_modules.N.Dense_label.*`. NCSN++ registers no buffers (FIR kernels are rebuilt per call).
 */
export function paramSpec(config: NcsnppConfig): ParamEntry[] {
  return networkPlan(config).params;
}

/** Total element count of all parameters, including the frozen Fourier W (as torch's parameters() counts it). */
export function countParams(config: NcsnppConfig): number {
  return paramSpec(config).reduce((sum, p) => sum + numel(p.shape), 0);
}
