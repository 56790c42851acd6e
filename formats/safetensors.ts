/**
 * safetensors reader/writer (https://github.com/huggingface/safetensors), pure TypeScript on bytes,
 * plus file helpers with atomic writes.
 *
 * Layout: u64 little-endian header length N, N bytes of UTF-8 JSON
 * `{"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}`,
 * then the data buffer; offsets are relative to the start of the data buffer.
 *
 * Reading is strict: every tensor must have a supported dtype, a valid shape, offsets whose span
 * equals dtype x shape bytes, and the tensors must tile the data buffer exactly (no gaps, overlaps,
 * truncation or trailing bytes). Unknown fields in a tensor entry and duplicate JSON keys are errors.
 * Each error names the file and the tensor.
 *
 * Writing matches the reference Rust `serialize` (which the Python package calls) byte for byte:
 * "__metadata__" first, tensors sorted by descending dtype (alignment) then name, compact JSON,
 * header padded with spaces to a multiple of 8, data in header order. Two choices are ours where the
 * reference is unordered or optional: metadata keys are sorted, and empty metadata is omitted.
 */
import { SourceError } from '../engine/errors.js';
import { readFileBytes, writeFileAtomic } from '../engine/files.js';
import { arrayTypeName, bytesPerElement, firstNonBoolByte, HOST_LITTLE_ENDIAN, isArrayOf, ownCopy, viewElements, type ArrayKind } from './typed-arrays.js';

export type SafetensorsDtype =
  | 'F64' | 'F32' | 'F16' | 'BF16'
  | 'I64' | 'I32' | 'I16' | 'I8'
  | 'U64' | 'U32' | 'U16' | 'U8'
  | 'BOOL';

/** Host typed array per dtype. F16 and BF16 are kept as raw 16-bit patterns; BOOL as 0/1 bytes. */
export interface SafetensorsDataMap {
  F64: Float64Array;
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I64: BigInt64Array;
  I32: Int32Array;
  I16: Int16Array;
  I8: Int8Array;
  U64: BigUint64Array;
  U32: Uint32Array;
  U16: Uint16Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
}

export type SafetensorsTypedArray = SafetensorsDataMap[SafetensorsDtype];

export interface SafetensorsTensorOf<D extends SafetensorsDtype> {
  dtype: D;
  /** Row-major shape; [] for a scalar. */
  shape: number[];
  /** Row-major elements, length = product(shape); owns its (aligned) buffer. */
  data: SafetensorsDataMap[D];
}

/** Discriminated on `dtype`, so narrowing the dtype narrows `data`. */
export type SafetensorsTensor<D extends SafetensorsDtype = SafetensorsDtype> = D extends SafetensorsDtype
  ? SafetensorsTensorOf<D>
  : never;

export interface SafetensorsFile {
  /** In file (data offset) order. */
  tensors: Map<string, SafetensorsTensor>;
  /** The "__metadata__" map; {} when the file has none. */
  metadata: Record<string, string>;
}

/** A malformed safetensors input, invalid tensor to encode, or spec mismatch; the message names the source. */
export class SafetensorsError extends SourceError {
  override name = 'SafetensorsError';
}

// Where each dtype's elements live on the host (F16/BF16 as raw bits, BOOL as 0/1 bytes).
const ARRAY_KIND: Record<SafetensorsDtype, ArrayKind> = {
  F64: 'Float64Array', F32: 'Float32Array', F16: 'Uint16Array', BF16: 'Uint16Array', I64: 'BigInt64Array',
  I32: 'Int32Array', I16: 'Int16Array', I8: 'Int8Array', U64: 'BigUint64Array', U32: 'Uint32Array',
  U16: 'Uint16Array', U8: 'Uint8Array', BOOL: 'Uint8Array',
};

const ITEMSIZE = Object.fromEntries(
  Object.entries(ARRAY_KIND).map(([d, kind]) => [d, bytesPerElement(kind)]),
) as Record<SafetensorsDtype, number>;

/** Bytes per element of a dtype (the .pth reader names its element types the same way). */
export function safetensorsItemSize(dtype: SafetensorsDtype): number {
  return ITEMSIZE[dtype];
}
const DTYPES = Object.keys(ITEMSIZE) as SafetensorsDtype[];

// Declaration order of the reference `enum Dtype` (derives Ord); the writer sorts descending by it
// so wider (more aligned) dtypes come first and every tensor starts aligned to its element size.
const REFERENCE_DTYPE_ORDER = [
  'BOOL', 'F4', 'F6_E2M3', 'F6_E3M2', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0', 'F8_E4M3FNUZ',
  'F8_E5M2FNUZ', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'C64', 'F64', 'I64', 'U64',
];

// Same bound as the reference reader: a larger header is corruption, not a model.
const MAX_HEADER_SIZE = 100_000_000;
const HEADER_ALIGN = 8;

const EXPECTED_ARRAY: Record<SafetensorsDtype, string> = {
  F64: 'Float64Array', F32: 'Float32Array', F16: 'Uint16Array (raw half bits)', BF16: 'Uint16Array (raw bfloat16 bits)',
  I64: 'BigInt64Array', I32: 'Int32Array', I16: 'Int16Array', I8: 'Int8Array', U64: 'BigUint64Array',
  U32: 'Uint32Array', U16: 'Uint16Array', U8: 'Uint8Array', BOOL: 'Uint8Array (0/1)',
};

function isDtype(x: unknown): x is SafetensorsDtype {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(ITEMSIZE, x);
}

/** The typed array that holds `count` elements of `dtype` at the start of `buf` (F16/BF16 as raw bits). */
export function viewAs(dtype: SafetensorsDtype, buf: ArrayBuffer, count: number): SafetensorsTypedArray {
  return viewElements(ARRAY_KIND[dtype], buf, count) as SafetensorsTypedArray;
}

function fmtShape(shape: readonly unknown[]): string {
  return `[${shape.join(',')}]`;
}

function isNonNegInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/**
 * Keys of the top-level JSON object, in order, including duplicates (which JSON.parse would merge
 * silently). Assumes `text` already parsed as JSON, so only strings and nesting need tracking.
 */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
      if (depth === 1 && expectKey) {
        keys.push(JSON.parse(text.slice(start, i + 1)) as string);
        expectKey = false;
      }
    } else if (c === '{' || c === '[') {
      depth++;
      if (depth === 1 && c === '{') expectKey = true;
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return keys;
}

interface RawEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
  count: number;
}

function checkEntry(name: string, info: unknown, source: string): RawEntry {
  const at = `tensor '${name}'`;
  if (!isPlainObject(info)) throw new SafetensorsError(source, `${at}: header entry must be an object, got ${JSON.stringify(info)}`);
  const extra = Object.keys(info).filter((k) => k !== 'dtype' && k !== 'shape' && k !== 'data_offsets');
  if (extra.length > 0) throw new SafetensorsError(source, `${at}: unknown field(s) ${extra.map((k) => JSON.stringify(k)).join(', ')}`);
  const { dtype, shape, data_offsets: offsets } = info;
  if (!isDtype(dtype)) {
    const known = typeof dtype === 'string' && REFERENCE_DTYPE_ORDER.includes(dtype);
    throw new SafetensorsError(
      source,
      `${at}: ${known ? 'unsupported' : 'unknown'} dtype ${JSON.stringify(dtype)} (supported: ${DTYPES.join(', ')})`,
    );
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
    throw new SafetensorsError(source, `${at}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt) || offsets[0] > offsets[1]) {
    throw new SafetensorsError(source, `${at}: data_offsets must be [begin, end] with 0 <= begin <= end, got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  let count = 1;
  for (const d of shape) count *= d;
  const nbytes = count * ITEMSIZE[dtype];
  if (!Number.isSafeInteger(nbytes)) throw new SafetensorsError(source, `${at}: shape ${fmtShape(shape)} is too large`);
  if (end - begin !== nbytes) {
    throw new SafetensorsError(
      source,
      `${at}: data_offsets [${begin},${end}] span ${end - begin} bytes but ${dtype} ${fmtShape(shape)} needs ${nbytes}`,
    );
  }
  return { name, dtype, shape: shape.slice(), begin, end, count };
}

/** Parses a whole safetensors file. `source` (a path or label) prefixes every error message. */
export function parseSafetensors(bytes: Uint8Array, source = '<buffer>'): SafetensorsFile {
  if (!HOST_LITTLE_ENDIAN) throw new SafetensorsError(source, 'big-endian hosts are not supported');
  if (bytes.length < 8) {
    throw new SafetensorsError(source, `truncated: file is ${bytes.length} bytes, too short for the 8-byte header length`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = dv.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER_SIZE)) {
    throw new SafetensorsError(source, `header length ${n64} exceeds the ${MAX_HEADER_SIZE}-byte limit (corrupt or not a safetensors file)`);
  }
  const n = Number(n64);
  if (n < 2) throw new SafetensorsError(source, `header length ${n} is too small for a JSON object`);
  if (8 + n > bytes.length) {
    throw new SafetensorsError(
      source,
      `truncated header: header length ${n} needs at least ${8 + n} bytes but the file is ${bytes.length} bytes`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n));
  } catch {
    throw new SafetensorsError(source, 'header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(source, `header is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!isPlainObject(header)) throw new SafetensorsError(source, 'header JSON must be an object');
  const seen = new Set<string>();
  for (const k of topLevelKeys(text)) {
    if (seen.has(k)) throw new SafetensorsError(source, `duplicate header key ${JSON.stringify(k)}`);
    seen.add(k);
  }

  let metadata: Record<string, string> = {};
  const entries: RawEntry[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isPlainObject(info) || !Object.values(info).every((v) => typeof v === 'string')) {
        throw new SafetensorsError(source, `__metadata__ must be an object of string values, got ${JSON.stringify(info)}`);
      }
      // fromEntries defines own properties, so a "__proto__" key stays data, not a prototype.
      metadata = Object.fromEntries(Object.entries(info as Record<string, string>));
      continue;
    }
    entries.push(checkEntry(name, info, source));
  }

  // Files from older writers may list tensors in any order; layout is checked in offset order.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: RawEntry | undefined;
  for (const e of entries) {
    if (e.begin < pos) {
      throw new SafetensorsError(source, `tensor '${e.name}': data_offsets [${e.begin},${e.end}] overlap tensor '${prev?.name}' (ends at ${pos})`);
    }
    if (e.begin > pos) {
      const after = prev ? `after tensor '${prev.name}' (ends at ${pos})` : 'at the start of the data buffer';
      throw new SafetensorsError(source, `tensor '${e.name}': gap of ${e.begin - pos} unreferenced bytes ${after}`);
    }
    pos = e.end;
    prev = e;
  }
  const dataStart = 8 + n;
  const expectedSize = dataStart + pos;
  if (bytes.length < expectedSize) {
    const cut = entries.find((e) => dataStart + e.end > bytes.length);
    throw new SafetensorsError(
      source,
      `truncated: header describes ${pos} data bytes, so the file should be ${expectedSize} bytes, but it is ${bytes.length} bytes` +
        (cut ? ` (tensor '${cut.name}' at data_offsets [${cut.begin},${cut.end}] is cut off)` : ''),
    );
  }
  if (bytes.length > expectedSize) {
    throw new SafetensorsError(
      source,
      `trailing bytes: header describes ${pos} data bytes (file size ${expectedSize}) but the file is ${bytes.length} bytes (${bytes.length - expectedSize} extra, not covered by any tensor)`,
    );
  }

  const tensors = new Map<string, SafetensorsTensor>();
  for (const e of entries) {
    const raw = ownCopy(bytes, dataStart + e.begin, dataStart + e.end);
    if (e.dtype === 'BOOL') {
      const bad = firstNonBoolByte(raw);
      if (bad >= 0) throw new SafetensorsError(source, `tensor '${e.name}': invalid BOOL byte ${raw[bad]} at element ${bad} (must be 0 or 1)`);
    }
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: viewAs(e.dtype, raw.buffer, e.count) } as SafetensorsTensor);
  }
  return { tensors, metadata };
}

/** No lone surrogates: such strings cannot be encoded as UTF-8 and would not round-trip. */
function isWellFormed(s: string): boolean {
  // In 'u' mode paired surrogates form one code point, so \p{Cs} only matches lone halves.
  return !/\p{Cs}/u.test(s);
}

function checkTensor(name: string, t: SafetensorsTensor, source: string): void {
  const at = `tensor '${name}'`;
  if (name === '__metadata__') throw new SafetensorsError(source, `"__metadata__" is reserved and cannot be a tensor name`);
  if (!isWellFormed(name)) throw new SafetensorsError(source, `${at}: name is not well-formed Unicode`);
  const { dtype, shape, data } = t as { dtype: unknown; shape: unknown; data: unknown };
  if (!isDtype(dtype)) {
    throw new SafetensorsError(source, `${at}: unsupported dtype ${JSON.stringify(dtype)} (supported: ${DTYPES.join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
    throw new SafetensorsError(source, `${at}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  }
  if (!isArrayOf(ARRAY_KIND[dtype], data)) {
    throw new SafetensorsError(source, `${at}: dtype ${dtype} needs ${EXPECTED_ARRAY[dtype]} data, got ${arrayTypeName(data)}`);
  }
  let count = 1;
  for (const d of shape) count *= d;
  const len = (data as SafetensorsTypedArray).length;
  if (count !== len) {
    throw new SafetensorsError(source, `${at}: shape ${fmtShape(shape)} implies ${count} elements but data has ${len}`);
  }
  if (dtype === 'BOOL') {
    const bad = firstNonBoolByte(data as Uint8Array);
    if (bad >= 0) throw new SafetensorsError(source, `${at}: invalid BOOL value ${(data as Uint8Array)[bad]} at element ${bad} (must be 0 or 1)`);
  }
}

const utf8 = new TextEncoder();

/** Rust `String` ordering: lexicographic by UTF-8 bytes (differs from JS UTF-16 order above U+FFFF). */
function compareUtf8(a: string, b: string): number {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  const m = Math.min(x.length, y.length);
  for (let i = 0; i < m; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** Encodes tensors the way the reference implementation serializes them (see module comment). */
export function encodeSafetensors(
  tensors: ReadonlyMap<string, SafetensorsTensor> | Readonly<Record<string, SafetensorsTensor>>,
  metadata?: Readonly<Record<string, string>>,
  source = 'encodeSafetensors',
): Uint8Array {
  if (!HOST_LITTLE_ENDIAN) throw new SafetensorsError(source, 'big-endian hosts are not supported');
  const list: Array<[string, SafetensorsTensor]> =
    tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors as Record<string, SafetensorsTensor>);
  for (const [name, t] of list) checkTensor(name, t, source);
  const rank = (d: SafetensorsDtype): number => REFERENCE_DTYPE_ORDER.indexOf(d);
  list.sort(([an, at], [bn, bt]) => rank(bt.dtype) - rank(at.dtype) || compareUtf8(an, bn));

  const parts: string[] = [];
  if (metadata !== undefined) {
    const mentries = Object.entries(metadata);
    for (const [k, v] of mentries) {
      if (typeof v !== 'string') throw new SafetensorsError(source, `metadata ${JSON.stringify(k)}: value must be a string, got ${typeof v}`);
      if (!isWellFormed(k) || !isWellFormed(v)) throw new SafetensorsError(source, `metadata ${JSON.stringify(k)}: not well-formed Unicode`);
    }
    if (mentries.length > 0) {
      mentries.sort(([a], [b]) => compareUtf8(a, b));
      parts.push(`"__metadata__":{${mentries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`);
    }
  }
  let offset = 0;
  for (const [name, t] of list) {
    const nbytes = t.data.byteLength;
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + nbytes}]}`,
    );
    offset += nbytes;
  }
  const json = utf8.encode(`{${parts.join(',')}}`);
  const n = Math.ceil(json.length / HEADER_ALIGN) * HEADER_ALIGN;
  if (n > MAX_HEADER_SIZE) throw new SafetensorsError(source, `header would be ${n} bytes, over the ${MAX_HEADER_SIZE}-byte limit`);

  const out = new Uint8Array(8 + n + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + n);
  let p = 8 + n;
  for (const [, t] of list) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), p);
    p += t.data.byteLength;
  }
  return out;
}

/** Reads and parses a safetensors file; errors name the path. */
export async function loadSafetensors(path: string): Promise<SafetensorsFile> {
  return parseSafetensors(await readFileBytes(path), path);
}

/** Encodes and atomically writes a safetensors file. */
export async function saveSafetensors(
  path: string,
  tensors: ReadonlyMap<string, SafetensorsTensor> | Readonly<Record<string, SafetensorsTensor>>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata, path));
}

export { validateAgainstSpec, type TensorSpec } from './safetensors-spec.js';
