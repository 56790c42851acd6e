import { describe, expect, it } from 'vitest';
import { HostRng } from '../../engine/rng.js';
import {
  allLabels, batches, batchImages, batchPixels, classCounts, flipHorizontal, type ImageDataset, permutation,
  randomFlip, randomSplit, stratifiedCounts, stratifiedSplit, subset,
} from '../../data/dataset.js';

/** n images of shape [2, 2, 3]; image i holds bytes 10·i + k, label i mod 3 (or unlabelled). */
function toy(n: number, labelled = true): ImageDataset {
  const size = 12;
  return {
    name: 'toy',
    length: n,
    shape: [2, 2, 3],
    numClasses: labelled ? 3 : 0,
    image: (i) => Uint8Array.from({ length: size }, (_, k) => (10 * i + k) & 255),
    label: (i) => i % 3,
  };
}

describe('batching', () => {
  it('stacks images [B, C, H, W] with their labels', () => {
    const { pixels, labels } = batchPixels(toy(5), [4, 0, 2]);
    expect(pixels.length).toBe(36);
    expect(Array.from(pixels.subarray(0, 3))).toEqual([40, 41, 42]);
    expect(Array.from(pixels.subarray(12, 15))).toEqual([0, 1, 2]);
    expect(Array.from(pixels.subarray(24, 27))).toEqual([20, 21, 22]);
    expect(Array.from(labels)).toEqual([1, 0, 2]);
    expect(Array.from(allLabels(toy(4)))).toEqual([0, 1, 2, 0]);
    expect(classCounts(toy(7))).toEqual([3, 2, 2]);
  });

  it('rejects bad indices, unlabelled datasets and wrong-size images', () => {
    expect(() => batchPixels(toy(5), [5])).toThrow(/toy: image index 5 out of range \[0, 5\)/);
    expect(() => batchPixels(toy(5), [1.5])).toThrow(/index 1.5/);
    expect(() => batchPixels(toy(5, false), [0])).toThrow(/unlabelled.*batchImages/);
    expect(batchImages(toy(5, false), [1]).length).toBe(12);
    const bad: ImageDataset = { ...toy(2), image: () => new Uint8Array(11) };
    expect(() => batchImages(bad, [0])).toThrow(/11 bytes, expected 12/);
    const badLabel: ImageDataset = { ...toy(2), label: () => 3 };
    expect(() => batchPixels(badLabel, [1])).toThrow(/label 3, outside \[0, 3\)/);
  });

  it('subset views images in the given order and checks its own range', () => {
    const s = subset(toy(6), [5, 1]);
    expect(s.length).toBe(2);
    expect(s.image(0)[0]).toBe(50);
    expect(s.label(1)).toBe(1);
    expect(() => s.image(2)).toThrow(/out of range \[0, 2\)/);
    expect(() => subset(toy(3), [3])).toThrow(/index 3 out of range/);
  });

  it('batches splits an index list', () => {
    const idx = Uint32Array.from([0, 1, 2, 3, 4]);
    expect(batches(idx, 2).map((b) => Array.from(b))).toEqual([[0, 1], [2, 3], [4]]);
    expect(batches(idx, 2, true).length).toBe(2);
    expect(() => batches(idx, 0)).toThrow(/positive integer/);
  });
});

describe('flips', () => {
  const shape = [2, 2, 3] as const;
  const two = batchImages(toy(2), [0, 1]);

  it('flipHorizontal mirrors each row', () => {
    const f = flipHorizontal(two, shape);
    expect(Array.from(f.subarray(0, 6))).toEqual([2, 1, 0, 5, 4, 3]);
    expect(flipHorizontal(f, shape)).toEqual(two);
    expect(() => flipHorizontal(new Uint8Array(13), shape)).toThrow(/13 bytes is not a whole number/);
  });

  it('randomFlip takes one word per image from the HostRng (top bit = flip), reproducibly', () => {
    const batch = batchImages(toy(64), Array.from({ length: 64 }, (_, i) => i));
    const a = randomFlip(batch, shape, new HostRng(11, 2));
    const b = randomFlip(batch, shape, new HostRng(11, 2));
    expect(a.pixels).toEqual(b.pixels);
    const ref = new HostRng(11, 2);
    const flipped = a.flipped.reduce((s, f) => s + f, 0);
    for (let i = 0; i < 64; i++) {
      expect(a.flipped[i]).toBe(ref.nextU32() >>> 31);
      const img = batch.subarray(i * 12, (i + 1) * 12);
      expect(a.pixels.subarray(i * 12, (i + 1) * 12)).toEqual(a.flipped[i] ? flipHorizontal(img, shape) : img);
    }
    expect(flipped).toBeGreaterThan(16);
    expect(flipped).toBeLessThan(48);
    expect(batch[0]).toBe(0); // input untouched
  });
});

describe('shuffles and splits', () => {
  it('permutation is a seeded permutation', () => {
    const p = permutation(1000, new HostRng(3));
    expect(Array.from(p).sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(permutation(1000, new HostRng(3))).toEqual(p);
    expect(permutation(1000, new HostRng(4))).not.toEqual(p);
  });

  it('randomSplit partitions 0..n−1', () => {
    const { train, heldOut } = randomSplit(100, 30, new HostRng(1));
    expect(heldOut.length).toBe(30);
    expect(new Set([...train, ...heldOut]).size).toBe(100);
    expect(() => randomSplit(10, 11, new HostRng(1))).toThrow(/heldOut/);
  });

  it('stratifiedCounts rounds by largest remainder, exactly summing', () => {
    const counts = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];
    const h = stratifiedCounts(counts, 2000);
    // Hand-computed: quotas 200.2 225.4 198.2 206.4 196 172.6 202.8 214 188.8 195.6; the 4 largest
    // remainders (.8 .8 .6 .6: digits 6, 8, 5, 9) round up.
    expect(h).toEqual([200, 225, 198, 206, 196, 173, 203, 214, 189, 196]);
    expect(stratifiedCounts([1, 1, 1], 2)).toEqual([1, 1, 0]); // ties → lower class first
  });

  it('stratifiedSplit holds out the last images of each class', () => {
    const labels = [0, 1, 0, 1, 0, 1, 0, 1, 2, 2];
    const { train, heldOut } = stratifiedSplit(labels, 3, 5);
    // quotas 2, 2, 1: class 0 {0,2,4,6} → hold 4, 6; class 1 {1,3,5,7} → 5, 7; class 2 {8,9} → 9.
    expect(Array.from(heldOut)).toEqual([4, 5, 6, 7, 9]);
    expect(Array.from(train)).toEqual([0, 1, 2, 3, 8]);
    expect(() => stratifiedSplit([0, 3], 3, 1)).toThrow(/label 3 at index 1/);
  });
});
