/**
 * CIFAR-10-C (Hendrycks & Dietterich 2019; SPEC §1): one `<corruption>.npy` per corruption holding N = 5·n uint8
 * images of shape (N, 32, 32, 3) in HWC order — severities 1..5 stacked, n each (n = 10 000 in the release) —
 * plus `labels.npy` (N integer labels, the test labels repeated per severity). One (corruption, severity) pair
 * is loaded at a time and converted to CHW.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SbgcError, SourceError } from '../engine/errors.js';
import { type NpyArray, npyItemSize, parseNpy } from '../formats/npy.js';
import { cifarDataset } from './cifar10.js';
import type { ImageDataset } from './dataset.js';

/** The 19 corruptions of the release (15 benchmark + 4 extra: gaussian_blur, saturate, spatter, speckle_noise). */
export const CIFAR10C_CORRUPTIONS = [
  'brightness', 'contrast', 'defocus_blur', 'elastic_transform', 'fog', 'frost', 'gaussian_blur', 'gaussian_noise',
  'glass_blur', 'impulse_noise', 'jpeg_compression', 'motion_blur', 'pixelate', 'saturate', 'shot_noise', 'snow',
  'spatter', 'speckle_noise', 'zoom_blur',
] as const;
/** The noise corruptions, left out of the paper's "without noises" mean (Table 2). */
export const CIFAR10C_NOISES = ['gaussian_noise', 'impulse_noise', 'shot_noise', 'speckle_noise'] as const;
export const CIFAR10C_SEVERITIES = 5;

const HW = 32 * 32;

/** A missing, corrupt or mis-shaped CIFAR-10-C file; the message names the file. */
export class Cifar10CError extends SourceError {
  override name = 'Cifar10CError';
}

async function readNpyFile(path: string, dir: string): Promise<{ arr: NpyArray; fileBytes: number }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    const found = await readdir(dir).then(
      (l) => l.filter((f) => f.endsWith('.npy')).sort().join(', ') || 'no .npy files',
      () => 'unreadable directory',
    );
    const reason = e instanceof Error && 'code' in e ? String(e.code) : String(e);
    throw new Cifar10CError(path, `cannot read (${reason}); ${dir} has: ${found}`);
  }
  // parseNpy's errors already start with the path.
  return { arr: parseNpy(bytes, path), fileBytes: bytes.length };
}

/** Pixels of severity s (1..5) of a corruption as CHW [n, 3, 32, 32], and its labels. */
export async function loadCifar10C(dir: string, corruption: string, severity: number): Promise<ImageDataset> {
  // The name becomes a file name: refuse anything that could leave the directory.
  if (!/^[A-Za-z0-9_-]+$/.test(corruption) || corruption === 'labels') {
    throw new SbgcError(`cifar10c: invalid corruption name '${corruption}' (one of ${CIFAR10C_CORRUPTIONS.join(', ')})`);
  }
  if (!Number.isInteger(severity) || severity < 1 || severity > CIFAR10C_SEVERITIES) {
    throw new SbgcError(`cifar10c: severity must be an integer 1..${CIFAR10C_SEVERITIES}, got ${severity}`);
  }
  const imgPath = join(dir, `${corruption}.npy`);
  const { arr: img } = await readNpyFile(imgPath, dir);
  if (img.dtype !== 'u1') throw new Cifar10CError(imgPath, `dtype '${img.dtype}', expected uint8 ('|u1')`);
  const s = img.shape;
  if (s.length !== 4 || s[1] !== 32 || s[2] !== 32 || s[3] !== 3) {
    throw new Cifar10CError(imgPath, `shape (${s.join(', ')}), expected (N, 32, 32, 3) uint8 HWC images`);
  }
  const N = s[0];
  if (N === 0 || N % CIFAR10C_SEVERITIES !== 0) {
    throw new Cifar10CError(imgPath, `${N} images is not ${CIFAR10C_SEVERITIES} equal severity blocks (expected N = 5·n, n = 10 000 in the release)`);
  }
  const n = N / CIFAR10C_SEVERITIES;

  const labPath = join(dir, 'labels.npy');
  const { arr: lab, fileBytes } = await readNpyFile(labPath, dir);
  if (!['u1', 'i1', 'u2', 'i2', 'u4', 'i4', 'u8', 'i8'].includes(lab.dtype)) {
    throw new Cifar10CError(labPath, `dtype '${lab.dtype}', expected an integer dtype`);
  }
  if (lab.shape.length !== 1 || lab.shape[0] !== N) {
    throw new Cifar10CError(labPath, `shape (${lab.shape.join(', ')}${lab.shape.length === 1 ? ',' : ''}), expected (${N},) to match ${imgPath}`);
  }
  const item = npyItemSize(lab.dtype);
  const dataStart = fileBytes - N * item; // the header is everything before the data
  const start = (severity - 1) * n;
  const labels = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const y = Number(lab.data[start + i]);
    if (!(y >= 0 && y <= 9 && Number.isInteger(y))) {
      const k = start + i;
      throw new Cifar10CError(labPath, `corrupt label ${y} at index ${k} (byte offset ${dataStart + k * item}), expected 0..9`);
    }
    labels[i] = y;
  }

  // HWC → CHW for the selected block only.
  const src = img.data.subarray(start * HW * 3, (start + n) * HW * 3);
  const chw = new Uint8Array(n * HW * 3);
  for (let b = 0; b < n; b++) {
    const o = b * HW * 3;
    for (let p = 0; p < HW; p++) {
      chw[o + p] = src[o + 3 * p];
      chw[o + HW + p] = src[o + 3 * p + 1];
      chw[o + 2 * HW + p] = src[o + 3 * p + 2];
    }
  }
  const size = HW * 3;
  return cifarDataset(`cifar10c:${dir}:${corruption}:${severity}`, labels, (i) => chw.slice(i * size, (i + 1) * size));
}
