// Shared shapes for the float64 references of group norm, activations, attention, reductions and embeddings.
// T64 is declared structurally (identical to tensor64.ts's) so these files compile on their own.

/** Row-major float64 tensor. */
export type T64 = { shape: number[]; data: Float64Array };

/** A JVP result: the primal output and its directional derivative. */
export interface Dual {
  primal: T64;
  tangent: T64;
}

/**
 * Forward-over-reverse result (the JVP of a VJP): `grad` is the VJP's output, `gradDot` its directional derivative
 * along the primal tangents and the cotangent's tangent. With a zero cotangent tangent, `gradDot` is a
 * Hessian-vector product of ⟨cotangent, f⟩.
 */
export interface HvpResult<G> {
  grad: G;
  gradDot: G;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function t64(shape: readonly number[], data?: Float64Array): T64 {
  const n = numel(shape);
  if (data !== undefined && data.length !== n) {
    throw new Error(`t64: data length ${data.length} does not match shape [${shape.join(', ')}]`);
  }
  return { shape: [...shape], data: data ?? new Float64Array(n) };
}

export function zerosLike(a: T64): T64 {
  return t64(a.shape);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function assertShape(what: string, t: T64, shape: readonly number[]): void {
  if (!sameShape(t.shape, shape)) {
    throw new Error(`${what}: shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`);
  }
  if (t.data.length !== numel(shape)) throw new Error(`${what}: data length ${t.data.length} does not match its shape`);
}

/** Elementwise a + b (same shapes). */
export function addT64(a: T64, b: T64): T64 {
  assertShape('addT64', b, a.shape);
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = a.data[i] + b.data[i];
  return t64(a.shape, out);
}

/** s · a. */
export function scaleT64(a: T64, s: number): T64 {
  const out = new Float64Array(a.data.length);
  for (let i = 0; i < out.length; i++) out[i] = s * a.data[i];
  return t64(a.shape, out);
}

/** Same data, new shape of equal size (shares the buffer: references never mutate their inputs). */
export function reshapeT64(a: T64, shape: readonly number[]): T64 {
  if (numel(shape) !== a.data.length) {
    throw new Error(`reshapeT64: [${a.shape.join(', ')}] cannot become [${shape.join(', ')}]`);
  }
  return { shape: [...shape], data: a.data };
}
