/**
 * Recorded commands and their submission: a batch of dispatches, copies and clears becomes one command buffer —
 * the uniforms of all its dispatches written into one arena, consecutive dispatches in one compute pass (one pass
 * each when profiling, for timestamps), errors captured per batch and named by the kernels in it.
 */
import type { CompiledProgram } from './pipeline.js';
import type { Profiler } from './profiler.js';
import { GpuError } from './errors.js';

export interface DispatchCmd {
  kind: 'dispatch';
  program: CompiledProgram;
  entries: GPUBindGroupEntry[];
  uniformBytes: Uint8Array | null;
  workgroups: [number, number, number];
}
export interface CopyCmd {
  kind: 'copy';
  src: GPUBuffer;
  srcOffset: number;
  dst: GPUBuffer;
  dstOffset: number;
  size: number;
  /** Staging buffers to destroy after the submit. */
  transient?: GPUBuffer;
}
export interface ClearCmd {
  kind: 'clear';
  dst: GPUBuffer;
  offset: number;
  size: number;
}
export type Command = DispatchCmd | CopyCmd | ClearCmd;

/** What the submitter asks of its engine: errors reported by the device outside any batch. */
export interface DeviceHealth {
  /** An uncaptured error since the last batch (cleared by reading it), or null. */
  takeUncaptured(): string | null;
  /** Why the device was lost, or null. */
  lostReason(): string | null;
}

export class CommandSubmitter {
  private uniformArena: GPUBuffer | null = null;
  private readonly uniformAlign: number;

  constructor(
    private readonly device: GPUDevice,
    private readonly profiler: Profiler,
    private readonly health: DeviceHealth,
  ) {
    this.uniformAlign = Math.max(256, device.limits.minUniformBufferOffsetAlignment);
  }

  async submit(batch: Command[]): Promise<void> {
    const dispatches = batch.filter((c): c is DispatchCmd => c.kind === 'dispatch');
    // Await only pipelines that are still compiling.
    const waiting = dispatches.filter((d) => !d.program.compiled).map((d) => d.program.pipeline);
    if (waiting.length) await Promise.all(waiting);
    const names = [...new Set(dispatches.map((d) => d.program.name))];

    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
    this.writeUniforms(dispatches);
    const encoder = this.device.createCommandEncoder({ label: `batch(${names.slice(0, 4).join(',')})` });
    const transients = await this.encode(encoder, batch);
    if (this.profiler.enabled) this.profiler.resolve(encoder);
    this.device.queue.submit([encoder.finish()]);
    for (const b of transients) b.destroy();
    const validation = await this.device.popErrorScope();
    const oom = await this.device.popErrorScope();
    if (this.profiler.enabled) this.profiler.afterSubmit();
    const err = validation ?? oom;
    const uncaptured = this.health.takeUncaptured();
    if (err || uncaptured) {
      throw new GpuError(`GPU error in a batch of [${names.join(', ')}]: ${err?.message ?? uncaptured}`, names);
    }
    const lost = this.health.lostReason();
    if (lost) throw new GpuError(`the GPU device was lost (${lost})`, names);
  }

  /** Uniforms of the whole batch go into one arena written once before the submit. */
  private writeUniforms(dispatches: DispatchCmd[]): void {
    let arenaBytes = 0;
    for (const d of dispatches) if (d.uniformBytes) arenaBytes += this.uniformAlign;
    if (arenaBytes === 0) return;
    if (!this.uniformArena || this.uniformArena.size < arenaBytes) {
      this.uniformArena?.destroy();
      this.uniformArena = this.device.createBuffer({
        size: Math.max(arenaBytes, 64 * 1024),
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        label: 'uniform arena',
      });
    }
    const uniformBuffer = this.uniformArena;
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

  /** Encodes the batch in order; returns the staging buffers to destroy once submitted. */
  private async encode(encoder: GPUCommandEncoder, batch: Command[]): Promise<GPUBuffer[]> {
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
    return transients;
  }

  destroy(): void {
    this.uniformArena?.destroy();
    this.uniformArena = null;
  }
}
