/**
 * A kernel is a plain object: a name, declared buffers and uniforms, and a WGSL body. The binding lines and the
 * uniform struct are generated from the declarations (never hand-written), then the bind-group layout and the
 * uniform offsets are reflected back from the final WGSL with wgsl_reflect, so layout and shader cannot disagree.
 */
import { WgslReflect, ResourceType } from 'wgsl_reflect/wgsl_reflect.module.js';
import { SbgcError } from './errors.js';

export type ScalarType = 'f32' | 'f16' | 'u32' | 'i32';
export type ElementType = ScalarType | 'vec2<f32>' | 'vec4<f32>' | 'vec2<u32>' | 'vec4<u32>' | 'vec4<f16>';

export interface BufferDecl {
  name: string;
  type: ElementType;
  /** 'read' (default) binds read-only storage; outputs are 'read_write'. */
  access?: 'read' | 'read_write';
}

/** A uniform: name and scalar type. */
export type UniformDecl = [string, 'u32' | 'i32' | 'f32'];

/** Read-only f32 storage buffers, by name (the common case, in one line). */
export function reads(...names: string[]): BufferDecl[] {
  return names.map((name) => ({ name, type: 'f32' }));
}

/** Read-write f32 storage buffers (outputs), by name. */
export function writes(...names: string[]): BufferDecl[] {
  return names.map((name) => ({ name, type: 'f32', access: 'read_write' }));
}

/** u32 uniforms, by name. */
export function u32s(...names: string[]): UniformDecl[] {
  return names.map((name) => [name, 'u32']);
}

/** f32 uniforms, by name. */
export function f32s(...names: string[]): UniformDecl[] {
  return names.map((name) => [name, 'f32']);
}

export interface KernelSource {
  /** Name used for profiling and error messages, e.g. 'conv2d.fwd'. */
  name: string;
  buffers: BufferDecl[];
  uniforms?: UniformDecl[];
  workgroupSize: [number, number?, number?];
  /** WGSL with helper functions and exactly one `fn main(...)`; attributes are added here. */
  body: string;
  /** Pipeline-overridable constants (`override NAME: u32;` in the body). */
  constants?: Record<string, number>;
}

export interface UniformField {
  name: string;
  offset: number;
  type: 'u32' | 'i32' | 'f32';
}

export interface ReflectedLayout {
  buffers: Array<{ name: string; binding: number; readOnly: boolean }>;
  uniform: { binding: number; size: number; fields: UniformField[] } | null;
  workgroupSize: [number, number, number];
}

export function generateWgsl(src: KernelSource): string {
  const lines: string[] = [`// sbgc kernel: ${src.name}`];
  const usesF16 = src.buffers.some((b) => b.type.includes('f16')) || /\bf16\b/.test(src.body);
  if (usesF16) lines.push('enable f16;');
  if (/\bsubgroup[A-Z]\w*\s*\(|\bsubgroup_(invocation_id|size)\b/.test(src.body)) lines.push('enable subgroups;');
  src.buffers.forEach((b, i) => {
    const access = b.access === 'read_write' ? 'read_write' : 'read';
    lines.push(`@group(0) @binding(${i}) var<storage, ${access}> ${b.name}: array<${b.type}>;`);
  });
  const uniforms = src.uniforms ?? [];
  if (uniforms.length) {
    lines.push('struct Params {');
    for (const [n, t] of uniforms) lines.push(`  ${n}: ${t},`);
    lines.push('}');
    lines.push(`@group(0) @binding(${src.buffers.length}) var<uniform> params: Params;`);
  }
  const mains = src.body.match(/\bfn\s+main\s*\(/g);
  if (!mains || mains.length !== 1) {
    throw new SbgcError(`kernel ${src.name}: the WGSL body must define exactly one 'fn main('`);
  }
  const [x, y = 1, z = 1] = src.workgroupSize;
  const body = src.body.replace(/\bfn\s+main\s*\(/, `@compute @workgroup_size(${x}, ${y}, ${z})\nfn main(`);
  return `${lines.join('\n')}\n${body}\n`;
}

export function reflectLayout(name: string, wgsl: string): ReflectedLayout {
  let r: WgslReflect;
  try {
    r = new WgslReflect(wgsl);
  } catch (e) {
    throw new SbgcError(`kernel ${name}: WGSL did not parse for reflection: ${(e as Error).message}`);
  }
  const buffers: ReflectedLayout['buffers'] = [];
  let uniform: ReflectedLayout['uniform'] = null;
  for (const group of r.getBindGroups()) {
    for (const v of group) {
      if (!v) continue;
      if (v.group !== 0) throw new SbgcError(`kernel ${name}: only bind group 0 is used`);
      if (v.resourceType === ResourceType.Storage) {
        buffers.push({ name: v.name, binding: v.binding, readOnly: v.access !== 'read_write' });
      } else if (v.resourceType === ResourceType.Uniform) {
        const members = v.members ?? [];
        uniform = {
          binding: v.binding,
          size: Math.max(16, Math.ceil(v.size / 16) * 16),
          fields: members.map((m) => ({ name: m.name, offset: m.offset, type: m.type.name as UniformField['type'] })),
        };
      } else {
        throw new SbgcError(`kernel ${name}: binding ${v.name} is not a buffer`);
      }
    }
  }
  const entry = r.entry.compute[0];
  if (!entry) throw new SbgcError(`kernel ${name}: no compute entry point`);
  const ws = entry.workgroupSize as unknown as number[] | null;
  return {
    buffers,
    uniform,
    workgroupSize: [ws?.[0] ?? 1, ws?.[1] ?? 1, ws?.[2] ?? 1],
  };
}

/** Deterministic JSON (sorted keys) so equal specs give equal cache keys. */
export function stableJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  return `{${Object.keys(obj)
    .sort()
    .filter((k) => obj[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${stableJson(obj[k])}`)
    .join(',')}}`;
}
