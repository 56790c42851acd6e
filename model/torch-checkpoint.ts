/**
 * Reader for PyTorch ≥ 1.6 `torch.save` files (.pth/.pt): a zip archive (read with fflate) holding
 * `<archive>/data.pkl` (the object graph, pickled), `<archive>/data/<key>` (raw little-endian storage bytes),
 * `<archive>/version` or `<archive>/.data/version`, and optionally `<archive>/byteorder`. `<archive>` is whatever
 * directory the first entry sits in (torch names it after the saved file, or "archive" for buffers).
 *
 * The pickle is run by a small VM written here, not by an npm package: the ones on npm are unmaintained, `any`-typed
 * and resolve unknown globals to stub objects, whereas a checkpoint reader must refuse them. Only an allowlist of
 * globals is accepted (tensor/parameter rebuild functions, storage types, OrderedDict, set, torch.device, …); any
 * other GLOBAL is an error naming it, so nothing in a file can make this code do more than build plain data.
 *
 * Tensors come back as `TorchTensor`: dtype, shape, stride, storage offset, and `data`, a row-major contiguous copy
 * made on first access (so strided, offset and shared-storage views are materialised, and storages of tensors never
 * looked at are never extracted; `loadTensorData` extracts many at once). Every storage reference is checked against the zip listing up front: a missing or
 * wrongly sized storage record, or a view reaching past its storage, fails the read, naming the file and record.
 */
import { readFile } from 'node:fs/promises';

import { unzipSync } from 'fflate';

import { SbgcError } from '../engine/errors.js';
import { viewAs, type SafetensorsDataMap, type SafetensorsDtype, type SafetensorsTypedArray } from './safetensors.js';

/** A malformed or unsupported checkpoint; the message starts with the file (and record) at fault. */
export class TorchCheckpointError extends SbgcError {
  constructor(
    readonly source: string,
    detail: string,
  ) {
    super(`${source}: ${detail}`);
    this.name = 'TorchCheckpointError';
  }
}

/** Element types, named as in safetensors so tensors convert without a mapping table. */
export type TorchDtype = SafetensorsDtype;

const ITEMSIZE: Record<TorchDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

// torch.<Name>Storage → element type (torch/storage.py `_get_dtype_from_pickle_storage_type`).
const STORAGE_DTYPES: Readonly<Record<string, TorchDtype>> = {
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
    return toLittleEndian(origin, origin.zip.read(origin.record, this.numel * ITEMSIZE[this.dtype]));
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
  const isz = ITEMSIZE[t.dtype];
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
interface StorageOrigin {
  zip: ZipArchive;
  record: string;
  bigEndian: boolean;
  itemsize: number;
}

const origins = new WeakMap<TorchStorage, StorageOrigin>();
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
    byZip.get(o.zip)!.set(o.record, st.numel * ITEMSIZE[st.dtype]);
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

// ---------------------------------------------------------------------------------------------------------------
// Zip access

interface ZipEntry {
  name: string;
  size: number;
  originalSize: number;
  compression: number;
}

class ZipArchive {
  readonly entries: ZipEntry[] = [];
  private readonly byName = new Map<string, ZipEntry>();

  constructor(
    private readonly bytes: Uint8Array,
    private readonly source: string,
  ) {
    // Each central-directory record is at least 46 bytes; a count beyond that is corruption, and stopping here
    // keeps a forged entry count from making fflate loop for billions of iterations.
    const maxEntries = Math.floor(bytes.length / 46);
    this.unzip((info) => {
      if (this.entries.length >= maxEntries) {
        throw new TorchCheckpointError(source, 'corrupt zip: central directory lists more entries than the file can hold');
      }
      const e = { name: info.name, size: info.size, originalSize: info.originalSize, compression: info.compression };
      this.entries.push(e);
      if (!this.byName.has(e.name)) this.byName.set(e.name, e);
      return false;
    });
  }

  private unzip(filter: (info: ZipEntry) => boolean): Record<string, Uint8Array> {
    try {
      return unzipSync(this.bytes, { filter });
    } catch (e) {
      if (e instanceof TorchCheckpointError) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      throw new TorchCheckpointError(this.source, `not a readable zip archive (${msg})`);
    }
  }

  get(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /** The record's bytes; `expected` bytes exactly, else an error naming the record. */
  read(name: string, expected?: number): Uint8Array {
    return this.readMany(new Map([[name, expected]])).get(name)!;
  }

  /** Several records in one pass over the directory; each must have its expected size (when given). */
  readMany(wanted: ReadonlyMap<string, number | undefined>): Map<string, Uint8Array> {
    for (const [name, expected] of wanted) {
      const entry = this.byName.get(name);
      if (!entry) throw new TorchCheckpointError(this.source, `missing record '${name}'`);
      if (entry.compression !== 0 && entry.compression !== 8) {
        throw new TorchCheckpointError(this.source, `record '${name}' uses unsupported zip compression method ${entry.compression}`);
      }
      // Sizes come from the (untrusted) directory and fflate allocates originalSize up front; deflate cannot
      // expand more than ~1032:1, and a stored record is its own size.
      const plausible = entry.compression === 0 ? entry.originalSize === entry.size : entry.originalSize <= entry.size * 1032 + 1024;
      if (!plausible) {
        throw new TorchCheckpointError(this.source, `corrupt zip: record '${name}' claims ${entry.originalSize} bytes from ${entry.size} stored`);
      }
      if (expected !== undefined && entry.originalSize !== expected) {
        throw new TorchCheckpointError(this.source, sizeMismatch(name, entry.originalSize, expected));
      }
    }
    const seen = new Set<string>();
    const files = this.unzip((info) => {
      // First occurrence only, like the listing (torch never writes a name twice).
      const hit = wanted.has(info.name) && !seen.has(info.name);
      if (hit) seen.add(info.name);
      return hit;
    });
    const out = new Map<string, Uint8Array>();
    for (const name of wanted.keys()) {
      const data = files[name];
      if (!data) throw new TorchCheckpointError(this.source, `missing record '${name}'`);
      // Callers build typed views on the result, so it must own an ArrayBuffer starting at offset 0.
      const own = data.byteOffset === 0 && data.buffer.byteLength === data.length ? data : data.slice();
      // fflate clamps a stored entry at the end of the buffer, so a cut-off file shows up as a short record.
      const size = this.byName.get(name)!.originalSize;
      if (own.length !== size) {
        throw new TorchCheckpointError(this.source, `record '${name}' is truncated: the zip directory says ${size} bytes, only ${own.length} are present`);
      }
      out.set(name, own);
    }
    return out;
  }
}

function sizeMismatch(name: string, got: number, expected: number): string {
  return got < expected
    ? `truncated storage record '${name}': ${got} bytes, but the pickle needs ${expected}`
    : `storage record '${name}' has ${got} bytes, but the pickle describes ${expected}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Pickle VM

const OPCODE_NAMES: Readonly<Record<number, string>> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT', 0x4a: 'BININT',
  0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID', 0x51: 'BINPERSID', 0x52: 'REDUCE',
  0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING', 0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND',
  0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT', 0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET',
  0x69: 'INST', 0x6a: 'LONG_BINGET', 0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT',
  0x72: 'LONG_BINPUT', 0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT',
  0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2',
  0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

// Opcodes deliberately left out, with the reason given in the error.
const UNSUPPORTED_WHY: Readonly<Record<string, string>> = {
  INST: 'it instantiates arbitrary classes', OBJ: 'it instantiates arbitrary classes',
  EXT1: 'extension registry codes name arbitrary objects', EXT2: 'extension registry codes name arbitrary objects',
  EXT4: 'extension registry codes name arbitrary objects', PERSID: 'torch storage ids need BINPERSID',
  STRING: 'protocol-0 text strings; torch.save writes protocol 2', UNICODE: 'protocol-0 text strings; torch.save writes protocol 2',
  NEXT_BUFFER: 'out-of-band buffers are not stored in checkpoints', READONLY_BUFFER: 'out-of-band buffers are not stored in checkpoints',
};

/** Raised inside the VM; the caller adds the file, byte position and opcode. */
class PickleFault extends Error {}

type Callable = (args: PickleValue[], vm: PickleContext) => PickleValue;

/** What allowlisted callables may use from the reader. */
interface PickleContext {
  call(fn: PickleValue, args: PickleValue[]): PickleValue;
}

function describeValue(v: PickleValue): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return Object.isFrozen(v) ? `tuple of ${v.length}` : `list of ${v.length}`;
  if (v instanceof PickleDict) return v.pythonClass;
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof Set) return 'set';
  if (v instanceof TorchTensor) return 'tensor';
  if (v instanceof TorchStorage) return 'storage';
  if (v instanceof TorchDevice) return 'torch.device';
  if (v instanceof PickleGlobal) return `global ${v.qualifiedName}`;
  return typeof v === 'string' ? 'str' : typeof v === 'bigint' ? 'int' : typeof v;
}

function asInt(v: PickleValue, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new PickleFault(`${what} must be an int, got ${describeValue(v)}`);
  return v;
}

function asIntList(v: PickleValue, what: string): number[] {
  if (!Array.isArray(v)) throw new PickleFault(`${what} must be a tuple of ints, got ${describeValue(v)}`);
  return v.map((x, i) => {
    const n = asInt(x, `${what}[${i}]`);
    if (n < 0) throw new PickleFault(`${what}[${i}] is negative (${n})`);
    return n;
  });
}

function rebuildTensor(args: PickleValue[], minArgs: number, maxArgs: number, fn: string): TorchTensor {
  if (args.length < minArgs || args.length > maxArgs) {
    throw new PickleFault(`${fn} takes ${minArgs}${maxArgs > minArgs ? `–${maxArgs}` : ''} arguments, got ${args.length}`);
  }
  const [storage, offsetV, sizeV, strideV, requiresGrad] = args;
  if (!(storage instanceof TorchStorage)) throw new PickleFault(`${fn}: first argument must be a storage, got ${describeValue(storage)}`);
  const offset = asInt(offsetV, `${fn} storage_offset`);
  if (offset < 0) throw new PickleFault(`${fn}: negative storage_offset ${offset}`);
  const shape = asIntList(sizeV, `${fn} size`);
  const stride = asIntList(strideV, `${fn} stride`);
  if (stride.length !== shape.length) {
    throw new PickleFault(`${fn}: size [${shape}] and stride [${stride}] have different lengths`);
  }
  let numel = 1;
  let last = offset;
  for (let k = 0; k < shape.length; k++) {
    numel *= shape[k];
    last += (shape[k] - 1) * stride[k];
  }
  if (!Number.isSafeInteger(numel * ITEMSIZE[storage.dtype])) throw new PickleFault(`${fn}: size [${shape}] is too large`);
  if (numel > 0 && last >= storage.numel) {
    throw new PickleFault(
      `tensor of size [${shape}], stride [${stride}], offset ${offset} reaches storage element ${last}, ` +
        `but storage '${storage.key}' has only ${storage.numel} elements`,
    );
  }
  const rg = requiresGrad === undefined ? false : requiresGrad;
  if (typeof rg !== 'boolean') throw new PickleFault(`${fn}: requires_grad must be a bool, got ${describeValue(rg)}`);
  return new TorchTensor(storage.dtype, Object.freeze(shape), Object.freeze(stride), offset, storage, rg);
}

function asIterable(v: PickleValue | undefined, what: string): PickleValue[] {
  if (v === undefined) return [];
  if (Array.isArray(v)) return v;
  if (v instanceof Set) return [...v];
  throw new PickleFault(`${what} needs a list, tuple or set, got ${describeValue(v)}`);
}

const TENSOR_CLASSES = new Set(['torch.Tensor', 'torch._tensor.Tensor', 'torch.nn.parameter.Parameter']);

// Allowlisted callables. Names are module.qualname as they appear in GLOBAL / STACK_GLOBAL.
const CALLABLES: Readonly<Record<string, Callable>> = {
  'torch._utils._rebuild_tensor_v2': (a) => rebuildTensor(a, 6, 7, '_rebuild_tensor_v2'),
  'torch._utils._rebuild_tensor': (a) => rebuildTensor(a, 4, 4, '_rebuild_tensor'),
  'torch._utils._rebuild_parameter': (a) => rebuildParameter(a, 3),
  'torch._utils._rebuild_parameter_with_state': (a) => rebuildParameter(a, 4),
  'torch._tensor._rebuild_from_type_v2': (a, vm) => {
    // Tensor.__reduce_ex__ for tensors carrying Python state: (func, type, args, state).
    const [func, cls, args, state] = a;
    if (!(cls instanceof PickleGlobal) || !TENSOR_CLASSES.has(cls.qualifiedName)) {
      throw new PickleFault(`_rebuild_from_type_v2: tensor class must be torch.Tensor or Parameter, got ${describeValue(cls ?? null)}`);
    }
    if (!Array.isArray(args)) throw new PickleFault('_rebuild_from_type_v2: args must be a tuple');
    const hasState = state instanceof PickleDict ? state.size > 0 : state !== null && state !== undefined;
    if (hasState) throw new PickleFault('_rebuild_from_type_v2: tensors with Python attributes are not supported');
    return vm.call(func ?? null, args);
  },
  'collections.OrderedDict': (a) => {
    const d = new PickleDict('collections.OrderedDict');
    for (const pair of asIterable(a[0], 'OrderedDict')) {
      if (!Array.isArray(pair) || pair.length !== 2) throw new PickleFault('OrderedDict items must be (key, value) pairs');
      d.set(pair[0], pair[1]);
    }
    return d;
  },
  'torch.device': (a) => {
    const [type, index] = a;
    if (typeof type !== 'string') throw new PickleFault(`torch.device: type must be a str, got ${describeValue(type ?? null)}`);
    if (index !== undefined && index !== null) return new TorchDevice(type, asInt(index, 'torch.device index'));
    const m = /^(\w+):(\d+)$/.exec(type);
    return m ? new TorchDevice(m[1], Number(m[2])) : new TorchDevice(type, null);
  },
  'torch.Size': (a) => Object.freeze(asIntList(a[0] ?? [], 'torch.Size')) as PickleValue[],
  'builtins.set': (a) => new Set(asIterable(a[0], 'set')),
  'builtins.frozenset': (a) => new Set(asIterable(a[0], 'frozenset')),
  // Protocol 2 writes b'' as bytes() and other bytes as _codecs.encode(latin-1 text, 'latin1').
  'builtins.bytes': (a) => {
    if (a.length > 0) throw new PickleFault('bytes(...) with arguments is not supported');
    return new Uint8Array(0);
  },
  '_codecs.encode': (a) => {
    const [text, encoding] = a;
    if (typeof text !== 'string' || (encoding !== 'latin1' && encoding !== 'latin-1')) {
      throw new PickleFault("_codecs.encode is only supported as encode(str, 'latin1')");
    }
    return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
  },
};

function rebuildParameter(a: PickleValue[], n: number): TorchTensor {
  if (a.length !== n) throw new PickleFault(`_rebuild_parameter takes ${n} arguments, got ${a.length}`);
  const [data, requiresGrad] = a;
  if (!(data instanceof TorchTensor)) throw new PickleFault(`_rebuild_parameter: data must be a tensor, got ${describeValue(data)}`);
  if (typeof requiresGrad !== 'boolean') throw new PickleFault('_rebuild_parameter: requires_grad must be a bool');
  return data.withRequiresGrad(requiresGrad);
}

// Python 2 module names that protocol-2 pickles use for builtins (pickle's fix_imports).
const MODULE_ALIASES: Readonly<Record<string, string>> = { __builtin__: 'builtins' };

function resolveGlobal(module: string, name: string): PickleGlobal {
  const mod = MODULE_ALIASES[module] ?? module;
  const full = `${mod}.${name}`;
  const allowed = full in CALLABLES || TENSOR_CLASSES.has(full) || (mod === 'torch' && name in STORAGE_DTYPES);
  if (!allowed) {
    throw new PickleFault(
      `disallowed global '${module}.${name}': only tensors, storages and plain containers can be loaded ` +
        '(this reader never imports or calls arbitrary Python objects)',
    );
  }
  return new PickleGlobal(mod, name);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Runs a pickle. `persistentLoad` resolves BINPERSID ids (torch's storage references). Errors name `source`,
 * the byte offset and the opcode.
 */
export function unpickle(bytes: Uint8Array, source: string, persistentLoad?: (pid: PickleValue) => PickleValue): PickleValue {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  let op = -1;
  let opAt = 0;
  let stack: PickleValue[] = [];
  const marks: PickleValue[][] = [];
  const memo = new Map<number, PickleValue>();

  const need = (n: number): void => {
    if (n < 0 || pos + n > bytes.length) {
      throw new PickleFault(`truncated: needs ${n} more bytes at byte ${pos}, but the pickle is ${bytes.length} bytes`);
    }
  };
  const take = (n: number): Uint8Array => {
    need(n);
    const out = bytes.subarray(pos, pos + n);
    pos += n;
    return out;
  };
  const u8 = (): number => take(1)[0];
  const u16 = (): number => { need(2); const v = dv.getUint16(pos, true); pos += 2; return v; };
  const u32 = (): number => { need(4); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const u64 = (): number => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PickleFault(`length ${v} is too large`);
    return Number(v);
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) throw new PickleFault('truncated: unterminated text line');
    const s = decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const decode = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      throw new PickleFault('string is not valid UTF-8');
    }
  };
  const pop = (): PickleValue => {
    if (stack.length === 0) throw new PickleFault('stack underflow');
    return stack.pop() as PickleValue;
  };
  const top = (): PickleValue => {
    if (stack.length === 0) throw new PickleFault('stack underflow');
    return stack[stack.length - 1];
  };
  // Callers must bind the result before touching `stack`: this swaps `stack` for the enclosing frame.
  const popMark = (): PickleValue[] => {
    const items = stack;
    const prev = marks.pop();
    if (!prev) throw new PickleFault('no MARK on the stack');
    stack = prev;
    return items;
  };
  const tuple = (items: PickleValue[]): PickleValue[] => Object.freeze(items) as PickleValue[];
  const signedLE = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return intValue(v);
  };
  const intValue = (v: bigint): number | bigint =>
    v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  const parseIntText = (s: string): number | bigint => {
    const t = s.endsWith('L') ? s.slice(0, -1) : s;
    if (!/^[+-]?\d+$/.test(t)) throw new PickleFault(`bad integer literal ${JSON.stringify(s)}`);
    return intValue(BigInt(t));
  };
  const memoGet = (i: number): PickleValue => {
    if (!memo.has(i)) throw new PickleFault(`memo key ${i} is not defined`);
    return memo.get(i) as PickleValue;
  };
  const setItems = (target: PickleValue, items: PickleValue[]): void => {
    if (!(target instanceof PickleDict)) throw new PickleFault(`SETITEM(S) on ${describeValue(target)}`);
    if (items.length % 2) throw new PickleFault('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
  };
  const appendItems = (target: PickleValue, items: PickleValue[]): void => {
    if (!Array.isArray(target) || Object.isFrozen(target)) throw new PickleFault(`APPEND(S) on ${describeValue(target)}`);
    for (const x of items) target.push(x);
  };
  const ctx: PickleContext = {
    call(fn, args) {
      if (!(fn instanceof PickleGlobal)) throw new PickleFault(`cannot call ${describeValue(fn)}`);
      const impl = CALLABLES[fn.qualifiedName];
      if (!impl) throw new PickleFault(`${fn.qualifiedName} is allowed as a value but cannot be called`);
      return impl(args, ctx);
    },
  };
  const callArgs = (v: PickleValue): PickleValue[] => {
    if (!Array.isArray(v)) throw new PickleFault(`call arguments must be a tuple, got ${describeValue(v)}`);
    return v;
  };

  try {
    for (;;) {
      opAt = pos;
      op = u8();
      switch (op) {
        case 0x80: { // PROTO
          const p = u8();
          if (p > 5) throw new PickleFault(`unsupported pickle protocol ${p}`);
          break;
        }
        case 0x95: u64(); break; // FRAME: a length hint only; opcodes continue inline
        case 0x2e: { // STOP
          if (marks.length > 0) throw new PickleFault('STOP with an unclosed MARK');
          if (stack.length !== 1) throw new PickleFault(`STOP with ${stack.length} values on the stack (expected 1)`);
          if (pos !== bytes.length) throw new PickleFault(`${bytes.length - pos} trailing bytes after STOP`);
          return stack[0];
        }
        case 0x28: marks.push(stack); stack = []; break; // MARK
        case 0x30: pop(); break; // POP
        case 0x31: popMark(); break; // POP_MARK
        case 0x32: stack.push(top()); break; // DUP
        case 0x4e: stack.push(null); break; // NONE
        case 0x88: stack.push(true); break; // NEWTRUE
        case 0x89: stack.push(false); break; // NEWFALSE
        case 0x49: { // INT (text); "00"/"01" are protocol 0's False/True
          const s = line();
          stack.push(s === '00' ? false : s === '01' ? true : parseIntText(s));
          break;
        }
        case 0x4a: need(4); stack.push(dv.getInt32(pos, true)); pos += 4; break; // BININT
        case 0x4b: stack.push(u8()); break; // BININT1
        case 0x4d: stack.push(u16()); break; // BININT2
        case 0x4c: stack.push(parseIntText(line())); break; // LONG (text)
        case 0x8a: stack.push(signedLE(take(u8()))); break; // LONG1
        case 0x8b: { // LONG4
          const n = dv.getInt32((need(4), pos), true);
          pos += 4;
          if (n < 0) throw new PickleFault('negative LONG4 length');
          stack.push(signedLE(take(n)));
          break;
        }
        case 0x46: { // FLOAT (text)
          const s = line();
          const v = Number(s);
          if (Number.isNaN(v) && !/^[+-]?nan$/i.test(s)) throw new PickleFault(`bad float literal ${JSON.stringify(s)}`);
          stack.push(v);
          break;
        }
        case 0x47: need(8); stack.push(dv.getFloat64(pos, false)); pos += 8; break; // BINFLOAT (big-endian)
        case 0x58: stack.push(decode(take(u32()))); break; // BINUNICODE
        case 0x8c: stack.push(decode(take(u8()))); break; // SHORT_BINUNICODE
        case 0x8d: stack.push(decode(take(u64()))); break; // BINUNICODE8
        // Python 2 str; torch.load decodes these with encoding='utf-8', and so do we.
        case 0x54: { // BINSTRING
          const n = dv.getInt32((need(4), pos), true);
          pos += 4;
          if (n < 0) throw new PickleFault('negative BINSTRING length');
          stack.push(decode(take(n)));
          break;
        }
        case 0x55: stack.push(decode(take(u8()))); break; // SHORT_BINSTRING
        case 0x42: stack.push(take(u32()).slice()); break; // BINBYTES
        case 0x43: stack.push(take(u8()).slice()); break; // SHORT_BINBYTES
        case 0x8e: case 0x96: stack.push(take(u64()).slice()); break; // BINBYTES8, BYTEARRAY8
        case 0x5d: stack.push([]); break; // EMPTY_LIST
        case 0x6c: { const items = popMark(); stack.push(items); break; } // LIST
        case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND
        case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
        case 0x29: stack.push(tuple([])); break; // EMPTY_TUPLE
        case 0x74: { const items = popMark(); stack.push(tuple(items)); break; } // TUPLE
        case 0x85: stack.push(tuple([pop()])); break; // TUPLE1
        case 0x86: { const b = pop(); const a = pop(); stack.push(tuple([a, b])); break; } // TUPLE2
        case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push(tuple([a, b, c])); break; } // TUPLE3
        case 0x7d: stack.push(new PickleDict()); break; // EMPTY_DICT
        case 0x64: { const d = new PickleDict(); setItems(d, popMark()); stack.push(d); break; } // DICT
        case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
        case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
        case 0x8f: stack.push(new Set()); break; // EMPTY_SET
        case 0x90: { // ADDITEMS
          const items = popMark();
          const s = top();
          if (!(s instanceof Set)) throw new PickleFault(`ADDITEMS on ${describeValue(s)}`);
          for (const x of items) s.add(x);
          break;
        }
        case 0x91: { const items = popMark(); stack.push(new Set(items)); break; } // FROZENSET
        case 0x63: { const module = line(); const name = line(); stack.push(resolveGlobal(module, name)); break; } // GLOBAL
        case 0x93: { // STACK_GLOBAL
          const name = pop();
          const module = pop();
          if (typeof module !== 'string' || typeof name !== 'string') throw new PickleFault('STACK_GLOBAL needs two strings');
          stack.push(resolveGlobal(module, name));
          break;
        }
        case 0x52: { const args = callArgs(pop()); const fn = pop(); stack.push(ctx.call(fn, args)); break; } // REDUCE
        case 0x81: { const args = callArgs(pop()); const cls = pop(); stack.push(ctx.call(cls, args)); break; } // NEWOBJ
        case 0x92: { // NEWOBJ_EX
          const kwargs = pop();
          const args = callArgs(pop());
          const cls = pop();
          if (!(kwargs instanceof PickleDict) || kwargs.size > 0) throw new PickleFault('NEWOBJ_EX with keyword arguments is not supported');
          stack.push(ctx.call(cls, args));
          break;
        }
        case 0x62: { // BUILD
          let state = pop();
          const inst = top();
          // (instance dict, slots dict) form: only the instance dict matters for the containers we build.
          if (Array.isArray(state) && state.length === 2) state = state[0];
          if (state === null) break;
          if (!(inst instanceof PickleDict) || !(state instanceof PickleDict)) {
            throw new PickleFault(`BUILD of ${describeValue(inst)} with ${describeValue(state)} state is not supported`);
          }
          inst.attributes ??= new PickleDict();
          for (const [k, v] of state) inst.attributes.set(k, v);
          break;
        }
        case 0x51: { // BINPERSID
          const pid = pop();
          if (!persistentLoad) throw new PickleFault('persistent id without a persistent_load');
          stack.push(persistentLoad(pid));
          break;
        }
        case 0x67: { // GET (text)
          const s = line();
          if (!/^\d+$/.test(s)) throw new PickleFault(`bad memo key ${JSON.stringify(s)}`);
          stack.push(memoGet(Number(s)));
          break;
        }
        case 0x68: stack.push(memoGet(u8())); break; // BINGET
        case 0x6a: stack.push(memoGet(u32())); break; // LONG_BINGET
        case 0x70: { // PUT (text)
          const s = line();
          if (!/^\d+$/.test(s)) throw new PickleFault(`bad memo key ${JSON.stringify(s)}`);
          memo.set(Number(s), top());
          break;
        }
        case 0x71: memo.set(u8(), top()); break; // BINPUT
        case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
        case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
        default: {
          const name = OPCODE_NAMES[op];
          if (!name) throw new PickleFault(`unknown opcode 0x${op.toString(16).padStart(2, '0')} (corrupt pickle?)`);
          throw new PickleFault(`opcode ${name} is not supported (${UNSUPPORTED_WHY[name] ?? 'not needed for checkpoints'})`);
        }
      }
    }
  } catch (e) {
    if (e instanceof PickleFault) {
      const at = OPCODE_NAMES[op] ? ` (opcode ${OPCODE_NAMES[op]} at byte ${opAt})` : ` (at byte ${opAt})`;
      throw new TorchCheckpointError(source, `pickle: ${e.message}${at}`);
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// torch.save archives

const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

function startsWith(bytes: Uint8Array, prefix: readonly number[], at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  return prefix.every((b, i) => bytes[at + i] === b);
}

function notAZip(bytes: Uint8Array, source: string): TorchCheckpointError {
  if (startsWith(bytes, LEGACY_MAGIC)) {
    return new TorchCheckpointError(
      source,
      'legacy (pre-1.6, or _use_new_zipfile_serialization=False) torch.save format is not supported; ' +
        're-save it with torch.save(torch.load(path), path) under PyTorch >= 1.6',
    );
  }
  if (startsWith(bytes, [0x75, 0x73, 0x74, 0x61, 0x72], 257)) {
    return new TorchCheckpointError(source, 'tar-based legacy torch.save format is not supported; re-save it under PyTorch >= 1.6');
  }
  const head = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  return new TorchCheckpointError(
    source,
    `not a PyTorch checkpoint: expected a zip archive (torch.save since PyTorch 1.6), but the file starts with ${head || '(empty file)'}`,
  );
}

/**
 * Decodes a torch.save archive already in memory. `source` (the path) prefixes every error. Tensors keep a
 * reference to `bytes` and extract their storage on first `data` access.
 */
export function parseTorchCheckpoint(bytes: Uint8Array, source = '<buffer>'): PickleValue {
  if (!startsWith(bytes, [0x50, 0x4b, 0x03, 0x04])) throw notAZip(bytes, source);
  const zip = new ZipArchive(bytes, source);
  if (zip.entries.length === 0) throw new TorchCheckpointError(source, 'zip archive is empty');
  const first = zip.entries[0].name;
  const slash = first.indexOf('/');
  if (slash <= 0) throw new TorchCheckpointError(source, `not a torch.save archive: first entry '${first}' is not inside a directory`);
  const prefix = first.slice(0, slash + 1);
  const pklName = `${prefix}data.pkl`;
  if (!zip.get(pklName)) {
    const torchscript = zip.get(`${prefix}constants.pkl`) !== undefined;
    throw new TorchCheckpointError(
      source,
      torchscript
        ? 'this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint'
        : `not a torch.save archive: no '${pklName}' record`,
    );
  }

  const versionName = zip.get(`${prefix}.data/version`) ? `${prefix}.data/version` : `${prefix}version`;
  if (!zip.get(versionName)) throw new TorchCheckpointError(source, `not a torch.save archive: no '${prefix}version' record`);
  const versionText = new TextDecoder().decode(zip.read(versionName)).trim();
  if (!/^\d+$/.test(versionText)) {
    throw new TorchCheckpointError(source, `record '${versionName}' is not a version number: ${JSON.stringify(versionText.slice(0, 20))}`);
  }

  let bigEndian = false;
  const byteorderName = `${prefix}byteorder`;
  if (zip.get(byteorderName)) {
    const order = new TextDecoder().decode(zip.read(byteorderName));
    if (order !== 'little' && order !== 'big') {
      throw new TorchCheckpointError(source, `record '${byteorderName}' must be "little" or "big", got ${JSON.stringify(order.slice(0, 20))}`);
    }
    bigEndian = order === 'big';
  }

  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (pid: PickleValue): PickleValue => {
    if (!Array.isArray(pid) || pid.length !== 5) {
      throw new PickleFault(`persistent id must be a 5-tuple ('storage', type, key, location, numel), got ${describeValue(pid)}`);
    }
    const [typename, storageType, keyV, locationV, numelV] = pid.map((x) => (x instanceof Uint8Array ? new TextDecoder().decode(x) : x));
    if (typename !== 'storage') throw new PickleFault(`unknown persistent id type ${JSON.stringify(typename)}`);
    if (!(storageType instanceof PickleGlobal) || storageType.module !== 'torch' || !(storageType.name in STORAGE_DTYPES)) {
      throw new PickleFault(`persistent id storage type must be a torch storage class, got ${describeValue(storageType)}`);
    }
    if (typeof keyV !== 'string' || typeof locationV !== 'string') throw new PickleFault('persistent id key and location must be strings');
    const dtype = STORAGE_DTYPES[storageType.name];
    const numel = asInt(numelV, 'storage numel');
    if (numel < 0) throw new PickleFault(`storage '${keyV}' has negative numel ${numel}`);
    const cached = storages.get(keyV);
    if (cached) {
      if (cached.dtype !== dtype) throw new PickleFault(`storage '${keyV}' is referenced as both ${cached.dtype} and ${dtype}`);
      return cached;
    }
    const name = `${prefix}data/${keyV}`;
    const nbytes = numel * ITEMSIZE[dtype];
    const entry = zip.get(name);
    if (!entry) throw new PickleFault(`missing storage record '${name}' (storage key '${keyV}', ${numel} × ${dtype})`);
    if (entry.originalSize !== nbytes) throw new PickleFault(`${sizeMismatch(name, entry.originalSize, nbytes)} (${numel} × ${dtype})`);
    const storage = new TorchStorage(keyV, dtype, numel, locationV);
    origins.set(storage, { zip, record: name, bigEndian, itemsize: ITEMSIZE[dtype] });
    storages.set(keyV, storage);
    return storage;
  };
  return unpickle(zip.read(pklName), `${source} (${pklName})`, persistentLoad);
}

/** Reads a `torch.save` file (PyTorch ≥ 1.6 zip format) into plain JS values; see the module comment. */
export async function readTorchCheckpoint(path: string): Promise<PickleValue> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new TorchCheckpointError(path, `cannot read: ${e instanceof Error ? e.message : String(e)}`);
  }
  return parseTorchCheckpoint(bytes, path);
}
