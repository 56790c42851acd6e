import { describe, expect, it } from 'vitest';
import { blocksFor, drawHost } from '../../engine/rng.js';
import { toModelSpace } from '../../data/model-space.js';
import { configuredCentering, DEQUANT_STREAM, fixedPoints, imagesInModelSpace } from '../../data/model-space-images.js';

const shape = [1, 2, 2];

describe('imagesInModelSpace', () => {
  it('dequantises pixels per draw with the keyed Philox noise', () => {
    const pixels = Uint8Array.from([0, 17, 128, 255, 3, 4, 5, 6]);
    const images = imagesInModelSpace({ pixels }, shape, { centered: true, dequantise: true }, 'test');
    expect([images.count, images.dim, images.centered, images.fixed]).toEqual([2, 4, true, false]);
    const key = { seed: 7, stream: 3, imageKey: 11 };
    const noise = drawHost(4, 'uniform', { seed: 7, stream: DEQUANT_STREAM + 3, offset: 11 * blocksFor(4, 'uniform') }) as Float32Array;
    expect(images.image(1, key)).toEqual(toModelSpace(pixels.subarray(4, 8), { centered: true, dequantNoise: noise }));
    expect(images.image(1, { ...key, stream: 4 })).not.toEqual(images.image(1, key));
    expect(fixedPoints(images)).toBeNull();
  });

  it('without dequantisation every draw sees pixels/256', () => {
    const pixels = Uint8Array.from([0, 64, 128, 255]);
    const images = imagesInModelSpace({ pixels }, shape, { centered: false, dequantise: false }, 'test');
    expect(images.fixed).toBe(true);
    expect(Array.from(images.image(0, { seed: 1, stream: 2, imageKey: 3 }))).toEqual([0, 0.25, 0.5, 255 / 256]);
    expect(Array.from(fixedPoints(images)!)).toEqual([0, 0.25, 0.5, 255 / 256]);
  });

  it('rounds model-space values to float32 once and keeps them for every draw', () => {
    const x = [0.1, 0.2, 0.3, 0.4];
    const images = imagesInModelSpace({ x }, shape, { centered: false, dequantise: true }, 'test');
    expect(images.fixed).toBe(true);
    expect(images.image(0, { seed: 0, stream: 0, imageKey: 0 })).toEqual(Float32Array.from(x));
    expect(fixedPoints(images)).toEqual(Float64Array.from(x, Math.fround));
  });

  it('names the caller and the value at fault', () => {
    expect(() => imagesInModelSpace({ x: [0, 0, 0] }, shape, { centered: false, dequantise: true }, 'caller')).toThrow(
      /caller: expected images of C×H×W = 1×2×2 = 4 values each, got 3 values, not a multiple of 4/,
    );
    expect(() => imagesInModelSpace({ x: [0, 0, Infinity, 0] }, shape, { centered: false, dequantise: true }, 'caller')).toThrow(/caller: x\[2\] \(image 0\) is Infinity/);
    expect(() => imagesInModelSpace({ pixels: [1, 2, 3, 4] as unknown as Uint8Array }, shape, { centered: false, dequantise: true }, 'caller')).toThrow(
      /pixels must be a Uint8Array/,
    );
  });

  it('takes the centring from a network config, uncentred otherwise', () => {
    expect(configuredCentering({ config: { centered: true } })).toBe(true);
    expect(configuredCentering({})).toBe(false);
  });
});
