import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CIFAR10_FILES, loadCifar10, parseCifar10Batch } from '../../data/cifar10.js';
import { batchPixels } from '../../data/dataset.js';
import { tempDir } from '../helpers/temp-dir.js';

/** A record: label byte, then 3072 CHW bytes where byte k of image `seed` is (seed·7 + k) mod 256. */
function record(label: number, seed: number): Uint8Array {
  const r = new Uint8Array(3073);
  r[0] = label;
  for (let k = 0; k < 3072; k++) r[1 + k] = (seed * 7 + k) & 255;
  return r;
}

function batchFile(records: Array<[number, number]>): Uint8Array {
  const out = new Uint8Array(records.length * 3073);
  records.forEach(([y, s], i) => out.set(record(y, s), i * 3073));
  return out;
}

const dir = tempDir('sbgc-cifar-');

async function fresh(name: string): Promise<string> {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  return d;
}

describe('CIFAR-10 binary batches', () => {
  it('loads a 3-record test batch: labels and CHW pixels as stored', async () => {
    const d = await fresh('ok');
    await writeFile(join(d, 'test_batch.bin'), batchFile([[0, 1], [9, 2], [3, 3]]));
    const ds = await loadCifar10(d, 'test');
    expect(ds.length).toBe(3);
    expect(ds.shape).toEqual([3, 32, 32]);
    expect(ds.numClasses).toBe(10);
    expect(ds.classNames?.[9]).toBe('truck');
    expect([0, 1, 2].map((i) => ds.label(i))).toEqual([0, 9, 3]);
    expect(ds.image(1)).toEqual(record(9, 2).subarray(1));
    // image() hands out copies: writing into one must not change the dataset.
    ds.image(1).fill(0);
    expect(ds.image(1)[5]).toBe((2 * 7 + 5) & 255);
    const { pixels, labels } = batchPixels(ds, [2, 0]);
    expect(Array.from(labels)).toEqual([3, 0]);
    expect(pixels.subarray(0, 3072)).toEqual(record(3, 3).subarray(1));
  });

  it('concatenates data_batch_1..5 in order for train, also from the tarball folder', async () => {
    const d = await fresh('train');
    const sub = join(d, 'cifar-10-batches-bin');
    await mkdir(sub);
    // Two records per file (labels k, k + 1), one in the last file.
    for (const [k, f] of CIFAR10_FILES.train.entries()) {
      const recs: Array<[number, number]> = [[k, 10 * k], [k + 1, 10 * k + 1]];
      await writeFile(join(sub, f), batchFile(k === 4 ? recs.slice(0, 1) : recs));
    }
    const ds = await loadCifar10(d, 'train');
    expect(ds.length).toBe(9);
    expect(Array.from({ length: 9 }, (_, i) => ds.label(i))).toEqual([0, 1, 1, 2, 2, 3, 3, 4, 4]);
    expect(ds.image(8)).toEqual(record(4, 40).subarray(1));
    expect(ds.image(3)).toEqual(record(2, 11).subarray(1));
  });

  it('names the file and the offset where the partial last record starts', async () => {
    const d = await fresh('trunc');
    const bytes = batchFile([[0, 1], [1, 2], [2, 3]]);
    const path = join(d, 'test_batch.bin');
    await writeFile(path, bytes.subarray(0, 3 * 3073 - 100));
    await expect(loadCifar10(d, 'test')).rejects.toThrow(
      `${path}: truncated or wrong size: 9119 bytes is not a multiple of 3073 (1 label + 3072 pixels); the last record (2) starts at byte offset 6146 and has only 2973 bytes`,
    );
    expect(() => parseCifar10Batch(new Uint8Array(0), 'x.bin')).toThrow(/x\.bin: empty file/);
    expect(() => parseCifar10Batch(new Uint8Array(3074 * 2), 'c100.bin')).toThrow(/c100\.bin: .*byte offset 6146.*CIFAR-100/);
  });

  it('names the file, record and byte offset of a corrupt label', async () => {
    const d = await fresh('label');
    const bytes = batchFile([[0, 1], [12, 2], [2, 3]]);
    const path = join(d, 'test_batch.bin');
    await writeFile(path, bytes);
    await expect(loadCifar10(d, 'test')).rejects.toThrow(`${path}: corrupt label 12 in record 1 at byte offset 3073 (expected 0..9)`);
  });

  it('names a missing file and lists what the folder has', async () => {
    const d = await fresh('missing');
    await writeFile(join(d, 'data_batch_1.bin'), batchFile([[0, 0]]));
    await expect(loadCifar10(d, 'train')).rejects.toThrow(new RegExp(`${join(d, 'data_batch_2.bin').replace(/[.]/g, '\\.')}: cannot read \\(ENOENT\\).*has: data_batch_1\\.bin`));
    await expect(loadCifar10(d, 'valid' as 'test')).rejects.toThrow(/unknown split 'valid'/);
  });
});
