/**
 * A tiny autotuner: times each candidate configuration of a kernel once per shape class and remembers the fastest,
 * in memory, per engine. Ops stay synchronous — they ask `choice(key)` and fall back to a heuristic default — while
 * `tune()` (async, it waits for the GPU) is called ahead of time: at model load, in benchmarks.
 */
import type { Engine } from '../engine/engine.js';

export interface TuneTiming<C> {
  config: C;
  /** Best of the timed repeats; Infinity when the candidate failed (compile error, device limit). */
  ms: number;
}

export interface TuneResult<C> {
  best: C;
  timings: TuneTiming<C>[];
}

export interface TuneOptions {
  /** Timed repeats per candidate after one untimed warm-up run (default 3; the minimum is kept). */
  repeats?: number;
  /** Re-time even if the key is cached. */
  force?: boolean;
}

export class Autotuner {
  private readonly choices = new Map<string, unknown>();

  choice<C>(key: string): C | undefined {
    return this.choices.get(key) as C | undefined;
  }

  set<C>(key: string, config: C): void {
    this.choices.set(key, config);
  }

  clear(): void {
    this.choices.clear();
  }

  get size(): number {
    return this.choices.size;
  }

  /**
   * Runs each candidate once untimed (that compiles its pipeline), then `repeats` times between `e.sync()`
   * boundaries, and caches the fastest under `key`. `run` records the kernel(s) for one candidate; temporaries it
   * allocates are released after each run.
   */
  async tune<C>(e: Engine, key: string, candidates: readonly C[], run: (config: C) => void, options: TuneOptions = {}): Promise<TuneResult<C>> {
    const cached = this.choice<C>(key);
    if (cached !== undefined && !options.force) return { best: cached, timings: [] };
    if (candidates.length === 0) throw new Error(`autotune ${key}: no candidates`);
    const repeats = options.repeats ?? 3;
    await e.sync();
    const timings: TuneTiming<C>[] = [];
    for (const config of candidates) {
      let ms = Infinity;
      try {
        await e.scope(async () => {
          run(config);
          await e.sync();
        });
        for (let r = 0; r < repeats; r++) {
          const t0 = performance.now();
          await e.scope(async () => {
            run(config);
            await e.sync();
          });
          ms = Math.min(ms, performance.now() - t0);
        }
      } catch {
        ms = Infinity; // a candidate the adapter cannot run simply loses
      }
      timings.push({ config, ms });
    }
    const best = timings.reduce((a, b) => (b.ms < a.ms ? b : a));
    if (!Number.isFinite(best.ms)) throw new Error(`autotune ${key}: every candidate failed`);
    this.set(key, best.config);
    return { best: best.config, timings };
  }
}

const tuners = new WeakMap<Engine, Autotuner>();

/** The autotuner of an engine (choices are valid for one adapter only, so they live with the engine). */
export function autotuner(e: Engine): Autotuner {
  let t = tuners.get(e);
  if (!t) {
    t = new Autotuner();
    tuners.set(e, t);
  }
  return t;
}

/** Rounds each size up to a power of two: shapes in one class share a tuned configuration. */
export function shapeClass(sizes: readonly number[]): string {
  return sizes.map((s) => (s <= 1 ? 1 : 2 ** Math.ceil(Math.log2(s)))).join('x');
}
