/**
 * Autotuning of the convolutions: times the candidate configurations of each kind (forward, input gradient,
 * weight gradient) for one conv shape class on zero tensors and stores the fastest for the ops to use.
 */
import type { Engine } from '../engine/engine.js';
import { autotuner, type TuneResult } from './autotune.js';
import { availableVariants, type GemmVariant } from './gemm-wgsl.js';
import { convCandidates, convGeometry, tuneKey, type Conv2dParams, type ConvConfig, type ConvKind } from './conv2d-config.js';
import { launchForward, launchInputGrad, launchWeightGrad } from './conv2d-launch.js';

export interface TuneConvOptions {
  kinds?: ConvKind[];
  variants?: GemmVariant[];
  /** Candidates per variant (default: all of convCandidates). */
  candidates?: (kind: ConvKind, variant: GemmVariant) => ConvConfig[];
  repeats?: number;
}

/**
 * Times the candidate configurations of each kind for this conv shape class (on zero tensors) and caches the
 * fastest, overall and per variant. The forward timing uses the dual kernel's sibling, the plain forward; the dual
 * shares its configuration (same tile, twice the accumulators).
 */
export async function tuneConv2d(
  e: Engine,
  xShape: readonly number[],
  wShape: readonly number[],
  params: Conv2dParams,
  options: TuneConvOptions = {},
): Promise<Record<ConvKind, TuneResult<ConvConfig>>> {
  const g = convGeometry('tuneConv2d', xShape, wShape, params);
  const tuner = autotuner(e);
  const x = e.keep(e.zeros(xShape, 'f32', 'tune x'));
  const w = e.keep(e.zeros(wShape, 'f32', 'tune W'));
  const gy = e.keep(e.zeros([g.N, g.Cout, g.OH, g.OW], 'f32', 'tune gy'));
  const run: Record<ConvKind, (c: ConvConfig) => void> = {
    forward: (c) => void launchForward(e, g, x, null, w, null, null, c),
    inputGrad: (c) => void launchInputGrad(e, g, gy, null, w, c),
    weightGrad: (c) => void launchWeightGrad(e, g, x, gy, c),
  };
  const out = {} as Record<ConvKind, TuneResult<ConvConfig>>;
  try {
    for (const kind of options.kinds ?? (['forward', 'inputGrad', 'weightGrad'] as ConvKind[])) {
      const timings: TuneResult<ConvConfig>['timings'] = [];
      for (const variant of options.variants ?? availableVariants(e)) {
        const candidates = options.candidates?.(kind, variant) ?? convCandidates(e, kind, variant);
        const r = await tuner.tune(e, `${tuneKey(kind, g)}|${variant}`, candidates, run[kind], { repeats: options.repeats, force: true });
        timings.push(...r.timings);
      }
      const best = timings.reduce((a, b) => (b.ms < a.ms ? b : a)).config;
      tuner.set(tuneKey(kind, g), best);
      out[kind] = { best, timings };
    }
  } finally {
    [x, w, gy].forEach((t) => t.dispose());
  }
  return out;
}
