/**
 * Compiling one kernel source into a pipeline: WGSL generated from the declarations, the layout reflected back
 * from it, the bind-group layout, and an async compute pipeline whose shader errors fail this kernel alone.
 */
import { generateWgsl, reflectLayout, type KernelSource, type ReflectedLayout } from './kernel.js';
import { DeviceLimitError, GpuError, SbgcError } from './errors.js';
import type { Tensor } from './tensor.js';

/** A compiled kernel: what a dispatch needs to bind and encode it. */
export interface CompiledProgram {
  readonly name: string;
  readonly wgsl: string;
  readonly layout: ReflectedLayout;
  readonly bindGroupLayout: GPUBindGroupLayout;
  readonly pipeline: Promise<GPUComputePipeline>;
  /** Set once compiled, so steady-state flushes do not await anything. */
  compiled?: GPUComputePipeline;
}

export function compileProgram(device: GPUDevice, src: KernelSource): CompiledProgram {
  const wgsl = generateWgsl(src);
  const layout = reflectLayout(src.name, wgsl);
  const entries: GPUBindGroupLayoutEntry[] = layout.buffers.map((b) => ({
    binding: b.binding,
    visibility: GPUShaderStage.COMPUTE,
    buffer: { type: b.readOnly ? 'read-only-storage' : 'storage' },
  }));
  if (layout.uniform) {
    entries.push({ binding: layout.uniform.binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } });
  }
  const maxBuffers = device.limits.maxStorageBuffersPerShaderStage;
  if (layout.buffers.length > maxBuffers) {
    throw new DeviceLimitError(
      `kernel ${src.name} binds ${layout.buffers.length} storage buffers; this adapter allows ${maxBuffers}`,
    );
  }
  const bindGroupLayout = device.createBindGroupLayout({ entries, label: src.name });
  // Shader errors are captured here so they fail this program, not whichever batch flushes next.
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code: wgsl, label: src.name });
  const moduleError = device.popErrorScope();
  const pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout], label: src.name });
  const pipeline = moduleError
    .then((err) => {
      if (err) throw new Error(err.message);
      return device.createComputePipelineAsync({
        label: src.name,
        layout: pipelineLayout,
        compute: { module, entryPoint: 'main', constants: src.constants },
      });
    })
    .catch(async (e: unknown) => {
      const info = await module.getCompilationInfo();
      const msgs = info.messages.map((m) => `${m.type} ${m.lineNum}:${m.linePos} ${m.message}`).join('\n');
      throw new GpuError(`kernel ${src.name} failed to compile: ${(e as Error).message}\n${msgs}`, [src.name]);
    });
  const program: CompiledProgram = { name: src.name, wgsl, layout, bindGroupLayout, pipeline };
  pipeline.then(
    (p) => (program.compiled = p),
    () => undefined,
  );
  return program;
}

/**
 * The bind-group entries of one dispatch: every declared buffer bound to a live tensor within the adapter's limits,
 * no undeclared name. A tensor bound read_write gets a new storage version (caches of derived data, such as packed
 * conv weights, see that it may have changed).
 */
export function bindEntries(program: CompiledProgram, bindings: Record<string, Tensor>, limits: GPUSupportedLimits): GPUBindGroupEntry[] {
  const entries: GPUBindGroupEntry[] = [];
  const maxBind = limits.maxStorageBufferBindingSize;
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
    if (binding.offset! % limits.minStorageBufferOffsetAlignment !== 0) {
      throw new SbgcError(
        `kernel ${program.name}: '${b.name}' view starts at byte ${binding.offset}, not a multiple of ` +
          `${limits.minStorageBufferOffsetAlignment}; clone() it first`,
      );
    }
    entries.push({ binding: b.binding, resource: binding });
    if (!b.readOnly) t.storage.version++;
  }
  // Every declared name is bound (above) and declared names are unique, so more keys means an undeclared one.
  if (Object.keys(bindings).length > program.layout.buffers.length) {
    const extra = Object.keys(bindings).find((name) => !program.layout.buffers.some((b) => b.name === name));
    throw new SbgcError(`kernel ${program.name}: no buffer named '${extra}'`);
  }
  return entries;
}

/** The uniform block of one dispatch, laid out as the reflected struct says; null for a kernel without one. */
export function packUniforms(program: CompiledProgram, uniforms: Record<string, number>): Uint8Array | null {
  const u = program.layout.uniform;
  if (!u) return null;
  const bytes = new Uint8Array(u.size);
  const view = new DataView(bytes.buffer);
  for (const f of u.fields) {
    const v = uniforms[f.name];
    if (v === undefined) throw new SbgcError(`kernel ${program.name}: uniform '${f.name}' was not given`);
    if (f.type === 'f32') view.setFloat32(f.offset, v, true);
    else if (f.type === 'u32') view.setUint32(f.offset, v >>> 0, true);
    else view.setInt32(f.offset, v | 0, true);
  }
  return bytes;
}
