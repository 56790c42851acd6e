/**
 * What the file formats (npy, safetensors, torch .pth) share about element data: which host typed array holds a
 * dtype, aligned views on own buffers, and the little-endian host they all assume. Each format keeps its own dtype
 * names and maps them onto these array kinds.
 */

const ARRAY_TYPES = {
  Float64Array,
  Float32Array,
  Uint16Array,
  Int8Array,
  Uint8Array,
  Int16Array,
  Int32Array,
  Uint32Array,
  BigInt64Array,
  BigUint64Array,
} as const;

/** The host typed array an element type is stored in (16-bit floats as raw bits in Uint16Array). */
export type ArrayKind = keyof typeof ARRAY_TYPES;

/** Typed-array views reinterpret host memory; every machine Node ships on is little-endian. */
export const HOST_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function bytesPerElement(kind: ArrayKind): number {
  return ARRAY_TYPES[kind].BYTES_PER_ELEMENT;
}

/** `count` elements at the start of `buf` (an own, 0-offset buffer, so the view is aligned). */
export function viewElements(kind: ArrayKind, buf: ArrayBuffer, count: number): InstanceType<(typeof ARRAY_TYPES)[ArrayKind]> {
  return new ARRAY_TYPES[kind](buf, 0, count);
}

export function isArrayOf(kind: ArrayKind, data: unknown): boolean {
  return data instanceof ARRAY_TYPES[kind];
}

/** The constructor name of what was passed as data, for "needs X data, got Y" messages. */
export function arrayTypeName(data: unknown): string {
  return (data as { constructor?: { name?: string } } | null)?.constructor?.name ?? String(data);
}

/**
 * bytes[begin, end) copied into an own 0-offset buffer: aligned for typed-array views and detached from the
 * input. (Not bytes.slice(): on a Node Buffer that returns a view into the same memory.)
 */
export function ownCopy(bytes: Uint8Array, begin: number, end: number): Uint8Array<ArrayBuffer> {
  const raw = new Uint8Array(end - begin);
  raw.set(bytes.subarray(begin, end));
  return raw;
}

/** Index of the first byte that is neither 0 nor 1 (bool data), or -1. */
export function firstNonBoolByte(bytes: Uint8Array): number {
  return bytes.findIndex((b) => b > 1);
}
