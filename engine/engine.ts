/**
 * The engine: one WebGPU device, a buffer pool, a pipeline cache, command batching and scoped memory.
 *
 * Ops only RECORD commands (synchronously); `flush()` compiles what is missing (createComputePipelineAsync, so
 * every kernel of a first pass compiles concurrently), encodes all dispatches of a batch into as few compute passes
 * as possible and submits once. Reading a tensor flushes. Only the host decides when to wait.
 */
import { acquireDevice, type AcquiredDevice, type AdapterDescription, type DeviceOptions } from './gpu.js';
import { BufferPool, type PoolStats } from './pool.js';
import { generateWgsl, stableJson, type KernelSource } from './kernel.js';
import { compileProgram, type CompiledProgram } from './pipeline.js';
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

export const ENGINE_VERSION = '0.1.0';

export type Program = CompiledProgram;

export type Workgroups = [number, number?, number?];

interface DispatchCmd {
  kind: 'dispatch';
  program: Program;
  entries: GPUBindGroupEntry[];
  uniformBytes: Uint8Array | null;
  workgroups: [number, number, number];
}
interface CopyCmd {
  kind: 'copy';
  src: GPUBuffer;
  srcOffset: number;
  dst: GPUBuffer;
  dstOffset: number;
  size: number;
  /** Staging buffers to destroy after the submit. */
  transient?: GPUBuffer;
}
interface ClearCmd {
  kind: 'clear';
  dst: GPUBuffer;
  offset: number;
  size: number;
}
type Command = DispatchCmd | CopyCmd | ClearCmd;

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
  private readonly legacyPrograms = new Map<string, Program>();
  private commands: Command[] = [];
  private flushChain: Promise<void> = Promise.resolve();
  private flushesInFlight = 0;
  private uniformArena: GPUBuffer | null = null;
  private readonly uniformAlign: number;
  private readonly scopes: Set<Tensor>[] = [];
  private readonly live = new Set<Tensor>();
  private deviceLost: string | null = null;
  private uncaptured: string | null = null;
  private destroyed = false;

  private constructor(acquired: AcquiredDevice, options: EngineOptions) {
    this.acquired = acquired;
    this.device = acquired.device;
    this.info = acquired.info;
    this.uniformAlign = Math.max(256, this.device.limits.minUniformBufferOffsetAlignment);
    this.pool = new BufferPool(
      this.device,
      GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    );
    this.profiler = new Profiler(this.device, options.profile ?? false);
    this.programs = new ProgramCache((src) => compileProgram(this.device, src));
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
    this.live.add(t);
    this.scopes[this.scopes.length - 1]?.add(t);
  }

  untrack(t: Tensor): void {
    this.live.delete(t);
    for (let i = this.scopes.length - 1; i >= 0; i--) if (this.scopes[i].delete(t)) break;
  }

  /**
   * Runs `fn`; every tensor created inside and not returned (nor `keep`-ed) is disposed when it ends. Returned
   * tensors (also inside arrays and plain objects) move to the enclosing scope. Works for async `fn` too —
   * scopes must then not interleave with other concurrent scopes.
   */
  scope<T>(fn: () => T): T {
    const set = new Set<Tensor>();
    this.scopes.push(set);
    let result: T;
    try {
      result = fn();
    } catch (e) {
      this.endScope(set, undefined);
      throw e;
    }
    if (result instanceof Promise) {
      return result.then(
        (v) => {
          this.endScope(set, v);
          return v;
        },
        (e) => {
          this.endScope(set, undefined);
          throw e;
        },
      ) as T;
    }
    this.endScope(set, result);
    return result;
  }

  private endScope(set: Set<Tensor>, result: unknown): void {
    const idx = this.scopes.lastIndexOf(set);
    if (idx >= 0) this.scopes.splice(idx, 1);
    const keepers = new Set<Tensor>();
    collectTensors(result, keepers, 0);
    const parent = this.scopes[this.scopes.length - 1];
    for (const t of set) {
      if (keepers.has(t)) parent?.add(t);
      else t.dispose();
    }
  }

  /** Removes `t` from scope tracking: it lives until disposed by hand. */
  keep<T extends Tensor>(t: T): T {
    for (const s of this.scopes) s.delete(t);
    return t;
  }

  memory(): MemoryStats {
    return { ...this.pool.snapshot(), liveTensors: this.live.size, pipelines: this.programs.size + this.legacyPrograms.size };
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

  /** The compiled program for a spec (compiling it on a miss), e.g. to warm up before timing. */
  programFor<S extends ProgramSpec>(def: ProgramDef<S>, spec: S, inputs?: Record<string, Tensor>): Program {
    return this.programs.get(def, spec, inputs);
  }

  /**
   * @deprecated Compiles an undeclared kernel source, keyed by its generated WGSL (so every call builds it): kept
   * only while call sites move to `defineProgram` + `run`.
   */
  program(src: KernelSource): Program {
    const wgsl = generateWgsl(src);
    const key = stableJson({ wgsl, constants: src.constants ?? {} });
    const hit = this.legacyPrograms.get(key);
    if (hit) return hit;
    const program = compileProgram(this.device, src);
    this.legacyPrograms.set(key, program);
    return program;
  }

  /** Compiles programs ahead of use (concurrently) — call before timing anything. */
  async warmup(programs: Program[]): Promise<void> {
    await Promise.all(programs.map((p) => p.pipeline));
  }

  /**
   * Records one dispatch. `bindings` maps each declared buffer name to a tensor; `uniforms` each declared uniform.
   */
  dispatch(
    program: Program,
    bindings: Record<string, Tensor>,
    uniforms: Record<string, number>,
    workgroups: Workgroups,
  ): void {
    this.checkAlive(program.name);
    const entries: GPUBindGroupEntry[] = [];
    const maxBind = this.limits.maxStorageBufferBindingSize;
    for (const b of program.layout.buffers) {
      const t = bindings[b.name];
      if (!t) throw new SbgcError(`kernel ${program.name}: buffer '${b.name}' was not bound`);
      if (t.disposed) throw new SbgcError(`kernel ${program.name}: '${b.name}' is bound to a disposed tensor`);
      const binding = t.binding();
      if ((binding.size ?? 0) > maxBind) {
        throw new DeviceLimitError(
          `kernel ${program.name}: '${b.name}' (${t.describe()}) is ${binding.size} bytes, over ` +
            `maxStorageBufferBindingSize ${maxBind}`,
        );
      }
      if (binding.offset! % this.limits.minStorageBufferOffsetAlignment !== 0) {
        throw new SbgcError(
          `kernel ${program.name}: '${b.name}' view starts at byte ${binding.offset}, not a multiple of ` +
            `${this.limits.minStorageBufferOffsetAlignment}; clone() it first`,
        );
      }
      entries.push({ binding: b.binding, resource: binding });
      if (!b.readOnly) t.storage.version++;
    }
    for (const name of Object.keys(bindings)) {
      if (!program.layout.buffers.some((b) => b.name === name)) {
        throw new SbgcError(`kernel ${program.name}: no buffer named '${name}'`);
      }
    }
    let uniformBytes: Uint8Array | null = null;
    const u = program.layout.uniform;
    if (u) {
      uniformBytes = new Uint8Array(u.size);
      const view = new DataView(uniformBytes.buffer);
      for (const f of u.fields) {
        const v = uniforms[f.name];
        if (v === undefined) throw new SbgcError(`kernel ${program.name}: uniform '${f.name}' was not given`);
        if (f.type === 'f32') view.setFloat32(f.offset, v, true);
        else if (f.type === 'u32') view.setUint32(f.offset, v >>> 0, true);
        else view.setInt32(f.offset, v | 0, true);
      }
    }
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
    const run = this.flushChain.then(() => this.submitBatch(batch));
    this.flushChain = run.catch(() => undefined).finally(() => this.flushesInFlight--);
    return run;
  }

  /** Flushes and waits until the GPU finished all submitted work. */
  async sync(): Promise<void> {
    await this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.profiler.collect();
  }

  private async submitBatch(batch: Command[]): Promise<void> {
    this.checkAlive('flush');
    const dispatches = batch.filter((c): c is DispatchCmd => c.kind === 'dispatch');
    // Await only pipelines that are still compiling.
    const waiting = dispatches.filter((d) => !d.program.compiled).map((d) => d.program.pipeline);
    if (waiting.length) await Promise.all(waiting);
    const names = [...new Set(dispatches.map((d) => d.program.name))];

    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    // Uniforms of the whole batch go into one arena written once before the submit.
    let uniformBuffer: GPUBuffer | null = null;
    let arenaBytes = 0;
    for (const d of dispatches) if (d.uniformBytes) arenaBytes += this.uniformAlign;
    if (arenaBytes > 0) {
      if (!this.uniformArena || this.uniformArena.size < arenaBytes) {
        this.uniformArena?.destroy();
        this.uniformArena = this.device.createBuffer({
          size: Math.max(arenaBytes, 64 * 1024),
          usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
          label: 'uniform arena',
        });
      }
      uniformBuffer = this.uniformArena;
      const arena = new Uint8Array(arenaBytes);
      let off = 0;
      for (const d of dispatches) {
        if (!d.uniformBytes) continue;
        arena.set(d.uniformBytes, off);
        d.entries.push({
          binding: d.program.layout.uniform!.binding,
          resource: { buffer: uniformBuffer, offset: off, size: d.uniformBytes.byteLength },
        });
        off += this.uniformAlign;
      }
      this.device.queue.writeBuffer(uniformBuffer, 0, arena);
    }

    const encoder = this.device.createCommandEncoder({ label: `batch(${names.slice(0, 4).join(',')})` });
    const profiling = this.profiler.enabled;
    let pass: GPUComputePassEncoder | null = null;
    const endPass = () => {
      pass?.end();
      pass = null;
    };
    const transients: GPUBuffer[] = [];
    for (const c of batch) {
      if (c.kind === 'dispatch') {
        if (profiling) {
          endPass();
          pass = encoder.beginComputePass(this.profiler.passDescriptor(c.program.name));
        } else if (!pass) {
          pass = encoder.beginComputePass();
        }
        const bindGroup = this.device.createBindGroup({
          layout: c.program.bindGroupLayout,
          entries: c.entries,
          label: c.program.name,
        });
        pass.setPipeline(c.program.compiled ?? (await c.program.pipeline));
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(c.workgroups[0], c.workgroups[1], c.workgroups[2]);
        if (profiling) endPass();
      } else if (c.kind === 'copy') {
        endPass();
        encoder.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.size);
        if (c.transient) transients.push(c.transient);
      } else {
        endPass();
        encoder.clearBuffer(c.dst, c.offset, c.size);
      }
    }
    endPass();
    if (profiling) this.profiler.resolve(encoder);
    this.device.queue.submit([encoder.finish()]);
    for (const b of transients) b.destroy();
    const validation = await this.device.popErrorScope();
    const oom = await this.device.popErrorScope();
    if (profiling) this.profiler.afterSubmit();
    const err = validation ?? oom;
    if (err || this.uncaptured) {
      const msg = err?.message ?? this.uncaptured!;
      this.uncaptured = null;
      throw new GpuError(`GPU error in a batch of [${names.join(', ')}]: ${msg}`, names);
    }
    if (this.deviceLost) throw new GpuError(`the GPU device was lost (${this.deviceLost})`, names);
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
      this.uniformArena?.destroy();
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

function collectTensors(v: unknown, out: Set<Tensor>, depth: number): void {
  if (depth > 6 || v === null || typeof v !== 'object') return;
  if (v instanceof Tensor) {
    out.add(v);
    return;
  }
  if (Array.isArray(v)) {
    for (const x of v) collectTensors(x, out, depth + 1);
    return;
  }
  if (v instanceof Map) {
    for (const x of v.values()) collectTensors(x, out, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v as Record<string, unknown>)) collectTensors(x, out, depth + 1);
  }
}

export { Tensor };
