// Float64 host tensors for the reference ops: the ground truth the WGSL kernels are tested against.
// Plain row-major arrays, no strides or views, so a reference op reads like the math it implements.

export interface T64 {
  shape: number[];
  data: Float64Array;
}

/** Number of elements of a shape (1 for a scalar shape []). */
export function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`bad dimension ${d} in shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

/**
 * A tensor of `shape`; zeros when `data` is omitted. A Float64Array is taken as is (not copied) so callers can
 * wrap buffers they own; a number[] is copied.
 */
export function t64(shape: readonly number[], data?: Float64Array | readonly number[]): T64 {
  const n = size(shape);
  const d = data === undefined ? new Float64Array(n) : data instanceof Float64Array ? data : Float64Array.from(data);
  if (d.length !== n) throw new Error(`t64: data has ${d.length} elements, shape [${shape.join(', ')}] needs ${n}`);
  return { shape: [...shape], data: d };
}

export function clone64(x: T64): T64 {
  return { shape: [...x.shape], data: new Float64Array(x.data) };
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function assertShape(x: T64, shape: readonly number[], what: string): void {
  if (!sameShape(x.shape, shape)) {
    throw new Error(`${what}: shape [${x.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
}

/** y += term(t) for a present tangent t of the given shape (an absent tangent adds zero): one term of a JVP. */
export function addTangentTerm(y: T64, t: T64 | undefined, shape: readonly number[], what: string, term: (t: T64) => T64): void {
  if (!t) return;
  assertShape(t, shape, what);
  const z = term(t);
  for (let i = 0; i < y.data.length; i++) y.data[i] += z.data[i];
}

export function assertRank(x: T64, rank: number, what: string): void {
  if (x.shape.length !== rank) throw new Error(`${what}: rank ${x.shape.length} (shape [${x.shape.join(', ')}]), expected ${rank}`);
}

/** A small seeded generator: identical streams on every run and platform (32-bit integer math only). */
export interface SeededRng {
  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number;
  /** Standard normal (Box–Muller). */
  normal(): number;
  /** Uniform integer in [lo, hi] inclusive. */
  int(lo: number, hi: number): number;
}

export function makeRng(seed: number): SeededRng {
  // splitmix32: a full-period 2^32 counter passed through a good mixer; plenty for test data.
  let state = seed >>> 0;
  const next32 = (): number => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad);
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97);
    return (z ^ (z >>> 15)) >>> 0;
  };
  const uniform = (): number => ((next32() >>> 5) * 67108864 + (next32() >>> 6)) / 9007199254740992;
  let spare: number | null = null;
  return {
    uniform,
    normal(): number {
      if (spare !== null) {
        const s = spare;
        spare = null;
        return s;
      }
      const u1 = 1 - uniform(); // (0, 1]: log stays finite
      const u2 = uniform();
      const r = Math.sqrt(-2 * Math.log(u1));
      spare = r * Math.sin(2 * Math.PI * u2);
      return r * Math.cos(2 * Math.PI * u2);
    },
    int(lo: number, hi: number): number {
      return lo + Math.floor(uniform() * (hi - lo + 1));
    },
  };
}

/** Standard-normal tensor, deterministic in `seed`. */
export function randn64(shape: readonly number[], seed: number): T64 {
  const x = t64(shape);
  const rng = makeRng(seed);
  for (let i = 0; i < x.data.length; i++) x.data[i] = rng.normal();
  return x;
}

export function maxAbs(x: T64): number {
  let m = 0;
  for (let i = 0; i < x.data.length; i++) m = Math.max(m, Math.abs(x.data[i]));
  return m;
}

/** max_i |a_i − b_i|; throws on a shape mismatch (a silent broadcast would hide bugs). */
export function maxAbsDiff(a: T64, b: T64): number {
  assertShape(a, b.shape, 'maxAbsDiff');
  let m = 0;
  for (let i = 0; i < a.data.length; i++) {
    const d = Math.abs(a.data[i] - b.data[i]);
    if (Number.isNaN(d)) return Number.NaN;
    m = Math.max(m, d);
  }
  return m;
}

/**
 * max|a − b| / max|b| (infinity-norm relative error, `b` the reference). Relative to the largest reference entry
 * rather than element by element, so entries that happen to be near zero do not blow the measure up.
 */
export function maxRelDiff(a: T64, b: T64): number {
  const d = maxAbsDiff(a, b);
  const s = maxAbs(b);
  return s === 0 ? d : d / s;
}

/** Σ a_i b_i over same-shaped tensors. */
export function dot64(a: T64, b: T64): number {
  assertShape(a, b.shape, 'dot64');
  let s = 0;
  for (let i = 0; i < a.data.length; i++) s += a.data[i] * b.data[i];
  return s;
}
