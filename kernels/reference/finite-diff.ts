// Central finite differences in float64, and the checks that tie a reference op's JVP and VJP to its forward.
// These are what make the references trustworthy: an analytic derivative is only accepted when it agrees with
// differences of the forward and with its own transpose.

import { type T64, t64, clone64, assertShape, dot64, maxAbs, maxAbsDiff, randn64 } from './tensor64.js';

export type RefFn = (inputs: T64[]) => T64;

function perturbed(inputs: T64[], tangents: T64[], h: number): T64[] {
  return inputs.map((x, k) => {
    const t = tangents[k];
    assertShape(t, x.shape, `tangent ${k}`);
    const y = clone64(x);
    for (let i = 0; i < y.data.length; i++) y.data[i] += h * t.data[i];
    return y;
  });
}

/** (f(x + h·v) − f(x − h·v)) / 2h: the directional derivative J·v with O(h²) truncation error. */
export function jvpFD(f: RefFn, inputs: T64[], tangents: T64[], h = 1e-6): T64 {
  if (tangents.length !== inputs.length) throw new Error(`jvpFD: ${tangents.length} tangents for ${inputs.length} inputs`);
  const plus = f(perturbed(inputs, tangents, h));
  const minus = f(perturbed(inputs, tangents, -h));
  assertShape(minus, plus.shape, 'jvpFD');
  const out = t64(plus.shape);
  for (let i = 0; i < out.data.length; i++) out.data[i] = (plus.data[i] - minus.data[i]) / (2 * h);
  return out;
}

/**
 * Jᵀ·u for every input, one central difference per input element: 2·(total input size) forward calls, so for
 * small shapes only.
 */
export function vjpViaFD(f: RefFn, inputs: T64[], cotangent: T64, h = 1e-6): T64[] {
  const work = inputs.map(clone64);
  return work.map((x, k) => {
    const g = t64(x.shape);
    for (let i = 0; i < x.data.length; i++) {
      const x0 = x.data[i];
      x.data[i] = x0 + h;
      const plus = f(work);
      x.data[i] = x0 - h;
      const minus = f(work);
      x.data[i] = x0;
      assertShape(plus, cotangent.shape, `vjpViaFD output (input ${k})`);
      let s = 0;
      for (let j = 0; j < plus.data.length; j++) s += cotangent.data[j] * (plus.data[j] - minus.data[j]);
      g.data[i] = s / (2 * h);
    }
    return g;
  });
}

export interface DotIdentityResult {
  /** ⟨J·v, u⟩ */
  lhs: number;
  /** Σ_k ⟨v_k, (Jᵀ·u)_k⟩ */
  rhs: number;
  /**
   * |lhs − rhs| / max(Σ|(J·v)_i u_i|, Σ|v_j (Jᵀ·u)_j|): scaled by the sums of absolute terms, because that is what
   * roundoff in the two sums is proportional to (a plain relative error is meaningless when the sums cancel).
   */
  relErr: number;
}

/** The adjoint test ⟨J·v, u⟩ = ⟨v, Jᵀ·u⟩, with `jv` = J·v and `jtu[k]` = (Jᵀ·u) for input k. */
export function dotIdentity(jv: T64, u: T64, v: T64[], jtu: T64[]): DotIdentityResult {
  if (v.length !== jtu.length) throw new Error(`dotIdentity: ${v.length} tangents, ${jtu.length} cotangent results`);
  assertShape(u, jv.shape, 'dotIdentity u');
  const lhs = dot64(jv, u);
  let lhsAbs = 0;
  for (let i = 0; i < u.data.length; i++) lhsAbs += Math.abs(jv.data[i] * u.data[i]);
  let rhs = 0;
  let rhsAbs = 0;
  for (let k = 0; k < v.length; k++) {
    assertShape(jtu[k], v[k].shape, `dotIdentity input ${k}`);
    for (let i = 0; i < v[k].data.length; i++) {
      const p = v[k].data[i] * jtu[k].data[i];
      rhs += p;
      rhsAbs += Math.abs(p);
    }
  }
  const scale = Math.max(lhsAbs, rhsAbs);
  return { lhs, rhs, relErr: scale === 0 ? Math.abs(lhs - rhs) : Math.abs(lhs - rhs) / scale };
}

/** A reference op seen as a function of a list of inputs, with its two derivative rules. */
export interface RefOp {
  f: RefFn;
  /** J·v for tangents v (one per input, same shapes). */
  jvp: (inputs: T64[], tangents: T64[]) => T64;
  /** Jᵀ·u, one gradient per input. */
  vjp: (inputs: T64[], cotangent: T64) => T64[];
}

export interface RefDerivativeErrors {
  /** max|JVP − FD| / max|FD|. */
  jvpVsFD: number;
  /** dotIdentity(JVP, VJP).relErr. */
  dot: number;
  /** max over inputs of max|VJP − FD| / max|FD|; NaN when not computed. */
  vjpVsFD: number;
}

/**
 * Runs all three checks with seeded random tangents and cotangent. `vjpFD` (default true) also compares the VJP
 * with per-element finite differences, which costs 2·(input size) forward calls.
 */
export function checkRefDerivatives(
  op: RefOp,
  inputs: T64[],
  opts: { seed?: number; h?: number; vjpFD?: boolean } = {},
): RefDerivativeErrors {
  const seed = opts.seed ?? 1;
  const h = opts.h ?? 1e-6;
  const v = inputs.map((x, k) => randn64(x.shape, seed * 1000 + k + 1));
  const jv = op.jvp(inputs, v);
  const fd = jvpFD(op.f, inputs, v, h);
  const y = op.f(inputs);
  assertShape(jv, y.shape, 'jvp output');
  const u = randn64(y.shape, seed * 1000 + 999);
  const jtu = op.vjp(inputs, u);
  const dot = dotIdentity(jv, u, v, jtu).relErr;
  let vjpVsFD = Number.NaN;
  if (opts.vjpFD ?? true) {
    const g = vjpViaFD(op.f, inputs, u, h);
    vjpVsFD = 0;
    for (let k = 0; k < g.length; k++) {
      const s = maxAbs(g[k]);
      const d = maxAbsDiff(jtu[k], g[k]);
      vjpVsFD = Math.max(vjpVsFD, s === 0 ? d : d / s);
    }
  }
  const s = maxAbs(fd);
  const d = maxAbsDiff(jv, fd);
  return { jvpVsFD: s === 0 ? d : d / s, dot, vjpVsFD };
}
