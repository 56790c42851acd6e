/** Float64 finite-difference and vector helpers shared by the reference-op tests. */
import { expect } from 'vitest';
import { t64, type T64 } from '../../kernels/reference/norm-types.js';
import { checkRefDerivatives, type RefOp } from '../../kernels/reference/finite-diff.js';

/**
 * Bounds for linear or bilinear float64 reference ops: central differences of such maps carry roundoff only
 * (~1e-10 relative at h = 1e-6), so 1e-7 (a real bug shows up as O(1)); the dot-product identity compares two
 * float64 sums of the same products: 1e-12.
 */
export const BILINEAR_FD_TOL = 1e-7;
export const BILINEAR_DOT_TOL = 1e-12;

/**
 * JVP and VJP of a linear or bilinear reference op against central differences, and ⟨J·v, u⟩ = ⟨v, Jᵀ·u⟩, within
 * those bounds. `vjpFD` false skips the VJP-vs-differences check (the identity still ties the VJP to the JVP).
 */
export function expectBilinearDerivatives(op: RefOp, inputs: T64[], seed: number, vjpFD = true): void {
  const e = checkRefDerivatives(op, inputs, { seed, vjpFD });
  expect(e.jvpVsFD).toBeLessThanOrEqual(BILINEAR_FD_TOL);
  expect(e.dot).toBeLessThanOrEqual(BILINEAR_DOT_TOL);
  if (vjpFD) expect(e.vjpVsFD).toBeLessThanOrEqual(BILINEAR_FD_TOL);
}

/**
 * A RefOp over inputs named `names` (in order), from rules in the references' own form: the JVP takes the tangents
 * as a record by input name (absent ones undefined), the VJP returns the gradients as a record g<name>.
 */
export function namedRefOp<K extends string>(
  names: readonly K[],
  f: (inputs: T64[]) => T64,
  jvp: (inputs: T64[], tangents: Partial<Record<K, T64>>) => T64,
  vjp: (inputs: T64[], cotangent: T64) => Record<`g${K}`, T64>,
): RefOp {
  return {
    f,
    jvp: (inputs, tangents) => {
      const named = Object.fromEntries(names.map((n, i) => [n, tangents[i]])) as Partial<Record<K, T64>>;
      return jvp(inputs, named);
    },
    vjp: (inputs, cotangent) => {
      const grads = vjp(inputs, cotangent);
      return names.map((n) => grads[`g${n}`]);
    },
  };
}

export function normalSampler(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = (): number => {
    // mulberry32
    s = (s + 0x6d2b79f5) >>> 0;
    let r = Math.imul(s ^ (s >>> 15), 1 | s);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}
export function randT(shape: number[], randn: () => number, scale = 1): T64 {
  const t = t64(shape);
  for (let i = 0; i < t.data.length; i++) t.data[i] = scale * randn();
  return t;
}
export function flat(ts: T64[]): Float64Array {
  const out = new Float64Array(ts.reduce((a, t) => a + t.data.length, 0));
  let o = 0;
  for (const t of ts) {
    out.set(t.data, o);
    o += t.data.length;
  }
  return out;
}
export function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
export const norm = (a: Float64Array): number => Math.sqrt(dot(a, a));
export const maxAbs = (a: Float64Array): number => a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
/** max|a − b| relative to the larger of the two vectors' max-abs. */
export function relErr(a: Float64Array, b: Float64Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d / Math.max(maxAbs(a), maxAbs(b), 1e-300);
}
export function centralDiff(f: (s: number) => Float64Array, h = 1e-5): Float64Array {
  const p = f(h);
  const m = f(-h);
  return p.map((v, i) => (v - m[i]) / (2 * h));
}
export function axpy(a: T64, t: T64, s: number): T64 {
  return t64(a.shape, a.data.map((v, i) => v + s * t.data[i]));
}
export function expectDotIdentity(jv: Float64Array, u: Float64Array, v: Float64Array, jtu: Float64Array): void {
  const scale = Math.max(norm(jv) * norm(u), norm(v) * norm(jtu));
  expect(Math.abs(dot(jv, u) - dot(v, jtu))).toBeLessThanOrEqual(1e-12 * scale);
}
