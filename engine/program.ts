/**
 * Program objects: a kernel declared once — name, a typed spec, the WGSL builder, the shape dependencies of its
 * inputs — and looked up per dispatch by the spec's VALUES, never by its text.
 *
 * The cache key is the tuple (spec fields in declared order, then the declared input shapes). It is walked as a
 * trie of Maps keyed by the values themselves, so a dispatch of a cached program builds no string, serialises no
 * JSON and generates no WGSL (ONNX Runtime's WebGPU programs key by "rank vs dims" the same way; tfjs keys by a
 * hand-built string). WGSL is generated once per distinct key, on the first miss.
 */
import type { KernelSource } from './kernel.js';
import { SbgcError } from './errors.js';

/** What a spec may hold: primitives only, so equal values mean equal keys (no object identity, no JSON). */
export type SpecValue = string | number | boolean;
export type ProgramSpec = { readonly [field: string]: SpecValue };

/**
 * What a program's WGSL depends on of one input's shape. Inputs not declared depend on neither: their sizes reach
 * the shader as uniforms, so one pipeline serves every shape (the default, and what almost every kernel does).
 */
export type ShapeDependency = 'rank' | 'dims';

export type InputShapes = { readonly [input: string]: readonly number[] };

/** Every field of S, each set to true: a missing or extra field is a compile error, and this order is the key's. */
export type SpecFields<S extends ProgramSpec> = { readonly [K in keyof S]-?: true };

export interface ProgramDeclaration<S extends ProgramSpec> {
  /** Family name, used in errors and as the profiler's fallback label. */
  readonly name: string;
  /** The spec's fields in key order (see SpecFields). */
  readonly spec: SpecFields<S>;
  /** Inputs whose rank or exact dims the WGSL depends on (the shapes are passed to `build`). */
  readonly shapes?: { readonly [input: string]: ShapeDependency };
  /** The kernel for one spec: buffers, uniforms, workgroup size, WGSL body. Called once per distinct key. */
  build(spec: S, shapes: InputShapes): KernelSource;
}

export interface ProgramDef<S extends ProgramSpec> extends ProgramDeclaration<S> {
  /** The spec field names in key order (from `spec`), precomputed. */
  readonly fields: readonly (keyof S & string)[];
  /** The declared shape dependencies as [input, dependency] pairs, precomputed. */
  readonly shapeInputs: readonly (readonly [string, ShapeDependency])[];
}

export function defineProgram<S extends ProgramSpec>(declaration: ProgramDeclaration<S>): ProgramDef<S> {
  const fields = Object.keys(declaration.spec) as (keyof S & string)[];
  const shapeInputs = Object.entries(declaration.shapes ?? {});
  return Object.freeze({ ...declaration, fields, shapeInputs });
}

/** A program with no spec: one kernel, whose sizes all reach the shader as uniforms (built once per engine). */
export function defineFixedProgram(source: KernelSource): ProgramDef<Record<string, never>> {
  return defineProgram<Record<string, never>>({ name: source.name, spec: {}, build: () => source });
}

/** Something with a shape, as bound to an input (a Tensor; kept structural so this file needs no engine types). */
export interface Shaped {
  readonly shape: readonly number[];
}

/** Marks where the shape part of a key starts, so a spec value can never collide with a rank or a dim. */
const SHAPES = Symbol('shapes');

type TrieNode<P> = { children: Map<unknown, TrieNode<P>>; program?: P };

/**
 * Per-engine cache from (program, spec, declared shapes) to a compiled program P. `compile` runs once per key;
 * a hit walks one Map per spec field and per declared dimension.
 */
export class ProgramCache<P> {
  private readonly roots = new Map<ProgramDef<ProgramSpec>, TrieNode<P>>();
  private count = 0;

  constructor(private readonly compile: (source: KernelSource) => P) {}

  get size(): number {
    return this.count;
  }

  get<S extends ProgramSpec>(def: ProgramDef<S>, spec: S, inputs?: { readonly [name: string]: Shaped | undefined }): P {
    const generic = def as unknown as ProgramDef<ProgramSpec>;
    let node = this.roots.get(generic);
    if (!node) {
      node = { children: new Map() };
      this.roots.set(generic, node);
    }
    for (const f of def.fields) node = child(node, spec[f]);
    if (def.shapeInputs.length) {
      node = child(node, SHAPES);
      for (const [input, dependency] of def.shapeInputs) {
        const shape = inputs?.[input]?.shape;
        if (!shape) throw new SbgcError(`program ${def.name}: input '${input}' declares a shape dependency but was not bound`);
        node = child(node, shape.length);
        if (dependency === 'dims') for (const d of shape) node = child(node, d);
      }
    }
    if (node.program !== undefined) return node.program;
    checkSpecFields(def, spec);
    const program = this.compile(def.build(spec, declaredShapes(def, inputs)));
    node.program = program;
    this.count++;
    return program;
  }
}

function child<P>(node: TrieNode<P>, value: unknown): TrieNode<P> {
  let next = node.children.get(value);
  if (!next) {
    next = { children: new Map() };
    node.children.set(value, next);
  }
  return next;
}

/** On a miss only: a spec field the declaration does not list would change the WGSL without changing the key. */
function checkSpecFields(def: ProgramDef<ProgramSpec>, spec: ProgramSpec): void {
  for (const k of Object.keys(spec)) {
    if (!(def.fields as readonly string[]).includes(k)) {
      throw new SbgcError(`program ${def.name}: spec field '${k}' is not declared in its spec fields`);
    }
    const v = spec[k];
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new SbgcError(`program ${def.name}: spec field '${k}' is a ${typeof v}, not a string, number or boolean`);
    }
  }
}

function declaredShapes(def: ProgramDef<ProgramSpec>, inputs?: { readonly [name: string]: Shaped | undefined }): InputShapes {
  const shapes: Record<string, readonly number[]> = {};
  for (const [input, dependency] of def.shapeInputs) {
    const shape = inputs![input]!.shape;
    // A rank-only input shows the shader its rank and nothing else: unknown dims read as 0.
    shapes[input] = dependency === 'dims' ? [...shape] : shape.map(() => 0);
  }
  return shapes;
}

/** A readable form of a program's key, for messages and tests (never used for lookup). */
export function describeProgramKey<S extends ProgramSpec>(def: ProgramDef<S>, spec: S): string {
  return `${def.name}(${def.fields.map((f) => `${f}=${String(spec[f])}`).join(', ')})`;
}
