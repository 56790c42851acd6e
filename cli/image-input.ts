/**
 * The images an evaluation command runs on, from flags:
 *   --png PATH…        PNG files and/or folders (<dir>/<class>/*.png labelled, <dir>/*.png unlabelled), converted
 *                      to the model's channels (never lossily: data/png-folder.ts) and required at its size
 *   --npy FILE         uint8 pixels [N, C, H, W] or [N, H, W, C] (layout detected from the model's shape, or
 *                      --npy-layout), [N, H, W] for one channel; with --npy-space model: float model-space values
 *   --data SPEC        a dataset spec (data/load.ts), e.g. mnist:test
 *   --labels FILE.npy  integer labels [N] for --png files or --npy
 *   --offset K --limit N   entries [K, K + N) of any of these
 * Entry p has the global index offset + p (its position in the file, folder listing or dataset), which keys its
 * random numbers: an image gets the same probes and noise whatever part of the input a run covers.
 */
import { readFile, stat } from 'node:fs/promises';
import { ShapeError } from '../engine/errors.js';
import { npyFloat64, readNpy, type NpyArray } from '../formats/npy.js';
import { loadDataset, type ImageDataset } from '../data/index.js';
import { decodePng, loadPngFolder, PngError, rgbaToChw } from '../data/png-folder.js';
import { imagesInModelSpace, type ImageInput, type ModelSpaceConversion, type ModelSpaceImages } from '../data/model-space-images.js';
import { valueFlags, type FlagReader, type FlagValues } from './flag-reader.js';

export const INPUT_FLAGS = {
  png: { type: 'string', multiple: true },
  ...valueFlags('npy', 'npy-space', 'npy-layout', 'data', 'labels', 'limit', 'offset'),
} as const;

export const INPUT_USAGE = `input (one of):
  --png PATH [PATH…]      PNG files and/or folders (<dir>/<class>/*.png labelled, <dir>/*.png unlabelled)
  --npy FILE              uint8 pixels [N,C,H,W] or [N,H,W,C] ([N,H,W] for 1 channel); layout detected
                          (--npy-layout nchw|nhwc to force); --npy-space model: float model-space values
  --data SPEC             dataset spec: mnist:test, cifar10:<dir>:test, cifar10c:<dir>:<corruption>:<sev>, png:<dir>
  --labels FILE.npy       integer labels [N] for --png files or --npy
  --offset K --limit N    entries [K, K+N) of the input (default: all)`;

export interface ImageSource {
  /** Identifies the input independently of --offset/--limit (resume checks), e.g. "npy:x.npy". */
  id: string;
  /** For humans: what was read, layout, space. */
  description: string;
  count: number;
  shape: [number, number, number];
  space: 'pixels' | 'model';
  /** Global index of entry p (offset + p). */
  globalIndex(p: number): number;
  /** Where entry p came from, e.g. a file name or "mnist:test[17]". */
  name(p: number): string;
  /** Per entry, or null when unknown. */
  labels: Uint32Array | null;
  classNames?: readonly string[];
  /** Entries [p0, p1) in model space: the one place the input is converted. */
  images(p0: number, p1: number, conversion: ModelSpaceConversion): ModelSpaceImages;
}

export interface ModelShapeInfo {
  shape: readonly [number, number, number];
  numClasses: number;
}

function shapeText(s: readonly number[]): string {
  return `[${s.join(', ')}]`;
}

function integerData(a: NpyArray): number[] | null {
  switch (a.dtype) {
    case 'u1': case 'i1': case 'u2': case 'i2': case 'u4': case 'i4': case 'b1':
      return Array.from(a.data as ArrayLike<number>);
    case 'i8': case 'u8':
      return Array.from(a.data as BigInt64Array | BigUint64Array, (v) => Number(v));
    default:
      return null;
  }
}

async function readNpyFlag(f: FlagReader, flag: string, path: string): Promise<NpyArray> {
  try {
    return await readNpy(path);
  } catch (e) {
    f.error(`${flag} ${path}: ${(e as Error).message}`);
  }
}

/** Which layout the npy shape has for the model's [C, H, W]; returns the HWC→CHW need. */
function npyLayout(f: FlagReader, path: string, shape: number[], model: readonly [number, number, number], forced: string): 'nchw' | 'nhwc' {
  const [C, H, W] = model;
  const rest = shape.slice(1);
  const isNchw = shape.length === 4 && rest[0] === C && rest[1] === H && rest[2] === W;
  const isNhwc = shape.length === 4 && rest[0] === H && rest[1] === W && rest[2] === C;
  const isNhw = shape.length === 3 && C === 1 && rest[0] === H && rest[1] === W;
  const want = `[N, ${C}, ${H}, ${W}] (NCHW) or [N, ${H}, ${W}, ${C}] (NHWC)${C === 1 ? ` or [N, ${H}, ${W}]` : ''}`;
  if (!(isNchw || isNhwc || isNhw)) f.error(`--npy ${path}: shape ${shapeText(shape)} does not fit the model's images ${C}×${H}×${W}: expected ${want}`);
  if (forced === 'nchw') {
    if (!isNchw && !isNhw) f.error(`--npy ${path}: --npy-layout nchw, but shape ${shapeText(shape)} is not [N, ${C}, ${H}, ${W}]`);
    return 'nchw';
  }
  if (forced === 'nhwc') {
    if (!isNhwc && !isNhw) f.error(`--npy ${path}: --npy-layout nhwc, but shape ${shapeText(shape)} is not [N, ${H}, ${W}, ${C}]`);
    return isNhw ? 'nchw' : 'nhwc';
  }
  // Both fit only when C = H = W; NCHW (numpy/PyTorch convention) is taken and the description says so.
  return isNchw || isNhw ? 'nchw' : 'nhwc';
}

function hwcToChw<T extends Float64Array | Uint8Array>(data: T, n: number, C: number, H: number, W: number): T {
  const out = new (data.constructor as { new (n: number): T })(data.length);
  const per = C * H * W;
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < C; c++) for (let p = 0; p < H * W; p++) out[i * per + c * H * W + p] = data[i * per + p * C + c];
  }
  return out;
}

async function labelsFromNpy(f: FlagReader, path: string, n: number): Promise<Uint32Array> {
  const a = await readNpyFlag(f, '--labels', path);
  const v = integerData(a);
  if (!v) f.error(`--labels ${path}: dtype ${a.dtype} is not an integer type`);
  if (a.shape.length !== 1 || a.shape[0] !== n) f.error(`--labels ${path}: shape ${shapeText(a.shape)} must be [${n}] (one label per image)`);
  v.forEach((y, i) => {
    if (!(Number.isInteger(y) && y >= 0)) f.error(`--labels ${path}: label ${i} is ${y}, not a non-negative integer`);
  });
  return Uint32Array.from(v);
}

interface Loaded {
  id: string;
  description: string;
  count: number;
  space: 'pixels' | 'model';
  name: (i: number) => string;
  labels: Uint32Array | null;
  labelFlag: string;
  classNames?: readonly string[];
  /** Entries [i0, i1) of the whole input. */
  slice: (i0: number, i1: number) => ImageInput;
}

async function loadNpyInput(f: FlagReader, values: FlagValues, path: string, model: ModelShapeInfo): Promise<Loaded> {
  const [C, H, W] = model.shape;
  const space = f.oneOf(values, 'npy-space', ['pixels', 'model'] as const, 'pixels');
  const forced = f.oneOf(values, 'npy-layout', ['auto', 'nchw', 'nhwc'] as const, 'auto');
  const a = await readNpyFlag(f, '--npy', path);
  const layout = npyLayout(f, path, a.shape, model.shape, forced);
  const n = a.shape[0];
  if (n === 0) f.error(`--npy ${path}: no images (shape ${shapeText(a.shape)})`);
  const per = C * H * W;
  let data: Float64Array | Uint8Array;
  if (space === 'model') {
    const v = npyFloat64(a);
    if (!v) f.error(`--npy ${path}: --npy-space model needs float values (f2/f4/f8), got dtype ${a.dtype}`);
    const bad = v.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) f.error(`--npy ${path}: element ${bad} (image ${Math.floor(bad / per)}) is ${v[bad]} (not finite)`);
    data = v;
  } else {
    const v = integerData(a);
    if (!v) {
      const hint = npyFloat64(a) ? '; if these are model-space values, pass --npy-space model' : '';
      f.error(`--npy ${path}: dtype ${a.dtype} is not 8-bit pixel data (uint8 expected${hint})`);
    }
    const bad = v.findIndex((x) => !(Number.isInteger(x) && x >= 0 && x <= 255));
    if (bad >= 0) f.error(`--npy ${path}: element ${bad} (image ${Math.floor(bad / per)}) is ${v[bad]}, outside the pixel range 0..255`);
    data = Uint8Array.from(v);
  }
  if (layout === 'nhwc') data = hwcToChw(data, n, C, H, W);
  const labelsPath = f.string(values, 'labels');
  const labels = labelsPath ? await labelsFromNpy(f, labelsPath, n) : null;
  return {
    id: `npy:${path}`,
    description: `${path}: ${n} images, ${a.dtype} ${shapeText(a.shape)} read as ${layout.toUpperCase()}${space === 'model' ? ', model-space values' : ', 8-bit pixels'}`,
    count: n,
    space,
    name: (i) => `${path}[${i}]`,
    labels,
    labelFlag: labelsPath ? `--labels ${labelsPath}` : '',
    slice: (i0, i1) =>
      data instanceof Uint8Array ? { pixels: data.subarray(i0 * per, i1 * per) } : { x: data.subarray(i0 * per, i1 * per) },
  };
}

async function loadPngInput(f: FlagReader, values: FlagValues, paths: string[], model: ModelShapeInfo): Promise<Loaded> {
  const [C, H, W] = model.shape;
  if (C !== 1 && C !== 3) f.error(`--png: the model has ${C} channels; PNG input gives 1 or 3`);
  const images: Uint8Array[] = [];
  const names: string[] = [];
  const fileLabels: number[] = [];
  let allLabelled = true;
  let classNames: readonly string[] | undefined;
  for (const p of paths) {
    let isDir: boolean;
    try {
      isDir = (await stat(p)).isDirectory();
    } catch (e) {
      f.error(`--png ${p}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    try {
      if (isDir) {
        const ds = await loadPngFolder(p, { channels: C, size: [H, W] });
        if (ds.numClasses === 0) allLabelled = false;
        else if (classNames && classNames.join('\0') !== ds.classNames!.join('\0')) allLabelled = false;
        else classNames = ds.classNames;
        for (let i = 0; i < ds.length; i++) {
          images.push(ds.image(i));
          names.push(ds.files[i]);
          fileLabels.push(ds.numClasses ? ds.label(i) : -1);
        }
      } else {
        const png = decodePng(await readFile(p), p);
        if (png.width !== W || png.height !== H) {
          throw new PngError(p, `wrong size: ${png.width}×${png.height} (W×H), the model needs ${W}×${H} (${C} channel${C > 1 ? 's' : ''})`);
        }
        images.push(rgbaToChw(png, C, p));
        names.push(p);
        fileLabels.push(-1);
        allLabelled = false;
      }
    } catch (e) {
      f.error(`--png: ${(e as Error).message}`);
    }
  }
  const per = C * H * W;
  const pixels = new Uint8Array(images.length * per);
  images.forEach((img, i) => pixels.set(img, i * per));
  const labelsPath = f.string(values, 'labels');
  let labels: Uint32Array | null = null;
  let labelFlag = '';
  if (labelsPath) {
    labels = await labelsFromNpy(f, labelsPath, images.length);
    labelFlag = `--labels ${labelsPath}`;
    classNames = undefined;
  } else if (allLabelled && images.length > 0) {
    labels = Uint32Array.from(fileLabels);
    labelFlag = `--png ${paths.join(' ')} (class folders ${classNames!.join(', ')})`;
  }
  return {
    id: `png:${paths.join(',')}`,
    description: `${images.length} PNG image${images.length === 1 ? '' : 's'} from ${paths.join(', ')} as ${C}×${H}×${W} 8-bit pixels${labels && !labelsPath ? ', labelled by class folder' : ''}`,
    count: images.length,
    space: 'pixels',
    name: (i) => names[i],
    labels,
    labelFlag,
    ...(labels && classNames ? { classNames } : {}),
    slice: (i0, i1) => ({ pixels: pixels.subarray(i0 * per, i1 * per) }),
  };
}

async function loadDataInput(f: FlagReader, values: FlagValues, spec: string, model: ModelShapeInfo): Promise<Loaded> {
  if (f.string(values, 'labels')) f.fail('--labels applies to --png and --npy; --data brings its own labels');
  let ds: ImageDataset;
  try {
    ds = await loadDataset(spec, { shape: model.shape });
  } catch (e) {
    const hint = e instanceof ShapeError ? ` (the model's images are ${model.shape.join('×')})` : '';
    f.error(`--data ${spec}: ${(e as Error).message}${hint}`);
  }
  const per = model.shape[0] * model.shape[1] * model.shape[2];
  const labels = ds.numClasses > 0 ? Uint32Array.from({ length: ds.length }, (_, i) => ds.label(i)) : null;
  return {
    id: `data:${spec}`,
    description: `dataset ${spec}: ${ds.length} images ${ds.shape.join('×')}, ${ds.numClasses ? `${ds.numClasses} classes` : 'unlabelled'}`,
    count: ds.length,
    space: 'pixels',
    name: (i) => `${spec}[${i}]`,
    labels,
    labelFlag: `--data ${spec}`,
    ...(ds.classNames ? { classNames: ds.classNames } : {}),
    slice: (i0, i1) => {
      const out = new Uint8Array((i1 - i0) * per);
      for (let i = i0; i < i1; i++) out.set(ds.image(i), (i - i0) * per);
      return { pixels: out };
    },
  };
}

export function usesInputFlags(values: FlagValues, positionals: string[]): boolean {
  return values.png !== undefined || values.npy !== undefined || values.data !== undefined || positionals.length > 0;
}

/**
 * Loads the input the flags name, checked against the model: image shape, and labels in [0, numClasses) for a
 * class-conditional model. Positionals are more --png paths (`--png a.png b.png` parses b.png as one).
 */
export async function loadImageInput(f: FlagReader, values: FlagValues, positionals: string[], model: ModelShapeInfo): Promise<ImageSource> {
  const pngs = [...f.strings(values, 'png'), ...positionals];
  if (positionals.length > 0 && values.png === undefined) f.fail(`unexpected argument '${positionals[0]}' (PNG paths go after --png)`);
  const given = [pngs.length > 0 && '--png', values.npy !== undefined && '--npy', values.data !== undefined && '--data'].filter(Boolean);
  if (given.length !== 1) f.fail(given.length ? `give one input, not ${given.join(' and ')}` : 'no input: give --png, --npy or --data');
  for (const flag of ['npy-space', 'npy-layout']) if (values[flag] !== undefined && values.npy === undefined) f.fail(`--${flag} applies to --npy only`);

  const loaded =
    values.npy !== undefined
      ? await loadNpyInput(f, values, f.string(values, 'npy')!, model)
      : values.data !== undefined
        ? await loadDataInput(f, values, f.string(values, 'data')!, model)
        : await loadPngInput(f, values, pngs, model);

  const offset = f.int(values, 'offset', 0, 0);
  if (offset >= loaded.count) f.error(`--offset ${offset}: the input has only ${loaded.count} image${loaded.count === 1 ? '' : 's'}`);
  const limit = f.int(values, 'limit', loaded.count - offset, 1);
  const count = Math.min(limit, loaded.count - offset);

  if (loaded.labels && model.numClasses > 0) {
    for (let i = offset; i < offset + count; i++) {
      const y = loaded.labels[i];
      if (y >= model.numClasses) {
        f.error(`${loaded.labelFlag}: label of image ${i} (${loaded.name(i)}) is ${y}, outside [0, ${model.numClasses}) — the model has ${model.numClasses} classes`);
      }
    }
  }
  const range = offset > 0 || count < loaded.count ? ` (entries ${offset}..${offset + count - 1})` : '';
  return {
    id: loaded.id,
    description: loaded.description + range,
    count,
    shape: [...model.shape],
    space: loaded.space,
    globalIndex: (p) => offset + p,
    name: (p) => loaded.name(offset + p),
    labels: loaded.labels ? loaded.labels.slice(offset, offset + count) : null,
    ...(loaded.classNames ? { classNames: loaded.classNames } : {}),
    images: (p0, p1, conversion) => imagesInModelSpace(loaded.slice(offset + p0, offset + p1), model.shape, conversion, loaded.id),
  };
}

/** Solver input of model-space values with its own labels (e.g. samples of an analytic model). */
export function arrayImageSource(id: string, description: string, x: Float64Array, labels: Uint32Array | null, shape: [number, number, number]): ImageSource {
  const per = shape[0] * shape[1] * shape[2];
  const count = x.length / per;
  return {
    id,
    description,
    count,
    shape,
    space: 'model',
    globalIndex: (p) => p,
    name: (p) => `${id}[${p}]`,
    labels,
    images: (p0, p1, conversion) => imagesInModelSpace({ x: x.subarray(p0 * per, p1 * per) }, shape, conversion, id),
  };
}
