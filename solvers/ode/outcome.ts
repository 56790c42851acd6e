/** How a solve (or one row of a batch) ends: the statuses and their messages, written once for every state. */
import type { StepTrial } from './controller.js';
import type { EmbeddedRkTableau } from './tableau.js';

export type SolveIvpStatus = 'success' | 'min-step' | 'max-steps' | 'non-finite' | 'failed';

export interface RowOutcome {
  status: SolveIvpStatus;
  message: string;
  /** Time reached. */
  t: number;
  nSteps: number;
  nRejected: number;
  /** Evaluations this row would have cost alone (scipy's nfev: 2 + nStages·trials with the initial step). */
  nfev: number;
}

/** Shortest round-trip form, so a reported t can be pasted back exactly. */
export function fmt(x: number): string {
  return String(x);
}

/** The message with a note inserted before its final period (or appended). */
export function annotate(message: string, note: string): string {
  if (!note) return message;
  return message.endsWith('.') ? `${message.slice(0, -1)}${note}.` : `${message}${note}`;
}

/** " (non-finite in rows 1, 4)" for the flagged rows of a batch, at most 8 listed. */
export function flaggedRowsNote(flags: ArrayLike<number> | null): string {
  const idx: number[] = [];
  if (flags) for (let b = 0; b < flags.length; b++) if (flags[b]) idx.push(b);
  if (idx.length === 0) return '';
  return ` (non-finite in row${idx.length > 1 ? 's' : ''} ${idx.slice(0, 8).join(', ')}${idx.length > 8 ? ', …' : ''})`;
}

export const messages = {
  success: (t1: number, nAccepted: number, nRejected: number, nfev: number) =>
    `The solver successfully reached the end of the integration interval t1 = ${fmt(t1)} ` +
    `(${nAccepted} steps, ${nRejected} rejected, ${nfev} evaluations).`,
  maxSteps: (maxSteps: number, t: number, stepIndex: number, t1: number) =>
    `Reached maxSteps = ${maxSteps} accepted steps at t = ${fmt(t)} (step index ${stepIndex}) before t1 = ${fmt(t1)}.`,
  minStep: (t: number, stepIndex: number, rejections: number, minStep: number) =>
    `Required step size is less than spacing between numbers: at t = ${fmt(t)} (step index ${stepIndex}; ` +
    `rejected trials in this step: ${rejections}) |h| fell below min_step = ${fmt(minStep)}.`,
  nonFiniteInitialState: (t0: number) => `Non-finite initial state y0 at t0 = ${fmt(t0)} (step index 0)`,
  nonFiniteF0: (t0: number) => `Non-finite f(t0, y0) at t0 = ${fmt(t0)} (step index 0)`,
  nonFiniteProbe: (tProbe: number) => `Non-finite f during initial-step selection at t = ${fmt(tProbe)} (step index 0)`,
  /** `where`: what was non-finite (nonFiniteInTrial). */
  nonFiniteTrial: (where: string, stepIndex: number, trial: StepTrial) =>
    `Non-finite value in ${where}, during step index ${stepIndex} from t = ${fmt(trial.t)} with h = ${fmt(trial.h)}.`,
  /** `where`: the call that threw ("f during step index 3 (t = …, h = …)", "onStep after step index 3 …"). */
  threw: (where: string, error: unknown) => `${where} threw: ${error instanceof Error ? error.message : String(error)}`,
  whereF0: (t0: number) => `f(t0, y0) at t0 = ${fmt(t0)} (step index 0)`,
  whereProbe: (t0: number) => `f during initial-step selection near t0 = ${fmt(t0)} (step index 0)`,
  whereStep: (stepIndex: number, t: number, h: number) => `f during step index ${stepIndex} (t = ${fmt(t)}, h = ${fmt(h)})`,
  whereCallback: (name: string, stepIndex: number, t: number) => `${name} after step index ${stepIndex} (t = ${fmt(t)})`,
  whereState: 'a state operation (stage combination, error norm or commit)',
};

/** What of a trial was non-finite: stage s's f, the new state, or (a state that only checks there) the norms. */
export type TrialFault = number | 'new-state' | 'norms';

/** "f (stage 3) at t = …", "the new state y at t = …", "the stages or the new state". */
export function nonFiniteInTrial(fault: TrialFault, trial: StepTrial, tableau: EmbeddedRkTableau): string {
  if (fault === 'new-state') return `the new state y at t = ${fmt(trial.tNew)}`;
  if (fault === 'norms') return 'the stages or the new state';
  // The FSAL stage is evaluated at t + h (not the clipped t_new), as the reference does.
  const t = fault === tableau.nStages ? trial.t + trial.h : trial.t + tableau.C[fault] * trial.h;
  return `f (stage ${fault}) at t = ${fmt(t)}`;
}
