// Float64 reference for GroupNorm over [N, C, ...spatial] (PyTorch semantics: biased variance, eps inside the
// square root, per-channel affine). Forward, VJP, JVP and the forward-over-reverse HVP, all written by hand.
import { assertShape, t64, type HvpResult, type Dual, type T64 } from './norm-types.js';

export interface GroupNormOptions {
  groups: number;
  eps: number;
}

/** Cotangents (VJP) or tangents (JVP) of GroupNorm's three inputs. */
export interface GroupNormGrads {
  x: T64;
  gamma: T64;
  beta: T64;
}
export type GroupNormTangents = GroupNormGrads;

/** score_sde's choice for a C-channel GroupNorm: min(C // 4, 32) groups. */
export function scoreSdeGroups(channels: number): number {
  return Math.min(Math.floor(channels / 4), 32);
}
/** score_sde's GroupNorm eps. */
export const SCORE_SDE_GN_EPS = 1e-6;

/** n samples, c channels of s spatial elements, in groups of cpg channels: m elements per contiguous block. */
type Layout = ReturnType<typeof layoutOf>;

function layoutOf(x: T64, gamma: T64, beta: T64, opts: GroupNormOptions) {
  if (x.shape.length < 2) throw new Error(`groupNorm: x must be [N, C, ...], got [${x.shape.join(', ')}]`);
  const [n, c] = x.shape;
  const s = x.shape.slice(2).reduce((p, d) => p * d, 1);
  const groups = opts.groups;
  if (!Number.isInteger(groups) || groups < 1 || c % groups !== 0) {
    throw new Error(`groupNorm: ${c} channels cannot be split into ${groups} groups`);
  }
  assertShape('groupNorm gamma', gamma, [c]);
  assertShape('groupNorm beta', beta, [c]);
  const cpg = c / groups;
  return { n, c, s, groups, cpg, m: cpg * s };
}

interface Stats {
  /** 1/sqrt(var + eps) per (sample, group). */
  rstd: Float64Array;
  /** Normalised input x̂ = (x − μ)·rstd. */
  xhat: Float64Array;
}

function statsOf(x: Float64Array, L: Layout, eps: number): Stats {
  const nb = L.n * L.groups;
  const rstd = new Float64Array(nb);
  const xhat = new Float64Array(x.length);
  for (let b = 0; b < nb; b++) {
    const o = b * L.m;
    let mean = 0;
    for (let i = 0; i < L.m; i++) mean += x[o + i];
    mean /= L.m;
    // Two-pass variance: the reference must not lose digits to E[x²] − E[x]².
    let v = 0;
    for (let i = 0; i < L.m; i++) v += (x[o + i] - mean) ** 2;
    v /= L.m;
    const r = 1 / Math.sqrt(v + eps);
    rstd[b] = r;
    for (let i = 0; i < L.m; i++) xhat[o + i] = (x[o + i] - mean) * r;
  }
  return { rstd, xhat };
}

/**
 * P(v) = r·(v − mean(v) − x̂·mean(x̂·v)) per group. This symmetric operator is the Jacobian of x ↦ x̂, so it serves
 * as both its JVP and its VJP.
 */
function project(v: Float64Array, st: Stats, L: Layout): Float64Array {
  const out = new Float64Array(v.length);
  for (let b = 0; b < L.n * L.groups; b++) {
    const o = b * L.m;
    let a = 0;
    let c = 0;
    for (let i = 0; i < L.m; i++) {
      a += v[o + i];
      c += st.xhat[o + i] * v[o + i];
    }
    a /= L.m;
    c /= L.m;
    const r = st.rstd[b];
    for (let i = 0; i < L.m; i++) out[o + i] = r * (v[o + i] - a - st.xhat[o + i] * c);
  }
  return out;
}

/** Channel of flat index i in [N, C, S] layout. */
function channelOf(i: number, L: Layout): number {
  return Math.floor(i / L.s) % L.c;
}

export function groupNormRef(x: T64, gamma: T64, beta: T64, opts: GroupNormOptions): T64 {
  const L = layoutOf(x, gamma, beta, opts);
  const { xhat } = statsOf(x.data, L, opts.eps);
  const y = new Float64Array(x.data.length);
  for (let i = 0; i < y.length; i++) {
    const c = channelOf(i, L);
    y[i] = gamma.data[c] * xhat[i] + beta.data[c];
  }
  return t64(x.shape, y);
}

export function groupNormVjpRef(x: T64, gamma: T64, beta: T64, gy: T64, opts: GroupNormOptions): GroupNormGrads {
  const L = layoutOf(x, gamma, beta, opts);
  assertShape('groupNormVjp gy', gy, x.shape);
  const st = statsOf(x.data, L, opts.eps);
  const gGamma = new Float64Array(L.c);
  const gBeta = new Float64Array(L.c);
  const u = new Float64Array(x.data.length);
  for (let i = 0; i < u.length; i++) {
    const c = channelOf(i, L);
    gGamma[c] += gy.data[i] * st.xhat[i];
    gBeta[c] += gy.data[i];
    u[i] = gy.data[i] * gamma.data[c];
  }
  return { x: t64(x.shape, project(u, st, L)), gamma: t64([L.c], gGamma), beta: t64([L.c], gBeta) };
}

export function groupNormJvpRef(
  x: T64,
  gamma: T64,
  beta: T64,
  tangents: GroupNormTangents,
  opts: GroupNormOptions,
): Dual {
  const L = layoutOf(x, gamma, beta, opts);
  assertShape('groupNormJvp x tangent', tangents.x, x.shape);
  assertShape('groupNormJvp gamma tangent', tangents.gamma, [L.c]);
  assertShape('groupNormJvp beta tangent', tangents.beta, [L.c]);
  const st = statsOf(x.data, L, opts.eps);
  const xhatDot = project(tangents.x.data, st, L);
  const y = new Float64Array(x.data.length);
  const yDot = new Float64Array(x.data.length);
  for (let i = 0; i < y.length; i++) {
    const c = channelOf(i, L);
    y[i] = gamma.data[c] * st.xhat[i] + beta.data[c];
    yDot[i] = tangents.gamma.data[c] * st.xhat[i] + gamma.data[c] * xhatDot[i] + tangents.beta.data[c];
  }
  return { primal: t64(x.shape, y), tangent: t64(x.shape, yDot) };
}

/**
 * JVP of the VJP (forward over reverse). Differentiates gx = r·(u − ā − x̂·b̄) with u = gy·γ, ā = mean(u),
 * b̄ = mean(x̂·u) and ṙ = −r²·mean(x̂·ẋ), plus gγ = Σ gy·x̂ and gβ = Σ gy. β's tangent does not enter.
 */
export function groupNormHvpRef(
  x: T64,
  gamma: T64,
  beta: T64,
  tangents: GroupNormTangents,
  gy: T64,
  gyDot: T64,
  opts: GroupNormOptions,
): HvpResult<GroupNormGrads> {
  const L = layoutOf(x, gamma, beta, opts);
  assertShape('groupNormHvp x tangent', tangents.x, x.shape);
  assertShape('groupNormHvp gamma tangent', tangents.gamma, [L.c]);
  assertShape('groupNormHvp gy', gy, x.shape);
  assertShape('groupNormHvp gy tangent', gyDot, x.shape);
  const st = statsOf(x.data, L, opts.eps);
  const xd = tangents.x.data;
  const xhatDot = project(xd, st, L);
  const len = x.data.length;
  const u = new Float64Array(len);
  const uDot = new Float64Array(len);
  const gGamma = new Float64Array(L.c);
  const gBeta = new Float64Array(L.c);
  const gGammaDot = new Float64Array(L.c);
  const gBetaDot = new Float64Array(L.c);
  for (let i = 0; i < len; i++) {
    const c = channelOf(i, L);
    u[i] = gy.data[i] * gamma.data[c];
    uDot[i] = gyDot.data[i] * gamma.data[c] + gy.data[i] * tangents.gamma.data[c];
    gGamma[c] += gy.data[i] * st.xhat[i];
    gBeta[c] += gy.data[i];
    gGammaDot[c] += gyDot.data[i] * st.xhat[i] + gy.data[i] * xhatDot[i];
    gBetaDot[c] += gyDot.data[i];
  }
  const gx = new Float64Array(len);
  const gxDot = new Float64Array(len);
  for (let b = 0; b < L.n * L.groups; b++) {
    const o = b * L.m;
    let a = 0;
    let bb = 0;
    let aDot = 0;
    let bbDot = 0;
    let xx = 0;
    for (let i = o; i < o + L.m; i++) {
      a += u[i];
      bb += st.xhat[i] * u[i];
      aDot += uDot[i];
      bbDot += xhatDot[i] * u[i] + st.xhat[i] * uDot[i];
      xx += st.xhat[i] * xd[i];
    }
    a /= L.m;
    bb /= L.m;
    aDot /= L.m;
    bbDot /= L.m;
    const r = st.rstd[b];
    const rDot = -r * r * (xx / L.m);
    for (let i = o; i < o + L.m; i++) {
      const inner = u[i] - a - st.xhat[i] * bb;
      gx[i] = r * inner;
      gxDot[i] = rDot * inner + r * (uDot[i] - aDot - xhatDot[i] * bb - st.xhat[i] * bbDot);
    }
  }
  return {
    grad: { x: t64(x.shape, gx), gamma: t64([L.c], gGamma), beta: t64([L.c], gBeta) },
    gradDot: { x: t64(x.shape, gxDot), gamma: t64([L.c], gGammaDot), beta: t64([L.c], gBetaDot) },
  };
}
