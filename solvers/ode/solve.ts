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
import { annotate, flaggedRowsNote, messages, nonFiniteInTrial, type RowOutcome, type SolveIvpStatus, type TrialFault } from './outcome.js';
import { weightTerms, type MaybePromise, type RkState, type RowFlags, type StageTerm } from './state.js';
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

/** What was non-finite: the initial state, f(t0, y0), the initial-step probe, or a part of a trial. */
type Fault = 'initial-state' | 'f0' | 'probe' | TrialFault;
/** Which evaluation threw. */
type Call = 'f0' | 'probe' | 'step';

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
  return new Driver(term, tableau, control, state, options).run();
}

/** The loop's bookkeeping as methods (no closures per round: a step of a small host ODE costs microseconds). */
class Driver<Term, S extends RkState<Term>> {
  private readonly t0: number;
  private readonly t1: number;
  private readonly R: number;
  private readonly shared: boolean;
  private readonly failMode: boolean;
  private readonly rows: Row[];
  private readonly stageTerms: StageTerm[][];
  private readonly newTerms: StageTerm[];
  private nfev = 0;
  private rounds = 0;
  private error: unknown;
  /** Rows without an outcome, cached until the next outcome (never mutated by callers). */
  private runningRows: number[] | null = null;
  private tProbe: Float64Array;

  constructor(
    private readonly term: Term,
    private readonly tableau: EmbeddedRkTableau,
    private readonly control: ControlPolicy,
    private readonly state: S,
    private readonly options: SolveOptions<S>,
  ) {
    [this.t0, this.t1] = options.tSpan;
    this.R = state.rows;
    this.shared = control.stepControl === 'shared';
    this.failMode = (options.nonFinite ?? 'fail') === 'fail';
    this.rows = Array.from({ length: this.R }, () => ({ ctrl: null, outcome: null, trial: null, fresh: true, bad: false, nfev: 0, times: [this.t0] }));
    this.stageTerms = tableau.A.map(weightTerms);
    this.newTerms = weightTerms(tableau.B);
    this.tProbe = new Float64Array(this.R).fill(this.t0);
  }

  private running(): number[] {
    return (this.runningRows ??= this.rows.flatMap((r, b) => (r.outcome ? [] : [b])));
  }

  private finish(): SolveOutcome {
    const out: SolveOutcome = {
      rows: this.rows.map((r) => r.outcome!),
      nfev: this.nfev,
      rounds: this.rounds,
      stepTimes: this.rows.map((r) => r.times),
      controllers: this.rows.map((r) => r.ctrl),
    };
    if (this.error !== undefined) out.error = this.error;
    return out;
  }

  private setOutcome(b: number, status: SolveIvpStatus, message: string): void {
    const r = this.rows[b];
    const c = r.ctrl;
    this.runningRows = null;
    r.outcome = { status, message, t: c?.t ?? this.t0, nSteps: c?.nAccepted ?? 0, nRejected: c?.nRejected ?? 0, nfev: r.nfev };
  }

  /** Fail `which` (shared: every running row, with the first one's message and the flagged rows). */
  private failRows(which: readonly number[], status: SolveIvpStatus, message: (b: number) => string, flags: RowFlags | null = null): void {
    if (which.length === 0) return;
    if (this.shared) {
      const text = annotate(message(which[0]), this.R > 1 ? flaggedRowsNote(flags) : '');
      for (const b of this.running()) this.setOutcome(b, status, text);
    } else {
      for (const b of which) this.setOutcome(b, status, annotate(message(b), ` (row ${b})`));
    }
  }

  private succeed(b: number): void {
    const c = this.rows[b].ctrl!;
    this.setOutcome(b, 'success', messages.success(this.t1, c.nAccepted, c.nRejected, this.rows[b].nfev));
  }

  private nonFiniteMessage(fault: Fault, b: number): string {
    if (fault === 'initial-state') return messages.nonFiniteInitialState(this.t0);
    if (fault === 'f0') return messages.nonFiniteF0(this.t0);
    if (fault === 'probe') return messages.nonFiniteProbe(this.tProbe[b]);
    return messages.nonFiniteTrial(nonFiniteInTrial(fault, this.rows[b].trial!, this.tableau), this.rows[b].ctrl!.nAccepted, this.rows[b].trial!);
  }

  /** Rows of `live` flagged non-finite: failed ('fail', or `always`) or marked for rejection; the rest stay live. */
  private onFlags(flags: RowFlags | null, live: readonly number[], fault: Fault, always = false): readonly number[] {
    if (!flags || !live.some((b) => flags[b])) return live;
    const hit = live.filter((b) => flags[b]);
    if (this.failMode || always) this.failRows(hit, 'non-finite', (b) => this.nonFiniteMessage(fault, b), flags);
    else for (const b of hit) this.rows[b].bad = true;
    return live.filter((b) => !this.rows[b].outcome);
  }

  private threw(call: Call, live: readonly number[], err: unknown): null {
    this.error = err;
    const where = (b: number) => {
      if (call === 'f0') return messages.whereF0(this.t0);
      if (call === 'probe') return messages.whereProbe(this.t0);
      const tr = this.rows[b].trial!;
      return messages.whereStep(this.rows[b].ctrl!.nAccepted, tr.t, tr.h);
    };
    this.failRows(live, 'failed', (b) => messages.threw(where(b), err));
    return null;
  }

  /** One batched evaluation into K[stage]; null when the right-hand side threw (the rows are failed). */
  private evaluate(stage: number, source: 'y' | 'stage' | 'new', times: Float64Array, live: readonly number[], call: Call): MaybePromise<{ flags: RowFlags | null } | null> {
    this.nfev++;
    for (const b of live) this.rows[b].nfev++;
    try {
      const r = this.state.evaluate(this.term, stage, source, times, live);
      return r instanceof Promise ? r.then((flags) => ({ flags }), (err: unknown) => this.threw(call, live, err)) : { flags: r };
    } catch (err) {
      return this.threw(call, live, err);
    }
  }

  async run(): Promise<SolveOutcome> {
    try {
      if (!(await this.start())) return this.finish();
      while (this.running().length > 0) {
        const stop = await this.round();
        if (stop) break;
      }
    } catch (err) {
      // A state operation failed (e.g. a lost device at a read-back): the rows keep their last accepted states.
      this.error = err;
      this.failRows(this.running(), 'failed', () => messages.threw(messages.whereState, err));
    }
    return this.finish();
  }

  /**
   * The initial state, f(t0, y0) and the initial step (Hairer, Nørsett & Wanner I, II.4, from norms); makes the
   * controllers. Promises are awaited only when a state returns one (a synchronous host solve takes no microtask).
   */
  private async start(): Promise<boolean> {
    const { state, control, tableau, shared, R, t0, t1, rows } = this;
    const initialBad = state.nonFiniteInitialRows();
    this.failRows(this.running().filter((b) => initialBad[b]), 'non-finite', () => messages.nonFiniteInitialState(t0), initialBad);
    if (this.running().length === 0) return false;
    this.options.onStart?.(state);
    let f0 = this.evaluate(0, 'y', new Float64Array(R).fill(t0), this.running(), 'f0');
    if (f0 instanceof Promise) f0 = await f0;
    if (!f0) return false;
    let f0Norms = state.initialNorms('f0', shared);
    if (f0Norms instanceof Promise) f0Norms = await f0Norms;
    this.onFlags(f0.flags ?? f0Norms.bad, this.running(), 'f0', true);
    const L = Math.abs(t1 - t0);
    const hAbs = new Float64Array(R);
    if (control.firstStep !== undefined) {
      hAbs.fill(control.firstStep);
    } else if (L > 0 && this.running().length > 0) {
      let y0Norms = state.initialNorms('y', shared);
      if (y0Norms instanceof Promise) y0Norms = await y0Norms;
      const d0 = y0Norms.norms;
      const d1 = f0Norms.norms;
      const h0 = new Float64Array(R);
      const hd = new Float64Array(R);
      const direction = t1 >= t0 ? 1 : -1;
      for (const b of this.running()) {
        h0[b] = initialStepGuess(d0[b], d1[b], L);
        hd[b] = h0[b] * direction;
        this.tProbe[b] = t0 + hd[b];
      }
      state.setStep(hd);
      state.combine([{ stage: 0, coef: 1 }], 'stage', this.running());
      let f1 = this.evaluate(1, 'stage', this.tProbe, this.running(), 'probe');
      if (f1 instanceof Promise) f1 = await f1;
      if (!f1) return false;
      let d2 = state.initialNorms('probe', shared);
      if (d2 instanceof Promise) d2 = await d2;
      const live = this.onFlags(f1.flags ?? d2.bad, this.running(), 'probe');
      for (const b of live) hAbs[b] = initialStepFinal(h0[b], d1[b], d2.norms[b] / h0[b], L, control.maxStep, tableau.errorEstimatorOrder);
    }
    const first = this.running();
    if (shared && first.length > 0) {
      const c = control.create(t0, t1, hAbs[first[0]], tableau);
      for (const b of first) rows[b].ctrl = c;
    } else {
      for (const b of first) rows[b].ctrl = control.create(t0, t1, hAbs[b], tableau);
    }
    for (const b of first) if (rows[b].ctrl!.finished) this.succeed(b);
    return true;
  }

  /** Each running row's trial (shared: the one controller decides for all); failures end rows. */
  private pickTrials(): void {
    const { rows, control } = this;
    let sharedTrial: StepTrial | null = null;
    for (const r of rows) r.bad = false;
    for (const b of this.running()) {
      const r = rows[b];
      if (r.outcome) continue;
      if (this.shared && sharedTrial) {
        r.trial = sharedTrial;
        continue;
      }
      const c = r.ctrl!;
      if (r.fresh && control.maxSteps !== undefined && c.nAccepted >= control.maxSteps) {
        this.failRows([b], 'max-steps', () => messages.maxSteps(control.maxSteps!, c.t, c.nAccepted, this.t1));
        continue;
      }
      r.trial = r.fresh ? c.beginStep() : c.retry();
      if (!r.trial) {
        this.failRows([b], 'min-step', () => messages.minStep(c.t, c.nAccepted, c.rejectionsThisStep, c.minStep));
        continue;
      }
      if (this.shared) sharedTrial = r.trial;
    }
  }

  /** Stage times t_b + c·h_b of every row (rows outside the trial have h = 0). */
  private stageTimes(tRow: Float64Array, h: Float64Array, c: number): Float64Array {
    const out = new Float64Array(this.R);
    for (let b = 0; b < this.R; b++) out[b] = tRow[b] + c * h[b];
    return out;
  }

  /** One trial for every running row: the stages, one error-norm read-back, accept/reject. True: stop. */
  private async round(): Promise<boolean> {
    const { state, rows, R, shared } = this;
    const { C, nStages } = this.tableau;
    this.pickTrials();
    let live: readonly number[] = this.running();
    if (live.length === 0) return true;
    const inTrial = new Uint8Array(R);
    const h = new Float64Array(R);
    const tRow = new Float64Array(R);
    for (let b = 0; b < R; b++) tRow[b] = rows[b].ctrl?.t ?? this.t0;
    for (const b of live) {
      inTrial[b] = 1;
      h[b] = rows[b].trial!.h;
    }
    this.rounds++;
    state.setStep(h);
    for (let s = 1; s < nStages; s++) {
      state.combine(this.stageTerms[s], 'stage', live);
      let ev = this.evaluate(s, 'stage', this.stageTimes(tRow, h, C[s]), live, 'step');
      if (ev instanceof Promise) ev = await ev;
      if (!ev) return false;
      live = this.onFlags(ev.flags, live, s);
      if (live.length === 0) return false;
    }
    live = this.onFlags(state.combine(this.newTerms, 'new', live), live, 'new-state');
    if (live.length === 0) return false;
    let evLast = this.evaluate(nStages, 'new', this.stageTimes(tRow, h, 1), live, 'step');
    if (evLast instanceof Promise) evLast = await evLast;
    if (!evLast) return false;
    live = this.onFlags(evLast.flags, live, nStages);
    if (live.length === 0) return false;
    let err = state.errorNorms(shared);
    if (err instanceof Promise) err = await err;
    live = this.onFlags(err.bad, live, 'norms');
    if (live.length === 0) return false;

    const accepted = new Uint8Array(R);
    const errNorms = new Float64Array(R).fill(NaN);
    let anyAccepted = false;
    if (shared) {
      const norm = live.some((b) => rows[b].bad) ? NaN : err.norms[live[0]];
      const acc = rows[live[0]].ctrl!.reportError(norm);
      for (const b of live) {
        errNorms[b] = norm;
        accepted[b] = acc ? 1 : 0;
      }
      anyAccepted = acc;
    } else {
      for (const b of live) {
        errNorms[b] = rows[b].bad ? NaN : err.norms[b];
        accepted[b] = rows[b].ctrl!.reportError(errNorms[b]) ? 1 : 0;
        if (accepted[b]) anyAccepted = true;
      }
    }
    for (const b of live) rows[b].fresh = accepted[b] === 1;
    if (!anyAccepted) return false;
    return this.commit(accepted, inTrial, errNorms, live);
  }

  /** The accepted rows move on (FSAL), with the hooks around the commit. True: a callback threw, stop. */
  private async commit(accepted: RowFlags, inTrial: RowFlags, errNorms: Float64Array, live: readonly number[]): Promise<boolean> {
    const { rows, options } = this;
    const round = {
      accepted,
      trials: rows.map((r, b) => (inTrial[b] ? r.trial : null)),
      errNorms,
      controllers: rows.map((r) => r.ctrl),
      running: this.running(),
      nfev: this.nfev,
      rounds: this.rounds,
    };
    options.beforeCommit?.(this.state, round);
    this.state.commit(accepted, this.shared);
    for (const b of live) {
      if (!accepted[b]) continue;
      rows[b].times.push(rows[b].ctrl!.t);
      if (rows[b].ctrl!.finished) this.succeed(b);
    }
    if (!options.afterCommit) return false;
    round.running = this.running();
    try {
      const r = options.afterCommit(this.state, round);
      if (r !== undefined) await r;
      return false;
    } catch (err) {
      this.error = err;
      const b = live.find((k) => accepted[k])!;
      const c = rows[b].ctrl!;
      const text = messages.threw(messages.whereCallback(options.callbackName ?? 'the step callback', c.nAccepted - 1, c.t), err);
      for (let k = 0; k < this.R; k++) if (!rows[k].outcome || accepted[k]) this.setOutcome(k, 'failed', text);
      return true;
    }
  }
}
