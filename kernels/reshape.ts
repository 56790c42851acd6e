/**
 * reshape as an op: a zero-copy view that the tape sees. A plain `Tensor.reshape` view is a new tensor the tape
 * does not know, which would cut the gradient path; this op records it, and its rules are reshapes back.
 */
import { defineOp, type Op } from '../engine/autodiff.js';

export const reshapeOp: Op<{ shape: readonly number[] }> = defineOp({
  name: 'reshape',
  inputs: ['x'],
  forward: (_e, [x], { shape }) => x.reshape(shape),
  vjp: (e, { inputs: [x] }, ct) => [reshapeOp(e, [ct], { shape: x.shape })],
  jvp: (e, { params }, [tx]) => (tx ? reshapeOp(e, [tx], params) : null),
});
