import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { batchImages, batchPixels } from '../../data/dataset.js';
import { checkPngFraming, loadPngFolder } from '../../data/png-folder.js';
import { tempDir } from '../helpers/temp-dir.js';

/** Encodes W×H pixels given as a function (x, y) → RGBA with pngjs. */
function pngOf(w: number, h: number, px: (x: number, y: number) => [number, number, number, number], opts: { colorType?: 0 | 2 | 4 | 6; bitDepth?: 8 | 16 } = {}): Uint8Array {
  const png = new PNG({ width: w, height: h });
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) png.data.set(px(x, y), 4 * (y * w + x));
  return PNG.sync.write(png, { colorType: opts.colorType ?? 2, bitDepth: opts.bitDepth ?? 8 });
}
const rgb = (seed: number) => (x: number, y: number): [number, number, number, number] => [(seed + x) & 255, (seed + 10 * y) & 255, (seed + x + y + 100) & 255, 255];
const grey = (seed: number) => (x: number, y: number): [number, number, number, number] => {
  const v = (seed + 3 * x + 7 * y) & 255;
  return [v, v, v, 255];
};

const root = tempDir('sbgc-png-');

/** Writes files { 'rel/path.png': bytes } under a fresh folder. */
async function tree(name: string, files: Record<string, Uint8Array | string>): Promise<string> {
  const d = join(root, name);
  await mkdir(d, { recursive: true });
  for (const [rel, bytes] of Object.entries(files)) {
    await mkdir(join(d, rel, '..'), { recursive: true });
    await writeFile(join(d, rel), bytes);
  }
  return d;
}

describe('PNG folders', () => {
  it('labels by sorted class folder and converts RGB to CHW', async () => {
    const d = await tree('classes', {
      'cat/b.png': pngOf(4, 3, rgb(20)),
      'cat/a.png': pngOf(4, 3, rgb(10)),
      'airplane/z.png': pngOf(4, 3, rgb(30)),
      'cat/notes.txt': 'ignored',
    });
    const ds = await loadPngFolder(d);
    expect(ds.shape).toEqual([3, 3, 4]);
    expect(ds.classNames).toEqual(['airplane', 'cat']);
    expect(ds.files).toEqual([join(d, 'airplane/z.png'), join(d, 'cat/a.png'), join(d, 'cat/b.png')]);
    const { pixels, labels } = batchPixels(ds, [0, 1, 2]);
    expect(Array.from(labels)).toEqual([0, 1, 1]);
    const img = ds.image(1); // cat/a.png, seed 10
    for (let y = 0; y < 3; y++) for (let x = 0; x < 4; x++) {
      const [r, g, b] = rgb(10)(x, y);
      expect([img[y * 4 + x], img[12 + y * 4 + x], img[24 + y * 4 + x]]).toEqual([r, g, b]);
    }
    expect(pixels.subarray(36, 72)).toEqual(img);
    const reordered = await loadPngFolder(d, { classes: ['cat', 'airplane'] });
    expect(reordered.label(0)).toBe(0);
    expect(reordered.files[0]).toBe(join(d, 'cat/a.png'));
    await expect(loadPngFolder(d, { classes: ['cat', 'dog'] })).rejects.toThrow(/do not match the expected classes \[cat, dog\]/);
  });

  it('greyscale: 1 channel by default, replicated for 3; colour → 1 channel only when R = G = B', async () => {
    const d = await tree('grey', { 'x/a.png': pngOf(5, 2, grey(1), { colorType: 0 }), 'x/b.png': pngOf(5, 2, grey(2), { colorType: 4 }) });
    const ds = await loadPngFolder(d);
    expect(ds.shape).toEqual([1, 2, 5]);
    expect(Array.from(ds.image(0))).toEqual(Array.from({ length: 10 }, (_, p) => grey(1)(p % 5, Math.floor(p / 5))[0]));
    const three = await loadPngFolder(d, { channels: 3 });
    expect(three.image(1)).toEqual(Uint8Array.from([...ds.image(1), ...ds.image(1), ...ds.image(1)]));
    const asRgb = await tree('greyrgb', { 'a.png': pngOf(5, 2, grey(1), { colorType: 2 }) });
    expect((await loadPngFolder(asRgb, { channels: 1 })).image(0)).toEqual(ds.image(0));
    const colour = await tree('colour', { 'a.png': pngOf(5, 2, rgb(1)) });
    await expect(loadPngFolder(colour, { channels: 1 })).rejects.toThrow(`${join(colour, 'a.png')}: colour pixel (x 0, y 0) = (1, 1, 101) in a 1-channel dataset`);
  });

  it('a flat folder is unlabelled', async () => {
    const d = await tree('flat', { '2.png': pngOf(2, 2, rgb(2)), '1.png': pngOf(2, 2, rgb(1)) });
    const ds = await loadPngFolder(d);
    expect(ds.numClasses).toBe(0);
    expect(ds.files).toEqual([join(d, '1.png'), join(d, '2.png')]);
    expect(batchImages(ds, [0, 1]).length).toBe(24);
    expect(() => ds.label(0)).toThrow(/unlabelled/);
    expect(() => batchPixels(ds, [0])).toThrow(/unlabelled/);
  });

  it('names the file whose size differs', async () => {
    const d = await tree('size', { 'a/1.png': pngOf(4, 4, rgb(1)), 'a/2.png': pngOf(4, 5, rgb(2)) });
    await expect(loadPngFolder(d)).rejects.toThrow(`${join(d, 'a/2.png')}: wrong size: 4×5 (W×H), expected 4×4 (the size of ${join(d, 'a/1.png')})`);
    await expect(loadPngFolder(d, { size: [5, 4] })).rejects.toThrow(`${join(d, 'a/1.png')}: wrong size: 4×4 (W×H), expected 4×5 (the requested size)`);
  });

  it('names the file and byte offset of truncated or corrupt PNGs', async () => {
    const good = pngOf(4, 4, rgb(1));
    const idat = Buffer.from(good).indexOf('IDAT') - 4; // chunk start = its length field
    const truncated = good.subarray(0, good.length - 20); // cuts into IDAT's successor / IEND
    const d = await tree('trunc', { 'a.png': truncated });
    await expect(loadPngFolder(d)).rejects.toThrow(new RegExp(`${join(d, 'a.png')}: truncated: .*byte offset \\d+`));
    const cutIdat = good.subarray(0, idat + 12);
    expect(() => checkPngFraming(cutIdat, 'f.png')).toThrow(`f.png: truncated: chunk 'IDAT' at byte offset ${idat} declares`);
    const flipped = good.slice();
    flipped[idat + 9] ^= 0xff; // a data byte of IDAT
    const d2 = await tree('crc', { 'a.png': flipped });
    await expect(loadPngFolder(d2)).rejects.toThrow(`${join(d2, 'a.png')}: corrupt: CRC mismatch in chunk 'IDAT' at byte offset ${idat}`);
    const d3 = await tree('notpng', { 'a.png': 'GIF89a...' });
    await expect(loadPngFolder(d3)).rejects.toThrow(`${join(d3, 'a.png')}: not a PNG: bad signature at byte offset 0`);
  });

  it('rejects transparency, 16-bit samples and bad layouts', async () => {
    const d = await tree('alpha', { 'a.png': pngOf(3, 3, (x, y) => [1, 2, 3, x === 2 && y === 1 ? 128 : 255], { colorType: 6 }) });
    await expect(loadPngFolder(d)).rejects.toThrow(`${join(d, 'a.png')}: transparent pixel (x 2, y 1) with alpha 128`);
    const d16 = await tree('deep', { 'a.png': pngOf(3, 3, rgb(1), { bitDepth: 16 }) });
    await expect(loadPngFolder(d16)).rejects.toThrow(`${join(d16, 'a.png')}: 16-bit PNG`);
    const mixed = await tree('mixed', { 'a.png': pngOf(2, 2, rgb(1)), 'cls/b.png': pngOf(2, 2, rgb(1)) });
    await expect(loadPngFolder(mixed)).rejects.toThrow(/mixes 1 PNG files with 1 sub-folders/);
    const empty = await tree('emptycls', { 'a/1.png': pngOf(2, 2, rgb(1)), 'b/readme.txt': 'x' });
    await expect(loadPngFolder(empty)).rejects.toThrow(`${join(empty, 'b')}: class folder holds no .png files`);
    await expect(loadPngFolder(join(root, 'nope'))).rejects.toThrow(`${join(root, 'nope')}: cannot read folder (ENOENT)`);
  });
});
