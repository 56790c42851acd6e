import { defineFixedProgram, type ProgramDef } from '../../engine/program.js';
import type { BufferDecl, UniformDecl } from '../../engine/kernel.js';
import { flatMain } from '../../engine/wgsl.js';

/**
 * A spec-less test program whose WGSL `body` runs once for each i < params.n, 64 threads a workgroup (dispatch it
 * with grid(e, n, 64)). The tests' own kernels (an axpy, an RHS, an in-place write) differ only in these parts.
 */
export function flatTestProgram(
  name: string,
  buffers: BufferDecl[],
  uniforms: UniformDecl[],
  body: string,
): ProgramDef<Record<string, never>> {
  const source = flatMain({ wg: 64, count: 'params.n', body });
  return defineFixedProgram({ name, buffers, uniforms, workgroupSize: [64], body: source });
}
