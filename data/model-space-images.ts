/**
 * A batch of images in model space (SPEC §1), as every estimator takes it. The one place where the two kinds of
 * input part ways: 8-bit pixels (dequantised per draw: each draw of an image gets its own U[0, 1/256) noise, keyed
 * by the draw) and model-space values (the same float32 x for every draw). Estimators ask for image i of a draw
 * and get float32 model-space values; they never see pixels.
 */
import { SbgcError, ShapeError } from '../engine/errors.js';
import { blocksFor, drawHost } from '../engine/rng.js';
import { toModelSpace } from './model-space.js';

/** 8-bit images (C·H·W bytes each, CHW order, dequantised per SPEC §1), or model-space values directly. */
export type ImageInput = { pixels: Uint8Array } | { x: ArrayLike<number> };

/** Philox stream base of the dequantisation noise (the probes and start noise use other bases). */
export const DEQUANT_STREAM = 0x40000000;

/** Which draw's dequantisation noise: Philox (seed, DEQUANT_STREAM + stream), blocks offset by the image's global index. */
export interface DrawKey {
  seed: number;
  stream: number;
  imageKey: number;
}

export interface ModelSpaceImages {
  readonly count: number;
  /** Values per image (C·H·W). */
  readonly dim: number;
  /** Model space [−1, 1) (true) or [0, 1). */
  readonly centered: boolean;
  /** Every draw of an image sees the same x (model-space values, or pixels without dequantisation noise). */
  readonly fixed: boolean;
  /** Image i in model space (float32) under the draw's dequantisation noise (the key is ignored when fixed). */
  image(i: number, draw: DrawKey): Float32Array;
}

export interface ModelSpaceConversion {
  centered: boolean;
  /** Pixels: add U[0, 1/256) noise per value (keyed by the draw); false uses pixels/256 exactly. */
  dequantise: boolean;
}

/**
 * The input as model-space images of `shape` [C, H, W]. Errors name `what` (the caller) and the value at fault.
 * Model-space values are rounded to float32 once, here (the precision the solver state and the network use).
 */
export function imagesInModelSpace(input: ImageInput, shape: readonly number[], o: ModelSpaceConversion, what: string): ModelSpaceImages {
  const [C, H, W] = shape;
  const D = C * H * W;
  const data = 'pixels' in input ? input.pixels : input.x;
  if (!data || data.length === 0 || data.length % D !== 0) {
    throw new ShapeError(
      `${what}: expected images of C×H×W = ${C}×${H}×${W} = ${D} values each, got ${data?.length ?? 0} values` +
        `${data?.length ? `, not a multiple of ${D}` : ''} (the model's shape)`,
    );
  }
  const count = data.length / D;
  if ('pixels' in input) {
    if (!(input.pixels instanceof Uint8Array)) throw new SbgcError(`${what}: pixels must be a Uint8Array of 8-bit values`);
    return pixelImages(input.pixels, count, D, o);
  }
  const x = Float32Array.from(input.x);
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw new RangeError(`${what}: x[${i}] (image ${Math.floor(i / D)}) is ${x[i]}`);
  }
  return { count, dim: D, centered: o.centered, fixed: true, image: (i) => x.subarray(i * D, (i + 1) * D) };
}

function pixelImages(pixels: Uint8Array, count: number, D: number, o: ModelSpaceConversion): ModelSpaceImages {
  const { centered, dequantise } = o;
  return {
    count,
    dim: D,
    centered,
    fixed: !dequantise,
    image(i, draw) {
      const noise = dequantise
        ? (drawHost(D, 'uniform', { seed: draw.seed, stream: DEQUANT_STREAM + draw.stream, offset: draw.imageKey * blocksFor(D, 'uniform') }) as Float32Array)
        : undefined;
      return toModelSpace(pixels.subarray(i * D, (i + 1) * D), { centered, dequantNoise: noise });
    },
  };
}

/**
 * The model-space points of all images when they do not depend on the draw (what an exact reference is evaluated
 * at), as float64; null when each draw dequantises afresh.
 */
export function fixedPoints(images: ModelSpaceImages): Float64Array | null {
  if (!images.fixed) return null;
  const out = new Float64Array(images.count * images.dim);
  for (let i = 0; i < images.count; i++) out.set(images.image(i, { seed: 0, stream: 0, imageKey: 0 }), i * images.dim);
  return out;
}

/** The model's own space when it says (a network config's `centered`); uncentred otherwise. */
export function configuredCentering(model: object): boolean {
  const config = (model as { config?: { centered?: unknown } }).config;
  return typeof config?.centered === 'boolean' ? config.centered : false;
}
