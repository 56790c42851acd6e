/**
 * One case of the op-table test: the inputs, params and float64 reference of one op, with the tolerances its
 * per-op test justifies. `runOpCase` hands it to `checkOp` (forward vs float64, VJP and JVP vs central differences,
 * ⟨Jv, u⟩ = ⟨v, Jᵀu⟩).
 */
import type { Engine } from '../../engine/engine.js';
import type { Op } from '../../engine/autodiff.js';
import type { AnyOp } from '../../kernels/op-table.js';
import { checkOp, type Host64, type RefFn, type Tolerances } from './check-op.js';

export interface OpCase<P> {
  /** The op's params; a function of the engine where they hold tensors (e.g. the mixture's tables). */
  params: P | ((e: Engine) => P);
  inputs: Array<Host64 | null>;
  reference: RefFn;
  /** Inputs that get tangents and gradients (default: every non-null input). */
  differentiable?: boolean[];
  tol: Tolerances;
  seed?: number;
}

/**
 * Runs one case through checkOp. `op` is the table entry the case is keyed by: the case tables are typed by the op
 * tables (`{ [K in OpName]: OpCase<params of K> }`), so the params fit the op.
 */
export async function runOpCase(e: Engine, op: AnyOp, c: OpCase<unknown>): Promise<void> {
  const params = typeof c.params === 'function' ? (c.params as (e: Engine) => unknown)(e) : c.params;
  await checkOp(e, {
    op: op as unknown as Op<unknown>,
    params,
    inputs: c.inputs,
    reference: c.reference,
    differentiable: c.differentiable,
    tol: c.tol,
    seed: c.seed,
  });
}

/** Whether a module export is an op (a callable with a def holding all three rules). */
export function isOp(value: unknown): value is AnyOp {
  if (typeof value !== 'function' || !('def' in value)) return false;
  const def = (value as { def: unknown }).def;
  return (
    typeof def === 'object' &&
    def !== null &&
    ['forward', 'vjp', 'jvp'].every((rule) => typeof (def as Record<string, unknown>)[rule] === 'function')
  );
}
