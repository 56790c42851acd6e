/**
 * The values a torch.save checkpoint decodes to (tensors, storages, dicts, allowlisted globals) and the tensor
 * rebuild: a view's row-major elements materialised from its storage record, on first access or many at once.
 */
import { SbgcError, SourceError } from '../engine/errors.js';
import { safetensorsItemSize, viewAs, type SafetensorsDataMap, type SafetensorsDtype, type SafetensorsTypedArray } from './safetensors.js';
import type { ZipArchive } from './zip-archive.js';

/** A malformed or unsupported checkpoint; the message starts with the file (and record) at fault. */
export class TorchCheckpointError extends SourceError {
  override name = 'TorchCheckpointError';
}

/** Element types, named as in safetensors so tensors convert without a mapping table. */
export type TorchDtype = SafetensorsDtype;

const itemSize = safetensorsItemSize;

// torch.<Name>Storage → element type (torch/storage.py `_get_dtype_from_pickle_storage_type`).
export const STORAGE_DTYPES: Readonly<Record<string, TorchDtype>> = {
  DoubleStorage: 'F64', FloatStorage: 'F32', HalfStorage: 'F16', BFloat16Storage: 'BF16',
  LongStorage: 'I64', IntStorage: 'I32', ShortStorage: 'I16', CharStorage: 'I8', ByteStorage: 'U8',
  BoolStorage: 'BOOL', UntypedStorage: 'U8',
};

/** An allowlisted Python global referenced by the pickle (e.g. a storage type inside a persistent id). */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}

  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A Python dict or collections.OrderedDict, in insertion order. Tuple keys compare by identity. */
export class PickleDict extends Map<PickleValue, PickleValue> {
  /** Instance attributes set by BUILD, e.g. the `_metadata` torch attaches to a state dict; null when none. */
  attributes: PickleDict | null = null;

  constructor(readonly pythonClass: 'dict' | 'collections.OrderedDict' = 'dict') {
    super();
  }
}

/** `torch.device(type, index)`. */
export class TorchDevice {
  constructor(
    readonly type: string,
    readonly index: number | null,
  ) {}
}

/** One `<archive>/data/<key>` record; bytes are extracted on demand (a fresh copy each call). */
export class TorchStorage {
  constructor(
    readonly key: string,
    readonly dtype: TorchDtype,
    readonly numel: number,
    /** Device tag it was saved from ("cpu", "cuda:0"); ignored, everything loads on the host. */
    readonly location: string,
  ) {}

  /** Little-endian storage bytes (byte-swapped here if the file was written big-endian), own buffer at offset 0. */
  bytes(): Uint8Array {
    const origin = origins.get(this);
    if (!origin) throw new SbgcError(`storage '${this.key}' was not read from a checkpoint`);
    return toLittleEndian(origin, origin.zip.read(origin.record, this.numel * itemSize(this.dtype)));
  }
}

/**
 * A tensor view of a storage: element (i0, i1, …) is storage element
 * `storageOffset + Σ ik·stride[k]`. `data` is the row-major contiguous copy of the view.
 */
export class TorchTensor<D extends TorchDtype = TorchDtype> {
  constructor(
    readonly dtype: D,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
    readonly storageOffset: number,
    readonly storage: TorchStorage,
    readonly requiresGrad: boolean,
  ) {}

  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /** True when the view is the whole storage in row-major order (no copy needed beyond extraction). */
  get isContiguous(): boolean {
    return isRowMajor(this.shape, this.stride);
  }

  /**
   * Row-major elements (F16/BF16 as raw 16-bit patterns, BOOL as bytes), materialised on first access and cached.
   * Each first access scans the zip directory once; `loadTensorData` does many tensors in one pass.
   */
  get data(): SafetensorsDataMap[D] {
    let d = tensorData.get(this);
    if (!d) {
      d = materialise(this, this.storage.bytes(), true);
      tensorData.set(this, d);
    }
    return d as SafetensorsDataMap[D];
  }

  /** The same view with another requires_grad flag (what `_rebuild_parameter` does). */
  withRequiresGrad(requiresGrad: boolean): TorchTensor<D> {
    return new TorchTensor(this.dtype, this.shape, this.stride, this.storageOffset, this.storage, requiresGrad);
  }
}

/**
 * What a checkpoint decodes to. Python int → number (bigint beyond 2^53), float → number, str → string,
 * bytes → Uint8Array, list and tuple → array (tuples frozen), dict/OrderedDict → PickleDict, set → Set.
 */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | PickleDict
  | Set<PickleValue>
  | TorchTensor
  | TorchStorage
  | TorchDevice
  | PickleGlobal;

function isRowMajor(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    // Size-1 dimensions may carry any stride (torch does not normalise them).
    if (shape[k] !== 1 && stride[k] !== expected) return false;
    expected *= shape[k];
  }
  return true;
}

/** The view's elements from its storage bytes `src`; `ownsSrc`: src is a private copy this tensor may keep. */
function materialise(t: TorchTensor, src: Uint8Array, ownsSrc: boolean): SafetensorsTypedArray {
  const isz = itemSize(t.dtype);
  const n = t.numel;
  if (ownsSrc && t.storageOffset === 0 && n === t.storage.numel && isRowMajor(t.shape, t.stride)) {
    // The extraction is already a private, 0-offset copy of exactly this view.
    return viewAs(t.dtype, src.buffer as ArrayBuffer, n);
  }
  const out = new Uint8Array(n * isz);
  // Copy in 1-, 2- or 4-byte lanes (8-byte elements as two 4-byte lanes: exact bits, no float canonicalisation).
  const unit = Math.min(isz, 4);
  const lanes = isz / unit;
  const View = unit === 1 ? Uint8Array : unit === 2 ? Uint16Array : Uint32Array;
  const from = new View(src.buffer as ArrayBuffer, 0, src.byteLength / unit);
  const to = new View(out.buffer, 0, out.byteLength / unit);
  const rank = t.shape.length;
  const idx = new Array<number>(rank).fill(0);
  let pos = t.storageOffset;
  for (let i = 0; i < n; i++) {
    const s = pos * lanes;
    for (let l = 0; l < lanes; l++) to[i * lanes + l] = from[s + l];
    // Odometer over the multi-index, keeping the storage position incrementally.
    for (let k = rank - 1; k >= 0; k--) {
      idx[k]++;
      pos += t.stride[k];
      if (idx[k] < t.shape[k]) break;
      pos -= idx[k] * t.stride[k];
      idx[k] = 0;
    }
  }
  return viewAs(t.dtype, out.buffer, n);
}

/** Where a storage's bytes live; kept outside the class so the public type exposes no zip internals. */
export interface StorageOrigin {
  zip: ZipArchive;
  record: string;
  bigEndian: boolean;
  itemsize: number;
}

const origins = new WeakMap<TorchStorage, StorageOrigin>();

/** Records where a storage read from an archive keeps its bytes (the archive reader calls this). */
export function registerStorage(storage: TorchStorage, origin: StorageOrigin): void {
  origins.set(storage, origin);
}
const tensorData = new WeakMap<TorchTensor, SafetensorsTypedArray>();

function toLittleEndian(origin: StorageOrigin, raw: Uint8Array): Uint8Array {
  const isz = origin.itemsize;
  if (origin.bigEndian && isz > 1) for (let i = 0; i < raw.length; i += isz) raw.subarray(i, i + isz).reverse();
  return raw;
}

/**
 * Materialises `data` of many tensors, extracting the storages they need in one pass per archive (fflate has no
 * random access by name, so single `data` accesses cost a directory scan each: quadratic over a whole checkpoint).
 */
export function loadTensorData(tensors: Iterable<TorchTensor>): void {
  const pending = [...new Set(tensors)].filter((t) => !tensorData.has(t));
  const uses = new Map<TorchStorage, number>();
  for (const t of pending) uses.set(t.storage, (uses.get(t.storage) ?? 0) + 1);
  const byZip = new Map<ZipArchive, Map<string, number>>();
  for (const st of uses.keys()) {
    const o = origins.get(st);
    if (!o) throw new SbgcError(`storage '${st.key}' was not read from a checkpoint`);
    if (!byZip.has(o.zip)) byZip.set(o.zip, new Map());
    byZip.get(o.zip)!.set(o.record, st.numel * itemSize(st.dtype));
  }
  const bytes = new Map<TorchStorage, Uint8Array>();
  for (const [zip, wanted] of byZip) {
    const got = zip.readMany(wanted);
    for (const st of uses.keys()) {
      const o = origins.get(st)!;
      if (o.zip === zip) bytes.set(st, toLittleEndian(o, got.get(o.record)!));
    }
  }
  for (const t of pending) {
    // A storage shared by several tensors is copied out per view; a sole user may keep the extracted buffer.
    tensorData.set(t, materialise(t, bytes.get(t.storage)!, uses.get(t.storage) === 1));
  }
}
