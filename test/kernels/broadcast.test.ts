import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { randomHost, roundF32, type Host64 } from '../helpers/check-op.js';
import { broadcast } from '../../kernels/broadcast.js';
import type { Engine } from '../../engine/engine.js';

// The one broadcast, each operand kind against float64: out = x + operand is one f32 rounding of exact f32 inputs,
// so f32(x + v) computed in float64 and rounded must match exactly (tolerance 0), vec4 or scalar.
const up = (e: Engine, h: Host64) => e.tensor(Float32Array.from(h.data), h.shape);

describe('broadcast', () => {
  const engine = useEngine();

  // Rows of < 16 (vectors) take the flat layout, longer ones the 2-D one; inner a multiple of 4 the vec4 path for
  // row and mid operands (axis operands stay scalar).
  for (const [outer, mid, inner] of [[2, 3, 4], [3, 2, 3], [1, 5, 1], [2, 3, 20], [2, 2, 64]]) {
    it(`row, mid and axis operands over [${outer}, ${mid}, ${inner}]`, async () => {
      const e = engine();
      const shape = [outer, mid, inner];
      const x = roundF32(randomHost(shape, 7));
      const rowV = roundF32(randomHost([outer * mid], 8));
      const midV = roundF32(randomHost([mid], 9));
      const axisV = roundF32(randomHost([outer * inner], 10));
      const want = (operand: (o: number, m: number, i: number) => number) => {
        const w = new Float32Array(x.data.length);
        for (let o = 0; o < outer; o++)
          for (let m = 0; m < mid; m++)
            for (let i = 0; i < inner; i++) {
              const k = (o * mid + m) * inner + i;
              w[k] = x.data[k] + operand(o, m, i);
            }
        return Array.from(w);
      };
      await e.scope(async () => {
        const xt = up(e, x);
        const view = { outer, mid, len: inner };
        const rows = e.empty(shape);
        const ADD_ROW = 'let k = row * params.len + j; out[k] = x[k] + T(v[row]);';
        broadcast(e, { name: 'test.rows', ins: { x: xt }, rowOps: { v: up(e, rowV) }, outs: { out: rows }, ...view, exprs: ADD_ROW });
        expect(Array.from(await rows.read())).toEqual(want((o, m) => rowV.data[o * mid + m]));
        const mids = e.empty(shape);
        const ADD_MID = 'let k = row * params.len + j; out[k] = x[k] + T(v[row % params.mid]);';
        broadcast(e, { name: 'test.mids', ins: { x: xt }, midOps: { v: up(e, midV) }, outs: { out: mids }, ...view, exprs: ADD_MID });
        expect(Array.from(await mids.read())).toEqual(want((_o, m) => midV.data[m]));
        const axes = e.empty(shape);
        broadcast(e, {
          name: 'test.axes',
          ins: { x: xt },
          axisOps: { v: up(e, axisV) },
          outs: { out: axes },
          ...view,
          exprs: 'let k = row * params.len + j; out[k] = x[k] + v[(row / params.mid) * params.len + j];',
        });
        expect(Array.from(await axes.read())).toEqual(want((o, _m, i) => axisV.data[o * inner + i]));
      });
    });
  }

  it('copies with offsets (a1, a2) and launches nothing for an empty view', async () => {
    const e = engine();
    await e.scope(async () => {
      const src = e.tensor(Float32Array.from({ length: 24 }, (_, i) => i), [2, 12]);
      const dst = e.zeros([2, 4]);
      // Row r of dst = src[r·12 + 8 … r·12 + 11].
      const COPY = 'out[row * params.len + j] = x[row * params.a1 + params.a2 + j];';
      broadcast(e, { name: 'test.copy', ins: { x: src }, outs: { out: dst }, mid: 2, len: 4, a1: 12, a2: 8, exprs: COPY });
      expect(Array.from(await dst.read())).toEqual([8, 9, 10, 11, 20, 21, 22, 23]);
      broadcast(e, { name: 'test.copy', ins: { x: src }, outs: { out: dst }, mid: 0, len: 4, exprs: 'out[j] = x[j];' });
    });
  });
});
