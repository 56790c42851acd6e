/**
 * Autodiff: ops with forward, VJP and JVP rules, a reverse-mode tape, and a forward-mode (JVP) trace.
 *
 * Every op is defined with `defineOp`, whose type requires all three rules, so an op without a JVP does not
 * compile. Rules are written with ops, so they compose: running a VJP while a JVP trace is active propagates
 * tangents through the backward pass — forward-over-reverse, i.e. Hessian-vector products. An op may also give a
 * `dual` kernel computing primal and tangent in one dispatch (sharing loads); the JVP trace then uses it.
 *
 * Tangents and cotangents use `null` for "exactly zero", so unused branches cost nothing.
 */
import type { Engine } from './engine.js';
import { Tensor } from './tensor.js';
import { DTypeError, SbgcError, ShapeError } from './errors.js';

export type MaybeTensor = Tensor | null;

/**
 * An op's inputs, declared by name in order; a trailing '?' marks one that may be null (e.g. 'bias?'), and a single
 * name starting with '...' any positive number of tensors (e.g. ['...xs'] for a concatenation). The declaration
 * types the tensors `forward`, `dual` and the rules receive, and `defineOp` checks every call against it (present
 * where required, f32), so no op re-checks its inputs by hand.
 */
export type InputNames = readonly string[];

/** The tensors of declared inputs: Tensor where required, MaybeTensor where optional ('name?'). */
export type OpInputs<I extends InputNames> = I extends readonly [`...${string}`]
  ? readonly Tensor[]
  : { readonly [K in keyof I]: string extends I[K] ? MaybeTensor : I[K] extends `${string}?` ? MaybeTensor : Tensor };

export interface OpContext<P, I extends InputNames = InputNames> {
  inputs: OpInputs<I>;
  output: Tensor;
  params: P;
}

export interface OpDef<P, I extends InputNames = InputNames> {
  name: string;
  /** Input names in order ('name?' = optional). */
  inputs: I;
  /** Launches the kernel(s). */
  forward(e: Engine, inputs: OpInputs<I>, params: P): Tensor;
  /** Cotangents for each input (null where not needed or zero). `needs[i]` says which are wanted. */
  vjp(e: Engine, ctx: OpContext<P, I>, cotangent: Tensor, needs: readonly boolean[]): MaybeTensor[];
  /** Tangent of the output given input tangents (null = zero; at least one is non-null). */
  jvp(e: Engine, ctx: OpContext<P, I>, tangents: readonly MaybeTensor[]): MaybeTensor;
  /** Optional fused primal + tangent kernel, used under a JVP trace. */
  dual?(e: Engine, inputs: OpInputs<I>, tangents: readonly MaybeTensor[], params: P): [Tensor, MaybeTensor];
}

export interface Op<P, I extends InputNames = InputNames> {
  (e: Engine, inputs: readonly MaybeTensor[], params: P): Tensor;
  readonly def: OpDef<P, I>;
}

/** Checks a call against the op's declared inputs; returns them typed. Builds no string unless one is wrong. */
function checkInputs<P, I extends InputNames>(def: OpDef<P, I>, inputs: readonly MaybeTensor[]): OpInputs<I> {
  const names: readonly string[] = def.inputs;
  if (names.length === 1 && names[0].startsWith('...')) {
    if (inputs.length === 0) throw new ShapeError(`${def.name}: no inputs (it takes ${names[0]})`);
    for (let k = 0; k < inputs.length; k++) checkInput(def.name, inputs[k], names[0], k);
  } else {
    if (inputs.length > names.length) {
      throw new ShapeError(`${def.name}: ${inputs.length} inputs given, it takes ${names.length} (${names.join(', ')})`);
    }
    for (let k = 0; k < names.length; k++) checkInput(def.name, inputs[k] ?? null, names[k], -1);
  }
  return inputs as unknown as OpInputs<I>;
}

/** One declared input: `index` ≥ 0 for an element of a variadic list. */
function checkInput(op: string, t: MaybeTensor, name: string, index: number): void {
  if (t && t.dtype === 'f32') return;
  const label = index >= 0 ? `${op} ${name.slice(3)}[${index}]` : `${op} ${name.endsWith('?') ? name.slice(0, -1) : name}`;
  if (!t) {
    if (index < 0 && name.endsWith('?')) return;
    throw new ShapeError(`${label}: missing input`);
  }
  throw new DTypeError(`${label}: ${t.describe()} must be f32`);
}

// ---------------------------------------------------------------- traces

interface TapeNode {
  op: OpDef<unknown>;
  ctx: OpContext<unknown>;
}

/** Reverse-mode tape: records op applications whose inputs depend on a watched tensor. */
export class Tape {
  readonly nodes: TapeNode[] = [];
  readonly watched = new Set<Tensor>();
  constructor(readonly e: Engine) {}
  watch(t: Tensor): void {
    this.watched.add(t);
  }
}

/** Forward-mode trace: tangents of tensors, keyed by identity. */
export class JvpTrace {
  readonly tangents = new Map<Tensor, Tensor>();
  constructor(readonly e: Engine) {}
  tangentOf(t: MaybeTensor): MaybeTensor {
    return t ? (this.tangents.get(t) ?? null) : null;
  }
}

const tapes: Tape[] = [];
const jvpTraces: JvpTrace[] = [];
/** Depth counter: > 0 while rules compute tangents, which must not be recorded again. */
let suspended = 0;

function suspendTraces<T>(fn: () => T): T {
  suspended++;
  try {
    return fn();
  } finally {
    suspended--;
  }
}

export function defineOp<P, const I extends InputNames = InputNames>(def: OpDef<P, I>): Op<P, I> {
  const apply = (e: Engine, given: readonly MaybeTensor[], params: P): Tensor => {
    const inputs = checkInputs(def, given);
    if (suspended > 0 || (tapes.length === 0 && jvpTraces.length === 0)) return def.forward(e, inputs, params);
    const trace = jvpTraces[jvpTraces.length - 1];
    const tangents = trace ? given.map((t) => trace.tangentOf(t)) : [];
    const hasTangent = tangents.some((t) => t !== null);
    let output: Tensor;
    let tangentOut: MaybeTensor = null;
    if (trace && hasTangent && def.dual) {
      [output, tangentOut] = suspendTraces(() => def.dual!(e, inputs, tangents, params));
    } else {
      output = suspendTraces(() => def.forward(e, inputs, params));
      if (trace && hasTangent) {
        const ctx: OpContext<P, I> = { inputs, output, params };
        tangentOut = suspendTraces(() => def.jvp(e, ctx, tangents));
      }
    }
    if (trace && tangentOut) trace.tangents.set(output, tangentOut);
    for (const tape of tapes) {
      if (given.some((t) => t && tape.watched.has(t))) {
        tape.watched.add(output);
        tape.nodes.push({ op: def as unknown as OpDef<unknown>, ctx: { inputs, output, params } as OpContext<unknown> });
      }
    }
    return output;
  };
  return Object.assign(apply, { def });
}

// ---------------------------------------------------------------- gradient accumulation hook

let accumulate: ((e: Engine, a: Tensor, b: Tensor) => Tensor) | null = null;

/** kernels/ registers its differentiable `add` here (the engine knows no kernels). */
export function setGradientAccumulator(fn: (e: Engine, a: Tensor, b: Tensor) => Tensor): void {
  accumulate = fn;
}

// ---------------------------------------------------------------- transforms

export interface VjpResult {
  output: Tensor;
  /** Cotangent → gradient for each input (null if the output does not depend on it). */
  backward(cotangent: Tensor): MaybeTensor[];
}

/**
 * Reverse mode: runs f(inputs) recording a tape; `backward(ct)` returns ∂⟨ct, f⟩/∂inputs.
 * Rules run through ops, so an enclosing `jvp` differentiates the backward pass too (HVP).
 */
export function vjp(e: Engine, f: (...xs: Tensor[]) => Tensor, inputs: Tensor[]): VjpResult {
  const tape = new Tape(e);
  for (const x of inputs) tape.watch(x);
  tapes.push(tape);
  let output: Tensor;
  try {
    output = f(...inputs);
  } finally {
    tapes.splice(tapes.lastIndexOf(tape), 1);
  }
  return {
    output,
    backward: (cotangent: Tensor) => backwardPass(e, tape, output, cotangent, inputs),
  };
}

function backwardPass(e: Engine, tape: Tape, output: Tensor, cotangent: Tensor, inputs: Tensor[]): MaybeTensor[] {
  if (!accumulate) throw new SbgcError('autodiff: no gradient accumulator registered (import kernels/)');
  if (cotangent.size !== output.size) {
    throw new SbgcError(`vjp: cotangent ${cotangent.describe()} does not match output ${output.describe()}`);
  }
  const cts = new Map<Tensor, Tensor>([[output, cotangent]]);
  // Which tensors lead to an input — only those need cotangents.
  const needed = new Set<Tensor>(inputs);
  for (const node of tape.nodes) {
    if (node.ctx.inputs.some((t) => t && needed.has(t))) needed.add(node.ctx.output);
  }
  for (let i = tape.nodes.length - 1; i >= 0; i--) {
    const { op, ctx } = tape.nodes[i];
    const ct = cts.get(ctx.output);
    if (!ct) continue;
    const needs = ctx.inputs.map((t) => !!t && needed.has(t));
    if (!needs.some(Boolean)) continue;
    const grads = op.vjp(e, ctx, ct, needs);
    ctx.inputs.forEach((t, k) => {
      const g = grads[k];
      if (!t || !g || !needs[k]) return;
      const prev = cts.get(t);
      cts.set(t, prev ? accumulate!(e, prev, g) : g);
    });
  }
  return inputs.map((x) => cts.get(x) ?? null);
}

/** Forward mode: f(inputs) and its directional derivative along `tangents`. */
export function jvp(
  e: Engine,
  f: (...xs: Tensor[]) => Tensor,
  inputs: Tensor[],
  tangents: MaybeTensor[],
): { output: Tensor; tangent: MaybeTensor } {
  const trace = new JvpTrace(e);
  inputs.forEach((x, i) => {
    const t = tangents[i];
    if (!t) return;
    if (t.size !== x.size) throw new SbgcError(`jvp: tangent ${t.describe()} does not match ${x.describe()}`);
    trace.tangents.set(x, t);
  });
  jvpTraces.push(trace);
  try {
    const output = f(...inputs);
    return { output, tangent: trace.tangentOf(output) };
  } finally {
    jvpTraces.splice(jvpTraces.lastIndexOf(trace), 1);
  }
}

/**
 * Hessian-vector product of the scalar-valued ⟨u, f(x)⟩: forward-over-reverse.
 * Returns f(x), the gradient gᵀ = uᵀ∂f/∂x, and its directional derivative ∂g/∂x · v.
 */
export function vjpAndHvp(
  e: Engine,
  f: (x: Tensor) => Tensor,
  x: Tensor,
  u: Tensor,
  v: Tensor,
): { output: Tensor; grad: Tensor; hvp: MaybeTensor } {
  let output!: Tensor;
  const { output: grad, tangent } = jvp(
    e,
    (xx) => {
      const r = vjp(e, f, [xx]);
      output = r.output;
      const g = r.backward(u)[0];
      if (!g) throw new SbgcError('vjpAndHvp: output does not depend on x');
      return g;
    },
    [x],
    [v],
  );
  return { output, grad, hvp: tangent };
}

/** True while a tape or JVP trace is recording (ops may then keep extra saved values). */
export function isTracing(): boolean {
  return suspended === 0 && (tapes.length > 0 || jvpTraces.length > 0);
}
