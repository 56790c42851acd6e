import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { randomHost, relErr, roundF32, type Host64 } from '../helpers/check-op.js';
import { axisReduce, channelReduce, CHANNEL_SUM_BODY, rowReduce } from '../../kernels/reduce.js';
import type { Engine } from '../../engine/engine.js';
import { SbgcError } from '../../engine/errors.js';

// The family's programs directly, against float64 sums of the same f32 inputs. Tolerances as for the ops built
// on them (reductions.test.ts): sums of ≤ 4100 terms in ≤ 16 sequential adds per lane plus a tree, or 4
// accumulators (serial), or Kahan (axis): measured ≤ 3e-7 of the max-norm, so 1e-6. Max is exact.
const TOL = 1e-6;

const up = (e: Engine, h: Host64) => e.tensor(Float32Array.from(h.data), h.shape);

/** Σ (or max) over [outer, len, inner] in float64: 'row' reduces len·inner per outer, 'axis' len, 'channel' outer and inner. */
function ref(h: Host64, [outer, len, inner]: number[], mode: 'row' | 'axis' | 'channel', max = false): Float64Array {
  const n = mode === 'row' ? outer : mode === 'axis' ? outer * inner : len;
  const out = new Float64Array(n).fill(max ? -Infinity : 0);
  for (let o = 0; o < outer; o++) {
    for (let l = 0; l < len; l++) {
      for (let i = 0; i < inner; i++) {
        const v = h.data[(o * len + l) * inner + i];
        const r = mode === 'row' ? o : mode === 'axis' ? o * inner + i : l;
        out[r] = max ? Math.max(out[r], v) : out[r] + v;
      }
    }
  }
  return out;
}

describe('the reduction family', () => {
  const engine = useEngine();

  for (const [rows, len] of [[3, 13], [2, 4100 * 4], [5, 6]]) {
    it(`rowReduce chunked (sum, max, finish with a row input) and serial on [${rows}, ${len}]`, async () => {
      const e = engine();
      const h = roundF32(randomHost([rows, len], 3));
      const want = ref(h, [rows, len, 1], 'row');
      await e.scope(async () => {
        const x = up(e, h);
        const sum = rowReduce(e, { name: 'test.sum', inputs: { x }, term: 'x[k]', combine: 'sum' }, rows, len, [rows]);
        expect(relErr(await sum.readF64(), want)).toBeLessThan(TOL);
        // The serial variant is for many short rows (len/4 sequential adds per accumulator): checked on those.
        if (len <= 256) {
          const serial = rowReduce(e, { name: 'test.sum', inputs: { x }, term: 'x[k]', combine: 'sum', variant: 'serial' }, rows, len, [rows]);
          expect(relErr(await serial.readF64(), want)).toBeLessThan(TOL);
        }
        const max = rowReduce(e, { name: 'test.max', inputs: { x }, term: 'x[k]', combine: 'max' }, rows, len, [rows]);
        expect(Array.from(await max.readF64())).toEqual(Array.from(ref(h, [rows, len, 1], 'row', true)));
        const shift = up(e, { shape: [rows], data: Float64Array.from({ length: rows }, (_, r) => r + 0.5) });
        const shifted = rowReduce(
          e,
          { name: 'test.finish', inputs: { x }, rowInputs: { shift }, term: 'x[k]', combine: 'sum', finish: 'total / params.count + shift[row]' },
          rows,
          len,
          [rows],
        );
        const wantShifted = want.map((v, r) => v / len + r + 0.5);
        expect(relErr(await shifted.readF64(), wantShifted)).toBeLessThan(TOL);
      });
    });
  }

  for (const view of [[2, 5, 3], [3, 7, 1], [1, 4, 8]]) {
    it(`axisReduce (Kahan) and channelReduce over [${view}]`, async () => {
      const e = engine();
      const [outer, len, inner] = view;
      const h = roundF32(randomHost(view, 5));
      await e.scope(async () => {
        const x = up(e, h);
        const v = { outer, len, inner };
        const axis = axisReduce(e, { name: 'test.axis', inputs: { x }, shift: false, term: 'x[k]', finish: 's' }, v, [outer, inner]);
        expect(relErr(await axis.readF64(), ref(h, view, 'axis'))).toBeLessThan(TOL);
        // Shifted: m = max along the axis, then Σ (x − m) + m·len = Σ x.
        const shiftSpec = { name: 'test.shift', inputs: { x }, shift: true, term: 'x[k] - m', finish: 's + m * f32(params.len)' };
        const shifted = axisReduce(e, shiftSpec, v, [outer, inner]);
        expect(relErr(await shifted.readF64(), ref(h, view, 'axis'))).toBeLessThan(TOL);
        const g = x;
        const channel = channelReduce(e, { name: 'test.channel', inputs: { g }, body: CHANNEL_SUM_BODY }, v);
        expect(relErr(await channel.readF64(), ref(h, view, 'channel'))).toBeLessThan(TOL);
      });
    });
  }

  it('a cached dispatch compiles nothing; one pipeline serves every shape', async () => {
    const e = engine();
    await e.scope(async () => {
      const run = (rows: number, len: number) => {
        const x = e.zeros([rows, len]);
        return rowReduce(e, { name: 'test.cache', inputs: { x }, term: 'x[k]', combine: 'sum' }, rows, len, [rows]);
      };
      run(3, 7);
      const before = e.memory().pipelines;
      run(3, 7);
      run(5, 11);
      expect(e.memory().pipelines).toBe(before);
      await e.flush();
    });
  });

  it('names the kernel when given more inputs than its slots', () => {
    const e = engine();
    e.scope(() => {
      const t = e.zeros([2, 2]);
      const inputs = { a: t, b: t, c: t, d: t, f: t };
      expect(() => rowReduce(e, { name: 'test.slots', inputs, term: 'a[k]', combine: 'sum' }, 2, 2, [2])).toThrow(SbgcError);
      expect(() => rowReduce(e, { name: 'test.slots', inputs, term: 'a[k]', combine: 'sum' }, 2, 2, [2])).toThrow(/test\.slots/);
    });
  });
});
