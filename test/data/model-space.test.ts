import { describe, expect, it } from 'vitest';
import { drawHost } from '../../engine/rng.js';
import { bitsPerDim, describeModelSpace, fromModelSpace, modelSpaceScale, toModelSpace } from '../../data/model-space.js';

const allLevels = Uint8Array.from({ length: 256 }, (_, i) => i);

describe('toModelSpace (SPEC §1)', () => {
  it('without noise is pixels/256, centred 2x − 1', () => {
    const x = toModelSpace(Uint8Array.of(0, 1, 128, 255), { centered: false });
    expect(Array.from(x)).toEqual([0, 1 / 256, 0.5, 255 / 256]);
    const c = toModelSpace(Uint8Array.of(0, 1, 128, 255), { centered: true });
    expect(Array.from(c)).toEqual([-1, 2 / 256 - 1, 0, 510 / 256 - 1]);
  });

  it('adds noise in units of one pixel level: x = (p + u)/256', () => {
    const noise = Float32Array.of(0.5, 0.25, 0.75);
    const x = toModelSpace(Uint8Array.of(0, 10, 200), { centered: false, dequantNoise: noise });
    expect(Array.from(x)).toEqual([0.5 / 256, 10.25 / 256, 200.75 / 256]);
    const c = toModelSpace(Uint8Array.of(0, 10, 200), { centered: true, dequantNoise: noise });
    expect(Array.from(c)).toEqual([1 / 256 - 1, 20.5 / 256 - 1, 401.5 / 256 - 1].map(Math.fround));
  });

  it('stays inside the pixel bin after float32 rounding (u → 1, p = 255 never reaches 1.0)', () => {
    const top = Math.fround(1 - 2 ** -24);
    for (const centered of [false, true]) {
      const x = toModelSpace(allLevels, { centered, dequantNoise: new Float32Array(256).fill(top) });
      for (let p = 0; p < 256; p++) {
        const lo = centered ? p / 128 - 1 : p / 256;
        const hi = centered ? (p + 1) / 128 - 1 : (p + 1) / 256;
        expect(x[p]).toBeGreaterThanOrEqual(lo);
        expect(x[p]).toBeLessThan(hi);
      }
      expect(x[255]).toBeLessThan(1);
    }
  });

  it('round-trips through fromModelSpace for RNG noise in both spaces', () => {
    const pixels = Uint8Array.from({ length: 256 * 40 }, (_, i) => i % 256);
    const noise = drawHost(pixels.length, 'uniform', { seed: 7, stream: 3 }) as Float32Array;
    for (const centered of [false, true]) {
      const x = toModelSpace(pixels, { centered, dequantNoise: noise });
      expect(fromModelSpace(x, centered)).toEqual(pixels);
    }
    expect(Array.from(fromModelSpace([-0.3, 1.7], false))).toEqual([0, 255]); // saturates
  });

  it('rejects noise of the wrong length or outside [0, 1)', () => {
    const p = Uint8Array.of(1, 2);
    expect(() => toModelSpace(p, { centered: false, dequantNoise: new Float32Array(3) })).toThrow(/3 values for 2 pixels/);
    expect(() => toModelSpace(p, { centered: false, dequantNoise: Float32Array.of(0, 1) })).toThrow(/dequantNoise\[1\] = 1 is outside \[0, 1\)/);
    expect(() => toModelSpace(p, { centered: false, dequantNoise: Float32Array.of(-0.5, 0) })).toThrow(/dequantNoise\[0\]/);
    expect(() => toModelSpace(p, { centered: false, dequantNoise: Float32Array.of(0, NaN) })).toThrow(/NaN/);
    expect(() => fromModelSpace([NaN], true)).toThrow(/NaN/);
  });
});

describe('bitsPerDim (SPEC §1)', () => {
  it('is 8 for the uniform density over the data range, in either space', () => {
    for (const D of [1, 784, 3072]) {
      // Uncentred: uniform on [0,1]^D has log p = 0. Centred: uniform on [−1,1]^D has log p = −D·log 2.
      expect(bitsPerDim(0, D, false)).toBe(8);
      expect(bitsPerDim(-D * Math.log(2), D, true)).toBeCloseTo(8, 12);
    }
  });

  it('matches hand-computed values', () => {
    // log p = −D ln 2 uncentred: each dim costs one more bit than uniform → 9.
    expect(bitsPerDim(-3072 * Math.LN2, 3072, false)).toBeCloseTo(9, 12);
    // The same image density seen in centred space has log p lower by D ln 2: same bpd.
    expect(bitsPerDim(-3072 * Math.LN2 - 3072 * Math.LN2, 3072, true)).toBeCloseTo(9, 12);
    // A density of e^{D} on [0,1]^D (log p = D nats): bpd = 8 − 1/ln 2.
    expect(bitsPerDim(10, 10, false)).toBeCloseTo(8 - 1 / Math.LN2, 12);
    // Centred shift is exactly log2(2) = 1 bit per dim relative to the same number uncentred.
    expect(bitsPerDim(-5, 4, true) - bitsPerDim(-5, 4, false)).toBeCloseTo(-1, 12);
    expect(modelSpaceScale(true)).toBe(2);
    expect(describeModelSpace(true)).toMatch(/centred.*scale 2/);
  });

  it('rejects a bad D or NaN log p', () => {
    expect(() => bitsPerDim(0, 0, false)).toThrow(/D must be a positive integer/);
    expect(() => bitsPerDim(0, 2.5, false)).toThrow(/D must be/);
    expect(() => bitsPerDim(NaN, 3, false)).toThrow(/NaN/);
  });
});
