/**
 * CIFAR-10, "binary version" (SPEC §1): `data_batch_1..5.bin` (train) and `test_batch.bin` (test), each a plain
 * sequence of 3073-byte records: 1 label byte (0..9), then 3072 pixel bytes in CHW order (1024 R, 1024 G, 1024 B,
 * rows top to bottom). No header, so the checks are: whole records only, labels in range.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SbgcError, SourceError } from '../engine/errors.js';
import { checkIndex, type ImageDataset } from './dataset.js';

export type Cifar10Split = 'train' | 'test';

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'] as const;
export const CIFAR10_FILES: Record<Cifar10Split, readonly string[]> = {
  train: ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'],
  test: ['test_batch.bin'],
};
export const CIFAR10_IMAGE_BYTES = 3 * 32 * 32;
export const CIFAR10_RECORD_BYTES = 1 + CIFAR10_IMAGE_BYTES;
/** The folder name inside the official cifar-10-binary.tar.gz. */
const TAR_SUBDIR = 'cifar-10-batches-bin';

/** A corrupt, truncated or missing CIFAR-10 file; the message names the file (and byte offset where known). */
export class Cifar10Error extends SourceError {
  override name = 'Cifar10Error';
}

/**
 * Validates one batch file's bytes (whole records, labels 0..9) and returns its labels [N]; the pixels of record
 * r are `bytes[r·3073 + 1 .. (r + 1)·3073)`, read in place.
 */
export function parseCifar10Batch(bytes: Uint8Array, file: string): Uint8Array {
  const R = CIFAR10_RECORD_BYTES;
  if (bytes.length === 0) throw new Cifar10Error(file, 'empty file (0 bytes), expected 3073-byte records', 0);
  const n = Math.floor(bytes.length / R);
  const rest = bytes.length - n * R;
  if (rest !== 0) {
    // CIFAR-100's binary records carry 2 label bytes: a common mix-up worth naming.
    const hint = bytes.length % (R + 1) === 0 ? ' (a multiple of 3074: is this CIFAR-100, with 2 label bytes per record?)' : '';
    throw new Cifar10Error(
      file,
      `truncated or wrong size: ${bytes.length} bytes is not a multiple of ${R} (1 label + ${CIFAR10_IMAGE_BYTES} pixels); ` +
        `the last record (${n}) starts at byte offset ${n * R} and has only ${rest} bytes${hint}`,
      n * R,
    );
  }
  const labels = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    const y = bytes[r * R];
    if (y > 9) throw new Cifar10Error(file, `corrupt label ${y} in record ${r} at byte offset ${r * R} (expected 0..9)`, r * R);
    labels[r] = y;
  }
  return labels;
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isFile(), () => false);
}

/** The directory holding the batch files: `dir` itself or its `cifar-10-batches-bin/` (the tarball's folder). */
async function resolveDir(dir: string, files: readonly string[]): Promise<string> {
  if (await isFile(join(dir, files[0]))) return dir;
  if (await isFile(join(dir, TAR_SUBDIR, files[0]))) return join(dir, TAR_SUBDIR);
  return dir;
}

/** CIFAR-10 train (50 000 from 5 files) or test (10 000) images from a directory of binary batches. */
export async function loadCifar10(dir: string, split: Cifar10Split): Promise<ImageDataset> {
  const files = CIFAR10_FILES[split];
  if (!files) throw new SbgcError(`cifar10: unknown split '${String(split)}' (expected 'train' or 'test')`);
  const root = await resolveDir(dir, files);
  // The file buffers are kept as they are (no second copy of 150 MB); images are cut out on demand.
  const parts: Array<{ bytes: Uint8Array; start: number }> = [];
  const labelParts: Uint8Array[] = [];
  let length = 0;
  for (const f of files) {
    const path = join(root, f);
    let bytes: Uint8Array;
    try {
      const buf = await readFile(path);
      // A plain Uint8Array view: Buffer#slice would return a view, not the copy image() promises.
      bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (e) {
      const found = await readdir(root).then((l) => l.sort().join(', ') || 'nothing', () => 'unreadable directory');
      const reason = e instanceof Error && 'code' in e ? String(e.code) : String(e);
      throw new Cifar10Error(path, `cannot read (${reason}); a CIFAR-10 binary directory holds ${[...CIFAR10_FILES.train, ...CIFAR10_FILES.test].join(', ')} — ${root} has: ${found}`);
    }
    const labels = parseCifar10Batch(bytes, path);
    parts.push({ bytes, start: length });
    labelParts.push(labels);
    length += labels.length;
  }
  const labels = new Uint8Array(length);
  labelParts.forEach((l, k) => labels.set(l, parts[k].start));
  const R = CIFAR10_RECORD_BYTES;
  return cifarDataset(`cifar10:${dir}:${split}`, labels, (i) => {
    let k = parts.length - 1;
    while (parts[k].start > i) k--;
    const at = (i - parts[k].start) * R + 1;
    return parts[k].bytes.slice(at, at + CIFAR10_IMAGE_BYTES);
  });
}

/**
 * A CIFAR-shaped ([3, 32, 32], 10 classes) dataset: `labels` [N] and `imageAt(i)` returning a fresh CHW copy
 * (called only with a checked index).
 */
export function cifarDataset(name: string, labels: Uint8Array, imageAt: (i: number) => Uint8Array): ImageDataset {
  const ds = { name, length: labels.length };
  return {
    name,
    length: labels.length,
    shape: [3, 32, 32],
    numClasses: 10,
    classNames: CIFAR10_CLASSES,
    image(i) {
      checkIndex(ds, i);
      return imageAt(i);
    },
    label(i) {
      checkIndex(ds, i);
      return labels[i];
    },
  };
}
