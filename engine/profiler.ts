/**
 * Per-kernel GPU time from timestamp queries (lavapipe has them). When profiling, the engine puts each dispatch in
 * its own compute pass with begin/end timestamps; times are aggregated by kernel name.
 */
const QUERIES_PER_SET = 4096;

export interface KernelTime {
  name: string;
  calls: number;
  totalMs: number;
  percent: number;
}

interface PendingSet {
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
  readback: GPUBuffer;
  names: string[];
  mapped?: Promise<void>;
}

export class Profiler {
  private readonly totals = new Map<string, { calls: number; ns: number }>();
  private current: PendingSet[] = [];
  private pending: PendingSet[] = [];
  readonly supported: boolean;

  constructor(
    private readonly device: GPUDevice,
    public enabled: boolean,
  ) {
    this.supported = device.features.has('timestamp-query');
    if (!this.supported) this.enabled = false;
  }

  enable(on = true): void {
    this.enabled = on && this.supported;
  }

  passDescriptor(name: string): GPUComputePassDescriptor {
    let set = this.current[this.current.length - 1];
    if (!set || set.names.length * 2 >= QUERIES_PER_SET) {
      set = {
        querySet: this.device.createQuerySet({ type: 'timestamp', count: QUERIES_PER_SET }),
        resolve: this.device.createBuffer({
          size: QUERIES_PER_SET * 8,
          usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
        }),
        readback: this.device.createBuffer({
          size: QUERIES_PER_SET * 8,
          usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
        }),
        names: [],
      };
      this.current.push(set);
    }
    const i = set.names.length;
    set.names.push(name);
    return {
      label: name,
      timestampWrites: { querySet: set.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
    };
  }

  resolve(encoder: GPUCommandEncoder): void {
    for (const s of this.current) {
      const n = s.names.length * 2;
      encoder.resolveQuerySet(s.querySet, 0, n, s.resolve, 0);
      encoder.copyBufferToBuffer(s.resolve, 0, s.readback, 0, n * 8);
    }
  }

  afterSubmit(): void {
    for (const s of this.current) {
      s.mapped = s.readback.mapAsync(GPUMapMode.READ);
      this.pending.push(s);
    }
    this.current = [];
  }

  /** Waits for submitted timestamp readbacks and adds them to the totals. */
  async collect(): Promise<void> {
    const sets = this.pending;
    this.pending = [];
    for (const s of sets) {
      await s.mapped;
      const t = new BigInt64Array(s.readback.getMappedRange().slice(0, s.names.length * 16));
      s.names.forEach((name, i) => {
        const ns = Number(t[2 * i + 1] - t[2 * i]);
        const e = this.totals.get(name) ?? { calls: 0, ns: 0 };
        e.calls++;
        e.ns += Math.max(0, ns);
        this.totals.set(name, e);
      });
      s.readback.unmap();
      s.readback.destroy();
      s.resolve.destroy();
      s.querySet.destroy();
    }
  }

  reset(): void {
    this.totals.clear();
  }

  report(): KernelTime[] {
    let total = 0;
    for (const e of this.totals.values()) total += e.ns;
    return [...this.totals.entries()]
      .map(([name, e]) => ({ name, calls: e.calls, totalMs: e.ns / 1e6, percent: total ? (100 * e.ns) / total : 0 }))
      .sort((a, b) => b.totalMs - a.totalMs);
  }

  table(): string {
    const rows = this.report();
    const head = ['kernel', 'calls', 'total ms', '% time'];
    const body = rows.map((r) => [r.name, String(r.calls), r.totalMs.toFixed(3), r.percent.toFixed(1)]);
    const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
    const fmt = (cols: string[]) => cols.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
    return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(fmt)].join('\n');
  }
}
