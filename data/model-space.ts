/**
 * SPEC §1: 8-bit pixels ↔ the model's continuous space, and bits/dim.
 *
 * Uncentred: x = (pixel + u)/256 ∈ [0, 1), u ~ U[0, 1) per value — i.e. pixels/256 plus noise in [0, 1/256).
 * Centred:   x' = 2x − 1 ∈ [−1, 1).
 * The map from [0,1] pixel space to model space has derivative `scale` = 1 (uncentred) or 2 (centred), so a
 * density in model space is converted to the 256-level pixel grid by adding D·log(scale) (see bitsPerDim).
 */
import { ShapeError } from '../engine/errors.js';

export interface ModelSpaceOptions {
  /** Centred variant x' = 2x − 1 (the model config's `centered`). */
  centered: boolean;
  /**
   * Dequantisation noise: one uniform draw in [0, 1) per pixel, in units of ONE PIXEL LEVEL (it is divided by
   * 256 here), e.g. straight from `drawHost(n, 'uniform', …)`. Omitted: u = 0 (x = pixels/256, no noise).
   */
  dequantNoise?: Float32Array;
}

/** The derivative of the map from [0,1] pixel space to model space. */
export function modelSpaceScale(centered: boolean): 1 | 2 {
  return centered ? 2 : 1;
}

/** A human-readable name of the model space, for reports next to a bits/dim number. */
export function describeModelSpace(centered: boolean): string {
  return centered ? 'centred: x = 2(pixel + u)/256 − 1 ∈ [−1, 1), scale 2' : 'uncentred: x = (pixel + u)/256 ∈ [0, 1), scale 1';
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The largest float32 strictly below v (v itself a float32). */
function f32Below(v: number): number {
  f32[0] = v;
  if (v > 0) u32[0] -= 1;
  else if (v === 0) u32[0] = 0x80000001; // −(smallest subnormal)
  else u32[0] += 1;
  return f32[0];
}

/**
 * Pixels (any layout, one byte per value) → model-space float32, SPEC §1 exactly. The result stays inside the
 * pixel's half-open bin even after float32 rounding (rounding (p + u)/256 to nearest could otherwise land on
 * (p + 1)/256, i.e. in the next bin, or on 1.0 for p = 255).
 */
export function toModelSpace(pixels: Uint8Array, opts: ModelSpaceOptions): Float32Array {
  const { centered, dequantNoise: noise } = opts;
  if (noise && noise.length !== pixels.length) {
    throw new ShapeError(`toModelSpace: dequantNoise has ${noise.length} values for ${pixels.length} pixels`);
  }
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) {
    const p = pixels[i];
    let u = 0;
    if (noise) {
      u = noise[i];
      // Written so that NaN fails too.
      if (!(u >= 0 && u < 1)) throw new RangeError(`toModelSpace: dequantNoise[${i}] = ${u} is outside [0, 1) (units of one pixel level)`);
    }
    const x = (p + u) / 256; // exact in float64 for RNG draws (k·2⁻²⁴); the float32 rounding is bounded below
    const v = centered ? 2 * x - 1 : x;
    const hi = centered ? (p + 1) / 128 - 1 : (p + 1) / 256; // exact bin edge, representable in float32
    const r = Math.fround(v);
    out[i] = r < hi ? r : f32Below(hi);
  }
  return out;
}

/**
 * Model space → 8-bit pixels: the bin x falls in, floor(256·x) (after undoing centring), clamped to [0, 255] —
 * values outside the data range (samples, attacked images) saturate. Inverse of toModelSpace for any noise.
 */
export function fromModelSpace(x: ArrayLike<number>, centered: boolean): Uint8Array {
  const out = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = centered ? (x[i] + 1) / 2 : x[i];
    if (Number.isNaN(v)) throw new RangeError(`fromModelSpace: x[${i}] is NaN`);
    out[i] = Math.min(255, Math.max(0, Math.floor(256 * v)));
  }
  return out;
}

/**
 * Bits per dimension of an image from its model-space log-density (nats), SPEC §1:
 *   bpd = −(log p(x) + D·ln(scale)) / (D·ln 2) + 8,  scale = 1 uncentred, 2 centred.
 * This is the negative log-likelihood of the 8-bit image on the 256-level pixel grid, in bits per value; a
 * uniform density over the data range gives exactly 8 in either space.
 */
export function bitsPerDim(logpNats: number, D: number, centered: boolean): number {
  if (!Number.isInteger(D) || D < 1) throw new RangeError(`bitsPerDim: D must be a positive integer, got ${D}`);
  if (Number.isNaN(logpNats)) throw new RangeError('bitsPerDim: log p is NaN');
  return -(logpNats + D * Math.log(modelSpaceScale(centered))) / (D * Math.LN2) + 8;
}
