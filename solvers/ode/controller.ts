/**
 * The step-size controller as an object, independent of where the state lives (SPEC §4: scipy's RK45 control,
 * safety 0.9, factor ∈ [0.2, 10], exponent −1/(q + 1) with q the error estimator's order, no growth right after a
 * rejection). The driver asks it for trials and reports scalar error norms; it never sees the state.
 */
import { powCorrectlyRounded } from './pow-correctly-rounded.js';
import { minStepAt, pyMax, pyMin } from './step-size.js';
import { RK45 } from './tableaus.js';

/** One attempt at a step: from t by h (signed) to tNew (tNew is the clipped end; h = tNew − t). */
export interface StepTrial {
  readonly t: number;
  readonly h: number;
  readonly tNew: number;
}

/**
 * The step-control protocol:
 *
 *   while (!c.finished) {
 *     let trial = c.beginStep();
 *     while (trial) {
 *       const errNorm = …attempt trial.h from trial.t, return RMS(err/scale)…;
 *       if (c.reportError(errNorm)) break;     // accepted: c.t === trial.tNew
 *       trial = c.retry();                    // rejected: a smaller h, or null
 *     }
 *     if (!trial) …min-step failure at c.t…
 *   }
 */
export interface StepController {
  readonly direction: 1 | -1;
  readonly tBound: number;
  /** Time of the last accepted state. */
  readonly t: number;
  /** |h| proposed for the next step. */
  readonly hAbs: number;
  readonly nAccepted: number;
  readonly nRejected: number;
  /** Rejected trials in the step in progress (or in the last step once accepted). */
  readonly rejectionsThisStep: number;
  /** min_step of the step in progress. */
  readonly minStep: number;
  readonly finished: boolean;
  /** Multiplier for |h| after a trial with this error norm (accept: ≤ maxFactor; reject: ≥ minFactor). */
  errorNormToFactor(errNorm: number, rejectedThisStep: boolean): number;
  /** Whether a trial with this error norm is accepted. */
  accepts(errNorm: number): boolean;
  beginStep(): StepTrial | null;
  reportError(errNorm: number): boolean;
  retry(): StepTrial | null;
}

export interface StepControllerOptions {
  t0: number;
  t1: number;
  /** Initial |h| (from the initial-step selection or a user's first step). */
  hAbs: number;
  maxStep?: number;
  /** The tableau's errorEstimatorOrder (default RK45's, 4). */
  errorEstimatorOrder?: number;
  safety?: number;
  minFactor?: number;
  maxFactor?: number;
}

/** scipy's controller for its explicit RK pairs (RK23, RK45): the decisions are bit for bit scipy's. */
export class ScipyStepController implements StepController {
  readonly direction: 1 | -1;
  readonly tBound: number;
  readonly maxStep: number;
  readonly safety: number;
  readonly minFactor: number;
  readonly maxFactor: number;
  readonly errorExponent: number;
  t: number;
  hAbs: number;
  nAccepted = 0;
  nRejected = 0;
  rejectionsThisStep = 0;
  minStep = 0;
  /** |h| of the trial in progress (or the next one after a rejection). */
  private trialHAbs = 0;
  private trial: StepTrial | null = null;

  constructor(options: StepControllerOptions) {
    this.t = options.t0;
    this.tBound = options.t1;
    this.direction = options.t1 >= options.t0 ? 1 : -1;
    this.hAbs = options.hAbs;
    this.maxStep = options.maxStep ?? Infinity;
    this.safety = options.safety ?? 0.9;
    this.minFactor = options.minFactor ?? 0.2;
    this.maxFactor = options.maxFactor ?? 10;
    this.errorExponent = -1 / ((options.errorEstimatorOrder ?? RK45.errorEstimatorOrder) + 1);
  }

  get finished(): boolean {
    return this.direction * (this.t - this.tBound) >= 0;
  }

  /** The trial in progress, if any. */
  get currentTrial(): StepTrial | null {
    return this.trial;
  }

  accepts(errNorm: number): boolean {
    return errNorm < 1;
  }

  errorNormToFactor(errNorm: number, rejectedThisStep: boolean): number {
    if (errNorm < 1) {
      const f = errNorm === 0 ? this.maxFactor : pyMin(this.maxFactor, this.safety * powCorrectlyRounded(errNorm, this.errorExponent));
      return rejectedThisStep ? pyMin(1, f) : f;
    }
    // A NaN norm is a rejection by the smallest factor, as the reference's max(0.2, nan) gives.
    return pyMax(this.minFactor, this.safety * powCorrectlyRounded(errNorm, this.errorExponent));
  }

  beginStep(): StepTrial | null {
    this.minStep = minStepAt(this.t, this.direction);
    this.rejectionsThisStep = 0;
    // The proposal is clamped into [min_step, max_step] once per step; a rejection may still go below min_step.
    this.trialHAbs = this.hAbs > this.maxStep ? this.maxStep : this.hAbs < this.minStep ? this.minStep : this.hAbs;
    return this.makeTrial();
  }

  retry(): StepTrial | null {
    return this.makeTrial();
  }

  private makeTrial(): StepTrial | null {
    if (this.trialHAbs < this.minStep) {
      this.trial = null;
      return null;
    }
    const t = this.t;
    let tNew = t + this.trialHAbs * this.direction;
    if (this.direction * (tNew - this.tBound) > 0) tNew = this.tBound;
    const h = tNew - t;
    this.trialHAbs = Math.abs(h);
    this.trial = { t, h, tNew };
    return this.trial;
  }

  reportError(errNorm: number): boolean {
    const trial = this.trial;
    if (!trial) throw new Error('StepController.reportError: no trial in progress (call beginStep or retry first)');
    const factor = this.errorNormToFactor(errNorm, this.rejectionsThisStep > 0);
    this.trialHAbs *= factor;
    if (this.accepts(errNorm)) {
      this.t = trial.tNew;
      this.hAbs = this.trialHAbs;
      this.nAccepted++;
      this.trial = null;
      return true;
    }
    this.rejectionsThisStep++;
    this.nRejected++;
    return false;
  }
}

/** The name the RK45 code has always used for scipy's controller (it serves any tableau). */
export { ScipyStepController as Rk45Controller };
