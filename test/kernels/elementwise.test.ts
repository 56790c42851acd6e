import { describe, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { checkHvp, checkOp, randomHost, type Host64 } from '../helpers/check-op.js';
import { map2 } from '../helpers/op-references.js';
import { add, affine, axpy, divide, log, mul, scale, silu, siluBackward, sub } from '../../kernels/elementwise.js';

const sig = (x: number) => 1 / (1 + Math.exp(-x));
const siluRef = (x: number) => x * sig(x);
const dsilu = (x: number) => sig(x) * (1 + x * (1 - sig(x)));

// Elementwise f32 results are within 1–2 ulp of the float64 value (exp is ≤ 3 ulp on lavapipe): 2e-6 relative
// to the max-norm. Finite differences of the float64 reference with h = 1e-5 are accurate to ~1e-9, so the JVP
// bound is again set by f32 rounding of the tangent computation.
const TOL = { forward: 2e-6, jvp: 5e-6, vjp: 5e-6 };

describe('elementwise ops', () => {
  const engine = useEngine();
  for (const shape of [[1], [3, 5, 7], [2, 3, 17, 19]]) {
    it(`add / sub / mul / scale / affine / axpy on [${shape}]`, async () => {
      const e = engine();
      const a = randomHost(shape, 1);
      const b = randomHost(shape, 2);
      await checkOp(e, { op: add, params: {}, inputs: [a, b], reference: ([x, y]) => map2(x!, y!, (p, q) => p + q), tol: TOL });
      await checkOp(e, { op: sub, params: {}, inputs: [a, b], reference: ([x, y]) => map2(x!, y!, (p, q) => p - q), tol: TOL });
      await checkOp(e, { op: mul, params: {}, inputs: [a, b], reference: ([x, y]) => map2(x!, y!, (p, q) => p * q), tol: TOL });
      await checkOp(e, {
        op: scale,
        params: { alpha: -2.5 },
        inputs: [a],
        reference: ([x]) => ({ shape: x!.shape, data: x!.data.map((p) => Math.fround(-2.5) * p) }),
        tol: TOL,
      });
      await checkOp(e, {
        op: affine,
        params: { alpha: 2, beta: -1.3 },
        inputs: [a],
        reference: ([x]) => ({ shape: x!.shape, data: x!.data.map((p) => 2 * p + Math.fround(-1.3)) }),
        tol: TOL,
      });
      await checkOp(e, {
        op: axpy,
        params: { alpha: 0.75 },
        inputs: [a, b],
        reference: ([x, y]) => map2(x!, y!, (p, q) => 0.75 * p + q),
        tol: TOL,
      });
    });
  }

  it('divide and log (positive inputs away from 0, where 1/x and log are well conditioned)', async () => {
    const e = engine();
    const pos = (seed: number): Host64 => {
      const h = randomHost([3, 17], seed);
      return { shape: h.shape, data: h.data.map((v) => 0.5 + Math.abs(v)) };
    };
    const a = randomHost([3, 17], 9);
    const b = pos(10);
    await checkOp(e, { op: divide, params: {}, inputs: [a, b], reference: ([x, y]) => map2(x!, y!, (p, q) => p / q), tol: TOL });
    await checkOp(e, { op: log, params: {}, inputs: [b], reference: ([x]) => ({ shape: x!.shape, data: x!.data.map(Math.log) }), tol: TOL });
  });

  it('silu and its backward (whose JVP is the fused HVP kernel)', async () => {
    const e = engine();
    const x = randomHost([4, 33], 5, 4);
    const g = randomHost([4, 33], 6);
    await checkOp(e, { op: silu, params: {}, inputs: [x], reference: ([a]) => ({ shape: a!.shape, data: a!.data.map(siluRef) }), tol: TOL });
    await checkOp(e, {
      op: siluBackward,
      params: {},
      inputs: [x, g],
      reference: ([a, b]) => map2(a!, b!, (p, q) => q * dsilu(p)),
      tol: { forward: 2e-6, jvp: 1e-5, vjp: 1e-5 },
    });
    // HVP of ⟨u, silu(x)⟩: diag(u · silu''(x)) v, against differences of the float64 gradient u·silu'(x).
    await checkHvp(
      e,
      (t) => silu(e, [t], {}),
      x,
      (xx, u) => map2(xx, u, (p, q) => q * dsilu(p)),
      [4, 33],
      1e-5,
    );
  });
});
