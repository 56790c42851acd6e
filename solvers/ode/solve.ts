/**
 * THE step loop: one driver for every embedded RK tableau, every state (host float64, GPU float32) and both
 * control policies. solveIvp (one host row), the host batch and the GPU batch are thin wrappers over `solve`.
 *
 * A round gives every running row one trial: the stages for the whole batch (per-row h and stage times; rows not
 * in the trial have h = 0 and stay put), one error-norm read-back, then accept/reject per controller. Under
 * 'shared' control there is one controller and any failure ends every row; under 'per-sample' a row fails alone.
 * A row gets exactly the evaluations and steps it would get if solved alone (the right-hand side must be row-local).
 */
import type { ControlPolicy } from './control-policy.js';
import type { StepController, StepTrial } from './controller.js';
import { annotate, flaggedRowsNote, messages, type RowOutcome, type SolveIvpStatus } from './outcome.js';
import type { RkState, RowFlags, StageTerm } from './state.js';
import { initialStepFinal, initialStepGuess } from './step-size.js';
import { checkTableau, type EmbeddedRkTableau } from './tableau.js';

/** A round in which at least one row accepted its trial. */
export interface AcceptedRound {
  /** 1 for the rows that accepted (their controllers have moved to the trial's end). */
  readonly accepted: RowFlags;
  /** The trial each row took this round, even if it then failed (null: the row took none). */
  readonly trials: readonly (StepTrial | null)[];
  /** The error norm each row's controller was given. */
  readonly errNorms: Float64Array;
  readonly controllers: readonly (StepController | null)[];
  /** Rows still running after this round. */
  readonly running: readonly number[];
  /** Batched evaluations and rounds so far. */
  readonly nfev: number;
  readonly rounds: number;
}

export interface SolveOptions<S> {
  tSpan: readonly [number, number];
  /** 'fail' (default): a NaN/Inf ends the row with 'non-finite'. 'reject': treat it as a failed trial (scipy). */
  nonFinite?: 'fail' | 'reject';
  /** After the initial-state check, before the first evaluation (when some row runs). */
  onStart?: (state: S) => void;
  /** An accepted round, before the commit (the step's y and stages are still in place). */
  beforeCommit?: (state: S, round: AcceptedRound) => void;
  /** After the commit; awaited. A throw ends every row with 'failed', named by `callbackName`. */
  afterCommit?: (state: S, round: AcceptedRound) => void | Promise<void>;
  callbackName?: string;
}

export interface SolveOutcome {
  rows: RowOutcome[];
  /** Batched evaluations (each evaluates every row). */
  nfev: number;
  /** Rounds with at least one trial (shared control: accepted + rejected trials). */
  rounds: number;
  /** Accepted times per row, t0 first. */
  stepTimes: number[][];
  /** Per row its controller (shared: the same object), null where none was made. */
  controllers: (StepController | null)[];
  /** What a right-hand side or callback threw (status 'failed'). */
  error?: unknown;
}

interface Row {
  ctrl: StepController | null;
  outcome: RowOutcome | null;
  trial: StepTrial | null;
  /** The next trial starts a new step (else it retries after a rejection). */
  fresh: boolean;
  /** A non-finite value in this trial under nonFinite 'reject' (its error norm is NaN). */
  bad: boolean;
  nfev: number;
  times: number[];
}

const terms = (weights: readonly number[]): StageTerm[] => weights.map((coef, stage) => ({ stage, coef }));

/** Integrate `state` from tSpan[0] to tSpan[1] with `tableau` under `control`; never throws after validation. */
export async function solve<Term, S extends RkState<Term>>(
  term: Term,
  tableau: EmbeddedRkTableau,
  control: ControlPolicy,
  state: S,
  options: SolveOptions<S>,
): Promise<SolveOutcome> {
  checkTableau(tableau);
  if (state.tableau !== tableau) throw new RangeError(`solve: the state holds stages of ${state.tableau.name}, not ${tableau.name}`);
  const [t0, t1] = options.tSpan;
  const R = state.rows;
  const shared = control.stepControl === 'shared';
  const failMode = (options.nonFinite ?? 'fail') === 'fail';
  const direction = t1 >= t0 ? 1 : -1;
  const rows: Row[] = Array.from({ length: R }, () => ({ ctrl: null, outcome: null, trial: null, fresh: true, bad: false, nfev: 0, times: [t0] }));
  let nfev = 0;
  let rounds = 0;
  let error: unknown;

  const running = () => rows.flatMap((r, b) => (r.outcome ? [] : [b]));
  const finish = (): SolveOutcome => ({
    rows: rows.map((r) => r.outcome!),
    nfev,
    rounds,
    stepTimes: rows.map((r) => r.times),
    controllers: rows.map((r) => r.ctrl),
    ...(error !== undefined ? { error } : {}),
  });
  const setOutcome = (b: number, status: SolveIvpStatus, message: string) => {
    const r = rows[b];
    const c = r.ctrl;
    r.outcome = { status, message, t: c?.t ?? t0, nSteps: c?.nAccepted ?? 0, nRejected: c?.nRejected ?? 0, nfev: r.nfev };
  };
  /** Fail `which` (shared: every running row, with the first one's message and the flagged rows). */
  const failRows = (which: readonly number[], status: SolveIvpStatus, message: (b: number) => string, flags: RowFlags | null = null) => {
    if (which.length === 0) return;
    if (shared) {
      const text = annotate(message(which[0]), R > 1 ? flaggedRowsNote(flags) : '');
      for (const b of running()) setOutcome(b, status, text);
    } else {
      for (const b of which) setOutcome(b, status, annotate(message(b), ` (row ${b})`));
    }
  };
  const succeed = (b: number) => {
    const c = rows[b].ctrl!;
    setOutcome(b, 'success', messages.success(t1, c.nAccepted, c.nRejected, rows[b].nfev));
  };
  /** Rows of `live` flagged non-finite: failed ('fail', or `always`) or marked for rejection; the rest stay live. */
  const onFlags = (flags: RowFlags | null, live: readonly number[], message: (b: number) => string, always = false): number[] => {
    if (!flags) return live.slice();
    const hit = live.filter((b) => flags[b]);
    if (failMode || always) failRows(hit, 'non-finite', message, flags);
    else for (const b of hit) rows[b].bad = true;
    return live.filter((b) => !rows[b].outcome);
  };
  /** One batched evaluation into K[stage]; false when the right-hand side threw (the rows are failed). */
  const evaluate = async (stage: number, source: 'y' | 'stage' | 'new', times: Float64Array, live: readonly number[], where: (b: number) => string) => {
    nfev++;
    for (const b of live) rows[b].nfev++;
    try {
      return { flags: await state.evaluate(term, stage, source, times, live) };
    } catch (err) {
      error = err;
      failRows(live, 'failed', (b) => messages.threw(where(b), err));
      return null;
    }
  };

  // Initial state, f(t0, y0) and the initial step (Hairer, Nørsett & Wanner I, II.4, from norms).
  const initialBad = state.nonFiniteInitialRows();
  failRows(running().filter((b) => initialBad[b]), 'non-finite', () => messages.nonFiniteInitialState(t0), initialBad);
  if (running().length === 0) return finish();
  options.onStart?.(state);
  const f0 = await evaluate(0, 'y', new Float64Array(R).fill(t0), running(), () => messages.whereF0(t0));
  if (!f0) return finish();
  const f0Norms = await state.initialNorms('f0', shared);
  onFlags(f0.flags ?? f0Norms.bad, running(), () => messages.nonFiniteF0(t0), true);
  const L = Math.abs(t1 - t0);
  const hAbs = new Float64Array(R);
  if (control.firstStep !== undefined) {
    hAbs.fill(control.firstStep);
  } else if (L > 0 && running().length > 0) {
    const d0 = (await state.initialNorms('y', shared)).norms;
    const d1 = f0Norms.norms;
    const h0 = new Float64Array(R);
    const hd = new Float64Array(R);
    const tProbe = new Float64Array(R).fill(t0);
    for (const b of running()) {
      h0[b] = initialStepGuess(d0[b], d1[b], L);
      hd[b] = h0[b] * direction;
      tProbe[b] = t0 + hd[b];
    }
    state.setStep(hd);
    state.combine([{ stage: 0, coef: 1 }], 'stage', running());
    const f1 = await evaluate(1, 'stage', tProbe, running(), () => messages.whereProbe(t0));
    if (!f1) return finish();
    const d2 = await state.initialNorms('probe', shared);
    const live = onFlags(f1.flags ?? d2.bad, running(), (b) => messages.nonFiniteProbe(tProbe[b]));
    for (const b of live) hAbs[b] = initialStepFinal(h0[b], d1[b], d2.norms[b] / h0[b], L, control.maxStep, tableau.errorEstimatorOrder);
  }
  const first = running();
  if (shared && first.length > 0) {
    const c = control.create(t0, t1, hAbs[first[0]], tableau);
    for (const b of first) rows[b].ctrl = c;
  } else {
    for (const b of first) rows[b].ctrl = control.create(t0, t1, hAbs[b], tableau);
  }
  for (const b of first) if (rows[b].ctrl!.finished) succeed(b);

  const { A, B, C, nStages } = tableau;
  const stageTerms = A.map(terms);
  const newTerms = terms(B);
  while (running().length > 0) {
    // Each running row's trial (shared: the one controller decides for all).
    let sharedTrial: StepTrial | null = null;
    for (const r of rows) r.bad = false;
    for (const b of running()) {
      const r = rows[b];
      if (r.outcome) continue;
      if (shared && sharedTrial) {
        r.trial = sharedTrial;
        continue;
      }
      const c = r.ctrl!;
      if (r.fresh && control.maxSteps !== undefined && c.nAccepted >= control.maxSteps) {
        failRows([b], 'max-steps', () => messages.maxSteps(control.maxSteps!, c.t, c.nAccepted, t1));
        continue;
      }
      r.trial = r.fresh ? c.beginStep() : c.retry();
      if (!r.trial) {
        failRows([b], 'min-step', () => messages.minStep(c.t, c.nAccepted, c.rejectionsThisStep, c.minStep));
        continue;
      }
      if (shared) sharedTrial = r.trial;
    }
    let live = running();
    if (live.length === 0) break;
    const inTrial = new Uint8Array(R);
    for (const b of live) inTrial[b] = 1;
    rounds++;
    const h = new Float64Array(R);
    const tRow = Float64Array.from(rows, (r) => r.ctrl?.t ?? t0);
    for (const b of live) h[b] = rows[b].trial!.h;
    state.setStep(h);
    const stageTimes = (c: number) => Float64Array.from(tRow, (t, b) => t + c * h[b]);
    const trialOf = (b: number) => rows[b].trial!;
    const stepIndex = (b: number) => rows[b].ctrl!.nAccepted;
    const where = (b: number) => messages.whereStep(stepIndex(b), trialOf(b).t, trialOf(b).h);
    const nonFinite = (what: (b: number) => string) => (b: number) => messages.nonFiniteTrial(what(b), stepIndex(b), trialOf(b).t, trialOf(b).h);

    let ok = true;
    for (let s = 1; s < nStages && ok; s++) {
      state.combine(stageTerms[s], 'stage', live);
      const ev = await evaluate(s, 'stage', stageTimes(C[s]), live, where);
      if (!ev) ok = false;
      else live = onFlags(ev.flags, live, nonFinite((b) => `f (stage ${s}) at t = ${trialOf(b).t + C[s] * trialOf(b).h}`));
      if (live.length === 0) ok = false;
    }
    if (!ok) continue;
    live = onFlags(state.combine(newTerms, 'new', live), live, nonFinite((b) => `the new state y at t = ${trialOf(b).tNew}`));
    if (live.length === 0) continue;
    const evLast = await evaluate(nStages, 'new', stageTimes(1), live, where);
    if (!evLast) continue;
    live = onFlags(evLast.flags, live, nonFinite((b) => `f (stage ${nStages}) at t = ${trialOf(b).t + trialOf(b).h}`));
    if (live.length === 0) continue;
    const err = await state.errorNorms(shared);
    live = onFlags(err.bad, live, nonFinite(() => 'the stages or the new state'));
    if (live.length === 0) continue;

    const accepted = new Uint8Array(R);
    const errNorms = new Float64Array(R).fill(NaN);
    if (shared) {
      const norm = live.some((b) => rows[b].bad) ? NaN : err.norms[live[0]];
      const acc = rows[live[0]].ctrl!.reportError(norm);
      for (const b of live) {
        errNorms[b] = norm;
        accepted[b] = acc ? 1 : 0;
      }
    } else {
      for (const b of live) {
        errNorms[b] = rows[b].bad ? NaN : err.norms[b];
        accepted[b] = rows[b].ctrl!.reportError(errNorms[b]) ? 1 : 0;
      }
    }
    for (const b of live) rows[b].fresh = accepted[b] === 1;
    if (!accepted.includes(1)) continue;

    const round = (): AcceptedRound => ({
      accepted,
      trials: rows.map((r, b) => (inTrial[b] ? r.trial : null)),
      errNorms,
      controllers: rows.map((r) => r.ctrl),
      running: running(),
      nfev,
      rounds,
    });
    options.beforeCommit?.(state, round());
    state.commit(accepted, shared);
    for (const b of live) {
      if (!accepted[b]) continue;
      rows[b].times.push(rows[b].ctrl!.t);
      if (rows[b].ctrl!.finished) succeed(b);
    }
    if (options.afterCommit) {
      try {
        const r = options.afterCommit(state, round());
        if (r !== undefined) await r;
      } catch (err2) {
        error = err2;
        const b = live.find((k) => accepted[k])!;
        const text = messages.threw(messages.whereCallback(options.callbackName ?? 'the step callback', stepIndex(b) - 1, rows[b].ctrl!.t), err2);
        for (let k = 0; k < R; k++) if (!rows[k].outcome || accepted[k]) setOutcome(k, 'failed', text);
        return finish();
      }
    }
  }
  return finish();
}
