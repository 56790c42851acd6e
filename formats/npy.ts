/**
 * numpy `.npy` reader/writer (format versions 1.0, 2.0 and 3.0), pure TypeScript on bytes,
 * plus file helpers with atomic writes.
 *
 * Read-side policy:
 * - Big-endian arrays ('>f4', '>i8', ...) are byte-swapped to little-endian on read.
 * - Fortran-order arrays are transposed to C order on read, so `fortranOrder` is always false.
 * - Only plain numeric/bool dtypes are supported (see NpyDtype); structured, string, object,
 *   complex and datetime dtypes are rejected with an error naming the descr.
 * - Bool arrays must hold only 0/1 bytes; data shorter or longer than the shape implies is an error.
 *
 * Write-side: `encodeNpy` reproduces numpy 2.x `np.save` byte for byte (C order, little-endian).
 */
import { SourceError } from '../engine/errors.js';
import { readFileBytes, writeFileAtomic } from '../engine/files.js';
import { f16BitsToNumber } from '../engine/tensor.js';
import { arrayTypeName, bytesPerElement, firstNonBoolByte, HOST_LITTLE_ENDIAN, isArrayOf, ownCopy, viewElements, type ArrayKind } from './typed-arrays.js';
import { HeaderSyntaxError, PyLiteralParser, pyRepr, type PyValue } from './python-literal.js';

export type NpyDtype = 'f2' | 'f4' | 'f8' | 'i1' | 'u1' | 'i2' | 'u2' | 'i4' | 'u4' | 'i8' | 'u8' | 'b1';

/** Host typed array for each dtype. f2 is kept as raw IEEE half bits; b1 as 0/1 bytes. */
export interface NpyDataMap {
  f2: Uint16Array;
  f4: Float32Array;
  f8: Float64Array;
  i1: Int8Array;
  u1: Uint8Array;
  i2: Int16Array;
  u2: Uint16Array;
  i4: Int32Array;
  u4: Uint32Array;
  i8: BigInt64Array;
  u8: BigUint64Array;
  b1: Uint8Array;
}

export type NpyTypedArray = NpyDataMap[NpyDtype];

export interface NpyArrayOf<D extends NpyDtype> {
  dtype: D;
  /** C-order shape; [] for a 0-d scalar. */
  shape: number[];
  /** Row-major (C order) elements, length = product(shape). */
  data: NpyDataMap[D];
  /** Always false: Fortran-order files are transposed on read and never written. */
  fortranOrder: false;
}

/** Discriminated on `dtype`, so narrowing the dtype narrows `data`. */
export type NpyArray<D extends NpyDtype = NpyDtype> = D extends NpyDtype ? NpyArrayOf<D> : never;

/** A malformed or unsupported .npy input (or invalid array to encode); the message names the source. */
export class NpyError extends SourceError {
  override name = 'NpyError';
}

// Where each dtype's elements live on the host (f2 as raw half bits, b1 as 0/1 bytes).
const ARRAY_KIND: Record<NpyDtype, ArrayKind> = {
  f2: 'Uint16Array', f4: 'Float32Array', f8: 'Float64Array', i1: 'Int8Array', u1: 'Uint8Array', i2: 'Int16Array',
  u2: 'Uint16Array', i4: 'Int32Array', u4: 'Uint32Array', i8: 'BigInt64Array', u8: 'BigUint64Array', b1: 'Uint8Array',
};

const ITEMSIZE = Object.fromEntries(
  Object.entries(ARRAY_KIND).map(([d, kind]) => [d, bytesPerElement(kind)]),
) as Record<NpyDtype, number>;

const DTYPES = Object.keys(ITEMSIZE) as NpyDtype[];

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
const ARRAY_ALIGN = 64;
// numpy pads the header so shape[0] can grow in place up to this many digits.
const GROWTH_AXIS_MAX_DIGITS = 21;
// Real headers for supported dtypes are ~128 bytes; a huge one is corruption, not data.
const MAX_HEADER_BYTES = 1 << 20;

// Refuse loudly on a big-endian host rather than produce byte-swapped values.
function assertLittleEndianHost(source: string): void {
  if (!HOST_LITTLE_ENDIAN) throw new NpyError(source, 'big-endian hosts are not supported');
}

export function npyItemSize(dtype: NpyDtype): number {
  return ITEMSIZE[dtype];
}

function viewAs(dtype: NpyDtype, buf: ArrayBuffer, count: number): NpyTypedArray {
  return viewElements(ARRAY_KIND[dtype], buf, count) as NpyTypedArray;
}

const EXPECTED_ARRAY: Record<NpyDtype, string> = {
  f2: 'Uint16Array (raw half bits)', f4: 'Float32Array', f8: 'Float64Array', i1: 'Int8Array',
  u1: 'Uint8Array', i2: 'Int16Array', u2: 'Uint16Array', i4: 'Int32Array', u4: 'Uint32Array',
  i8: 'BigInt64Array', u8: 'BigUint64Array', b1: 'Uint8Array (0/1)',
};

function shapeStr(shape: readonly number[]): string {
  return `(${shape.join(', ')}${shape.length === 1 ? ',' : ''})`;
}

interface ParsedDescr {
  dtype: NpyDtype;
  bigEndian: boolean;
}

function parseDescr(descr: PyValue, source: string): ParsedDescr {
  const supported = `supported: ${DTYPES.map((d) => `'${ITEMSIZE[d] === 1 ? '|' : '<'}${d}'`).join(', ')}; '>' big-endian also read`;
  if (descr.kind !== 'str') {
    throw new NpyError(source, `unsupported dtype: structured/compound descr ${pyRepr(descr)} (${supported})`);
  }
  const m = /^([<>|=]?)([a-z][0-9]+)$/.exec(descr.value);
  const code = m?.[2];
  if (!m || code === undefined || !(DTYPES as string[]).includes(code)) {
    throw new NpyError(source, `unsupported dtype '${descr.value}' (${supported})`);
  }
  const dtype = code as NpyDtype;
  const order = m[1];
  const size = ITEMSIZE[dtype];
  // Byte order is irrelevant for 1-byte types. For wider ones, '=' / none (native) is never written
  // by numpy to files and '|' is invalid, so reject rather than guess.
  if (size > 1 && order !== '<' && order !== '>') {
    throw new NpyError(source, `ambiguous byte order in dtype '${descr.value}' (${supported})`);
  }
  return { dtype, bigEndian: order === '>' && size > 1 };
}

function decodeHeader(raw: Uint8Array, major: number, source: string): string {
  if (major >= 3) {
    try {
      return new TextDecoder('utf-8', { fatal: true }).decode(raw);
    } catch {
      throw new NpyError(source, 'unparsable header: not valid UTF-8 (format 3.0)');
    }
  }
  // Versions 1.0/2.0 are latin1; TextDecoder('latin1') is really windows-1252, so map bytes directly.
  let s = '';
  for (let i = 0; i < raw.length; i += 8192) {
    s += String.fromCharCode(...raw.subarray(i, Math.min(i + 8192, raw.length)));
  }
  return s;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

/** In-place byte swap of each `size`-byte element. */
function byteSwap(bytes: Uint8Array, size: number): void {
  for (let i = 0; i < bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

/** Reorders Fortran-order element bytes into C order. Copies integer words so float bits (NaN payloads) survive. */
function fortranToC(src: Uint8Array, shape: readonly number[], size: number, count: number): Uint8Array<ArrayBuffer> {
  const dst = new Uint8Array(src.length);
  const nd = shape.length;
  if (count === 0) return dst;
  const fstride: number[] = new Array<number>(nd);
  let s = 1;
  for (let k = 0; k < nd; k++) {
    fstride[k] = s;
    s *= shape[k];
  }
  const words = size >= 4 ? size / 4 : 1;
  const wsrc = size === 1 ? src : size === 2 ? new Uint16Array(src.buffer, src.byteOffset, count) : new Uint32Array(src.buffer, src.byteOffset, count * words);
  const wdst = size === 1 ? dst : size === 2 ? new Uint16Array(dst.buffer, 0, count) : new Uint32Array(dst.buffer, 0, count * words);
  const idx = new Array<number>(nd).fill(0);
  let fi = 0;
  for (let ci = 0; ci < count; ci++) {
    for (let w = 0; w < words; w++) wdst[ci * words + w] = wsrc[fi * words + w];
    // Odometer over C order (last axis fastest), tracking the Fortran linear index.
    for (let k = nd - 1; k >= 0; k--) {
      idx[k]++;
      fi += fstride[k];
      if (idx[k] < shape[k]) break;
      fi -= fstride[k] * shape[k];
      idx[k] = 0;
    }
  }
  return dst;
}

/** Parses a whole .npy file. `source` (a path or label) prefixes every error message. */
export function parseNpy(bytes: Uint8Array, source = '<buffer>'): NpyArray {
  assertLittleEndianHost(source);
  const head = bytes.subarray(0, MAGIC.length);
  if (head.length < MAGIC.length || MAGIC.some((b, i) => head[i] !== b)) {
    throw new NpyError(source, `not a .npy file: bad magic (expected 93 4e 55 4d 50 59 "\\x93NUMPY", got ${hex(head) || 'nothing'})`);
  }
  if (bytes.length < 8) throw new NpyError(source, `truncated: ${bytes.length} bytes, no format version`);
  const major = bytes[6];
  const minor = bytes[7];
  if (!((major === 1 || major === 2 || major === 3) && minor === 0)) {
    throw new NpyError(source, `unsupported .npy format version ${major}.${minor} (supported: 1.0, 2.0, 3.0)`);
  }
  const lenBytes = major === 1 ? 2 : 4;
  const prefix = 8 + lenBytes;
  if (bytes.length < prefix) {
    throw new NpyError(source, `truncated: ${bytes.length} bytes, header length field needs ${prefix}`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  if (headerLen > MAX_HEADER_BYTES) {
    throw new NpyError(source, `unparsable header: declared header length ${headerLen} bytes exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  if (prefix + headerLen > bytes.length) {
    throw new NpyError(source, `truncated header: header declares ${headerLen} bytes but only ${bytes.length - prefix} follow the preamble`);
  }
  const headerText = decodeHeader(bytes.subarray(prefix, prefix + headerLen), major, source);

  let parsed: PyValue;
  try {
    parsed = new PyLiteralParser(headerText).parseAll();
  } catch (e) {
    if (!(e instanceof HeaderSyntaxError)) throw e;
    throw new NpyError(source, `unparsable header: ${e.message} in ${JSON.stringify(headerText.trimEnd())}`);
  }
  if (parsed.kind !== 'dict') {
    throw new NpyError(source, `unparsable header: expected a dict, got ${JSON.stringify(headerText.trimEnd())}`);
  }
  const fields = new Map<string, PyValue>();
  for (const [k, v] of parsed.entries) {
    if (k.kind !== 'str') throw new NpyError(source, `unparsable header: non-string key ${pyRepr(k)}`);
    if (fields.has(k.value)) throw new NpyError(source, `unparsable header: duplicate key '${k.value}'`);
    fields.set(k.value, v);
  }
  const keys = [...fields.keys()].sort();
  if (keys.join(',') !== 'descr,fortran_order,shape') {
    throw new NpyError(source, `unparsable header: keys must be exactly 'descr', 'fortran_order', 'shape'; got [${keys.map((k) => `'${k}'`).join(', ')}]`);
  }
  const descrV = fields.get('descr') as PyValue;
  const fortranV = fields.get('fortran_order') as PyValue;
  const shapeV = fields.get('shape') as PyValue;

  const { dtype, bigEndian } = parseDescr(descrV, source);
  if (fortranV.kind !== 'bool') {
    throw new NpyError(source, `unparsable header: fortran_order must be True or False, got ${pyRepr(fortranV)}`);
  }
  if (shapeV.kind !== 'tuple' || shapeV.items.some((x) => x.kind !== 'int')) {
    throw new NpyError(source, `unparsable header: shape must be a tuple of ints, got ${pyRepr(shapeV)}`);
  }
  const shape: number[] = [];
  for (const item of shapeV.items) {
    const n = (item as { kind: 'int'; value: bigint }).value;
    if (n < 0n || n > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new NpyError(source, `invalid shape ${pyRepr(shapeV)}: dimensions must be non-negative integers`);
    }
    shape.push(Number(n));
  }

  const size = ITEMSIZE[dtype];
  let count = 1;
  for (const d of shape) count *= d;
  const expected = count * size;
  if (!Number.isSafeInteger(expected)) {
    throw new NpyError(source, `invalid shape ${shapeStr(shape)}: element count overflows`);
  }
  const dataStart = prefix + headerLen;
  const actual = bytes.length - dataStart;
  const what = `shape ${shapeStr(shape)} of '${bigEndian ? '>' : '<'}${dtype}'`;
  if (actual < expected) {
    throw new NpyError(source, `data truncated: ${what} needs ${expected} bytes, file has ${actual} bytes after the ${dataStart}-byte header`);
  }
  if (actual > expected) {
    throw new NpyError(source, `trailing bytes: ${what} needs ${expected} bytes, file has ${actual} bytes after the header (${actual - expected} extra)`);
  }

  let raw = ownCopy(bytes, dataStart, dataStart + expected);
  if (bigEndian) byteSwap(raw, size);
  if (fortranV.value && shape.length > 1) raw = fortranToC(raw, shape, size, count);
  if (dtype === 'b1') {
    const bad = firstNonBoolByte(raw);
    if (bad >= 0) throw new NpyError(source, `invalid bool data: byte ${raw[bad]} at element ${bad} (must be 0 or 1)`);
  }
  return { dtype, shape, data: viewAs(dtype, raw.buffer, count), fortranOrder: false } as NpyArray;
}

function validateArray(arr: NpyArray, source: string): number {
  const { dtype, shape, data } = arr as { dtype: unknown; shape: unknown; data: unknown };
  if (typeof dtype !== 'string' || !(DTYPES as string[]).includes(dtype)) {
    throw new NpyError(source, `unsupported dtype ${JSON.stringify(dtype)} (supported: ${DTYPES.join(', ')})`);
  }
  const dt = dtype as NpyDtype;
  if (arr.fortranOrder !== false) throw new NpyError(source, 'fortranOrder must be false (data is written in C order)');
  if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw new NpyError(source, `invalid shape ${JSON.stringify(shape)}: must be an array of non-negative integers`);
  }
  if (!isArrayOf(ARRAY_KIND[dt], data)) {
    throw new NpyError(source, `dtype '${dt}' needs ${EXPECTED_ARRAY[dt]} data, got ${arrayTypeName(data)}`);
  }
  let count = 1;
  for (const d of shape as number[]) count *= d;
  const len = (data as NpyTypedArray).length;
  if (count !== len) {
    throw new NpyError(source, `shape ${shapeStr(shape as number[])} implies ${count} elements but data has ${len}`);
  }
  if (dt === 'b1') {
    const bad = firstNonBoolByte(data as Uint8Array);
    if (bad >= 0) throw new NpyError(source, `invalid bool data: value ${(data as Uint8Array)[bad]} at element ${bad} (must be 0 or 1)`);
  }
  return count;
}

/** Builds the header exactly as numpy 2.x `_write_array_header` does (C order). */
function buildHeader(dtype: NpyDtype, shape: readonly number[]): Uint8Array {
  const descr = `${ITEMSIZE[dtype] === 1 ? '|' : '<'}${dtype}`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeStr(shape)}, }`;
  if (shape.length > 0) header += ' '.repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(shape[0]).length));
  const hlen = header.length + 1; // + trailing newline
  // Version 1.0 has a u16 length; numpy falls back to 2.0 only when that overflows.
  let lenBytes = 2;
  let padlen = ARRAY_ALIGN - ((8 + lenBytes + hlen) % ARRAY_ALIGN);
  if (hlen + padlen > 0xffff) {
    lenBytes = 4;
    padlen = ARRAY_ALIGN - ((8 + lenBytes + hlen) % ARRAY_ALIGN);
  }
  const total = 8 + lenBytes + hlen + padlen;
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  out[6] = lenBytes === 2 ? 1 : 2;
  out[7] = 0;
  const dv = new DataView(out.buffer);
  if (lenBytes === 2) dv.setUint16(8, hlen + padlen, true);
  else dv.setUint32(8, hlen + padlen, true);
  let p = 8 + lenBytes;
  for (let i = 0; i < header.length; i++) out[p++] = header.charCodeAt(i); // ASCII only
  out.fill(0x20, p, p + padlen);
  out[total - 1] = 0x0a;
  return out;
}

/** Encodes to exactly the bytes numpy 2.x `np.save` writes for the same C-order little-endian array. */
export function encodeNpy(arr: NpyArray, source = 'encodeNpy'): Uint8Array {
  assertLittleEndianHost(source);
  validateArray(arr, source);
  const header = buildHeader(arr.dtype, arr.shape);
  const d = arr.data;
  const body = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  const out = new Uint8Array(header.length + body.length);
  out.set(header, 0);
  out.set(body, header.length);
  return out;
}

/** A float array's elements as float64 numbers (f2 decoded from its half bits), or null for a non-float dtype. */
export function npyFloat64(a: NpyArray): Float64Array | null {
  switch (a.dtype) {
    case 'f2':
      return Float64Array.from(a.data, f16BitsToNumber);
    case 'f4':
    case 'f8':
      return Float64Array.from(a.data);
    default:
      return null;
  }
}

export { writeFileAtomic } from '../engine/files.js';

/** Reads and parses a .npy file; errors name the path. */
export async function readNpy(path: string): Promise<NpyArray> {
  return parseNpy(await readFileBytes(path), path);
}

/** Encodes and atomically writes a .npy file (byte-identical to numpy's np.save). */
export async function writeNpy(path: string, arr: NpyArray): Promise<void> {
  await writeFileAtomic(path, encodeNpy(arr, path));
}
