/**
 * GPU buffer pool with size classes and full accounting: bytes in use, bytes held idle by the pool, and their
 * peaks — all exposed, so pool growth is visible (tfjs reported only one number, which hid it).
 */
export interface PoolStats {
  /** Bytes of buffers currently owned by live tensors (size-class rounded). */
  bytesInUse: number;
  /** Bytes of idle buffers the pool keeps for reuse. */
  bytesHeld: number;
  peakBytesInUse: number;
  /** Peak of in-use + held: the most GPU memory the pool ever had allocated. */
  peakBytesAllocated: number;
  buffersInUse: number;
  buffersHeld: number;
  allocations: number;
  reuses: number;
}

/**
 * Size classes: exact multiples of 256 B up to 4 KiB, then 8 steps per power of two (≤ 12.5 % waste) —
 * fine enough that a network's many activation shapes share buffers, coarse enough to reuse them.
 */
export function sizeClass(bytes: number): number {
  const b = Math.max(16, Math.ceil(bytes / 16) * 16);
  if (b <= 4096) return Math.ceil(b / 256) * 256;
  const pow = Math.floor(Math.log2(b));
  const step = 2 ** (pow - 3);
  return Math.ceil(b / step) * step;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  private stats: PoolStats = {
    bytesInUse: 0,
    bytesHeld: 0,
    peakBytesInUse: 0,
    peakBytesAllocated: 0,
    buffersInUse: 0,
    buffersHeld: 0,
    allocations: 0,
    reuses: 0,
  };

  constructor(
    private readonly device: GPUDevice,
    private readonly usage: GPUBufferUsageFlags,
  ) {}

  acquire(bytes: number, label?: string): GPUBuffer {
    const cls = sizeClass(bytes);
    const list = this.free.get(cls);
    let buf = list?.pop();
    if (buf) {
      this.stats.reuses++;
      this.stats.bytesHeld -= cls;
      this.stats.buffersHeld--;
    } else {
      buf = this.device.createBuffer({ size: cls, usage: this.usage, label });
      this.stats.allocations++;
    }
    this.stats.bytesInUse += cls;
    this.stats.buffersInUse++;
    this.stats.peakBytesInUse = Math.max(this.stats.peakBytesInUse, this.stats.bytesInUse);
    this.stats.peakBytesAllocated = Math.max(
      this.stats.peakBytesAllocated,
      this.stats.bytesInUse + this.stats.bytesHeld,
    );
    return buf;
  }

  /** Returns a buffer for reuse. Safe while commands using it are still pending: reuse is ordered after them. */
  release(buf: GPUBuffer): void {
    const cls = buf.size;
    let list = this.free.get(cls);
    if (!list) this.free.set(cls, (list = []));
    list.push(buf);
    this.stats.bytesInUse -= cls;
    this.stats.buffersInUse--;
    this.stats.bytesHeld += cls;
    this.stats.buffersHeld++;
  }

  /** Destroys every idle buffer. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stats.bytesHeld = 0;
    this.stats.buffersHeld = 0;
  }

  snapshot(): PoolStats {
    return { ...this.stats };
  }

  resetPeaks(): void {
    this.stats.peakBytesInUse = this.stats.bytesInUse;
    this.stats.peakBytesAllocated = this.stats.bytesInUse + this.stats.bytesHeld;
  }
}
