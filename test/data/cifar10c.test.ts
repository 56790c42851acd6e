import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeNpy, type NpyArray } from '../../formats/npy.js';
import { loadCifar10C } from '../../data/cifar10c.js';
import { tempDir } from '../helpers/temp-dir.js';

const N = 10; // 5 severities × 2 images
/** HWC value of image n at (y, x, c): distinct enough to catch any transposition. */
const hwc = (n: number, y: number, x: number, c: number) => (n * 31 + y * 5 + x * 3 + c * 101) & 255;

function images(n = N, channels = 3): Uint8Array {
  const a = new Uint8Array(n * 32 * 32 * channels);
  for (let i = 0; i < n; i++) for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) for (let c = 0; c < channels; c++) {
    a[((i * 32 + y) * 32 + x) * channels + c] = hwc(i, y, x, c);
  }
  return a;
}

const root = tempDir('sbgc-c10c-');

async function setUp(name: string, img: NpyArray, labels: NpyArray, corruption = 'gaussian_noise'): Promise<string> {
  const d = join(root, name);
  await mkdir(d);
  await writeFile(join(d, `${corruption}.npy`), encodeNpy(img));
  await writeFile(join(d, 'labels.npy'), encodeNpy(labels));
  return d;
}

const goodImg = (): NpyArray => ({ dtype: 'u1', shape: [N, 32, 32, 3], data: images(), fortranOrder: false });
const goodLabels = (): NpyArray => ({ dtype: 'u1', shape: [N], data: Uint8Array.from({ length: N }, (_, i) => i % 10), fortranOrder: false });

describe('CIFAR-10-C', () => {
  it('selects a severity block and converts HWC → CHW', async () => {
    const d = await setUp('ok', goodImg(), goodLabels());
    const ds = await loadCifar10C(d, 'gaussian_noise', 3);
    expect(ds.length).toBe(2);
    expect(ds.shape).toEqual([3, 32, 32]);
    expect([ds.label(0), ds.label(1)]).toEqual([4, 5]);
    for (const b of [0, 1]) {
      const img = ds.image(b);
      const n = 4 + b; // severity 3 = rows 4, 5
      for (const [c, y, x] of [[0, 0, 0], [1, 0, 0], [2, 31, 31], [1, 7, 19], [2, 0, 5]]) {
        expect(img[(c * 32 + y) * 32 + x]).toBe(hwc(n, y, x, c));
      }
    }
    expect(ds.name).toBe(`cifar10c:${d}:gaussian_noise:3`);
    // int64 labels (any integer dtype) are accepted too.
    const d2 = await setUp('i8', goodImg(), { dtype: 'i8', shape: [N], data: BigInt64Array.from({ length: N }, (_, i) => BigInt(9 - (i % 10))), fortranOrder: false });
    expect((await loadCifar10C(d2, 'gaussian_noise', 5)).label(1)).toBe(0);
  });

  it('names the file for a wrong dtype or shape', async () => {
    const d = await setUp('dtype', { dtype: 'f4', shape: [N, 32, 32, 3], data: new Float32Array(N * 3072), fortranOrder: false }, goodLabels());
    await expect(loadCifar10C(d, 'gaussian_noise', 1)).rejects.toThrow(`${join(d, 'gaussian_noise.npy')}: dtype 'f4', expected uint8`);
    const d2 = await setUp('chw', { dtype: 'u1', shape: [N, 3, 32, 32], data: images(), fortranOrder: false }, goodLabels());
    await expect(loadCifar10C(d2, 'gaussian_noise', 1)).rejects.toThrow(`${join(d2, 'gaussian_noise.npy')}: shape (10, 3, 32, 32), expected (N, 32, 32, 3)`);
    const d3 = await setUp('seven', { dtype: 'u1', shape: [7, 32, 32, 3], data: images(7), fortranOrder: false }, goodLabels());
    await expect(loadCifar10C(d3, 'gaussian_noise', 1)).rejects.toThrow(/gaussian_noise\.npy: 7 images is not 5 equal severity blocks/);
    const d4 = await setUp('nlab', goodImg(), { dtype: 'u1', shape: [5], data: new Uint8Array(5), fortranOrder: false });
    await expect(loadCifar10C(d4, 'gaussian_noise', 1)).rejects.toThrow(`${join(d4, 'labels.npy')}: shape (5,), expected (10,)`);
    const d5 = await setUp('flab', goodImg(), { dtype: 'f8', shape: [N], data: new Float64Array(N), fortranOrder: false });
    await expect(loadCifar10C(d5, 'gaussian_noise', 1)).rejects.toThrow(/labels\.npy: dtype 'f8', expected an integer dtype/);
  });

  it('names the file, index and byte offset of a bad label', async () => {
    const lab = goodLabels();
    (lab.data as Uint8Array)[7] = 10;
    const d = await setUp('badlabel', goodImg(), lab);
    // encodeNpy writes a 128-byte header for this array, so element 7 sits at byte 135.
    await expect(loadCifar10C(d, 'gaussian_noise', 4)).rejects.toThrow(`${join(d, 'labels.npy')}: corrupt label 10 at index 7 (byte offset 135), expected 0..9`);
    // Severity 1 does not read the bad label.
    expect((await loadCifar10C(d, 'gaussian_noise', 1)).length).toBe(2);
  });

  it('reports truncated .npy files and missing corruptions by file', async () => {
    const d = await setUp('trunc', goodImg(), goodLabels());
    const bytes = encodeNpy(goodImg());
    await writeFile(join(d, 'gaussian_noise.npy'), bytes.subarray(0, bytes.length - 10));
    await expect(loadCifar10C(d, 'gaussian_noise', 1)).rejects.toThrow(`${join(d, 'gaussian_noise.npy')}: data truncated`);
    await expect(loadCifar10C(d, 'fog', 1)).rejects.toThrow(`${join(d, 'fog.npy')}: cannot read (ENOENT); ${d} has: gaussian_noise.npy, labels.npy`);
  });

  it('rejects bad corruption names and severities', async () => {
    await expect(loadCifar10C(root, '../x', 1)).rejects.toThrow(/invalid corruption name '\.\.\/x'/);
    await expect(loadCifar10C(root, 'labels', 1)).rejects.toThrow(/invalid corruption name/);
    await expect(loadCifar10C(root, 'fog', 0)).rejects.toThrow(/severity must be an integer 1\.\.5, got 0/);
    await expect(loadCifar10C(root, 'fog', 6)).rejects.toThrow(/got 6/);
  });
});
