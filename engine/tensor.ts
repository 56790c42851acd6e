/**
 * A tensor: shape, dtype and a byte range of a (pooled) GPU buffer. Reshapes and leading-axis slices are
 * zero-copy views sharing the storage; the storage returns to the pool when its last view is disposed.
 */
import { DTypeError, SbgcError, ShapeError } from './errors.js';

export type DType = 'f32' | 'f16' | 'u32' | 'i32';

export const BYTES_PER_ELEMENT: Record<DType, number> = { f32: 4, f16: 2, u32: 4, i32: 4 };

export type HostArray = Float32Array | Uint32Array | Int32Array | Uint16Array;

/** What a tensor needs from its engine (kept narrow so tensor.ts does not import the engine). */
export interface TensorOwner {
  releaseStorage(storage: Storage): void;
  readTensor(t: Tensor): Promise<HostArray>;
  track(t: Tensor): void;
  untrack(t: Tensor): void;
}

export class Storage {
  refs = 1;
  /**
   * Bumped by the engine whenever the contents may change (a write, copy or clear into it, or a dispatch binding it
   * read_write), so caches of data derived from it (packed conv weights) know when they are stale.
   */
  version = 0;
  /** Called once when the last view is disposed: derived data cached per storage is freed with it. */
  onRelease: (() => void)[] | null = null;
  constructor(
    readonly buffer: GPUBuffer,
    readonly byteSize: number,
  ) {}
}

let nextId = 1;

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function checkShape(shape: readonly number[], what: string): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new ShapeError(`${what}: invalid shape [${shape.join(', ')}]`);
  }
}

export class Tensor {
  readonly id = nextId++;
  private _disposed = false;

  constructor(
    readonly owner: TensorOwner,
    readonly storage: Storage,
    readonly shape: readonly number[],
    readonly dtype: DType,
    /** Byte offset of element 0 inside the storage buffer. */
    readonly byteOffset = 0,
    /** Optional name used in error messages. */
    readonly name?: string,
  ) {
    checkShape(shape, name ?? 'tensor');
    owner.track(this);
  }

  get size(): number {
    return shapeSize(this.shape);
  }
  get rank(): number {
    return this.shape.length;
  }
  get byteLength(): number {
    return this.size * BYTES_PER_ELEMENT[this.dtype];
  }
  get disposed(): boolean {
    return this._disposed;
  }
  get buffer(): GPUBuffer {
    this.assertLive();
    return this.storage.buffer;
  }

  describe(): string {
    return `${this.name ?? `tensor#${this.id}`}[${this.shape.join('×')}] ${this.dtype}`;
  }

  assertLive(): void {
    if (this._disposed) throw new SbgcError(`${this.describe()} was used after being disposed`);
  }

  /** Zero-copy reshape; one dimension may be -1. */
  reshape(shape: readonly number[]): Tensor {
    this.assertLive();
    const known = shape.filter((d) => d !== -1);
    const inferred = shape.length - known.length;
    if (inferred > 1) throw new ShapeError(`reshape of ${this.describe()}: more than one -1 in [${shape}]`);
    let full = [...shape];
    if (inferred === 1) {
      const k = shapeSize(known);
      if (k === 0 || this.size % k !== 0) {
        throw new ShapeError(`reshape of ${this.describe()} to [${shape}]: sizes do not divide`);
      }
      full = shape.map((d) => (d === -1 ? this.size / k : d));
    }
    if (shapeSize(full) !== this.size) {
      throw new ShapeError(`reshape of ${this.describe()} to [${full}]: ${shapeSize(full)} ≠ ${this.size} elements`);
    }
    this.storage.refs++;
    return new Tensor(this.owner, this.storage, full, this.dtype, this.byteOffset, this.name);
  }

  /** Zero-copy view of rows [start, end) along axis 0. */
  slice0(start: number, end: number): Tensor {
    this.assertLive();
    const n = this.shape[0];
    if (this.rank === 0 || !(0 <= start && start <= end && end <= n)) {
      throw new ShapeError(`slice0(${start}, ${end}) of ${this.describe()} is out of range`);
    }
    const row = this.size / n;
    this.storage.refs++;
    return new Tensor(
      this.owner,
      this.storage,
      [end - start, ...this.shape.slice(1)],
      this.dtype,
      this.byteOffset + start * row * BYTES_PER_ELEMENT[this.dtype],
      this.name,
    );
  }

  /** Binding for a shader. WebGPU binding sizes must be multiples of 4 bytes. */
  binding(): GPUBufferBinding {
    this.assertLive();
    const size = Math.max(4, Math.ceil(this.byteLength / 4) * 4);
    return { buffer: this.storage.buffer, offset: this.byteOffset, size };
  }

  assertDType(dtype: DType, what: string): void {
    if (this.dtype !== dtype) throw new DTypeError(`${what}: ${this.describe()} must be ${dtype}`);
  }

  assertShape(shape: readonly (number | null)[], what: string): void {
    const ok = shape.length === this.rank && shape.every((d, i) => d === null || d === this.shape[i]);
    if (!ok) {
      const want = shape.map((d) => (d === null ? '?' : d)).join('×');
      throw new ShapeError(`${what}: ${this.describe()} must have shape [${want}]`);
    }
  }

  read(): Promise<HostArray> {
    this.assertLive();
    return this.owner.readTensor(this);
  }

  /** Reads and converts to float64 numbers (f16 decoded). */
  async readF64(): Promise<Float64Array> {
    const raw = await this.read();
    if (this.dtype === 'f16') return Float64Array.from(raw as Uint16Array, f16BitsToNumber);
    return Float64Array.from(raw as Float32Array);
  }

  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    this.owner.untrack(this);
    this.storage.refs--;
    if (this.storage.refs === 0) {
      for (const release of this.storage.onRelease ?? []) release();
      this.storage.onRelease = null;
      this.owner.releaseStorage(this.storage);
    }
  }
}

export function f16BitsToNumber(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Round-to-nearest-even float → f16 bits. */
export function numberToF16Bits(v: number): number {
  const f32 = new Float32Array([v]);
  const x = new Uint32Array(f32.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}
