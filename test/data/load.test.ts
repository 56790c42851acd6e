import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { encodeNpy } from '../../formats/npy.js';
import { loadDataset, parseDatasetSpec } from '../../data/load.js';
import { tempDir } from '../helpers/temp-dir.js';

const root = tempDir('sbgc-load-');

describe('dataset specs', () => {
  it('parses every kind; paths may contain colons', () => {
    expect(parseDatasetSpec('mnist:test')).toEqual({ kind: 'mnist', split: 'test' });
    expect(parseDatasetSpec('cifar10:/data/c:10:train')).toEqual({ kind: 'cifar10', dir: '/data/c:10', split: 'train' });
    expect(parseDatasetSpec('cifar10c:/p/CIFAR-10-C:gaussian_noise:3')).toEqual({ kind: 'cifar10c', dir: '/p/CIFAR-10-C', corruption: 'gaussian_noise', severity: 3 });
    expect(parseDatasetSpec('png:/x:y')).toEqual({ kind: 'png', dir: '/x:y' });
  });

  it('explains unknown or malformed specs', () => {
    expect(() => parseDatasetSpec('imagenet:/x')).toThrow(/dataset spec 'imagenet:\/x': unknown dataset kind 'imagenet'; expected one of:\nmnist:train/);
    expect(() => parseDatasetSpec('mnist:val')).toThrow(/unknown split 'val'/);
    expect(() => parseDatasetSpec('mnist')).toThrow(/unknown split ''/);
    expect(() => parseDatasetSpec('cifar10:test')).toThrow(/expected cifar10:<dir>:train\|test/);
    expect(() => parseDatasetSpec('cifar10::test')).toThrow(/missing directory/);
    expect(() => parseDatasetSpec('cifar10c:/p:gaussian_noise:7')).toThrow(/severity '7' must be 1\.\.5/);
    expect(() => parseDatasetSpec('cifar10c:/p:3')).toThrow(/expected cifar10c:<dir>:<corruption>:<severity>/);
    expect(() => parseDatasetSpec('png:')).toThrow(/missing directory in png:<dir>/);
  });
});

describe('loadDataset', () => {
  it('loads MNIST and checks a required shape', async () => {
    const ds = await loadDataset('mnist:test', { shape: [1, 28, 28] });
    expect(ds.length).toBe(2000);
    await expect(loadDataset('mnist:train', { shape: [3, 32, 32] })).rejects.toThrow("mnist:train: images are [1, 28, 28] (C, H, W), but [3, 32, 32] is required");
    await expect(loadDataset('mnist:test', { classes: ['a'] })).rejects.toThrow(/'classes' applies to png/);
  });

  it('loads CIFAR-10, CIFAR-10-C and PNG folders from specs', async () => {
    const c = join(root, 'cifar');
    await mkdir(c);
    const rec = new Uint8Array(2 * 3073);
    rec[3073] = 7;
    await writeFile(join(c, 'test_batch.bin'), rec);
    const cifar = await loadDataset(`cifar10:${c}:test`);
    expect([cifar.length, cifar.label(1)]).toEqual([2, 7]);

    const cc = join(root, 'c10c');
    await mkdir(cc);
    await writeFile(join(cc, 'fog.npy'), encodeNpy({ dtype: 'u1', shape: [5, 32, 32, 3], data: new Uint8Array(5 * 3072).fill(9), fortranOrder: false }));
    await writeFile(join(cc, 'labels.npy'), encodeNpy({ dtype: 'u1', shape: [5], data: Uint8Array.of(0, 1, 2, 3, 4), fortranOrder: false }));
    const fog = await loadDataset(`cifar10c:${cc}:fog:2`, { shape: [3, 32, 32] });
    expect([fog.length, fog.label(0), fog.image(0)[100]]).toEqual([1, 1, 9]);

    const p = join(root, 'png');
    await mkdir(join(p, 'k'), { recursive: true });
    const png = new PNG({ width: 6, height: 6 });
    png.data.fill(200);
    for (let i = 3; i < png.data.length; i += 4) png.data[i] = 255; // opaque
    await writeFile(join(p, 'k', 'a.png'), PNG.sync.write(png, { colorType: 2 }));
    const asGrey = await loadDataset(`png:${p}`, { shape: [1, 6, 6] });
    expect([asGrey.shape, asGrey.image(0)[0]]).toEqual([[1, 6, 6], 200]);
    await expect(loadDataset(`png:${p}`, { shape: [1, 28, 28] })).rejects.toThrow(`${join(p, 'k', 'a.png')}: wrong size: 6×6 (W×H), expected 28×28`);
    await expect(loadDataset(`png:${p}`, { shape: [4, 6, 6] })).rejects.toThrow(/PNG datasets have 1 or 3 channels, but 4 are required/);
  });
});
