import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { checkHvp, checkOp, randomHost, type Host64 } from '../helpers/check-op.js';
import { mul } from '../../kernels/elementwise.js';
import {
  avgPool2x,
  downsample2x,
  firDownsample2x,
  firUpsample2x,
  upsample2x,
  type ResampleFilter,
} from '../../kernels/resample.js';
import {
  avgPool2xRef,
  avgPool2xVjpRef,
  firDownsample2dRef,
  firDownsample2dVjpRef,
  firUpsample2dRef,
  firUpsample2dVjpRef,
  upsampleNearest2xRef,
  upsampleNearest2xVjpRef,
} from '../../kernels/reference/resample.js';
import { ShapeError } from '../../engine/errors.js';

// Every output is a sum of ≤ 16 products of f32 inputs with taps that are exact in f32 (¼, ¾, ⅛, ⅜), so the
// f32 result is within ~16 ulp of max|x|: 2e-6 relative to the max-norm. The maps are linear, so central
// differences of the float64 reference are exact up to float64 roundoff (~1e-11), and JVP / VJP errors are again
// f32 rounding of the same sums (the VJP sums 16 terms of the cotangent): same bound.
const TOL = { forward: 2e-6, jvp: 2e-6, vjp: 2e-6 };

const scaleHost = (h: Host64, s: number): Host64 => ({ shape: h.shape, data: h.data.map((v) => v * s) });

const UP_REF: Record<ResampleFilter, (x: Host64) => Host64> = { naive: upsampleNearest2xRef, fir: (x) => firUpsample2dRef(x) };
const DOWN_REF: Record<ResampleFilter, (x: Host64) => Host64> = { naive: avgPool2xRef, fir: (x) => firDownsample2dRef(x) };
const UP_VJP_REF: Record<ResampleFilter, (g: Host64, xShape: number[]) => Host64> = {
  naive: (g) => upsampleNearest2xVjpRef(g),
  fir: (g, s) => firUpsample2dVjpRef(g, s),
};
const DOWN_VJP_REF: Record<ResampleFilter, (g: Host64, xShape: number[]) => Host64> = {
  naive: (g) => avgPool2xVjpRef(g),
  fir: (g, s) => firDownsample2dVjpRef(g, s),
};

/** The two directions: op, float64 references, the input sizes and seed, the gain checked, the HVP's output size. */
const DIRECTIONS = [
  // Batch 1, odd channel counts, non-square; upsampling also takes odd spatial sizes.
  { name: 'upsample2x', op: upsample2x, ref: UP_REF, vjpRef: UP_VJP_REF, seed: 11, gain: 4,
    shapes: [[1, 1, 2, 2], [1, 3, 4, 6], [2, 5, 8, 6], [3, 7, 5, 7]], hvpOutShape: [2, 3, 8, 12] },
  { name: 'downsample2x', op: downsample2x, ref: DOWN_REF, vjpRef: DOWN_VJP_REF, seed: 12, gain: 0.25,
    shapes: [[1, 1, 2, 2], [1, 3, 4, 6], [2, 5, 8, 6], [3, 7, 6, 10]], hvpOutShape: [2, 3, 2, 3] },
];

describe('resample ×2 (naive and FIR [1,3,3,1])', () => {
  const engine = useEngine();
  const filters: ResampleFilter[] = ['naive', 'fir'];

  for (const filter of filters) {
    for (const { name, op, ref, shapes, seed } of DIRECTIONS) {
      for (const shape of shapes) {
        it(`${name} ${filter} on [${shape}]`, async () => {
          await checkOp(engine(), {
            op,
            params: { filter },
            inputs: [randomHost(shape, seed)],
            reference: ([x]) => ref[filter](x!),
            tol: TOL,
          });
        });
      }
    }

    it(`${filter}: gain scales the output (the adjoints use gains 4 and ¼)`, async () => {
      const x = randomHost([2, 3, 4, 4], 13);
      for (const { op, ref, gain } of DIRECTIONS) {
        await checkOp(engine(), {
          op,
          params: { filter, gain },
          inputs: [x],
          reference: ([a]) => scaleHost(ref[filter](a!), gain),
          tol: TOL,
        });
      }
    });

    // f(x) = up(x)² (resp. down(x)²): its HVP 2·Aᵀ(u ⊙ A v) runs the VJP op (the other direction) under a JVP
    // trace, so this checks forward-over-reverse through the adjoint ops. 16 + 16 terms: 5e-6.
    it(`${filter}: forward-over-reverse through the adjoint op`, async () => {
      const e = engine();
      const x = randomHost([2, 3, 4, 6], 14);
      for (const { op, ref, vjpRef, hvpOutShape } of DIRECTIONS) {
        await checkHvp(
          e,
          (t) => {
            const y = op(e, [t], { filter });
            return mul(e, [y, y], {});
          },
          x,
          (xx, u) => {
            const y = ref[filter](xx);
            return scaleHost(vjpRef[filter]({ shape: y.shape, data: y.data.map((v, i) => u.data[i] * v) }, xx.shape), 2);
          },
          hvpOutShape,
          5e-6,
        );
      }
    });
  }

  it('FIR upsample of a constant image is constant away from the one-pixel border (zero padding)', async () => {
    const e = engine();
    const [N, C, H, W] = [1, 2, 5, 6];
    const c = 1.5;
    const x = e.tensor(new Float32Array(N * C * H * W).fill(c), [N, C, H, W]);
    const y = await firUpsample2x(e, x).readF64();
    const ref = firUpsample2dRef({ shape: [N, C, H, W], data: new Float64Array(N * C * H * W).fill(c) });
    for (let p = 0; p < N * C; p++) {
      for (let i = 0; i < 2 * H; i++) {
        for (let j = 0; j < 2 * W; j++) {
          const k = (p * 2 * H + i) * 2 * W + j;
          // Row/column 0 and the last miss the ¼ tap of the zero padding: ¾ per border axis.
          const wy = i === 0 || i === 2 * H - 1 ? 0.75 : 1;
          const wx = j === 0 || j === 2 * W - 1 ? 0.75 : 1;
          expect(y[k]).toBe(c * wy * wx); // taps and c are exact in f32: bit-exact
          expect(ref.data[k]).toBeCloseTo(c * wy * wx, 12);
        }
      }
    }
    // FIR downsample of a constant: interior unchanged, a border output misses a ⅛ tap per border axis.
    const z = await firDownsample2x(e, e.tensor(new Float32Array(6 * 8).fill(c), [1, 1, 6, 8])).readF64();
    const want = [7 / 8, 1, 7 / 8].flatMap((a) => [7 / 8, 1, 1, 7 / 8].map((b) => c * a * b));
    want.forEach((v, k) => expect(z[k]).toBeCloseTo(v, 6)); // 16-term f32 sum of an exact result: ~1e-7
  });

  it('rejects odd sizes for downsampling, non-NCHW inputs and non-f32 dtypes, naming op and tensor', () => {
    const e = engine();
    const odd = e.zeros([1, 2, 7, 7], 'f32', 'h');
    expect(() => avgPool2x(e, odd)).toThrow(ShapeError);
    expect(() => avgPool2x(e, odd)).toThrow(/avgPool2x.*h\[1×2×7×7\].*even/);
    expect(() => firDownsample2x(e, e.zeros([1, 2, 8, 7], 'f32', 'h'))).toThrow(/downsample2x \(fir\).*even/);
    expect(() => firUpsample2x(e, e.zeros([2, 8, 8], 'f32', 'x3'))).toThrow(/upsample2x \(fir\).*x3.*NCHW/);
    expect(() => firUpsample2x(e, e.zeros([1, 1, 2, 2], 'u32', 'labels'))).toThrow(/labels.*f32/);
  });
});
