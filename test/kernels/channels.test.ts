import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { checkHvp, checkOp, randomHost, type Host64 } from '../helpers/check-op.js';
import { mul } from '../../kernels/elementwise.js';
import {
  addChannelBias,
  addScaled,
  broadcastChannels,
  concatChannels,
  sliceChannels,
  splitChannels,
  sumInner,
  type ReductionVariant,
} from '../../kernels/channels.js';
import {
  addRef,
  concatChannelsRef,
  concatChannelsVjpRef,
  reduceToPrefixRef,
  scaleRef,
  splitChannelsRef,
} from '../../kernels/reference/channels.js';
import { ShapeError } from '../../engine/errors.js';

// Copies (concat, slice, broadcast) are bit-exact; their JVP/VJP checks compare against central differences of
// a linear float64 map, exact up to float64 roundoff (~1e-11).
const COPY_TOL = { forward: 0, jvp: 1e-9, vjp: 1e-9 };
// One or two f32 roundings per element (x + v, (a + b)·s): ≤ 2 ulp = 2.4e-7 of the max-norm; the VJP of the
// bias is a sum of ≤ 72 terms (4 accumulators of ≤ 18): ≤ 20 ulp of Σ|terms| ≈ 2e-6.
const ELEM_TOL = { forward: 2.5e-7, jvp: 2.5e-7, vjp: 2e-6 };
// Reductions of L ≤ 200 terms (4 accumulators of ≤ 50 terms, or a 64-way tree over ≤ 4): rounding grows like
// √L·2⁻²⁴·Σ|terms| ≈ 1e-6 of the max-norm for this random data (observed ≤ 4e-7).
const REDUCE_TOL = { forward: 2e-6, jvp: 2e-6, vjp: 2e-6 };

const map = (a: Host64, f: (v: number, i: number) => number): Host64 => ({ shape: a.shape, data: a.data.map(f) });

describe('channel ops', () => {
  const engine = useEngine();

  for (const [N, counts, rest] of [
    [1, [1, 2], [2, 3]],
    [2, [3, 5, 1], [4, 4]],
    [3, [7, 4], []],
  ] as Array<[number, number[], number[]]>) {
    it(`concat / slice / split of [${N}, {${counts}}, ${rest}]`, async () => {
      const e = engine();
      const xs = counts.map((c, k) => randomHost([N, c, ...rest], 20 + k));
      await checkOp(e, { op: concatChannels, params: {}, inputs: xs, reference: (ins) => concatChannelsRef(ins.map((x) => x!)), tol: COPY_TOL });
      const whole = concatChannelsRef(xs);
      await checkOp(e, {
        op: sliceChannels,
        params: { start: counts[0], count: counts[1] },
        inputs: [whole],
        reference: ([x]) => splitChannelsRef(x!, [counts[0], counts[1], x!.shape[1] - counts[0] - counts[1]])[1],
        tol: COPY_TOL,
      });
      const parts = splitChannels(e, e.tensor(Float32Array.from(whole.data), whole.shape), counts);
      for (let k = 0; k < counts.length; k++) {
        expect(Array.from(await parts[k].readF64())).toEqual(Array.from(Float32Array.from(xs[k].data)));
      }
    });
  }

  for (const shape of [[1, 3, 2, 2], [2, 5, 3, 7], [3, 1, 6, 12]]) {
    it(`addChannelBias / broadcastChannels on [${shape}]`, async () => {
      const e = engine();
      const x = randomHost(shape, 31);
      const v = randomHost(shape.slice(0, 2), 32);
      await checkOp(e, { op: addChannelBias, params: {}, inputs: [x, v], reference: ([a, b]) => addRef(a!, b!), tol: ELEM_TOL });
      // Only v differentiable: the gradient is the per-(n, c) spatial sum alone.
      await checkOp(e, {
        op: addChannelBias,
        params: {},
        inputs: [x, v],
        differentiable: [false, true],
        reference: ([a, b]) => addRef(a!, b!),
        tol: ELEM_TOL,
      });
      await checkOp(e, {
        op: broadcastChannels,
        params: { inner: shape.slice(2) },
        inputs: [v],
        reference: ([b]) => addRef({ shape, data: new Float64Array(x.data.length) }, b!),
        tol: { ...COPY_TOL, vjp: ELEM_TOL.vjp }, // a copy whose VJP is an f32 spatial sum
      });
    });
  }

  it('more rows than one grid dimension holds (rows split over y and z)', async () => {
    const e = engine();
    const rows = e.limits.maxComputeWorkgroupsPerDimension + 3;
    const v = Float32Array.from({ length: rows }, (_, i) => i % 1000);
    const y = await addChannelBias(e, [e.zeros([1, rows, 1]), e.tensor(v, [1, rows])], {}).readF64();
    expect(Array.from(y)).toEqual(Array.from(v));
  });

  const variants: ReductionVariant[] = ['serial', 'workgroup'];
  for (const variant of variants) {
    // inner = 1, 7 (< 4-lane tail), 66 (> 64, strided loop), 200 (not a multiple of 64).
    for (const shape of [[2, 3], [1, 5, 7], [2, 3, 6, 11], [1, 2, 10, 20]]) {
      it(`sumInner (${variant}) on [${shape}]`, async () => {
        const e = engine();
        const x = randomHost(shape, 41);
        await checkOp(e, {
          op: sumInner,
          params: { variant },
          inputs: [x],
          reference: ([a]) => reduceToPrefixRef(a!, a!.shape.slice(0, 2)),
          tol: REDUCE_TOL,
        });
      });
    }
  }

  for (const shape of [[1, 4], [3, 5, 7], [2, 3, 4, 6]]) {
    it(`addScaled on [${shape}]`, async () => {
      const e = engine();
      const a = randomHost(shape, 51);
      const b = randomHost(shape, 52);
      const r2 = Math.SQRT1_2;
      await checkOp(e, {
        op: addScaled,
        params: { scale: r2 },
        inputs: [a, b],
        reference: ([p, q]) => scaleRef(addRef(p!, q!), Math.fround(r2)),
        tol: ELEM_TOL,
      });
      await checkOp(e, { op: addScaled, params: { scale: 1 }, inputs: [a, b], reference: ([p, q]) => addRef(p!, q!), tol: ELEM_TOL });
    });
  }

  // Forward-over-reverse through the VJP ops (sumInner ↔ broadcast, slice ↔ concat; mulPerSample ↔ perSampleDot is
  // in reductions.test.ts). The HVPs below are short chains of the ops above: 5e-6 (a few reductions of ≤ 40 terms).
  it('HVP of (x + Σ_spatial x)² and of concat([x, slice(x)]) rescaled, squared', async () => {
    const e = engine();
    const x = randomHost([2, 3, 3, 4], 62);
    await checkHvp(
      e,
      (t) => {
        const y = addChannelBias(e, [t, sumInner(e, [t], {})], {});
        return mul(e, [y, y], {});
      },
      x,
      (xx, u) => {
        const bsum = (h: Host64) => addRef({ shape: h.shape, data: new Float64Array(h.data.length) }, reduceToPrefixRef(h, h.shape.slice(0, 2)));
        const y = addRef(xx, reduceToPrefixRef(xx, [2, 3]));
        const w = map(y, (v, i) => 2 * u.data[i] * v);
        return map(w, (v, i) => v + bsum(w).data[i]); // Jᵀ = I + broadcast∘sum (self-adjoint)
      },
      x.shape,
      5e-6,
    );
    const s = Math.SQRT1_2;
    await checkHvp(
      e,
      (t) => {
        const c = concatChannels(e, [t, sliceChannels(e, [t], { start: 1, count: 2 })], {});
        const z = addScaled(e, [c, c], { scale: s });
        return mul(e, [z, z], {});
      },
      x,
      (xx, u) => {
        const c = concatChannelsRef([xx, splitChannelsRef(xx, [1, 2, 0])[1]]);
        const k = 2 * Math.fround(s);
        const gc = map(c, (v, i) => 2 * u.data[i] * k * k * v); // d/dc ⟨u, (k c)²⟩
        const [g0, g1] = concatChannelsVjpRef(gc, [3, 2]);
        const pad = concatChannelsRef([{ shape: [2, 1, 3, 4], data: new Float64Array(24) }, g1]);
        return map(g0, (v, i) => v + pad.data[i]);
      },
      [2, 5, 3, 4],
      5e-6,
    );
  });

  it('clear errors for mismatched shapes and dtypes', () => {
    const e = engine();
    const x = e.zeros([2, 3, 4, 4], 'f32', 'h');
    expect(() => addChannelBias(e, [x, e.zeros([2, 4], 'f32', 'temb')], {})).toThrow(ShapeError);
    expect(() => addChannelBias(e, [x, e.zeros([2, 4], 'f32', 'temb')], {})).toThrow(/addChannelBias.*h\[2×3×4×4\].*\[2×4\]/);
    expect(() => concatChannels(e, [x, e.zeros([2, 3, 4, 5], 'f32', 'skip')], {})).toThrow(/concatChannels.*skip/);
    expect(() => sliceChannels(e, [x], { start: 2, count: 2 })).toThrow(/sliceChannels.*\[2, 4\)/);
    expect(() => splitChannels(e, x, [1, 1])).toThrow(/splitChannels/);
    expect(() => addScaled(e, [x, e.zeros([2, 3, 4, 3])], { scale: 1 })).toThrow(/addScaled: shapes differ/);
  });
});
