// Spatial resampling in float64, NCHW. Two families, as in score_sde's up_or_down_sampling.py:
// - naive (fir=False, what the DDPM++ cont. config uses): nearest ×2 upsample and 2×2 average pool;
// - FIR (fir=True): upfirdn2d with a separable kernel, default [1,3,3,1], and the fused conv variants.
// All maps here are linear in x (bilinear in (x, w) for the fused ones), so JVP = forward of the tangent and VJP
// = the adjoint.

import { type T64, t64, addTangentTerm, assertRank, assertShape } from './tensor64.js';
import { conv2dRef, conv2dInputVjpRef, conv2dWeightVjpRef, convTranspose2dRef } from './conv2d.js';

function dims4(s: readonly number[], what: string): [number, number, number, number] {
  if (s.length !== 4) throw new Error(`${what}: expected NCHW, got shape [${s.join(', ')}]`);
  return [s[0], s[1], s[2], s[3]];
}

// ---- nearest-neighbour ×2 upsample (naive_upsample_2d): y[.., i, j] = x[.., ⌊i/2⌋, ⌊j/2⌋] ----

export function upsampleNearest2xRef(x: T64): T64 {
  const [N, C, H, W] = dims4(x.shape, 'upsampleNearest2x');
  const y = t64([N, C, 2 * H, 2 * W]);
  for (let p = 0; p < N * C; p++) {
    for (let i = 0; i < 2 * H; i++) {
      for (let j = 0; j < 2 * W; j++) {
        y.data[(p * 2 * H + i) * 2 * W + j] = x.data[(p * H + (i >> 1)) * W + (j >> 1)];
      }
    }
  }
  return y;
}

/** Adjoint: each input pixel receives the sum of its 2×2 block of gy. */
export function upsampleNearest2xVjpRef(gy: T64): T64 {
  const [N, C, H2, W2] = dims4(gy.shape, 'upsampleNearest2x gy');
  if (H2 % 2 || W2 % 2) throw new Error(`upsampleNearest2x gy: odd spatial size ${H2}×${W2}`);
  const H = H2 / 2;
  const W = W2 / 2;
  const gx = t64([N, C, H, W]);
  for (let p = 0; p < N * C; p++) {
    for (let i = 0; i < H2; i++) {
      for (let j = 0; j < W2; j++) gx.data[(p * H + (i >> 1)) * W + (j >> 1)] += gy.data[(p * H2 + i) * W2 + j];
    }
  }
  return gx;
}

export function upsampleNearest2xJvpRef(tx: T64): T64 {
  return upsampleNearest2xRef(tx);
}

// ---- 2×2 average pool, stride 2 (naive_downsample_2d); even H, W as score_sde's reshape requires ----

export function avgPool2xRef(x: T64): T64 {
  const [N, C, H, W] = dims4(x.shape, 'avgPool2x');
  if (H % 2 || W % 2) throw new Error(`avgPool2x: odd spatial size ${H}×${W}`);
  const Ho = H / 2;
  const Wo = W / 2;
  const y = t64([N, C, Ho, Wo]);
  for (let p = 0; p < N * C; p++) {
    for (let i = 0; i < H; i++) {
      for (let j = 0; j < W; j++) y.data[(p * Ho + (i >> 1)) * Wo + (j >> 1)] += 0.25 * x.data[(p * H + i) * W + j];
    }
  }
  return y;
}

/** Adjoint: gy/4 spread over each 2×2 block. */
export function avgPool2xVjpRef(gy: T64): T64 {
  const [N, C, Ho, Wo] = dims4(gy.shape, 'avgPool2x gy');
  const gx = upsampleNearest2xRef(gy);
  for (let i = 0; i < gx.data.length; i++) gx.data[i] *= 0.25;
  assertShape(gx, [N, C, 2 * Ho, 2 * Wo], 'avgPool2x gx');
  return gx;
}

export function avgPool2xJvpRef(tx: T64): T64 {
  return avgPool2xRef(tx);
}

// ---- upfirdn2d: zero-insert by `up`, pad (negative = crop), convolve with k (true convolution, k flipped),
// keep every `down`-th sample. Same per-channel 2-D kernel on every (n, c). ----

export interface Upfirdn2dOptions {
  up?: number;
  down?: number;
  /** [p0, p1]: p0 before and p1 after on both axes (score_sde's `pad=(p0, p1)`); or [top, bottom, left, right]. */
  pad?: [number, number] | [number, number, number, number];
}

interface UpfirdnGeometry {
  N: number;
  C: number;
  H: number;
  W: number;
  up: number;
  down: number;
  pt: number;
  pl: number;
  KH: number;
  KW: number;
  OH: number;
  OW: number;
}

function upfirdnGeometry(xShape: readonly number[], k: T64, opts: Upfirdn2dOptions): UpfirdnGeometry {
  const [N, C, H, W] = dims4(xShape, 'upfirdn2d');
  assertRank(k, 2, 'upfirdn2d kernel');
  const up = opts.up ?? 1;
  const down = opts.down ?? 1;
  const p = opts.pad ?? [0, 0];
  const [pt, pb, pl, pr] = p.length === 2 ? [p[0], p[1], p[0], p[1]] : p;
  const [KH, KW] = k.shape;
  const OH = Math.floor((H * up + pt + pb - KH) / down) + 1;
  const OW = Math.floor((W * up + pl + pr - KW) / down) + 1;
  if (OH < 1 || OW < 1) throw new Error(`upfirdn2d: empty output ${OH}×${OW}`);
  return { N, C, H, W, up, down, pt, pl, KH, KW, OH, OW };
}

export function upfirdn2dOutShape(xShape: readonly number[], k: T64, opts: Upfirdn2dOptions = {}): number[] {
  const g = upfirdnGeometry(xShape, k, opts);
  return [g.N, g.C, g.OH, g.OW];
}

/** visit(xIndex, kernelIndex, yIndex) for every nonzero-by-construction tap (zero-inserted samples skipped). */
function forEachFirTap(g: UpfirdnGeometry, visit: (xi: number, ki: number, yi: number) => void): void {
  const { N, C, H, W, up, down, pt, pl, KH, KW, OH, OW } = g;
  for (let p = 0; p < N * C; p++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        const yi = (p * OH + oy) * OW + ox;
        for (let a = 0; a < KH; a++) {
          const u = oy * down + a - pt; // row in the zero-inserted image
          if (u < 0 || u >= H * up || u % up !== 0) continue;
          for (let b = 0; b < KW; b++) {
            const v = ox * down + b - pl;
            if (v < 0 || v >= W * up || v % up !== 0) continue;
            // Convolution, not correlation: tap a meets kernel row KH-1-a.
            visit((p * H + u / up) * W + v / up, (KH - 1 - a) * KW + (KW - 1 - b), yi);
          }
        }
      }
    }
  }
}

export function upfirdn2dRef(x: T64, k: T64, opts: Upfirdn2dOptions = {}): T64 {
  const g = upfirdnGeometry(x.shape, k, opts);
  const y = t64([g.N, g.C, g.OH, g.OW]);
  forEachFirTap(g, (xi, ki, yi) => {
    y.data[yi] += x.data[xi] * k.data[ki];
  });
  return y;
}

/** Adjoint of upfirdn2dRef in x (k is a constant filter), for an input of shape xShape. */
export function upfirdn2dVjpRef(gy: T64, k: T64, xShape: readonly number[], opts: Upfirdn2dOptions = {}): T64 {
  const g = upfirdnGeometry(xShape, k, opts);
  assertShape(gy, [g.N, g.C, g.OH, g.OW], 'upfirdn2d gy');
  const gx = t64(xShape);
  forEachFirTap(g, (xi, ki, yi) => {
    gx.data[xi] += gy.data[yi] * k.data[ki];
  });
  return gx;
}

export function upfirdn2dJvpRef(tx: T64, k: T64, opts: Upfirdn2dOptions = {}): T64 {
  return upfirdn2dRef(tx, k, opts);
}

// ---- FIR up/down-sampling (upsample_2d / downsample_2d) ----

export interface FirOptions {
  /** Separable 1-D FIR taps; default [1, 3, 3, 1] (score_sde's resample_kernel). */
  kernel?: readonly number[];
  /** Default 2. */
  factor?: number;
  /** Default 1: a constant image keeps its value away from the borders. */
  gain?: number;
}

/** outer(k, k) / sum(outer(k, k)) · scale, as score_sde's _setup_kernel followed by its gain factor. */
export function firKernel2d(k1d: readonly number[], scale: number): T64 {
  const n = k1d.length;
  let sum = 0;
  for (const a of k1d) for (const b of k1d) sum += a * b;
  const k = t64([n, n]);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) k.data[i * n + j] = (k1d[i] * k1d[j] * scale) / sum;
  return k;
}

// Python's // floors; p can be negative for the fused upsample with a large conv kernel.
const floorDiv2 = (v: number): number => Math.floor(v / 2);

/**
 * score_sde's filter and upfirdn2d options for upsample_2d (`up`: gain·f², padding shifted by f − 1) or
 * downsample_2d, and the reference, VJP and JVP of that resampling (linear, so its JVP is itself).
 */
function firResample(up: boolean) {
  const setup = (opts: FirOptions): [T64, Upfirdn2dOptions] => {
    const taps = opts.kernel ?? [1, 3, 3, 1];
    const f = opts.factor ?? 2;
    const p = taps.length - f;
    if (up) return [firKernel2d(taps, (opts.gain ?? 1) * f * f), { up: f, pad: [floorDiv2(p + 1) + f - 1, floorDiv2(p)] }];
    return [firKernel2d(taps, opts.gain ?? 1), { down: f, pad: [floorDiv2(p + 1), floorDiv2(p)] }];
  };
  const ref = (x: T64, opts: FirOptions = {}): T64 => upfirdn2dRef(x, ...setup(opts));
  const vjp = (gy: T64, xShape: readonly number[], opts: FirOptions = {}): T64 => {
    const [k, o] = setup(opts);
    return upfirdn2dVjpRef(gy, k, xShape, o);
  };
  return { ref, vjp, jvp: ref };
}

/** upsample_2d: [N, C, H, W] -> [N, C, f·H, f·W]. */
export const { ref: firUpsample2dRef, vjp: firUpsample2dVjpRef, jvp: firUpsample2dJvpRef } = firResample(true);

/** downsample_2d: [N, C, H, W] -> [N, C, H/f, W/f] for H, W divisible by f. */
export const { ref: firDownsample2dRef, vjp: firDownsample2dVjpRef, jvp: firDownsample2dJvpRef } = firResample(false);

// ---- fused FIR + conv (upsample_conv_2d / conv_downsample_2d), weight w [Cout, Cin, k, k], no bias (the
// Conv2d layer adds it afterwards). The padding is applied once, so borders differ from the unfused chain. ----

/** [A, B, KH, KW] -> [B, A, KH, KW] with both spatial axes reversed; its own inverse (and adjoint). */
export function flipSwapWeight(w: T64): T64 {
  const [A, B, KH, KW] = dims4(w.shape, 'flipSwapWeight');
  const out = t64([B, A, KH, KW]);
  for (let a = 0; a < A; a++) {
    for (let b = 0; b < B; b++) {
      for (let i = 0; i < KH; i++) {
        for (let j = 0; j < KW; j++) {
          out.data[((b * A + a) * KH + (KH - 1 - i)) * KW + (KW - 1 - j)] = w.data[((a * B + b) * KH + i) * KW + j];
        }
      }
    }
  }
  return out;
}

/** The stride f, FIR filter and its padding of upsample_conv_2d (`up`) or conv_downsample_2d for the weight w. */
function convFirSetup(w: T64, opts: FirOptions, up: boolean): { f: number; k: T64; fir: Upfirdn2dOptions } {
  const what = up ? 'upsampleConv2d' : 'convDownsample2d';
  const [, , KH, KW] = dims4(w.shape, `${what} w`);
  if (KH !== KW) throw new Error(`${what}: square kernels only, got ${KH}×${KW}`);
  const taps = opts.kernel ?? [1, 3, 3, 1];
  const f = opts.factor ?? 2;
  if (up) {
    const p = taps.length - f - (KW - 1);
    return { f, k: firKernel2d(taps, (opts.gain ?? 1) * f * f), fir: { pad: [floorDiv2(p + 1) + f - 1, floorDiv2(p) + 1] } };
  }
  const p = taps.length - f + (KW - 1);
  return { f, k: firKernel2d(taps, opts.gain ?? 1), fir: { pad: [floorDiv2(p + 1), floorDiv2(p)] } };
}

/** upsample_conv_2d: conv_transpose2d(x, flipSwap(w), stride f) then the FIR filter; [N, Cin, H, W] -> [N, Cout, fH, fW]. */
export function upsampleConv2dRef(x: T64, w: T64, opts: FirOptions = {}): T64 {
  const { f, k, fir } = convFirSetup(w, opts, true);
  return upfirdn2dRef(convTranspose2dRef(x, flipSwapWeight(w), { stride: f }), k, fir);
}

export function upsampleConv2dVjpRef(x: T64, w: T64, gy: T64, opts: FirOptions = {}): { gx: T64; gw: T64 } {
  const { f, k, fir } = convFirSetup(w, opts, true);
  const w2 = flipSwapWeight(w);
  const mid = convTranspose2dRef(x, w2, { stride: f });
  const gMid = upfirdn2dVjpRef(gy, k, mid.shape, fir);
  // convTranspose(x, w2) is conv2d's input-VJP, so its adjoint in x is conv2d(gMid, w2) and in w2 conv2d's
  // weight-VJP with the roles of input and output gradient swapped.
  const gx = conv2dRef(gMid, w2, null, { stride: f });
  const gw2 = conv2dWeightVjpRef(gMid, x, w2.shape, { stride: f });
  return { gx, gw: flipSwapWeight(gw2) };
}

export function upsampleConv2dJvpRef(x: T64, w: T64, t: { x?: T64; w?: T64 }, opts: FirOptions = {}): T64 {
  const { f, k, fir } = convFirSetup(w, opts, true);
  const w2 = flipSwapWeight(w);
  const outShape = upfirdn2dOutShape(convTranspose2dRef(x, w2, { stride: f }).shape, k, fir);
  const y = t64(outShape);
  addTangentTerm(y, t.x, x.shape, 'upsampleConv2d tangent x', (tx) => upfirdn2dRef(convTranspose2dRef(tx, w2, { stride: f }), k, fir));
  addTangentTerm(y, t.w, w.shape, 'upsampleConv2d tangent w', (tw) =>
    upfirdn2dRef(convTranspose2dRef(x, flipSwapWeight(tw), { stride: f }), k, fir),
  );
  return y;
}

/** conv_downsample_2d: FIR filter (padded once) then conv2d(stride f, no padding); [N, Cin, H, W] -> [N, Cout, H/f, W/f]. */
export function convDownsample2dRef(x: T64, w: T64, opts: FirOptions = {}): T64 {
  const { f, k, fir } = convFirSetup(w, opts, false);
  return conv2dRef(upfirdn2dRef(x, k, fir), w, null, { stride: f });
}

export function convDownsample2dVjpRef(x: T64, w: T64, gy: T64, opts: FirOptions = {}): { gx: T64; gw: T64 } {
  const { f, k, fir } = convFirSetup(w, opts, false);
  const mid = upfirdn2dRef(x, k, fir);
  const gMid = conv2dInputVjpRef(gy, w, mid.shape, { stride: f });
  return { gx: upfirdn2dVjpRef(gMid, k, x.shape, fir), gw: conv2dWeightVjpRef(mid, gy, w.shape, { stride: f }) };
}

export function convDownsample2dJvpRef(x: T64, w: T64, t: { x?: T64; w?: T64 }, opts: FirOptions = {}): T64 {
  const { f, k, fir } = convFirSetup(w, opts, false);
  const mid = upfirdn2dRef(x, k, fir);
  const y = conv2dRef(mid, w, null, { stride: f });
  y.data.fill(0);
  addTangentTerm(y, t.x, x.shape, 'convDownsample2d tangent x', (tx) => conv2dRef(upfirdn2dRef(tx, k, fir), w, null, { stride: f }));
  addTangentTerm(y, t.w, w.shape, 'convDownsample2d tangent w', (tw) => conv2dRef(mid, tw, null, { stride: f }));
  return y;
}
