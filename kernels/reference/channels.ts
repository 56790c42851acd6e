// Channel concat/split and elementwise arithmetic in float64. Scalars (scale, axpy's a) are constants, not
// differentiated: the network only uses fixed ones (1/√2 for skip_rescale, solver coefficients).

import { type T64, t64, size, assertShape, sameShape } from './tensor64.js';

// ---- concat along axis 1 (channels of NCHW; also works for [N, C] and any rank ≥ 2) ----

function concatGeometry(shapes: readonly (readonly number[])[]): { N: number; inner: number; counts: number[]; out: number[] } {
  if (shapes.length === 0) throw new Error('concatChannels: no inputs');
  const first = shapes[0];
  if (first.length < 2) throw new Error(`concatChannels: rank ${first.length} < 2`);
  const rest = first.slice(2);
  for (const s of shapes) {
    if (s.length !== first.length || s[0] !== first[0] || !sameShape(s.slice(2), rest)) {
      throw new Error(`concatChannels: shape [${s.join(', ')}] does not match [${first.join(', ')}] outside axis 1`);
    }
  }
  const counts = shapes.map((s) => s[1]);
  const total = counts.reduce((a, b) => a + b, 0);
  return { N: first[0], inner: size(rest), counts, out: [first[0], total, ...rest] };
}

export function concatChannelsRef(xs: readonly T64[]): T64 {
  const g = concatGeometry(xs.map((x) => x.shape));
  const y = t64(g.out);
  const C = g.out[1];
  let c0 = 0;
  xs.forEach((x, k) => {
    const Ck = g.counts[k];
    for (let n = 0; n < g.N; n++) {
      y.data.set(x.data.subarray(n * Ck * g.inner, (n + 1) * Ck * g.inner), (n * C + c0) * g.inner);
    }
    c0 += Ck;
  });
  return y;
}

/** Splits axis 1 into consecutive pieces of `counts` channels: the inverse of concat, and its adjoint. */
export function splitChannelsRef(x: T64, counts: readonly number[]): T64[] {
  if (x.shape.length < 2) throw new Error(`splitChannels: rank ${x.shape.length} < 2`);
  const [N, C, ...rest] = x.shape;
  if (counts.reduce((a, b) => a + b, 0) !== C) throw new Error(`splitChannels: counts ${counts.join('+')} ≠ ${C} channels`);
  const inner = size(rest);
  let c0 = 0;
  return counts.map((Ck) => {
    const out = t64([N, Ck, ...rest]);
    for (let n = 0; n < N; n++) {
      out.data.set(x.data.subarray((n * C + c0) * inner, (n * C + c0 + Ck) * inner), n * Ck * inner);
    }
    c0 += Ck;
    return out;
  });
}

/** One gradient per concatenated input: the split of gy. */
export function concatChannelsVjpRef(gy: T64, counts: readonly number[]): T64[] {
  return splitChannelsRef(gy, counts);
}

/** Concat of the tangents; an absent tangent is zero of its input's shape. */
export function concatChannelsJvpRef(xs: readonly T64[], ts: readonly (T64 | null | undefined)[]): T64 {
  return concatChannelsRef(
    xs.map((x, k) => {
      const t = ts[k];
      if (!t) return t64(x.shape);
      assertShape(t, x.shape, `concatChannels tangent ${k}`);
      return t;
    }),
  );
}

// ---- broadcasting: b's shape must equal a's, or be a leading prefix of it (e.g. e [N, C] over x [N, C, H, W],
// the way time and label embeddings are added to feature maps); b is then repeated over the trailing dims ----

/** Number of a's elements that share one b element (1 when the shapes are equal). */
export function prefixBroadcastInner(aShape: readonly number[], bShape: readonly number[]): number {
  if (bShape.length > aShape.length || !sameShape(aShape.slice(0, bShape.length), bShape)) {
    throw new Error(`broadcast: [${bShape.join(', ')}] is not a leading prefix of [${aShape.join(', ')}]`);
  }
  return size(aShape.slice(bShape.length));
}

/** Sums g over the trailing dims that a prefix-broadcast b was repeated along: the adjoint of the broadcast. */
export function reduceToPrefixRef(g: T64, bShape: readonly number[]): T64 {
  const inner = prefixBroadcastInner(g.shape, bShape);
  const out = t64(bShape);
  for (let i = 0; i < out.data.length; i++) {
    let s = 0;
    for (let j = 0; j < inner; j++) s += g.data[i * inner + j];
    out.data[i] = s;
  }
  return out;
}

// ---- add: a + b ----

export function addRef(a: T64, b: T64): T64 {
  const inner = prefixBroadcastInner(a.shape, b.shape);
  const y = t64(a.shape);
  for (let i = 0; i < y.data.length; i++) y.data[i] = a.data[i] + b.data[Math.floor(i / inner)];
  return y;
}

/** ga = gy, gb = gy summed over the broadcast dims. */
export function addVjpRef(gy: T64, bShape: readonly number[]): { ga: T64; gb: T64 } {
  return { ga: t64(gy.shape, new Float64Array(gy.data)), gb: reduceToPrefixRef(gy, bShape) };
}

export function addJvpRef(a: T64, b: T64, t: { a?: T64; b?: T64 }): T64 {
  const inner = prefixBroadcastInner(a.shape, b.shape);
  const y = t64(a.shape);
  if (t.a) {
    assertShape(t.a, a.shape, 'add tangent a');
    y.data.set(t.a.data);
  }
  if (t.b) {
    assertShape(t.b, b.shape, 'add tangent b');
    for (let i = 0; i < y.data.length; i++) y.data[i] += t.b.data[Math.floor(i / inner)];
  }
  return y;
}

// ---- mul: a ⊙ b ----

export function mulRef(a: T64, b: T64): T64 {
  const inner = prefixBroadcastInner(a.shape, b.shape);
  const y = t64(a.shape);
  for (let i = 0; i < y.data.length; i++) y.data[i] = a.data[i] * b.data[Math.floor(i / inner)];
  return y;
}

/** ga = gy ⊙ b (broadcast), gb = Σ_broadcast dims gy ⊙ a. */
export function mulVjpRef(a: T64, b: T64, gy: T64): { ga: T64; gb: T64 } {
  assertShape(gy, a.shape, 'mul gy');
  return { ga: mulRef(gy, b), gb: reduceToPrefixRef(mulRef(gy, a), b.shape) };
}

/** ta ⊙ b + a ⊙ tb; absent tangents are zero. */
export function mulJvpRef(a: T64, b: T64, t: { a?: T64; b?: T64 }): T64 {
  const inner = prefixBroadcastInner(a.shape, b.shape);
  const y = t64(a.shape);
  if (t.a) {
    assertShape(t.a, a.shape, 'mul tangent a');
    for (let i = 0; i < y.data.length; i++) y.data[i] += t.a.data[i] * b.data[Math.floor(i / inner)];
  }
  if (t.b) {
    assertShape(t.b, b.shape, 'mul tangent b');
    for (let i = 0; i < y.data.length; i++) y.data[i] += a.data[i] * t.b.data[Math.floor(i / inner)];
  }
  return y;
}

// ---- scale: s·x, and axpy: alpha·x + y (scalars constant) ----

export function scaleRef(x: T64, s: number): T64 {
  const y = t64(x.shape);
  for (let i = 0; i < y.data.length; i++) y.data[i] = s * x.data[i];
  return y;
}

export function scaleVjpRef(gy: T64, s: number): T64 {
  return scaleRef(gy, s);
}

export function scaleJvpRef(tx: T64, s: number): T64 {
  return scaleRef(tx, s);
}

export function axpyRef(alpha: number, x: T64, y: T64): T64 {
  assertShape(y, x.shape, 'axpy y');
  const out = t64(x.shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = alpha * x.data[i] + y.data[i];
  return out;
}

/** For output cotangent g: gx = alpha·g, gy = g (gy is the gradient w.r.t. the input y). */
export function axpyVjpRef(alpha: number, g: T64): { gx: T64; gy: T64 } {
  return { gx: scaleRef(g, alpha), gy: t64(g.shape, new Float64Array(g.data)) };
}

/** alpha·tx + ty; absent tangents are zero. */
export function axpyJvpRef(alpha: number, x: T64, t: { x?: T64; y?: T64 }): T64 {
  const out = t64(x.shape);
  if (t.x) {
    assertShape(t.x, x.shape, 'axpy tangent x');
    for (let i = 0; i < out.data.length; i++) out.data[i] = alpha * t.x.data[i];
  }
  if (t.y) {
    assertShape(t.y, x.shape, 'axpy tangent y');
    for (let i = 0; i < out.data.length; i++) out.data[i] += t.y.data[i];
  }
  return out;
}
