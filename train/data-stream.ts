/**
 * The training batches as a pure function of (seed, step) plus two continuing host RNG streams, so a run can be
 * resumed bit-identically from a checkpoint:
 * - order: epoch k is a permutation drawn from HostRng(seed, SHUFFLE stream, block k·n) — derived, not stored;
 *   each epoch has ⌊n / B⌋ full batches (the remainder is dropped, as with drop_last);
 * - horizontal flips (score_flow's augmentation) from the continuing FLIP stream, only when enabled — not for
 *   MNIST: mirrored digits are not digits (a flipped 2, 3, 7 is a different glyph), so the CLI turns flips off;
 * - dequantisation noise u ~ U[0, 1) per pixel (SPEC §1) from the Philox draw {seed, DEQUANT stream, offset step·⌈BD/4⌉},
 *   then x = (pixel + u)/256 (centred: 2x − 1) via data/model-space.ts.
 */
import { blocksFor, drawHost, HostRng } from '../engine/rng.js';
import { SbgcError } from '../engine/errors.js';
import { batchImages, batchPixels, imageSize, permutation, randomFlip, type ImageDataset } from '../data/dataset.js';
import { toModelSpace } from '../data/model-space.js';
import type { HostRngState } from './checkpoint.js';

/** Philox stream ids by purpose (key = the run's seed). */
export const STREAMS = {
  noise: 0x7a, // 'z' (GPU normal draw; see loss.ts NOISE_STREAM)
  dequant: 0x64, // 'd'
  shuffle: 0x73, // 's'
  time: 0x74, // 't'
  flip: 0x66, // 'f'
  dropout: 0x6470, // 'dp'
} as const;

export interface HostBatch {
  /** Model-space images [B, C, H, W] (dequantised, maybe flipped). */
  x0: Float32Array;
  /** Labels [B] (zeros for an unlabelled dataset). */
  labels: Uint32Array;
  /** Dataset indices used. */
  indices: Uint32Array;
  epoch: number;
}

export class DataStream {
  private flipRng: HostRng;
  private epochCache: { epoch: number; order: Uint32Array } | null = null;
  readonly batchesPerEpoch: number;

  constructor(
    readonly dataset: ImageDataset,
    readonly batchSize: number,
    readonly seed: number,
    readonly options: { flip: boolean; centered: boolean },
  ) {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new SbgcError(`batch size must be a positive integer, got ${batchSize}`);
    if (batchSize > dataset.length) {
      throw new SbgcError(`batch size ${batchSize} exceeds the ${dataset.length} images of ${dataset.name}`);
    }
    this.batchesPerEpoch = Math.floor(dataset.length / batchSize);
    this.flipRng = new HostRng(seed, STREAMS.flip);
  }

  /** The dataset order of epoch k. */
  epochOrder(epoch: number): Uint32Array {
    if (this.epochCache?.epoch !== epoch) {
      const n = this.dataset.length;
      // A permutation of n uses 2(n − 1) words < n blocks, so epochs never share Philox blocks.
      this.epochCache = { epoch, order: permutation(n, new HostRng(this.seed, STREAMS.shuffle, epoch * n)) };
    }
    return this.epochCache.order;
  }

  /** The batch of update `step` (0-based). Advances the flip stream when flips are on. */
  batch(step: number): HostBatch {
    const epoch = Math.floor(step / this.batchesPerEpoch);
    const pos = step % this.batchesPerEpoch;
    const indices = this.epochOrder(epoch).slice(pos * this.batchSize, (pos + 1) * this.batchSize);
    const ds = this.dataset;
    let pixels: Uint8Array;
    let labels: Uint32Array;
    if (ds.numClasses > 0) ({ pixels, labels } = batchPixels(ds, indices));
    else {
      pixels = batchImages(ds, indices);
      labels = new Uint32Array(indices.length);
    }
    if (this.options.flip) pixels = randomFlip(pixels, ds.shape, this.flipRng).pixels;
    const n = pixels.length;
    const noise = drawHost(n, 'uniform', { seed: this.seed, stream: STREAMS.dequant, offset: step * blocksFor(n, 'uniform') }) as Float32Array;
    const x0 = toModelSpace(pixels, { centered: this.options.centered, dequantNoise: noise });
    return { x0, labels, indices, epoch };
  }

  get imageDims(): number {
    return imageSize(this.dataset.shape);
  }

  flipState(): HostRngState {
    return this.flipRng.state();
  }

  restoreFlipState(s: HostRngState): void {
    this.flipRng = HostRng.restore(s);
  }
}
