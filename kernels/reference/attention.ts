// Float64 reference for score_sde's AttnBlockpp (NCSN++ self-attention over all H·W positions), composed from the
// hand-written primitives: GroupNorm → NIN q/k/v → scores qᵀk/√C → softmax over keys → Σ v·w → NIN_3 → skip.
// Every stage has forward, VJP, JVP and forward-over-reverse (HVP) rules; the block chains them.
import { softmaxHvpRef, softmaxJvpRef, softmaxRef, softmaxVjpRef } from './activations.js';
import {
  groupNormHvpRef,
  groupNormJvpRef,
  groupNormRef,
  groupNormVjpRef,
  scoreSdeGroups,
  SCORE_SDE_GN_EPS,
  type GroupNormGrads,
  type GroupNormOptions,
} from './group-norm.js';
import { addT64, assertShape, scaleT64, t64, type Dual, type HvpResult, type T64 } from './norm-types.js';

/** score_sde's NIN: a 1×1 linear map over channels. W is stored [in, out] (not PyTorch Linear's [out, in]). */
export interface NinParams {
  W: T64;
  b: T64;
}

/** AttnBlockpp parameters, named after its state dict (GroupNorm_0.weight/bias, NIN_0..NIN_3.W/b). */
export interface AttnParams {
  gamma: T64;
  beta: T64;
  nin0: NinParams;
  nin1: NinParams;
  nin2: NinParams;
  nin3: NinParams;
}

export interface AttnOptions {
  /** (x + h)/√2 instead of x + h; ncsnpp builds its attention blocks with skip_rescale=True, the default here. */
  skipRescale?: boolean;
  /** Defaults to score_sde's min(C // 4, 32). */
  groups?: number;
  /** Defaults to score_sde's 1e-6. */
  eps?: number;
}

/** Cotangents (VJP) or tangents (JVP) of the block's input and every parameter. */
export interface AttnGrads {
  x: T64;
  params: AttnParams;
}
export type AttnTangents = AttnGrads;

/** The parameters in a fixed order (state-dict order), for flattening into one vector. */
export function attnParamTensors(p: AttnParams): T64[] {
  return [p.gamma, p.beta, p.nin0.W, p.nin0.b, p.nin1.W, p.nin1.b, p.nin2.W, p.nin2.b, p.nin3.W, p.nin3.b];
}

// ---------------------------------------------------------------------------------------------------------------
// NIN: y[n,o,s] = Σ_c W[c,o]·x[n,c,s] + b[o], x of shape [N, C, ...spatial].

function ninDims(x: T64, p: NinParams): { n: number; cin: number; cout: number; s: number } {
  if (x.shape.length < 2) throw new Error(`nin: x must be [N, C, ...], got [${x.shape.join(', ')}]`);
  const [n, cin] = x.shape;
  if (p.W.shape.length !== 2 || p.W.shape[0] !== cin) {
    throw new Error(`nin: W [${p.W.shape.join(', ')}] does not take ${cin} input channels ([in, out] layout)`);
  }
  const cout = p.W.shape[1];
  assertShape('nin b', p.b, [cout]);
  return { n, cin, cout, s: x.shape.slice(2).reduce((a, d) => a * d, 1) };
}

export function ninRef(x: T64, p: NinParams): T64 {
  const { n, cin, cout, s } = ninDims(x, p);
  const y = new Float64Array(n * cout * s);
  for (let ni = 0; ni < n; ni++) {
    for (let o = 0; o < cout; o++) {
      const yo = (ni * cout + o) * s;
      for (let k = 0; k < s; k++) y[yo + k] = p.b.data[o];
      for (let c = 0; c < cin; c++) {
        const w = p.W.data[c * cout + o];
        const xo = (ni * cin + c) * s;
        for (let k = 0; k < s; k++) y[yo + k] += w * x.data[xo + k];
      }
    }
  }
  return t64([n, cout, ...x.shape.slice(2)], y);
}

export interface NinGrads {
  x: T64;
  W: T64;
  b: T64;
}

export function ninVjpRef(x: T64, p: NinParams, gy: T64): NinGrads {
  const { n, cin, cout, s } = ninDims(x, p);
  assertShape('ninVjp gy', gy, [n, cout, ...x.shape.slice(2)]);
  const gx = new Float64Array(x.data.length);
  const gW = new Float64Array(cin * cout);
  const gb = new Float64Array(cout);
  for (let ni = 0; ni < n; ni++) {
    for (let o = 0; o < cout; o++) {
      const yo = (ni * cout + o) * s;
      for (let k = 0; k < s; k++) gb[o] += gy.data[yo + k];
      for (let c = 0; c < cin; c++) {
        const xo = (ni * cin + c) * s;
        const w = p.W.data[c * cout + o];
        let acc = 0;
        for (let k = 0; k < s; k++) {
          gx[xo + k] += w * gy.data[yo + k];
          acc += x.data[xo + k] * gy.data[yo + k];
        }
        gW[c * cout + o] += acc;
      }
    }
  }
  return { x: t64(x.shape, gx), W: t64(p.W.shape, gW), b: t64([cout], gb) };
}

export function ninJvpRef(x: T64, p: NinParams, xDot: T64, pDot: NinParams): Dual {
  assertShape('ninJvp x tangent', xDot, x.shape);
  // Bilinear in (x, W), affine in b: ẏ = nin(ẋ; W, ḃ) + nin(x; Ẇ, 0).
  const zeroB = t64(p.b.shape);
  return {
    primal: ninRef(x, p),
    tangent: addT64(ninRef(xDot, { W: p.W, b: pDot.b }), ninRef(x, { W: pDot.W, b: zeroB })),
  };
}

export function ninHvpRef(x: T64, p: NinParams, xDot: T64, pDot: NinParams, gy: T64, gyDot: T64): HvpResult<NinGrads> {
  // gx is bilinear in (W, gy) and gW in (x, gy), so each tangent is the VJP of one swapped pair plus the other;
  // gb = Σ gy depends on gy alone.
  const grad = ninVjpRef(x, p, gy);
  const a = ninVjpRef(xDot, { W: pDot.W, b: p.b }, gy);
  const b = ninVjpRef(x, p, gyDot);
  return { grad, gradDot: { x: addT64(a.x, b.x), W: addT64(a.W, b.W), b: b.b } };
}

// ---------------------------------------------------------------------------------------------------------------
// Attention core on [N, C, S]: z[n,i,j] = Σ_c q[n,c,i]·k[n,c,j]/√C ; a[n,c,i] = Σ_j w[n,i,j]·v[n,c,j].
// Both maps are bilinear, which gives their VJPs' JVPs for free (see bilinearHvp).

interface Dims {
  n: number;
  c: number;
  s: number;
}

/** Visits every (n, c, i): o starts the row (n, c) of an [N, C, S] tensor, zo the row (n, i) of the [N, S, S] scores. */
function forEachRow(d: Dims, visit: (o: number, i: number, zo: number) => void): void {
  for (let n = 0; n < d.n; n++) {
    for (let c = 0; c < d.c; c++) {
      const o = (n * d.c + c) * d.s;
      for (let i = 0; i < d.s; i++) visit(o, i, (n * d.s + i) * d.s);
    }
  }
}

function scores(q: Float64Array, k: Float64Array, d: Dims, scale: number): Float64Array {
  const z = new Float64Array(d.n * d.s * d.s);
  forEachRow(d, (o, i, zo) => {
    const qi = q[o + i] * scale;
    for (let j = 0; j < d.s; j++) z[zo + j] += qi * k[o + j];
  });
  return z;
}

function scoresVjp(q: Float64Array, k: Float64Array, gz: Float64Array, d: Dims, scale: number): [Float64Array, Float64Array] {
  const gq = new Float64Array(q.length);
  const gk = new Float64Array(k.length);
  forEachRow(d, (o, i, zo) => {
    let acc = 0;
    for (let j = 0; j < d.s; j++) {
      acc += gz[zo + j] * k[o + j];
      gk[o + j] += scale * gz[zo + j] * q[o + i];
    }
    gq[o + i] = scale * acc;
  });
  return [gq, gk];
}

function mix(w: Float64Array, v: Float64Array, d: Dims): Float64Array {
  const a = new Float64Array(d.n * d.c * d.s);
  forEachRow(d, (o, i, wo) => {
    let acc = 0;
    for (let j = 0; j < d.s; j++) acc += w[wo + j] * v[o + j];
    a[o + i] = acc;
  });
  return a;
}

function mixVjp(w: Float64Array, v: Float64Array, ga: Float64Array, d: Dims): [Float64Array, Float64Array] {
  const gw = new Float64Array(w.length);
  const gv = new Float64Array(v.length);
  forEachRow(d, (o, i, wo) => {
    const g = ga[o + i];
    for (let j = 0; j < d.s; j++) {
      gw[wo + j] += g * v[o + j];
      gv[o + j] += g * w[wo + j];
    }
  });
  return [gw, gv];
}

function sum(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

type BilinearVjp = (a: Float64Array, b: Float64Array, g: Float64Array) => [Float64Array, Float64Array];

/** For bilinear B: ga(b, g) and gb(a, g) are bilinear too, so their tangents are vjp(ȧ, ḃ, g) + vjp(a, b, ġ). */
function bilinearHvp(
  vjp: BilinearVjp,
  a: Float64Array,
  b: Float64Array,
  aDot: Float64Array,
  bDot: Float64Array,
  g: Float64Array,
  gDot: Float64Array,
): { grad: [Float64Array, Float64Array]; gradDot: [Float64Array, Float64Array] } {
  const grad = vjp(a, b, g);
  const [ga1, gb1] = vjp(aDot, bDot, g);
  const [ga2, gb2] = vjp(a, b, gDot);
  return { grad, gradDot: [sum(ga1, ga2), sum(gb1, gb2)] };
}

// ---------------------------------------------------------------------------------------------------------------
// The block.

interface Resolved {
  dims: Dims;
  gn: GroupNormOptions;
  /** 1/√C on the scores. */
  scale: number;
  /** 1/√2 with skip_rescale, else 1. */
  skip: number;
}

function resolve(x: T64, p: AttnParams, opts: AttnOptions): Resolved {
  if (x.shape.length !== 4) throw new Error(`attnBlock: x must be [N, C, H, W], got [${x.shape.join(', ')}]`);
  const [n, c, h, w] = x.shape;
  for (const [name, q] of [['nin0', p.nin0], ['nin1', p.nin1], ['nin2', p.nin2], ['nin3', p.nin3]] as const) {
    assertShape(`attnBlock ${name}.W`, q.W, [c, c]);
    assertShape(`attnBlock ${name}.b`, q.b, [c]);
  }
  return {
    dims: { n, c, s: h * w },
    gn: { groups: opts.groups ?? scoreSdeGroups(c), eps: opts.eps ?? SCORE_SDE_GN_EPS },
    scale: 1 / Math.sqrt(c),
    skip: (opts.skipRescale ?? true) ? Math.SQRT1_2 : 1,
  };
}

/** Intermediates of the forward pass, with their tangents when run under a JVP. */
interface Trace {
  h: T64;
  q: T64;
  k: T64;
  v: T64;
  z: T64;
  w: T64;
  a: T64;
  y: T64;
}

function attnTrace(x: T64, p: AttnParams, r: Resolved): Trace {
  const { n, s } = r.dims;
  const h = groupNormRef(x, p.gamma, p.beta, r.gn);
  const q = ninRef(h, p.nin0);
  const k = ninRef(h, p.nin1);
  const v = ninRef(h, p.nin2);
  const z = t64([n, s, s], scores(q.data, k.data, r.dims, r.scale));
  const w = softmaxRef(z);
  const a = t64(x.shape, mix(w.data, v.data, r.dims));
  const y = scaleT64(addT64(x, ninRef(a, p.nin3)), r.skip);
  return { h, q, k, v, z, w, a, y };
}

function attnDualTrace(x: T64, p: AttnParams, t: AttnTangents, r: Resolved): { primal: Trace; tangent: Trace } {
  const { n, s } = r.dims;
  const pt = t.params;
  const h = groupNormJvpRef(x, p.gamma, p.beta, { x: t.x, gamma: pt.gamma, beta: pt.beta }, r.gn);
  const q = ninJvpRef(h.primal, p.nin0, h.tangent, pt.nin0);
  const k = ninJvpRef(h.primal, p.nin1, h.tangent, pt.nin1);
  const v = ninJvpRef(h.primal, p.nin2, h.tangent, pt.nin2);
  const z = scores(q.primal.data, k.primal.data, r.dims, r.scale);
  const zDot = sum(scores(q.tangent.data, k.primal.data, r.dims, r.scale), scores(q.primal.data, k.tangent.data, r.dims, r.scale));
  const w = softmaxJvpRef(t64([n, s, s], z), t64([n, s, s], zDot));
  const a = mix(w.primal.data, v.primal.data, r.dims);
  const aDot = sum(mix(w.tangent.data, v.primal.data, r.dims), mix(w.primal.data, v.tangent.data, r.dims));
  const o = ninJvpRef(t64(x.shape, a), p.nin3, t64(x.shape, aDot), pt.nin3);
  return {
    primal: {
      h: h.primal, q: q.primal, k: k.primal, v: v.primal, z: t64([n, s, s], z), w: w.primal, a: t64(x.shape, a),
      y: scaleT64(addT64(x, o.primal), r.skip),
    },
    tangent: {
      h: h.tangent, q: q.tangent, k: k.tangent, v: v.tangent, z: t64([n, s, s], zDot), w: w.tangent,
      a: t64(x.shape, aDot), y: scaleT64(addT64(t.x, o.tangent), r.skip),
    },
  };
}

export function attnBlockRef(x: T64, p: AttnParams, opts: AttnOptions = {}): T64 {
  return attnTrace(x, p, resolve(x, p, opts)).y;
}

export function attnBlockJvpRef(x: T64, p: AttnParams, tangents: AttnTangents, opts: AttnOptions = {}): Dual {
  assertShape('attnBlockJvp x tangent', tangents.x, x.shape);
  const d = attnDualTrace(x, p, tangents, resolve(x, p, opts));
  return { primal: d.primal.y, tangent: d.tangent.y };
}

export function attnBlockVjpRef(x: T64, p: AttnParams, gy: T64, opts: AttnOptions = {}): AttnGrads {
  const r = resolve(x, p, opts);
  assertShape('attnBlockVjp gy', gy, x.shape);
  const tr = attnTrace(x, p, r);
  const { n, s } = r.dims;
  const go = scaleT64(gy, r.skip);
  const g3 = ninVjpRef(tr.a, p.nin3, go);
  const [gw, gv] = mixVjp(tr.w.data, tr.v.data, g3.x.data, r.dims);
  const gz = softmaxVjpRef(tr.z, t64([n, s, s], gw));
  const [gq, gk] = scoresVjp(tr.q.data, tr.k.data, gz.data, r.dims, r.scale);
  const g0 = ninVjpRef(tr.h, p.nin0, t64(x.shape, gq));
  const g1 = ninVjpRef(tr.h, p.nin1, t64(x.shape, gk));
  const g2 = ninVjpRef(tr.h, p.nin2, t64(x.shape, gv));
  const gh = addT64(addT64(g0.x, g1.x), g2.x);
  const gn = groupNormVjpRef(x, p.gamma, p.beta, gh, r.gn);
  return {
    x: addT64(go, gn.x),
    params: {
      gamma: gn.gamma, beta: gn.beta,
      nin0: { W: g0.W, b: g0.b }, nin1: { W: g1.W, b: g1.b }, nin2: { W: g2.W, b: g2.b }, nin3: { W: g3.W, b: g3.b },
    },
  };
}

/**
 * Forward over reverse: the block's VJP and its JVP along (tangents, gyDot), chaining each stage's HVP rule in
 * reverse over the dual forward trace. With gyDot = 0 this is the Hessian of ⟨gy, block⟩ times the tangents.
 */
export function attnBlockHvpRef(
  x: T64,
  p: AttnParams,
  tangents: AttnTangents,
  gy: T64,
  gyDot: T64,
  opts: AttnOptions = {},
): HvpResult<AttnGrads> {
  const r = resolve(x, p, opts);
  assertShape('attnBlockHvp x tangent', tangents.x, x.shape);
  assertShape('attnBlockHvp gy', gy, x.shape);
  assertShape('attnBlockHvp gy tangent', gyDot, x.shape);
  const { primal: P, tangent: D } = attnDualTrace(x, p, tangents, r);
  const pt = tangents.params;
  const { n, s } = r.dims;
  const go = scaleT64(gy, r.skip);
  const goDot = scaleT64(gyDot, r.skip);
  const g3 = ninHvpRef(P.a, p.nin3, D.a, pt.nin3, go, goDot);
  const mv = bilinearHvp(
    (w, v, g) => mixVjp(w, v, g, r.dims),
    P.w.data, P.v.data, D.w.data, D.v.data, g3.grad.x.data, g3.gradDot.x.data,
  );
  const gz = softmaxHvpRef(P.z, D.z, t64([n, s, s], mv.grad[0]), t64([n, s, s], mv.gradDot[0]));
  const sc = bilinearHvp(
    (q, k, g) => scoresVjp(q, k, g, r.dims, r.scale),
    P.q.data, P.k.data, D.q.data, D.k.data, gz.grad.data, gz.gradDot.data,
  );
  const g0 = ninHvpRef(P.h, p.nin0, D.h, pt.nin0, t64(x.shape, sc.grad[0]), t64(x.shape, sc.gradDot[0]));
  const g1 = ninHvpRef(P.h, p.nin1, D.h, pt.nin1, t64(x.shape, sc.grad[1]), t64(x.shape, sc.gradDot[1]));
  const g2 = ninHvpRef(P.h, p.nin2, D.h, pt.nin2, t64(x.shape, mv.grad[1]), t64(x.shape, mv.gradDot[1]));
  const gh = addT64(addT64(g0.grad.x, g1.grad.x), g2.grad.x);
  const ghDot = addT64(addT64(g0.gradDot.x, g1.gradDot.x), g2.gradDot.x);
  const gn = groupNormHvpRef(x, p.gamma, p.beta, { x: tangents.x, gamma: pt.gamma, beta: pt.beta }, gh, ghDot, r.gn);
  const pack = (gnr: GroupNormGrads, a0: NinGrads, a1: NinGrads, a2: NinGrads, a3: NinGrads, gSkip: T64): AttnGrads => ({
    x: addT64(gSkip, gnr.x),
    params: {
      gamma: gnr.gamma, beta: gnr.beta,
      nin0: { W: a0.W, b: a0.b }, nin1: { W: a1.W, b: a1.b }, nin2: { W: a2.W, b: a2.b }, nin3: { W: a3.W, b: a3.b },
    },
  });
  return {
    grad: pack(gn.grad, g0.grad, g1.grad, g2.grad, g3.grad, go),
    gradDot: pack(gn.gradDot, g0.gradDot, g1.gradDot, g2.gradDot, g3.gradDot, goDot),
  };
}
