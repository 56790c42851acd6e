/**
 * WGSL pieces shared by the reduction family (reduce.ts), the broadcast (broadcast.ts) and the fused row/block
 * kernels that reduce inside themselves (softmax.ts, group-norm-kernels.ts): the workgroup tree, vector-width
 * helpers, name slots for program specs, and the one-workgroup-per-item grid.
 */
import type { Tensor } from '../engine/tensor.js';
import { SbgcError } from '../engine/errors.js';

export type Combine = 'sum' | 'max';

/** The combine operator as WGSL. */
export function combineWgsl(combine: Combine, a: string, b: string): string {
  return combine === 'sum' ? `${a} + ${b}` : `max(${a}, ${b})`;
}

/** The combine's identity as a WGSL f32 literal (max: the most negative finite f32, so −∞ inputs stay visible). */
export function identityWgsl(combine: Combine): string {
  return combine === 'sum' ? '0.0' : '-3.402823e38';
}

export interface TreeOptions {
  /** Workgroup size (a power of two): the tree has log₂ wg barrier rounds. */
  wg: number;
  /** Function name, e.g. 'reduce4'. */
  fn: string;
  /** Workgroup array name (one per function). */
  arr: string;
  type: 'f32' | 'vec4<f32>';
  combine: Combine;
  /**
   * Whether the function may be called again in the same invocation: a trailing barrier keeps the next call's
   * writes behind every lane's read of the total. One-shot trees skip it.
   */
  reusable: boolean;
}

/** `fn(lid, v) -> total`: a workgroup tree reduction; every invocation receives the total. */
export function treeReduceWgsl(o: TreeOptions): string {
  return `
var<workgroup> ${o.arr}: array<${o.type}, ${o.wg}>;
fn ${o.fn}(lid: u32, v: ${o.type}) -> ${o.type} {
  ${o.arr}[lid] = v;
  workgroupBarrier();
  for (var h = ${o.wg / 2}u; h > 0u; h = h >> 1u) {
    if (lid < h) { ${o.arr}[lid] = ${combineWgsl(o.combine, `${o.arr}[lid]`, `${o.arr}[lid + h]`)}; }
    workgroupBarrier();
  }
  let total = ${o.arr}[0];
${o.reusable ? '  workgroupBarrier();\n' : ''}  return total;
}`;
}

/** WGSL for vector width vw: `V` is the loaded type, hdot(a, b) the horizontal dot product, first(a) lane 0. */
export function vectorWgsl(vw: number): string {
  return vw === 4
    ? 'alias V = vec4<f32>;\nfn hdot(a: V, b: V) -> f32 { return dot(a, b); }\nfn first(a: V) -> f32 { return a.x; }'
    : 'alias V = f32;\nfn hdot(a: V, b: V) -> f32 { return a * b; }\nfn first(a: V) -> f32 { return a; }';
}

/** Four input-name slots of a program spec (filled by nameSlots), and their spec fields in key order. */
export type InputSlots = { in0: string; in1: string; in2: string; in3: string };
export const INPUT_SLOT_FIELDS = { in0: true, in1: true, in2: true, in3: true } as const;

/**
 * The buffer names of a record of tensors as fixed spec slots ('' = unused): programs take names as spec values, so
 * a record's keys (interned strings; nothing is built) select the pipeline and `build` declares the buffers.
 */
export function nameSlots(kernel: string, role: string, tensors: Record<string, Tensor> | undefined, count: number): string[] {
  const names = tensors ? Object.keys(tensors) : [];
  if (names.length > count) {
    throw new SbgcError(`${kernel}: ${names.length} ${role} given (${names.join(', ')}), at most ${count} are supported`);
  }
  const slots = names;
  while (slots.length < count) slots.push('');
  return slots;
}

/** The used names of spec slots, in order. */
export function usedSlots(...slots: string[]): string[] {
  return slots.filter((s) => s !== '');
}
