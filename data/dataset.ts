/**
 * The common image-dataset interface and the host-side helpers every loader shares: batching, subsets,
 * horizontal flips and deterministic shuffles/splits. Every random choice comes from a `HostRng`, so a run is a
 * pure function of its seeds (and checkpoints can resume the exact stream).
 *
 * Model-space conversion and bits/dim live in `model-space.ts` (SPEC §1).
 */
import { SbgcError, ShapeError } from '../engine/errors.js';
import type { HostRng } from '../engine/rng.js';

/** [channels, height, width]. */
export type ImageShape = readonly [number, number, number];

/** 8-bit images with optional integer labels; images are CHW (channel-major), one byte per value. */
export interface ImageDataset {
  /** Where the data came from (a spec or path); error messages name it. */
  readonly name: string;
  readonly length: number;
  readonly shape: ImageShape;
  /** Number of classes; 0 for an unlabelled dataset (then `label` throws). */
  readonly numClasses: number;
  /** Class names in label order when known (length numClasses). */
  readonly classNames?: readonly string[];
  /** Image i as a fresh C·H·W byte array (callers may modify it). */
  image(i: number): Uint8Array;
  /** Label of image i in [0, numClasses). */
  label(i: number): number;
}

export function imageSize(shape: ImageShape): number {
  return shape[0] * shape[1] * shape[2];
}

/** Throws unless i is an integer index into ds. */
export function checkIndex(ds: { name: string; length: number }, i: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= ds.length) {
    throw new RangeError(`${ds.name}: image index ${i} out of range [0, ${ds.length})`);
  }
}

function assertLabelled(ds: ImageDataset, what: string): void {
  if (ds.numClasses === 0) {
    throw new SbgcError(`${ds.name}: ${what} needs labels, but this dataset is unlabelled (use batchImages for pixels only)`);
  }
}

/** Pixels of the given images as one [B, C, H, W] byte array. */
export function batchImages(ds: ImageDataset, indices: ArrayLike<number>): Uint8Array {
  const n = imageSize(ds.shape);
  const out = new Uint8Array(indices.length * n);
  for (let b = 0; b < indices.length; b++) {
    checkIndex(ds, indices[b]);
    const img = ds.image(indices[b]);
    // A loader bug here would silently misalign every later image of the batch.
    if (img.length !== n) throw new ShapeError(`${ds.name}: image ${indices[b]} has ${img.length} bytes, expected ${n}`);
    out.set(img, b * n);
  }
  return out;
}

/** Pixels [B, C, H, W] and labels [B] of the given images; throws for an unlabelled dataset. */
export function batchPixels(ds: ImageDataset, indices: ArrayLike<number>): { pixels: Uint8Array; labels: Uint32Array } {
  assertLabelled(ds, 'batchPixels');
  const labels = new Uint32Array(indices.length);
  for (let b = 0; b < indices.length; b++) {
    checkIndex(ds, indices[b]);
    const y = ds.label(indices[b]);
    if (!Number.isInteger(y) || y < 0 || y >= ds.numClasses) {
      throw new SbgcError(`${ds.name}: image ${indices[b]} has label ${y}, outside [0, ${ds.numClasses})`);
    }
    labels[b] = y;
  }
  return { pixels: batchImages(ds, indices), labels };
}

/** All labels of a labelled dataset, in index order. */
export function allLabels(ds: ImageDataset): Uint32Array {
  assertLabelled(ds, 'allLabels');
  const out = new Uint32Array(ds.length);
  for (let i = 0; i < ds.length; i++) out[i] = ds.label(i);
  return out;
}

/** Images per class (length numClasses). */
export function classCounts(ds: ImageDataset): number[] {
  const counts = new Array<number>(ds.numClasses).fill(0);
  for (const y of allLabels(ds)) counts[y]++;
  return counts;
}

/** A view of ds restricted to `indices` (in that order); no pixels are copied. */
export function subset(ds: ImageDataset, indices: ArrayLike<number>, name = `${ds.name}[subset of ${indices.length}]`): ImageDataset {
  const idx = Uint32Array.from(indices as ArrayLike<number>, (i) => {
    checkIndex(ds, i);
    return i;
  });
  const view = { name, length: idx.length };
  return {
    name,
    length: idx.length,
    shape: ds.shape,
    numClasses: ds.numClasses,
    ...(ds.classNames ? { classNames: ds.classNames } : {}),
    image: (i) => (checkIndex(view, i), ds.image(idx[i])),
    label: (i) => (checkIndex(view, i), ds.label(idx[i])),
  };
}

/** Mirrors each row of every image of a [B, C, H, W] byte array (W fastest); returns a new array. */
export function flipHorizontal(pixels: Uint8Array, shape: ImageShape): Uint8Array {
  checkBatchBytes(pixels, shape, 'flipHorizontal');
  const out = new Uint8Array(pixels.length);
  const w = shape[2];
  for (let row = 0; row < pixels.length; row += w) {
    for (let x = 0; x < w; x++) out[row + x] = pixels[row + w - 1 - x];
  }
  return out;
}

function checkBatchBytes(pixels: Uint8Array, shape: ImageShape, what: string): number {
  const n = imageSize(shape);
  if (n === 0 || pixels.length % n !== 0) {
    throw new ShapeError(`${what}: ${pixels.length} bytes is not a whole number of [${shape.join(', ')}] images`);
  }
  return pixels.length / n;
}

/**
 * Flips each image of a [B, C, H, W] batch horizontally with probability ½ (score_flow's training augmentation).
 * One `rng.nextU32()` per image, top bit set = flip. Returns new pixels and the per-image decision (1 = flipped).
 */
export function randomFlip(pixels: Uint8Array, shape: ImageShape, rng: HostRng): { pixels: Uint8Array; flipped: Uint8Array } {
  const batch = checkBatchBytes(pixels, shape, 'randomFlip');
  const n = imageSize(shape);
  const w = shape[2];
  const out = pixels.slice();
  const flipped = new Uint8Array(batch);
  for (let b = 0; b < batch; b++) {
    if (rng.nextU32() >>> 31 === 0) continue;
    flipped[b] = 1;
    for (let row = b * n; row < (b + 1) * n; row += w) {
      for (let x = 0; x < w; x++) out[row + x] = pixels[row + w - 1 - x];
    }
  }
  return { pixels: out, flipped };
}

/** Uniform random permutation of 0..n−1 (Fisher–Yates driven by rng). */
export function permutation(n: number, rng: HostRng): Uint32Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`permutation: n must be an integer in [0, 2^32), got ${n}`);
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return shuffleInPlace(p, rng);
}

/** Fisher–Yates shuffle of `a` in place (returns it). */
export function shuffleInPlace<T extends { length: number; [i: number]: number }>(a: T, rng: HostRng): T {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}

/** Consecutive batches of `indices` (the last one may be short unless dropLast). */
export function batches(indices: Uint32Array, batchSize: number, dropLast = false): Uint32Array[] {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batches: batchSize must be a positive integer, got ${batchSize}`);
  const out: Uint32Array[] = [];
  for (let s = 0; s < indices.length; s += batchSize) {
    const b = indices.subarray(s, s + batchSize);
    if (dropLast && b.length < batchSize) break;
    out.push(b);
  }
  return out;
}

/** A random split of 0..n−1: `heldOut` indices held out, the rest for training; both sorted ascending. */
export function randomSplit(n: number, heldOut: number, rng: HostRng): { train: Uint32Array; heldOut: Uint32Array } {
  if (!Number.isInteger(heldOut) || heldOut < 0 || heldOut > n) {
    throw new RangeError(`randomSplit: heldOut must be an integer in [0, ${n}], got ${heldOut}`);
  }
  const p = permutation(n, rng);
  return { train: p.slice(heldOut).sort(), heldOut: p.slice(0, heldOut).sort() };
}

/**
 * Per-class held-out counts summing to `heldOut`, proportional to `counts` (largest-remainder rounding; ties go
 * to the lower class index), so each split keeps the class balance of the whole to within one image per class.
 */
export function stratifiedCounts(counts: readonly number[], heldOut: number): number[] {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!Number.isInteger(heldOut) || heldOut < 0 || heldOut > total) {
    throw new RangeError(`stratifiedCounts: heldOut must be an integer in [0, ${total}], got ${heldOut}`);
  }
  if (total === 0) return counts.map(() => 0);
  // Exact integer arithmetic: quota_c = counts_c·heldOut/total as floor + remainder numerator.
  const floors = counts.map((c) => Math.floor((c * heldOut) / total));
  const rems = counts.map((c, k) => c * heldOut - floors[k] * total);
  let missing = heldOut - floors.reduce((a, b) => a + b, 0);
  const order = counts.map((_, k) => k).sort((a, b) => rems[b] - rems[a] || a - b);
  for (const k of order) {
    if (missing === 0) break;
    floors[k]++;
    missing--;
  }
  return floors;
}

/**
 * Stratified split by label: within each class (in index order) the LAST h_c images are held out, with h_c from
 * `stratifiedCounts`. Deterministic (no randomness); both index lists ascending.
 */
export function stratifiedSplit(labels: ArrayLike<number>, numClasses: number, heldOut: number): { train: Uint32Array; heldOut: Uint32Array } {
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= numClasses) throw new RangeError(`stratifiedSplit: label ${y} at index ${i} outside [0, ${numClasses})`);
    byClass[y].push(i);
  }
  const h = stratifiedCounts(byClass.map((c) => c.length), heldOut);
  const train: number[] = [];
  const held: number[] = [];
  byClass.forEach((idx, k) => {
    const cut = idx.length - h[k];
    train.push(...idx.slice(0, cut));
    held.push(...idx.slice(cut));
  });
  return { train: Uint32Array.from(train).sort(), heldOut: Uint32Array.from(held).sort() };
}
