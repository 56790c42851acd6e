/**
 * Where the evaluation commands write (injectable, so tests run them in-process) and their progress display:
 * on a TTY a one-line bar redrawn in place on stderr; otherwise (logs, CI) one plain line every few seconds.
 * Shows NFE, t, step size and rows still integrating of the current solve, images done/total and the ETA.
 */
import type { Engine } from '../engine/engine.js';
import type { SolveProgress } from '../solvers/ode/batch-types.js';

export interface TextOut {
  write(text: string): void;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/** The streams and engine a command uses; `processIo` in the CLI, captures in tests. */
export interface CommandIo {
  stdout: TextOut;
  stderr: TextOut;
  /** Supplies the engine (default: a new one from cli/context.ts, destroyed by the CLI on exit). */
  engine?: () => Promise<Engine>;
  /** Milliseconds clock (default performance.now). */
  now?: () => number;
}

export const processIo: CommandIo = { stdout: process.stdout, stderr: process.stderr };

/** A TextOut that keeps what is written (for tests and --quiet runs). */
export class CapturedText implements TextOut {
  text = '';
  readonly isTTY = false;
  write(text: string): void {
    this.text += text;
  }
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export interface ProgressOptions {
  /** Prefix of every progress line, e.g. the command name. */
  label: string;
  /** Images of the whole input and how many were already done (e.g. resumed from a file). */
  totalImages: number;
  doneImages?: number;
  /** Non-TTY: at most one line per this many ms (default 5000). */
  intervalMs?: number;
  /** false: show nothing (log lines still go through). */
  enabled?: boolean;
  now?: () => number;
}

/**
 * The ETA extrapolates this run's speed: finished chunks count fully, the current chunk by NFE relative to the
 * mean NFE of finished chunks. Before the first chunk finishes, by log t (the probability-flow ODE's steps grow
 * roughly in proportion to t, so its NFE spread evenly over log t far better than over t), and no ETA until 5 % of
 * that is done: the first steps (step-size search at ε_t) say nothing about the rest.
 */
export class Progress {
  private readonly now: () => number;
  private readonly start: number;
  private readonly tty: boolean;
  private readonly interval: number;
  private readonly enabled: boolean;
  private done: number;
  private readonly doneAtStart: number;
  private chunk = { images: 0, t0: 0, t1: 1 };
  private last: SolveProgress | null = null;
  private chunkNfe: number[] = [];
  private lastDraw = -Infinity;
  private barShown = false;

  constructor(
    private readonly out: TextOut,
    private readonly o: ProgressOptions,
  ) {
    this.now = o.now ?? (() => performance.now());
    this.start = this.now();
    this.tty = out.isTTY === true;
    this.interval = o.intervalMs ?? 5000;
    this.enabled = o.enabled ?? true;
    this.done = o.doneImages ?? 0;
    this.doneAtStart = this.done;
    // Plain output: the first line after one interval, so short runs print none.
    if (!this.tty) this.lastDraw = this.start;
  }

  /** A solve over `images` images from t0 to t1 begins. */
  chunkStarted(images: number, t0: number, t1: number): void {
    this.chunk = { images, t0, t1 };
    this.last = null;
  }

  /** The solver's onProgress callback. */
  readonly solve = (p: SolveProgress): void => {
    this.last = p;
    const now = this.now();
    if (now - this.lastDraw < (this.tty ? 100 : this.interval)) return;
    this.lastDraw = now;
    this.draw();
  };

  chunkDone(images: number, nfe: number): void {
    this.done += images;
    this.chunkNfe.push(nfe);
    this.last = null;
    this.chunk = { images: 0, t0: 0, t1: 1 };
    if (this.tty) this.draw();
  }

  /** A line that stays (a per-image result); the bar is redrawn below it. */
  log(line: string): void {
    this.clear();
    this.out.write(line + '\n');
    if (this.tty && this.barShown) this.draw();
  }

  finish(): void {
    this.clear();
  }

  /** Fraction of the current chunk done. */
  private chunkFraction(): number {
    if (!this.last || this.chunk.images === 0) return 0;
    if (this.chunkNfe.length > 0) {
      const mean = this.chunkNfe.reduce((a, b) => a + b, 0) / this.chunkNfe.length;
      return Math.min(0.99, this.last.nfev / mean);
    }
    const { t0, t1 } = this.chunk;
    const f = t0 > 0 && t1 > t0 ? Math.log(this.last.t / t0) / Math.log(t1 / t0) : t1 > t0 ? (this.last.t - t0) / (t1 - t0) : 0;
    return Math.min(0.99, Math.max(0, f));
  }

  /** The status line (without control characters). */
  line(): string {
    const total = this.o.totalImages;
    const fraction = this.chunkFraction();
    const inChunk = this.chunk.images * fraction;
    const workDone = this.done - this.doneAtStart + inChunk;
    const elapsed = (this.now() - this.start) / 1000;
    const remaining = total - this.done - inChunk;
    // No chunk finished yet (chunkDone records one NFE count per chunk): the fraction is the log-t guess.
    const guessing = this.chunkNfe.length === 0;
    const eta = workDone > 0 && !(guessing && fraction < 0.05) ? (elapsed / workDone) * remaining : NaN;
    const parts = [`${this.o.label} ${this.done}/${total} images`];
    const p = this.last;
    if (p) {
      parts.push(`NFE ${p.nfev}`, `t ${p.t.toFixed(4)}`, `h ${p.h.toExponential(1)}`);
      if (p.running > 0) parts.push(`rows ${p.running}`);
    }
    parts.push(`${formatDuration(elapsed)} elapsed`, `ETA ${formatDuration(eta)}`);
    return parts.join(' | ');
  }

  private draw(): void {
    if (!this.enabled) return;
    const text = this.line();
    if (!this.tty) {
      this.out.write(text + '\n');
      return;
    }
    const width = Math.max(20, (this.out.columns ?? 100) - 1);
    const total = Math.max(1, this.o.totalImages);
    const frac = Math.min(1, (this.done + this.chunk.images * this.chunkFraction()) / total);
    const barWidth = 20;
    const filled = Math.round(frac * barWidth);
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] `;
    this.out.write(`\r\x1b[2K${(bar + text).slice(0, width)}`);
    this.barShown = true;
  }

  private clear(): void {
    if (this.tty && this.barShown) this.out.write('\r\x1b[2K');
  }
}
