/**
 * The probability-flow ODE of SPEC §3 as a batched GPU right-hand side on the augmented state, row b =
 * [x_b (D values), ℓ_b]:  dx/dt = f̃ = f(x, t) − ½g(t)²·s(x, t, y),  dℓ/dt = ∇·f̃ = −½β(t)·D − ½g(t)²·tr(∂s/∂x).
 * The linear drift f = −½β(t)x and its divergence are exact; only tr(∂s/∂x) is estimated (divergence.ts). Per
 * evaluation: one x extraction, one score forward + one VJP or JVP (Hutchinson), one per-row dot, one assembly kernel.
 *
 * The score model is model/score.ts's `ScoreModel` (the network and model/analytic-models.ts implement it).
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { ShapeError } from '../engine/errors.js';
import type { ScoreModel } from '../model/score.js';
import type { Sde } from '../model/sde.js';
import { exactTrace, hutchinsonTrace, type HutchinsonPass, type ScoreAndTrace } from './divergence.js';
import type { BatchRhs } from './ode/batch-types.js';
import { assembleFlow, stateImages } from './flow-kernels.js';

export type { ScoreModel };

/** How tr(∂s/∂x) is obtained: Hutchinson with fixed probes [B, D] by the given AD pass, or exactly (small D). */
export type DivergenceEstimator = { kind: 'hutchinson'; probes: Tensor; pass: HutchinsonPass } | { kind: 'exact' };

export interface ProbabilityFlowSpec {
  model: ScoreModel;
  batch: number;
  /** Class of each row (length B), or null for an unconditional model. */
  labels: Uint32Array | null;
  divergence: DivergenceEstimator;
}

/** D = C·H·W of one sample. */
export function sampleDim(model: ScoreModel): number {
  const [c, h, w] = model.shape;
  return c * h * w;
}

/** Drift coefficient a(t) = −½β(t) and score coefficient c(t) = −½g(t)²: f̃ = a·x + c·s. */
export function flowCoefficients(sde: Sde, t: number): { a: number; c: number } {
  return { a: sde.driftCoefficient(t), c: -0.5 * sde.diffusionSquared(t) };
}

/** The augmented probability-flow RHS for solveBatch (state [B, D + 1]). */
export function probabilityFlowRhs(e: Engine, spec: ProbabilityFlowSpec): BatchRhs {
  const { model, batch: B, labels } = spec;
  const D = sampleDim(model);
  if (labels && labels.length !== B) throw new ShapeError(`probabilityFlowRhs: ${labels.length} labels for ${B} rows`);
  if (spec.divergence.kind === 'hutchinson' && spec.divergence.probes.size !== B * D) {
    throw new ShapeError(`probabilityFlowRhs: probes ${spec.divergence.probes.describe()} are not [${B}, ${D}]`);
  }
  const T = model.sde.T;
  return (t, y, out) => {
    // Stage times may pass T by an ulp (t + (T − t) rounds); the model's time domain ends at T.
    const times = Float64Array.from(t, (v) => Math.min(v, T));
    const coef = new Float32Array(2 * B);
    for (let b = 0; b < B; b++) {
      const { a, c } = flowCoefficients(model.sde, times[b]);
      coef[2 * b] = a;
      coef[2 * b + 1] = c;
    }
    const coefT = e.tensor(coef, [B, 2], 'f32', 'pf.coef');
    const x = stateImages(e, y, B, D).reshape([B, ...model.shape]);
    let st: ScoreAndTrace;
    if (spec.divergence.kind === 'hutchinson') {
      st = hutchinsonTrace(e, (xx) => model.score(e, xx, times, labels), x, spec.divergence.probes, spec.divergence.pass);
    } else {
      st = exactTrace(
        e,
        (xt, copies) => {
          const tt = new Float64Array(copies * B);
          for (let k = 0; k < copies; k++) tt.set(times, k * B);
          let ll: Uint32Array | null = null;
          if (labels) {
            ll = new Uint32Array(copies * B);
            for (let k = 0; k < copies; k++) ll.set(labels, k * B);
          }
          return model.score(e, xt, tt, ll);
        },
        x,
      );
    }
    assembleFlow(e, y, st.score, st.trace, coefT, out, B, D);
  };
}
