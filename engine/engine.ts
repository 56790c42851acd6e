/**
 * The engine: one WebGPU device, a buffer pool, a pipeline cache, command batching and scoped memory.
 *
 * Ops only RECORD commands (synchronously); `flush()` compiles what is missing (createComputePipelineAsync, so
 * every kernel of a first pass compiles concurrently), encodes all dispatches of a batch into as few compute passes
 * as possible and submits once. Reading a tensor flushes. Only the host decides when to wait.
 */
import { acquireDevice, type AcquiredDevice, type AdapterDescription, type DeviceOptions } from './gpu.js';
import { BufferPool, type PoolStats } from './pool.js';
import { bindEntries, compileProgram, packUniforms, type CompiledProgram } from './pipeline.js';
import { ProgramCache, type ProgramDef, type ProgramSpec } from './program.js';
import {
  BYTES_PER_ELEMENT,
  Storage,
  Tensor,
  checkShape,
  numberToF16Bits,
  shapeSize,
  type DType,
  type HostArray,
  type TensorOwner,
} from './tensor.js';
import { DTypeError, DeviceLimitError, GpuError, SbgcError, ShapeError } from './errors.js';
import { Profiler } from './profiler.js';
import { CommandSubmitter, type Command } from './command-batch.js';
import { TensorScopes } from './tensor-scopes.js';

export const ENGINE_VERSION = '0.1.0';

export type Program = CompiledProgram;

export type Workgroups = [number, number?, number?];


export interface EngineOptions extends DeviceOptions {
  /** Collect per-kernel GPU times (timestamp queries where available). */
  profile?: boolean;
}

export interface MemoryStats extends PoolStats {
  liveTensors: number;
  pipelines: number;
}

export type ScopeResult = unknown;

export class Engine implements TensorOwner {
  readonly device: GPUDevice;
  readonly info: AdapterDescription;
  readonly pool: BufferPool;
  readonly profiler: Profiler;
  private readonly acquired: AcquiredDevice;
  private readonly programs: ProgramCache<Program>;
  private commands: Command[] = [];
  private flushChain: Promise<void> = Promise.resolve();
  private flushesInFlight = 0;
  private readonly submitter: CommandSubmitter;
  private readonly scopes = new TensorScopes();
  private deviceLost: string | null = null;
  private uncaptured: string | null = null;
  private destroyed = false;

  private constructor(acquired: AcquiredDevice, options: EngineOptions) {
    this.acquired = acquired;
    this.device = acquired.device;
    this.info = acquired.info;
    this.pool = new BufferPool(
      this.device,
      GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    );
    this.profiler = new Profiler(this.device, options.profile ?? false);
    this.programs = new ProgramCache((src) => compileProgram(this.device, src));
    this.submitter = new CommandSubmitter(this.device, this.profiler, {
      takeUncaptured: () => {
        const message = this.uncaptured;
        this.uncaptured = null;
        return message;
      },
      lostReason: () => this.deviceLost,
    });
    this.device.lost.then((info) => {
      if (!this.destroyed) this.deviceLost = `${info.reason}: ${info.message}`;
    });
    this.device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      this.uncaptured = ev.error.message;
    };
  }

  static async create(options: EngineOptions = {}): Promise<Engine> {
    return new Engine(await acquireDevice(options), options);
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }
  get hasF16(): boolean {
    return this.device.features.has('shader-f16');
  }
  get adapter(): GPUAdapter {
    return this.acquired.adapter;
  }

  // ---------------------------------------------------------------- tensors

  private checkAlive(what: string): void {
    if (this.destroyed) throw new SbgcError(`${what}: the engine was destroyed`);
    if (this.deviceLost) throw new GpuError(`${what}: the GPU device was lost (${this.deviceLost})`, [what]);
  }

  /** Allocates an uninitialised tensor (contents are whatever the pooled buffer held). */
  empty(shape: readonly number[], dtype: DType = 'f32', name?: string): Tensor {
    this.checkAlive(name ?? 'empty');
    checkShape(shape, name ?? 'empty');
    if (dtype === 'f16' && !this.hasF16) {
      throw new DTypeError(`${name ?? 'tensor'}: f16 needs the shader-f16 feature, which this adapter lacks`);
    }
    const bytes = Math.max(4, Math.ceil((shapeSize(shape) * BYTES_PER_ELEMENT[dtype]) / 4) * 4);
    const maxBind = this.limits.maxStorageBufferBindingSize;
    if (bytes > maxBind) {
      throw new DeviceLimitError(
        `${name ?? 'tensor'} [${shape.join('×')}] ${dtype} needs ${bytes} bytes, over this adapter's ` +
          `maxStorageBufferBindingSize of ${maxBind} bytes`,
      );
    }
    const buffer = this.pool.acquire(bytes, name);
    return new Tensor(this, new Storage(buffer, buffer.size), shape, dtype, 0, name);
  }

  zeros(shape: readonly number[], dtype: DType = 'f32', name?: string): Tensor {
    const t = this.empty(shape, dtype, name);
    t.storage.version++;
    this.commands.push({ kind: 'clear', dst: t.buffer, offset: 0, size: t.storage.byteSize });
    return t;
  }

  /** Uploads host data. Numbers are converted to the dtype (f16 rounds to nearest even). */
  tensor(data: ArrayLike<number> | HostArray, shape: readonly number[], dtype: DType = 'f32', name?: string): Tensor {
    const n = shapeSize(shape);
    if (data.length !== n) {
      throw new ShapeError(`${name ?? 'tensor'}: ${data.length} values do not fill shape [${shape.join('×')}] (${n})`);
    }
    const t = this.empty(shape, dtype, name);
    let bytes: Uint8Array;
    if (dtype === 'f32') bytes = new Uint8Array(toTyped(data, Float32Array).buffer);
    else if (dtype === 'u32') bytes = new Uint8Array(toTyped(data, Uint32Array).buffer);
    else if (dtype === 'i32') bytes = new Uint8Array(toTyped(data, Int32Array).buffer);
    else {
      const h = data instanceof Uint16Array ? data : Uint16Array.from(data as ArrayLike<number>, numberToF16Bits);
      bytes = new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
    }
    this.write(t, bytes);
    return t;
  }

  /** Writes bytes into a tensor, ordered after every command recorded before. */
  write(t: Tensor, bytes: Uint8Array): void {
    t.assertLive();
    if (bytes.byteLength > t.byteLength) {
      throw new ShapeError(`write into ${t.describe()}: ${bytes.byteLength} bytes exceed ${t.byteLength}`);
    }
    const size = Math.ceil(bytes.byteLength / 4) * 4;
    if (size === 0) return;
    t.storage.version++;
    if (this.commands.length === 0 && this.flushesInFlight === 0) {
      // Nothing pending can touch this buffer: the queue write is ordered before any later submit.
      const padded = size === bytes.byteLength ? bytes : padTo(bytes, size);
      this.device.queue.writeBuffer(t.buffer, t.byteOffset, padded);
      return;
    }
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true });
    new Uint8Array(staging.getMappedRange()).set(bytes);
    staging.unmap();
    this.commands.push({
      kind: 'copy',
      src: staging,
      srcOffset: 0,
      dst: t.buffer,
      dstOffset: t.byteOffset,
      size,
      transient: staging,
    });
  }

  /** GPU-side copy of all of `src` into `dst` (same byte length). */
  copy(src: Tensor, dst: Tensor): void {
    src.assertLive();
    dst.assertLive();
    if (src.byteLength !== dst.byteLength) {
      throw new ShapeError(`copy ${src.describe()} → ${dst.describe()}: byte lengths differ`);
    }
    const size = Math.ceil(src.byteLength / 4) * 4;
    dst.storage.version++;
    this.commands.push({
      kind: 'copy',
      src: src.buffer,
      srcOffset: src.byteOffset,
      dst: dst.buffer,
      dstOffset: dst.byteOffset,
      size,
    });
  }

  /** A new tensor holding a copy of `t` (contiguous, offset 0). */
  clone(t: Tensor, name?: string): Tensor {
    const out = this.empty(t.shape, t.dtype, name ?? t.name);
    this.copy(t, out);
    return out;
  }

  async readTensor(t: Tensor): Promise<HostArray> {
    t.assertLive();
    const size = Math.max(4, Math.ceil(t.byteLength / 4) * 4);
    const staging = this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.commands.push({
      kind: 'copy',
      src: t.buffer,
      srcOffset: t.byteOffset,
      dst: staging,
      dstOffset: 0,
      size,
    });
    await this.flush();
    await staging.mapAsync(GPUMapMode.READ);
    const copy = staging.getMappedRange().slice(0, t.byteLength);
    staging.unmap();
    staging.destroy();
    switch (t.dtype) {
      case 'f32':
        return new Float32Array(copy);
      case 'u32':
        return new Uint32Array(copy);
      case 'i32':
        return new Int32Array(copy);
      case 'f16':
        return new Uint16Array(copy);
    }
  }

  /** Reads several tensors with one flush. */
  async readMany(ts: Tensor[]): Promise<HostArray[]> {
    return Promise.all(ts.map((t) => this.readTensor(t)));
  }

  releaseStorage(storage: Storage): void {
    if (!this.destroyed) this.pool.release(storage.buffer);
  }

  track(t: Tensor): void {
    this.scopes.track(t);
  }

  untrack(t: Tensor): void {
    this.scopes.untrack(t);
  }

  /**
   * Runs `fn`; every tensor created inside and not returned (nor `keep`-ed) is disposed when it ends. Returned
   * tensors (also inside arrays and plain objects) move to the enclosing scope. Works for async `fn` too —
   * scopes must then not interleave with other concurrent scopes.
   */
  scope<T>(fn: () => T): T {
    return this.scopes.run(fn);
  }

  /** Removes `t` from scope tracking: it lives until disposed by hand. */
  keep<T extends Tensor>(t: T): T {
    return this.scopes.keep(t);
  }

  memory(): MemoryStats {
    return { ...this.pool.snapshot(), liveTensors: this.scopes.liveCount, pipelines: this.programs.size };
  }

  // ---------------------------------------------------------------- programs and dispatch

  /**
   * Records one dispatch of a declared program: the pipeline is found by the spec's values (and the declared input
   * shapes), compiled on the first miss only. `bindings` maps each declared buffer to a tensor, `uniforms` each
   * declared uniform; `workgroups` defaults to the program's own geometry.
   */
  run<S extends ProgramSpec>(
    def: ProgramDef<S>,
    spec: S,
    bindings: Record<string, Tensor>,
    uniforms: Record<string, number>,
    workgroups: Workgroups,
  ): void {
    this.dispatch(this.programs.get(def, spec, bindings), bindings, uniforms, workgroups);
  }

  /** Compiles programs ahead of use (concurrently) — call before timing anything. */
  async warmup(programs: Program[]): Promise<void> {
    await Promise.all(programs.map((p) => p.pipeline));
  }

  /** Records one dispatch of a compiled program (bindings and uniforms checked against its layout). */
  private dispatch(
    program: Program,
    bindings: Record<string, Tensor>,
    uniforms: Record<string, number>,
    workgroups: Workgroups,
  ): void {
    this.checkAlive(program.name);
    const entries = bindEntries(program, bindings, this.limits);
    const uniformBytes = packUniforms(program, uniforms);
    const [x, y = 1, z = 1] = workgroups;
    const maxWg = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg || z > maxWg) {
      throw new DeviceLimitError(`kernel ${program.name}: dispatch [${x}, ${y}, ${z}] exceeds ${maxWg} per dimension`);
    }
    if (x * y * z === 0) return;
    this.commands.push({ kind: 'dispatch', program, entries, uniformBytes, workgroups: [x, y, z] });
  }

  /** Number of commands recorded and not yet submitted. */
  get pending(): number {
    return this.commands.length;
  }

  /** Submits everything recorded so far as one command buffer. Resolves once submitted (not completed). */
  flush(): Promise<void> {
    if (this.commands.length === 0) return this.flushChain;
    const batch = this.commands;
    this.commands = [];
    this.flushesInFlight++;
    const run = this.flushChain.then(() => {
      this.checkAlive('flush');
      return this.submitter.submit(batch);
    });
    this.flushChain = run.catch(() => undefined).finally(() => this.flushesInFlight--);
    return run;
  }

  /** Flushes and waits until the GPU finished all submitted work. */
  async sync(): Promise<void> {
    await this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.profiler.collect();
  }

  /** Releases everything. Dawn keeps a busy loop alive until the device is destroyed (node-webgpu #17). */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    try {
      await this.flushChain;
      await this.device.queue.onSubmittedWorkDone();
    } finally {
      this.destroyed = true;
      this.pool.trim();
      this.submitter.destroy();
      this.device.destroy();
    }
  }
}

function toTyped<T extends Float32Array | Uint32Array | Int32Array>(
  data: ArrayLike<number>,
  ctor: { new (n: number): T; from(a: ArrayLike<number>): T },
): T {
  if (data instanceof (ctor as unknown as typeof Float32Array)) return data as unknown as T;
  return ctor.from(data);
}

function padTo(bytes: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set(bytes);
  return out;
}

export { Tensor };
