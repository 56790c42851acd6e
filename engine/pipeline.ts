/**
 * Compiling one kernel source into a pipeline: WGSL generated from the declarations, the layout reflected back
 * from it, the bind-group layout, and an async compute pipeline whose shader errors fail this kernel alone.
 */
import { generateWgsl, reflectLayout, type KernelSource, type ReflectedLayout } from './kernel.js';
import { DeviceLimitError, GpuError } from './errors.js';

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
