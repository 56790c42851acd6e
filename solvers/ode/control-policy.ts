/**
 * How a batch of rows is controlled: 'shared' (one controller, one step size for the whole batch, one error norm
 * over all rows — scipy's batch-as-one-vector) or 'per-sample' (one controller per row; rows advance in lock-step
 * rounds of one trial each, finished or failed rows frozen). A policy, not a separate loop: solve.ts reads it.
 */
import { ScipyStepController, type StepController } from './controller.js';
import type { EmbeddedRkTableau } from './tableau.js';

export type StepControl = 'shared' | 'per-sample';

export interface ControlPolicy {
  readonly stepControl: StepControl;
  /** Largest |h| (Infinity: none). */
  readonly maxStep: number;
  /** Initial |h| of every row (default: selected as scipy does, one extra evaluation). */
  readonly firstStep?: number;
  /** Per controller, stop with 'max-steps' after this many accepted steps. */
  readonly maxSteps?: number;
  /** A controller for one row (or the whole batch), starting with |h| = hAbs. */
  create(t0: number, t1: number, hAbs: number, tableau: EmbeddedRkTableau): StepController;
}

export interface ScipyControlOptions {
  maxStep?: number;
  firstStep?: number;
  maxSteps?: number;
}

/** scipy's controller (safety 0.9, factors 0.2…10) under the given policy. */
export function scipyControl(stepControl: StepControl, o: ScipyControlOptions = {}): ControlPolicy {
  const maxStep = o.maxStep ?? Infinity;
  return {
    stepControl,
    maxStep,
    firstStep: o.firstStep,
    maxSteps: o.maxSteps,
    create: (t0, t1, hAbs, tableau) =>
      new ScipyStepController({ t0, t1, hAbs, maxStep, errorEstimatorOrder: tableau.errorEstimatorOrder }),
  };
}
