/**
 * Folders of PNG images as a dataset:
 * - labelled: `root/<class>/*.png`, one sub-folder per class, classes sorted by name (code-point order, or the
 *   order given in `classes`), files sorted by name inside each class;
 * - unlabelled: `root/*.png` (numClasses 0), e.g. out-of-distribution images.
 * Other files (and hidden entries) are ignored; a root mixing PNGs and sub-folders is an error.
 *
 * Decoding is pngjs's. Before it runs, the chunk framing is walked here only to locate faults: pngjs reports
 * "Crc error" or a truncation without saying where, and the contract is an error naming file AND byte offset.
 *
 * Pixel conversion to the dataset's channel count, never lossy in silence:
 * grey → 3 channels replicates; colour → 1 channel only if every pixel has R = G = B; any transparency (alpha
 * < 255, including tRNS colour keys) and 16-bit samples are errors naming the file.
 */
import * as zlib from 'node:zlib';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { SbgcError, SourceError } from '../engine/errors.js';
import { checkIndex, type ImageDataset, type ImageShape } from './dataset.js';

export interface PngFolderOptions {
  /** Channels of the dataset. Default: 1 if every file is a greyscale PNG (colour type 0/4), else 3. */
  channels?: 1 | 3;
  /** [height, width] every image must have. Default: the first file's size. */
  size?: readonly [number, number];
  /** Expected class folder names, in label order (default: the sub-folders sorted by name). */
  classes?: readonly string[];
}

/** A corrupt, unsupported or mis-sized PNG, or a bad folder layout; the message names the file or folder. */
export class PngError extends SourceError {
  override name = 'PngError';
}

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
// zlib.crc32 arrived in Node 20.15; without it pngjs still checks CRCs, only the offset is lost.
const crc32: ((data: Uint8Array) => number) | undefined = typeof zlib.crc32 === 'function' ? (d) => zlib.crc32(d) : undefined;

interface PngHeader {
  width: number;
  height: number;
  bitDepth: number;
  colorType: number;
}

/** Walks signature → IHDR … IEND, checking lengths and CRCs; returns the IHDR fields. */
export function checkPngFraming(bytes: Uint8Array, file: string): PngHeader {
  for (let i = 0; i < SIGNATURE.length; i++) {
    if (bytes[i] !== SIGNATURE[i]) {
      const what = i >= bytes.length ? 'file ends' : `byte ${bytes[i]}`;
      throw new PngError(file, `not a PNG: bad signature at byte offset ${i} (${what}, expected ${SIGNATURE[i]})`, i);
    }
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let header: PngHeader | undefined;
  let o = SIGNATURE.length;
  for (;;) {
    if (o + 12 > bytes.length) {
      throw new PngError(file, `truncated: chunk at byte offset ${o} needs at least 12 bytes, the file ends at ${bytes.length} (no IEND)`, o);
    }
    const len = dv.getUint32(o);
    const type = String.fromCharCode(...bytes.subarray(o + 4, o + 8));
    if (len > 0x7fffffff || !/^[A-Za-z]{4}$/.test(type)) {
      throw new PngError(file, `corrupt chunk header at byte offset ${o} (type ${JSON.stringify(type)}, length ${len})`, o);
    }
    if (o + 12 + len > bytes.length) {
      throw new PngError(file, `truncated: chunk '${type}' at byte offset ${o} declares ${len} data bytes, but the file ends at ${bytes.length}`, o);
    }
    if (crc32) {
      const want = dv.getUint32(o + 8 + len);
      const got = crc32(bytes.subarray(o + 4, o + 8 + len)) >>> 0;
      if (want !== got) throw new PngError(file, `corrupt: CRC mismatch in chunk '${type}' at byte offset ${o}`, o);
    }
    if (!header) {
      if (type !== 'IHDR' || len !== 13) throw new PngError(file, `corrupt: first chunk at byte offset ${o} is '${type}' (length ${len}), expected IHDR (13)`, o);
      header = { width: dv.getUint32(o + 8), height: dv.getUint32(o + 12), bitDepth: bytes[o + 16], colorType: bytes[o + 17] };
    }
    if (type === 'IEND') return header;
    o += 12 + len;
  }
}

/** A decoded PNG in the dataset's layout: CHW bytes. */
export interface DecodedPng {
  width: number;
  height: number;
  /** Colour type 0/4 in the header (greyscale, with or without alpha). */
  greyHeader: boolean;
  /** RGBA, 4 bytes per pixel, row-major. */
  rgba: Uint8Array;
}

export function decodePng(bytes: Uint8Array, file: string): DecodedPng {
  const h = checkPngFraming(bytes, file);
  if (h.bitDepth === 16) {
    throw new PngError(file, '16-bit PNG: only 8-bit (or lower) samples are supported; converting would silently drop precision', 24);
  }
  let png: PNG;
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    throw new PngError(file, `corrupt PNG (pngjs: ${e instanceof Error ? e.message : String(e)})`);
  }
  return { width: png.width, height: png.height, greyHeader: h.colorType === 0 || h.colorType === 4, rgba: new Uint8Array(png.data) };
}

/** RGBA → CHW with `channels` channels; throws (naming the file and pixel) on transparency or lost colour. */
export function rgbaToChw(img: DecodedPng, channels: 1 | 3, file: string): Uint8Array {
  const { width: w, height: h, rgba } = img;
  const n = w * h;
  const out = new Uint8Array(channels * n);
  for (let p = 0; p < n; p++) {
    const r = rgba[4 * p];
    const g = rgba[4 * p + 1];
    const b = rgba[4 * p + 2];
    const a = rgba[4 * p + 3];
    if (a !== 255) {
      throw new PngError(file, `transparent pixel (x ${p % w}, y ${Math.floor(p / w)}) with alpha ${a}: flatten the image onto a background first`);
    }
    if (channels === 3) {
      out[p] = r;
      out[n + p] = g;
      out[2 * n + p] = b;
    } else if (r === g && g === b) {
      out[p] = r;
    } else {
      throw new PngError(file, `colour pixel (x ${p % w}, y ${Math.floor(p / w)}) = (${r}, ${g}, ${b}) in a 1-channel dataset: convert to greyscale first`);
    }
  }
  return out;
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function listDir(dir: string): Promise<{ pngs: string[]; dirs: string[] }> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw new PngError(dir, `cannot read folder (${e instanceof Error && 'code' in e ? String(e.code) : String(e)})`);
  }
  const visible = entries.filter((e) => !e.name.startsWith('.'));
  return {
    pngs: visible.filter((e) => e.isFile() && e.name.toLowerCase().endsWith('.png')).map((e) => e.name).sort(byName),
    dirs: visible.filter((e) => e.isDirectory()).map((e) => e.name).sort(byName),
  };
}

/** A PNG-folder dataset; `files[i]` is the file behind image i (for reports). */
export interface PngFolderDataset extends ImageDataset {
  readonly files: readonly string[];
}

/** Loads every PNG under root (see the module comment for the layout) into memory. */
export async function loadPngFolder(root: string, opts: PngFolderOptions = {}): Promise<PngFolderDataset> {
  const top = await listDir(root);
  if (top.pngs.length > 0 && top.dirs.length > 0) {
    throw new PngError(root, `mixes ${top.pngs.length} PNG files with ${top.dirs.length} sub-folders: use root/<class>/*.png (labelled) or root/*.png (unlabelled), not both`);
  }
  const files: string[] = [];
  const fileLabels: number[] = [];
  let classNames: string[] = [];
  if (top.dirs.length > 0) {
    classNames = top.dirs;
    if (opts.classes) {
      const want = [...opts.classes];
      const missing = want.filter((c) => !top.dirs.includes(c));
      const extra = top.dirs.filter((c) => !want.includes(c));
      if (missing.length || extra.length || new Set(want).size !== want.length) {
        throw new PngError(root, `class folders [${top.dirs.join(', ')}] do not match the expected classes [${want.join(', ')}]`);
      }
      classNames = want;
    }
    for (const [k, c] of classNames.entries()) {
      const sub = await listDir(join(root, c));
      if (sub.pngs.length === 0) throw new PngError(join(root, c), 'class folder holds no .png files');
      for (const f of sub.pngs) {
        files.push(join(root, c, f));
        fileLabels.push(k);
      }
    }
  } else {
    if (top.pngs.length === 0) throw new PngError(root, 'no .png files and no class sub-folders');
    if (opts.classes) throw new PngError(root, 'classes were given, but the folder is flat (unlabelled): expected root/<class>/*.png');
    files.push(...top.pngs.map((f) => join(root, f)));
  }

  const decoded: DecodedPng[] = [];
  for (const f of files) {
    let bytes: Buffer;
    try {
      bytes = await readFile(f);
    } catch (e) {
      throw new PngError(f, `cannot read (${e instanceof Error && 'code' in e ? String(e.code) : String(e)})`);
    }
    decoded.push(decodePng(bytes, f));
  }
  const channels = opts.channels ?? (decoded.every((d) => d.greyHeader) ? 1 : 3);
  if (channels !== 1 && channels !== 3) throw new PngError(root, `channels must be 1 or 3, got ${String(channels)}`);
  const [H, W] = opts.size ?? [decoded[0].height, decoded[0].width];
  const sizeFrom = opts.size ? 'the requested size' : `the size of ${files[0]}`;
  const images = decoded.map((d, i) => {
    if (d.height !== H || d.width !== W) {
      throw new PngError(files[i], `wrong size: ${d.width}×${d.height} (W×H), expected ${W}×${H} (${sizeFrom})`);
    }
    return rgbaToChw(d, channels, files[i]);
  });

  const labels = Uint32Array.from(fileLabels);
  const shape: ImageShape = [channels, H, W];
  const name = `png:${root}`;
  const ds = { name, length: images.length };
  return {
    name,
    length: images.length,
    shape,
    numClasses: classNames.length,
    ...(classNames.length ? { classNames } : {}),
    files,
    image(i) {
      checkIndex(ds, i);
      return images[i].slice();
    },
    label(i) {
      checkIndex(ds, i);
      if (classNames.length === 0) throw new SbgcError(`${name}: unlabelled dataset (a flat folder of PNGs) has no labels`);
      return labels[i];
    },
  };
}
