import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { checkOp, randomHost } from '../helpers/check-op.js';
import { reshapeOp } from '../../kernels/reshape.js';
import { vjp } from '../../engine/autodiff.js';
import { ShapeError } from '../../engine/errors.js';

// A view: the forward is bit-exact, and JVP/VJP are the identity on the data, so the finite differences of the
// float64 reference are exact up to float64 roundoff (~1e-11).
const VIEW_TOL = { forward: 0, jvp: 1e-9, vjp: 1e-9 };

describe('reshape (a view the tape sees)', () => {
  const engine = useEngine();

  for (const [from, to] of [
    [[2, 3, 4], [6, 4]],
    [[5], [1, 5]],
    [[3, 1, 7], [21]],
  ]) {
    it(`[${from}] → [${to}]: forward, JVP, VJP`, async () => {
      await checkOp(engine(), {
        op: reshapeOp,
        params: { shape: to },
        inputs: [randomHost(from, 3)],
        reference: ([x]) => ({ shape: to, data: x!.data }),
        tol: VIEW_TOL,
      });
    });
  }

  it('shares storage, keeps the gradient path, and rejects a size change', async () => {
    const e = engine();
    await e.scope(async () => {
      const x = e.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
      const r = vjp(e, (t) => reshapeOp(e, [t], { shape: [3, 2] }), [x]);
      expect(r.output.shape).toEqual([3, 2]);
      const g = r.backward(e.tensor([1, 1, 1, 1, 1, 1], [3, 2]))[0];
      expect(g?.shape).toEqual([2, 3]);
      expect(() => reshapeOp(e, [x], { shape: [4, 2] })).toThrow(ShapeError);
      expect(() => reshapeOp(e, [null], { shape: [6] })).toThrow(/reshape x: missing input/);
    });
  });
});
