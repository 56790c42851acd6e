// 2-D convolution in float64, PyTorch semantics (cross-correlation, NCHW, weight [Cout, Cin, kh, kw]), dilation 1,
// one group. Padding may be asymmetric because score_sde's Downsample pads (0,1,0,1) before a stride-2 3×3 conv.
// Its geometry (Conv2dGeometry, conv2dGeometry) repeats kernels/conv2d-config.ts's on purpose: the oracle imports
// nothing from the code it checks, so a wrong output size or padding there cannot also pass here.

import { type T64, t64, assertRank, assertShape } from './tensor64.js';

/** n: same on all sides; [ph, pw]: per axis (PyTorch style); [top, bottom, left, right]: fully explicit. */
export type Conv2dPadding = number | [number, number] | [number, number, number, number];

export interface Conv2dOptions {
  /** n or [sh, sw]; default 1. */
  stride?: number | [number, number];
  /** Default 0. */
  padding?: Conv2dPadding;
}

/** Sizes, strides, padding (top, bottom, left, right) and output size of one convolution. */
export type Conv2dGeometry = ReturnType<typeof conv2dGeometry>;

export function normalizePadding(p: Conv2dPadding | undefined): [number, number, number, number] {
  if (p === undefined) return [0, 0, 0, 0];
  if (typeof p === 'number') return [p, p, p, p];
  if (p.length === 2) return [p[0], p[0], p[1], p[1]];
  return [p[0], p[1], p[2], p[3]];
}

export function conv2dGeometry(xShape: readonly number[], wShape: readonly number[], opts: Conv2dOptions = {}) {
  if (xShape.length !== 4 || wShape.length !== 4) {
    throw new Error(`conv2d: x [${xShape.join(', ')}] and w [${wShape.join(', ')}] must both be rank 4`);
  }
  const [N, Cin, H, W] = xShape;
  const [Cout, Cin2, KH, KW] = wShape;
  if (Cin !== Cin2) throw new Error(`conv2d: x has ${Cin} channels, w expects ${Cin2}`);
  const s = opts.stride ?? 1;
  const [sh, sw] = typeof s === 'number' ? [s, s] : s;
  const [pt, pb, pl, pr] = normalizePadding(opts.padding);
  if (!(sh >= 1 && sw >= 1) || [pt, pb, pl, pr].some((v) => v < 0 || !Number.isInteger(v))) {
    throw new Error(`conv2d: bad stride [${sh}, ${sw}] or padding [${pt}, ${pb}, ${pl}, ${pr}]`);
  }
  const OH = Math.floor((H + pt + pb - KH) / sh) + 1;
  const OW = Math.floor((W + pl + pr - KW) / sw) + 1;
  if (OH < 1 || OW < 1) throw new Error(`conv2d: empty output ${OH}×${OW}`);
  return { N, Cin, H, W, Cout, KH, KW, sh, sw, pt, pb, pl, pr, OH, OW };
}

export function conv2dOutShape(xShape: readonly number[], wShape: readonly number[], opts: Conv2dOptions = {}): number[] {
  const g = conv2dGeometry(xShape, wShape, opts);
  return [g.N, g.Cout, g.OH, g.OW];
}

/**
 * Calls visit(xIndex, wIndex, yIndex) for every multiply of the convolution; forward and both VJPs are this one
 * loop with a different accumulation, so they cannot disagree about which taps exist.
 */
function forEachTap(g: Conv2dGeometry, visit: (xi: number, wi: number, yi: number) => void): void {
  const { N, Cin, H, W, Cout, KH, KW, sh, sw, pt, pl, OH, OW } = g;
  for (let n = 0; n < N; n++) {
    for (let co = 0; co < Cout; co++) {
      for (let oh = 0; oh < OH; oh++) {
        for (let ow = 0; ow < OW; ow++) {
          const yi = ((n * Cout + co) * OH + oh) * OW + ow;
          for (let ci = 0; ci < Cin; ci++) {
            for (let kh = 0; kh < KH; kh++) {
              const ih = oh * sh - pt + kh;
              if (ih < 0 || ih >= H) continue;
              for (let kw = 0; kw < KW; kw++) {
                const iw = ow * sw - pl + kw;
                if (iw < 0 || iw >= W) continue;
                visit(((n * Cin + ci) * H + ih) * W + iw, ((co * Cin + ci) * KH + kh) * KW + kw, yi);
              }
            }
          }
        }
      }
    }
  }
}

function addBias(y: T64, b: T64, g: Conv2dGeometry): void {
  assertShape(b, [g.Cout], 'conv2d bias');
  const hw = g.OH * g.OW;
  for (let i = 0; i < y.data.length; i++) y.data[i] += b.data[Math.floor(i / hw) % g.Cout];
}

export function conv2dRef(x: T64, w: T64, b: T64 | null | undefined, opts: Conv2dOptions = {}): T64 {
  const g = conv2dGeometry(x.shape, w.shape, opts);
  const y = t64([g.N, g.Cout, g.OH, g.OW]);
  forEachTap(g, (xi, wi, yi) => (y.data[yi] += x.data[xi] * w.data[wi]));
  if (b) addBias(y, b, g);
  return y;
}

/** The geometry of conv(x of xShape, w of wShape), checking gy as the cotangent of its output. */
function cotangentGeometry(xShape: readonly number[], wShape: readonly number[], gy: T64, opts: Conv2dOptions): Conv2dGeometry {
  const g = conv2dGeometry(xShape, wShape, opts);
  assertShape(gy, [g.N, g.Cout, g.OH, g.OW], 'conv2d gy');
  return g;
}

/** ∂⟨gy, conv(x, w)⟩/∂x for an input of shape xShape (the transposed convolution of gy). */
export function conv2dInputVjpRef(gy: T64, w: T64, xShape: readonly number[], opts: Conv2dOptions = {}): T64 {
  const g = cotangentGeometry(xShape, w.shape, gy, opts);
  const gx = t64(xShape);
  forEachTap(g, (xi, wi, yi) => (gx.data[xi] += gy.data[yi] * w.data[wi]));
  return gx;
}

/** ∂⟨gy, conv(x, w)⟩/∂w for a weight of shape wShape. */
export function conv2dWeightVjpRef(x: T64, gy: T64, wShape: readonly number[], opts: Conv2dOptions = {}): T64 {
  const g = cotangentGeometry(x.shape, wShape, gy, opts);
  const gw = t64(wShape);
  forEachTap(g, (xi, wi, yi) => (gw.data[wi] += gy.data[yi] * x.data[xi]));
  return gw;
}

/** ∂⟨gy, y⟩/∂b = Σ over n, h, w of gy. */
export function conv2dBiasVjpRef(gy: T64): T64 {
  assertRank(gy, 4, 'conv2d gy');
  const [N, C, H, W] = gy.shape;
  const gb = t64([C]);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      let s = 0;
      const base = (n * C + c) * H * W;
      for (let i = 0; i < H * W; i++) s += gy.data[base + i];
      gb.data[c] += s;
    }
  }
  return gb;
}

/** All three gradients; gb is returned whether or not the layer has a bias (it does not depend on b). */
export function conv2dVjpRef(x: T64, w: T64, gy: T64, opts: Conv2dOptions = {}): { gx: T64; gw: T64; gb: T64 } {
  return {
    gx: conv2dInputVjpRef(gy, w, x.shape, opts),
    gw: conv2dWeightVjpRef(x, gy, w.shape, opts),
    gb: conv2dBiasVjpRef(gy),
  };
}

/** Bilinear product rule: conv(tx, w) + conv(x, tw) + tb; absent tangents are zero. */
export function conv2dJvpRef(x: T64, w: T64, t: { x?: T64; w?: T64; b?: T64 }, opts: Conv2dOptions = {}): T64 {
  const g = conv2dGeometry(x.shape, w.shape, opts);
  const y = t64([g.N, g.Cout, g.OH, g.OW]);
  const acc = (z: T64): void => {
    for (let i = 0; i < y.data.length; i++) y.data[i] += z.data[i];
  };
  if (t.x) {
    assertShape(t.x, x.shape, 'conv2d tangent x');
    acc(conv2dRef(t.x, w, null, opts));
  }
  if (t.w) {
    assertShape(t.w, w.shape, 'conv2d tangent w');
    acc(conv2dRef(x, t.w, null, opts));
  }
  if (t.b) addBias(y, t.b, g);
  return y;
}

export interface ConvTranspose2dOptions extends Conv2dOptions {
  /** Extra rows/columns at the bottom/right of the output, [oh, ow] or n (PyTorch's output_padding); default 0. */
  outputPadding?: number | [number, number];
}

/** Output shape of PyTorch's conv_transpose2d: (H − 1)·s − pt − pb + kh + output_padding per axis. */
export function convTranspose2dOutShape(xShape: readonly number[], wShape: readonly number[], opts: ConvTranspose2dOptions = {}): number[] {
  const s = opts.stride ?? 1;
  const [sh, sw] = typeof s === 'number' ? [s, s] : s;
  const [pt, pb, pl, pr] = normalizePadding(opts.padding);
  const op = opts.outputPadding ?? 0;
  const [oph, opw] = typeof op === 'number' ? [op, op] : op;
  const [N, , H, W] = xShape;
  return [N, wShape[1], (H - 1) * sh - pt - pb + wShape[2] + oph, (W - 1) * sw - pl - pr + wShape[3] + opw];
}

/**
 * PyTorch's conv_transpose2d(x, w) with w [Cin, Cout, kh, kw]: exactly the input-VJP of conv2d with that same
 * weight array read as a conv2d weight [Cout_conv = Cin, Cin_conv = Cout, kh, kw]. Its own derivatives are
 * therefore conv2d's: d/dx is conv2dRef(gy, w), d/dw is conv2dWeightVjpRef(gy, x) (see resample.ts).
 */
export function convTranspose2dRef(x: T64, w: T64, opts: ConvTranspose2dOptions = {}): T64 {
  assertRank(x, 4, 'conv_transpose2d x');
  assertRank(w, 4, 'conv_transpose2d w');
  if (x.shape[1] !== w.shape[0]) throw new Error(`conv_transpose2d: x has ${x.shape[1]} channels, w expects ${w.shape[0]}`);
  const outShape = convTranspose2dOutShape(x.shape, w.shape, opts);
  return conv2dInputVjpRef(x, w, outShape, { stride: opts.stride, padding: opts.padding });
}
