/**
 * Elementwise ops: add, sub, mul, scale, axpy, SiLU — the smallest complete op family, and the template for new
 * ops (copy it): WGSL builder, `defineOp` with forward / vjp / jvp side by side, and a fused dual kernel where the
 * tangent shares loads with the primal (SiLU's backward carries tangents in one dispatch: the HVP building block).
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, setGradientAccumulator, type MaybeTensor, type Op } from '../engine/autodiff.js';
import { defineProgram } from '../engine/program.js';
import { reads, u32s, writes } from '../engine/kernel.js';
import { flatMain, grid } from '../engine/wgsl.js';
import { ShapeError } from '../engine/errors.js';

type NoParams = Record<string, never>;

const WG = 256;
const INPUT_NAMES = ['a', 'b', 'c', 'd'] as const;
const OUTPUT_NAMES = ['out', 'out2'] as const;

/**
 * One elementwise kernel: `exprs` assign outputs out, out2 from inputs a, b, c, d (f32 at index i), params.alpha,
 * and `BETA`, a literal baked in per distinct beta (affine's constant, so no tensor is uploaded for it).
 */
const ELEMENTWISE = defineProgram<{ name: string; exprs: string; inputs: number; outputs: number; beta: number }>({
  name: 'elementwise',
  spec: { name: true, exprs: true, inputs: true, outputs: true, beta: true },
  build: ({ name, exprs, inputs, outputs, beta }) => ({
    name,
    buffers: [...reads(...INPUT_NAMES.slice(0, inputs)), ...writes(...OUTPUT_NAMES.slice(0, outputs))],
    uniforms: [...u32s('n'), ['alpha', 'f32']],
    workgroupSize: [WG],
    body: `
fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
${flatMain({ wg: WG, count: 'params.n', body: exprs.replaceAll('BETA', `f32(${Math.fround(beta).toExponential()})`) })}`,
  }),
});

function launch(e: Engine, name: string, inputs: Tensor[], outputs: Tensor[], exprs: string, alpha: number, beta: number): void {
  const bindings: Record<string, Tensor> = {};
  inputs.forEach((t, k) => (bindings[INPUT_NAMES[k]] = t));
  outputs.forEach((t, k) => (bindings[OUTPUT_NAMES[k]] = t));
  const n = outputs[0].size;
  e.run(ELEMENTWISE, { name, exprs, inputs: inputs.length, outputs: outputs.length, beta }, bindings, { n, alpha }, grid(e, n, WG));
}

/** out = exprs over same-shape inputs: a new tensor labelled and kernel-named `name`. */
function map(e: Engine, name: string, inputs: Tensor[], exprs: string, alpha = 0, beta = 0): Tensor {
  for (const t of inputs.slice(1)) sameShape(name, inputs[0], t);
  const out = e.empty(inputs[0].shape, 'f32', name);
  launch(e, name, inputs, [out], exprs, alpha, beta);
  return out;
}

/** A primal `name` and its tangent (out, out2) from one dispatch, kernel `${name}.dual`. */
function mapDual(e: Engine, name: string, inputs: Tensor[], exprs: string): [Tensor, Tensor] {
  const out = e.empty(inputs[0].shape, 'f32', name);
  const tout = e.empty(inputs[0].shape, 'f32', `${name}.tangent`);
  launch(e, `${name}.dual`, inputs, [out, tout], exprs, 0, 0);
  return [out, tout];
}

function sameShape(what: string, a: Tensor, b: Tensor): void {
  if (a.size !== b.size || a.rank !== b.rank || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new ShapeError(`${what}: shapes differ: ${a.describe()} vs ${b.describe()}`);
  }
}

/** VJP and JVP of a unary op with a diagonal (hence symmetric) Jacobian: both are v ↦ J·v = jv(e, v, x, params). */
function diagonalJacobian<P = NoParams>(jv: (e: Engine, v: Tensor, x: Tensor, params: P) => Tensor) {
  type UnaryContext = { inputs: readonly [Tensor]; params: P };
  return {
    vjp: (e: Engine, { inputs: [x], params }: UnaryContext, ct: Tensor): MaybeTensor[] => [jv(e, ct, x, params)],
    jvp: (e: Engine, { inputs: [x], params }: UnaryContext, [tx]: readonly MaybeTensor[]): MaybeTensor =>
      tx ? jv(e, tx, x, params) : null,
  };
}

/** Sum of nullable terms (null = 0). */
export function addMaybe(e: Engine, a: MaybeTensor, b: MaybeTensor): MaybeTensor {
  if (!a) return b;
  if (!b) return a;
  return add(e, [a, b], {});
}

export const add: Op<NoParams> = defineOp({
  name: 'add',
  inputs: ['a', 'b'],
  forward: (e, [a, b]) => map(e, 'add', [a, b], 'out[i] = a[i] + b[i];'),
  vjp: (_e, _ctx, ct, needs) => [needs[0] ? ct : null, needs[1] ? ct : null],
  jvp: (e, _ctx, [ta, tb]) => addMaybe(e, ta, tb),
});

export const sub: Op<NoParams> = defineOp({
  name: 'sub',
  inputs: ['a', 'b'],
  forward: (e, [a, b]) => map(e, 'sub', [a, b], 'out[i] = a[i] - b[i];'),
  vjp: (e, _ctx, ct, needs) => [needs[0] ? ct : null, needs[1] ? scale(e, [ct], { alpha: -1 }) : null],
  jvp: (e, _ctx, [ta, tb]) => (tb ? (ta ? sub(e, [ta, tb], {}) : scale(e, [tb], { alpha: -1 })) : ta),
});

export const mul: Op<NoParams> = defineOp({
  name: 'mul',
  inputs: ['a', 'b'],
  forward: (e, [a, b]) => map(e, 'mul', [a, b], 'out[i] = a[i] * b[i];'),
  vjp: (e, { inputs: [a, b] }, ct, needs) => [
    needs[0] ? mul(e, [ct, b], {}) : null,
    needs[1] ? mul(e, [ct, a], {}) : null,
  ],
  jvp: (e, { inputs: [a, b] }, [ta, tb]) =>
    addMaybe(e, ta ? mul(e, [ta, b], {}) : null, tb ? mul(e, [a, tb], {}) : null),
});

export const scale: Op<{ alpha: number }> = defineOp({
  name: 'scale',
  inputs: ['a'],
  forward: (e, [a], { alpha }) => map(e, 'scale', [a], 'out[i] = params.alpha * a[i];', alpha),
  ...diagonalJacobian<{ alpha: number }>((e, v, _a, p) => scale(e, [v], p)),
});

/**
 * alpha·x + beta with a constant beta (e.g. 2x − 1 to centre data). beta is baked into the WGSL as a literal
 * (one pipeline per distinct beta; callers use a handful), so no constant tensor is uploaded per call.
 */
export const affine: Op<{ alpha: number; beta: number }> = defineOp({
  name: 'affine',
  inputs: ['a'],
  forward(e, [a], { alpha, beta }) {
    if (!Number.isFinite(beta)) throw new RangeError(`affine: beta must be finite, got ${beta}`);
    return map(e, 'affine', [a], 'out[i] = params.alpha * a[i] + BETA;', alpha, beta);
  },
  ...diagonalJacobian<{ alpha: number; beta: number }>((e, v, _a, p) => scale(e, [v], { alpha: p.alpha })),
});

/** alpha·x + y */
export const axpy: Op<{ alpha: number }> = defineOp({
  name: 'axpy',
  inputs: ['x', 'y'],
  forward: (e, [x, y], { alpha }) => map(e, 'axpy', [x, y], 'out[i] = params.alpha * a[i] + b[i];', alpha),
  vjp: (e, { params }, ct, needs) => [needs[0] ? scale(e, [ct], params) : null, needs[1] ? ct : null],
  jvp: (e, { params }, [tx, ty]) =>
    tx ? (ty ? axpy(e, [tx, ty], params) : scale(e, [tx], params)) : ty,
});

/** a / b */
export const divide: Op<NoParams> = defineOp({
  name: 'divide',
  inputs: ['a', 'b'],
  forward: (e, [a, b]) => map(e, 'divide', [a, b], 'out[i] = a[i] / b[i];'),
  // ∂(a/b)/∂a = 1/b; ∂(a/b)/∂b = −(a/b)/b.
  vjp: (e, { inputs: [, b], output }, ct, needs) => [
    needs[0] ? divide(e, [ct, b], {}) : null,
    needs[1] ? scale(e, [divide(e, [mul(e, [ct, output], {}), b], {})], { alpha: -1 }) : null,
  ],
  jvp: (e, { inputs: [, b], output }, [ta, tb]) => {
    const num = tb ? (ta ? sub(e, [ta, mul(e, [output, tb], {})], {}) : scale(e, [mul(e, [output, tb], {})], { alpha: -1 })) : ta;
    return num ? divide(e, [num, b], {}) : null;
  },
});

/** Natural logarithm (the Fourier time embedding takes log σ). */
export const log: Op<NoParams> = defineOp({
  name: 'log',
  inputs: ['x'],
  forward: (e, [x]) => map(e, 'log', [x], 'out[i] = log(a[i]);'),
  ...diagonalJacobian((e, v, x) => divide(e, [v, x], {})),
});

const SILU_GRAD = 'let s = sigmoid(x); let d1 = s * (1.0 + x * (1.0 - s));';

/** g · silu'(x). Its own JVP is the fused HVP kernel `silu.backward.dual`. */
export const siluBackward: Op<NoParams> = defineOp({
  name: 'silu.backward',
  inputs: ['x', 'g'],
  forward: (e, [x, g]) => map(e, 'silu.backward', [x, g], `let x = a[i]; ${SILU_GRAD} out[i] = b[i] * d1;`),
  vjp: (e, { inputs: [x, g] }, ct, needs) => [
    // ∂/∂x [g silu'(x)] = g silu''(x); ∂/∂g = silu'(x)
    needs[0] ? siluSecond(e, x!, g!, ct) : null,
    needs[1] ? siluBackward(e, [x, ct], {}) : null,
  ],
  jvp: (e, ctx, tangents) => siluBackwardDual(e, ctx.inputs, tangents)[1],
  dual: (e, inputs, tangents) => siluBackwardDual(e, inputs, tangents),
});

/** ct · g · silu''(x) (not itself differentiated further: third order is never needed). */
function siluSecond(e: Engine, x: Tensor, g: Tensor, ct: Tensor): Tensor {
  const exprs = 'let x = a[i]; let s = sigmoid(x); let d2 = s * (1.0 - s) * (2.0 + x * (1.0 - 2.0 * s)); out[i] = c[i] * b[i] * d2;';
  return map(e, 'silu.second', [x, g, ct], exprs);
}

/** One dispatch: primal g·silu'(x) and tangent ġ·silu'(x) + g·silu''(x)·ẋ (x, g loaded once). */
function siluBackwardDual(e: Engine, [x, g]: readonly [Tensor, Tensor], tangents: readonly MaybeTensor[]): [Tensor, Tensor] {
  const tx = tangents[0] ?? e.zeros(x.shape, 'f32', 'zero tangent');
  const tg = tangents[1] ?? e.zeros(x.shape, 'f32', 'zero tangent');
  return mapDual(
    e,
    'silu.backward',
    [x, g, tx, tg],
    `let x = a[i]; ${SILU_GRAD}
  let d2 = s * (1.0 - s) * (2.0 + x * (1.0 - 2.0 * s));
  out[i] = b[i] * d1;
  out2[i] = d[i] * d1 + b[i] * d2 * c[i];`,
  );
}

export const silu: Op<NoParams> = defineOp({
  name: 'silu',
  inputs: ['x'],
  forward: (e, [x]) => map(e, 'silu', [x], 'let x = a[i]; out[i] = x * sigmoid(x);'),
  ...diagonalJacobian((e, v, x) => siluBackward(e, [x, v], {})),
  dual(e, [x], [tx]) {
    if (!tx) return [silu.def.forward(e, [x], {}), null];
    return mapDual(e, 'silu', [x, tx], `let x = a[i]; ${SILU_GRAD} out[i] = x * s; out2[i] = b[i] * d1;`);
  },
});

setGradientAccumulator((e, a, b) => add(e, [a, b], {}));
