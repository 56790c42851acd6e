// Float64 references for resampling (naive and FIR, score_sde's up_or_down_sampling.py) and channel/elementwise ops.
// Tolerances as in linear-conv.test.ts: all maps are linear or bilinear, so central differences carry roundoff
// only (~1e-10 relative with h = 1e-6) → ≤ 1e-7; the dot identity compares two float64 sums → ≤ 1e-12.

import { describe, expect, it } from 'vitest';
import { expectBilinearDerivatives, namedRefOp } from '../../helpers/reference-fd.js';
import { type T64, t64, randn64, makeRng, maxAbsDiff, maxRelDiff, dot64 } from '../../../kernels/reference/tensor64.js';
import { type RefOp } from '../../../kernels/reference/finite-diff.js';
import { conv2dRef } from '../../../kernels/reference/conv2d.js';
import {
  type Upfirdn2dOptions,
  type FirOptions,
  upsampleNearest2xRef,
  upsampleNearest2xVjpRef,
  upsampleNearest2xJvpRef,
  avgPool2xRef,
  avgPool2xVjpRef,
  avgPool2xJvpRef,
  upfirdn2dRef,
  upfirdn2dVjpRef,
  upfirdn2dJvpRef,
  upfirdn2dOutShape,
  firKernel2d,
  firUpsample2dRef,
  firUpsample2dVjpRef,
  firUpsample2dJvpRef,
  firDownsample2dRef,
  firDownsample2dVjpRef,
  firDownsample2dJvpRef,
  flipSwapWeight,
  upsampleConv2dRef,
  upsampleConv2dVjpRef,
  upsampleConv2dJvpRef,
  convDownsample2dRef,
  convDownsample2dVjpRef,
  convDownsample2dJvpRef,
} from '../../../kernels/reference/resample.js';
import {
  concatChannelsRef,
  concatChannelsVjpRef,
  concatChannelsJvpRef,
  splitChannelsRef,
  addRef,
  addVjpRef,
  addJvpRef,
  mulRef,
  mulVjpRef,
  mulJvpRef,
  scaleRef,
  scaleVjpRef,
  scaleJvpRef,
  axpyRef,
  axpyVjpRef,
  axpyJvpRef,
} from '../../../kernels/reference/channels.js';

/** Wraps a map linear in its single input. */
function linearOp(f: (x: T64) => T64, jvp: (t: T64) => T64, vjp: (g: T64, xShape: number[]) => T64): RefOp {
  return { f: ([x]) => f(x), jvp: (_, [t]) => jvp(t), vjp: ([x], g) => [vjp(g, x.shape)] };
}

/** ⟨up(x), z⟩ = 4·⟨x, down(z)⟩ to float64 roundoff: the adjoint of `up` is 4·`down`. */
function expectQuarterAdjoint(up: (x: T64) => T64, down: (z: T64) => T64, x: T64, z: T64): void {
  const lhs = dot64(up(x), z);
  const rhs = 4 * dot64(x, down(z));
  expect(Math.abs(lhs - rhs) / Math.abs(rhs)).toBeLessThan(1e-13);
}

function at(x: T64, n: number, c: number, i: number, j: number): number {
  const [, C, H, W] = x.shape;
  return x.data[((n * C + c) * H + i) * W + j];
}

function constant(shape: number[], v: number): T64 {
  return t64(shape, new Float64Array(shape.reduce((a, b) => a * b, 1)).fill(v));
}

/** Interior [m, size − m) of both spatial axes, as a new tensor. */
function crop(x: T64, m: number): T64 {
  const [N, C, H, W] = x.shape;
  const y = t64([N, C, H - 2 * m, W - 2 * m]);
  let k = 0;
  for (let p = 0; p < N * C; p++) {
    for (let i = m; i < H - m; i++) for (let j = m; j < W - m; j++) y.data[k++] = x.data[(p * H + i) * W + j];
  }
  return y;
}

describe('nearest ×2 upsample and 2×2 average pool', () => {
  it('known values', () => {
    const x = t64([1, 1, 2, 2], [1, 2, 3, 4]);
    expect([...upsampleNearest2xRef(x).data]).toEqual([1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    const z = t64([1, 1, 2, 4], [1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...avgPool2xRef(z).data]).toEqual([3.5, 5.5]);
    expect(() => avgPool2xRef(t64([1, 1, 3, 2]))).toThrow();
  });

  it('upsample = 4 · avgPoolᵀ, and pool ∘ upsample = identity', () => {
    const x = randn64([2, 3, 3, 5], 1);
    const z = randn64([2, 3, 6, 10], 2);
    expectQuarterAdjoint(upsampleNearest2xRef, avgPool2xRef, x, z);
    expect(maxAbsDiff(avgPool2xRef(upsampleNearest2xRef(x)), x)).toBeLessThan(1e-15);
  });

  it('JVP/VJP vs finite differences and the dot identity (odd sizes, batch 1)', () => {
    for (const [i, shape] of [[1, 1, 1, 1], [1, 2, 3, 5], [2, 3, 4, 1]].entries()) {
      expectBilinearDerivatives(linearOp(upsampleNearest2xRef, upsampleNearest2xJvpRef, upsampleNearest2xVjpRef), [randn64(shape, i)], i + 1);
    }
    for (const [i, shape] of [[1, 1, 2, 2], [1, 2, 4, 6], [2, 3, 6, 2]].entries()) {
      expectBilinearDerivatives(linearOp(avgPool2xRef, avgPool2xJvpRef, avgPool2xVjpRef), [randn64(shape, i)], i + 1);
    }
  });
});

/** upfirdn2d done literally as its definition: zero-insert, pad/crop, correlate with the flipped kernel, subsample. */
function upfirdn2dNaive(x: T64, k: T64, up: number, down: number, pad: [number, number, number, number]): T64 {
  const [N, C, H, W] = x.shape;
  const [KH, KW] = k.shape;
  const [pt, pb, pl, pr] = pad;
  const Hu = H * up;
  const Wu = W * up;
  const Hp = Hu + pt + pb;
  const Wp = Wu + pl + pr;
  const OH = Math.floor((Hp - KH) / down) + 1;
  const OW = Math.floor((Wp - KW) / down) + 1;
  const y = t64([N, C, OH, OW]);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      const U = new Float64Array(Hu * Wu);
      for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) U[i * up * Wu + j * up] = at(x, n, c, i, j);
      const P = new Float64Array(Hp * Wp);
      for (let r = 0; r < Hp; r++) {
        for (let q = 0; q < Wp; q++) {
          const u = r - pt;
          const v = q - pl;
          if (u >= 0 && u < Hu && v >= 0 && v < Wu) P[r * Wp + q] = U[u * Wu + v];
        }
      }
      for (let oy = 0; oy < OH; oy++) {
        for (let ox = 0; ox < OW; ox++) {
          let s = 0;
          for (let a = 0; a < KH; a++) {
            for (let b = 0; b < KW; b++) s += P[(oy * down + a) * Wp + ox * down + b] * k.data[(KH - 1 - a) * KW + (KW - 1 - b)];
          }
          y.data[((n * C + c) * OH + oy) * OW + ox] = s;
        }
      }
    }
  }
  return y;
}

describe('upfirdn2d', () => {
  it('an asymmetric kernel is applied as a convolution (flipped), known values', () => {
    // k[0][1] = 1 only: out[r, c] = P[r + 1, c].
    const x = t64([1, 1, 3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const y = upfirdn2dRef(x, t64([2, 2], [0, 1, 0, 0]));
    expect(y.shape).toEqual([1, 1, 2, 2]);
    expect([...y.data]).toEqual([4, 5, 7, 8]);
    // Zero insertion by 2, impulse kernel [[1]], no padding: the inserted zeros follow each sample.
    const z = upfirdn2dRef(t64([1, 1, 2, 2], [1, 2, 3, 4]), t64([1, 1], [1]), { up: 2, pad: [0, 0] });
    expect([...z.data]).toEqual([1, 0, 2, 0, 0, 0, 0, 0, 3, 0, 4, 0, 0, 0, 0, 0]);
  });

  it('up = down = 1, no padding: conv2d with the flipped kernel', () => {
    const x = randn64([1, 1, 6, 5], 3);
    const k = randn64([3, 2], 4);
    const kFlip = t64([1, 1, 3, 2], [...k.data].reverse());
    expect(maxRelDiff(upfirdn2dRef(x, k), conv2dRef(x, kFlip, null))).toBeLessThan(1e-14);
  });

  const cases: { up: number; down: number; pad: [number, number, number, number]; kh: number; kw: number }[] = [
    { up: 2, down: 1, pad: [2, 1, 2, 1], kh: 4, kw: 4 },
    { up: 1, down: 2, pad: [1, 1, 1, 1], kh: 4, kw: 4 },
    { up: 1, down: 1, pad: [2, 2, 2, 2], kh: 4, kw: 4 },
    { up: 3, down: 2, pad: [1, 0, 2, 3], kh: 3, kw: 5 },
    { up: 1, down: 1, pad: [-1, 2, 1, -1], kh: 2, kw: 3 },
    { up: 2, down: 3, pad: [0, -1, 1, 1], kh: 3, kw: 2 },
  ];

  it('forward equals its literal definition for random shapes, kernels (asymmetric) and pads (negative = crop)', () => {
    const rng = makeRng(31);
    cases.forEach(({ up, down, pad, kh, kw }, c) => {
      for (let trial = 0; trial < 3; trial++) {
        const shape = [trial === 0 ? 1 : rng.int(1, 3), rng.int(1, 3), rng.int(3, 8), rng.int(3, 8)];
        const x = randn64(shape, 10 * c + trial);
        const k = randn64([kh, kw], 10 * c + trial + 100);
        const opts: Upfirdn2dOptions = { up, down, pad };
        const y = upfirdn2dRef(x, k, opts);
        expect(y.shape).toEqual(upfirdn2dOutShape(x.shape, k, opts));
        expect(maxRelDiff(y, upfirdn2dNaive(x, k, up, down, pad))).toBeLessThan(1e-14);
      }
    });
    // The two-element pad means (before, after) on both axes.
    const x = randn64([1, 2, 5, 4], 7);
    const k = randn64([4, 4], 8);
    expect(maxAbsDiff(upfirdn2dRef(x, k, { up: 2, pad: [2, 1] }), upfirdn2dNaive(x, k, 2, 1, [2, 1, 2, 1]))).toBeLessThan(1e-14);
  });

  cases.forEach(({ up, down, pad, kh, kw }, c) => {
    it(`JVP/VJP vs finite differences and the dot identity: up ${up} down ${down} pad [${pad.join(',')}] k ${kh}×${kw}`, () => {
      const k = randn64([kh, kw], 200 + c);
      const opts: Upfirdn2dOptions = { up, down, pad };
      const op = linearOp(
        (x) => upfirdn2dRef(x, k, opts),
        (t) => upfirdn2dJvpRef(t, k, opts),
        (g, s) => upfirdn2dVjpRef(g, k, s, opts),
      );
      expectBilinearDerivatives(op, [randn64([1, 2, 5, 4], c)], c + 1);
      expectBilinearDerivatives(op, [randn64([2, 1, 4, 7], c + 50)], c + 2);
    });
  });
});

describe('FIR resampling, kernel [1,3,3,1] (score_sde upsample_2d / downsample_2d)', () => {
  it('normalised kernel: taps sum to the scale, outer product of [1,3,3,1]/8', () => {
    const k = firKernel2d([1, 3, 3, 1], 4);
    expect(k.data.reduce((a, b) => a + b, 0)).toBeCloseTo(4, 14);
    expect(k.data[0]).toBe(4 / 64);
    expect(k.data[5]).toBe((9 * 4) / 64);
  });

  it('upsample keeps a constant image constant inside; borders see the zero padding (3/4 per edge)', () => {
    const y = firUpsample2dRef(constant([1, 2, 4, 5], 2));
    expect(y.shape).toEqual([1, 2, 8, 10]);
    for (let c = 0; c < 2; c++) {
      for (let i = 0; i < 8; i++) {
        for (let j = 0; j < 10; j++) {
          const edge = (i === 0 || i === 7 ? 0.75 : 1) * (j === 0 || j === 9 ? 0.75 : 1);
          expect(at(y, 0, c, i, j)).toBeCloseTo(2 * edge, 14);
        }
      }
    }
  });

  it('downsample keeps a constant image constant inside; borders 7/8 per edge; odd sizes floor', () => {
    const y = firDownsample2dRef(constant([2, 1, 8, 6], 3));
    expect(y.shape).toEqual([2, 1, 4, 3]);
    for (let i = 0; i < 4; i++) {
      for (let j = 0; j < 3; j++) {
        const edge = (i === 0 || i === 3 ? 7 / 8 : 1) * (j === 0 || j === 2 ? 7 / 8 : 1);
        expect(at(y, 1, 0, i, j)).toBeCloseTo(3 * edge, 14);
      }
    }
    expect(firDownsample2dRef(t64([1, 1, 7, 5])).shape).toEqual([1, 1, 3, 2]);
  });

  it('upsample = 4 · downsampleᵀ for the symmetric [1,3,3,1] kernel', () => {
    const x = randn64([2, 2, 3, 5], 11);
    const z = randn64([2, 2, 6, 10], 12);
    expectQuarterAdjoint(firUpsample2dRef, firDownsample2dRef, x, z);
  });

  const firOpts: FirOptions[] = [{}, { kernel: [1, 2, 1], gain: 2 }, { kernel: [1, 3, 3, 1], factor: 3 }];
  firOpts.forEach((opts, c) => {
    it(`JVP/VJP vs finite differences and the dot identity: ${JSON.stringify(opts)}`, () => {
      const up = linearOp(
        (x) => firUpsample2dRef(x, opts),
        (t) => firUpsample2dJvpRef(t, opts),
        (g, s) => firUpsample2dVjpRef(g, s, opts),
      );
      const down = linearOp(
        (x) => firDownsample2dRef(x, opts),
        (t) => firDownsample2dJvpRef(t, opts),
        (g, s) => firDownsample2dVjpRef(g, s, opts),
      );
      expectBilinearDerivatives(up, [randn64([1, 2, 3, 5], c)], c + 1);
      expectBilinearDerivatives(down, [randn64([1, 2, 6, 7], c + 10)], c + 2);
      expectBilinearDerivatives(down, [randn64([2, 1, 9, 6], c + 20)], c + 3);
    });
  });
});

describe('fused FIR + conv (upsample_conv_2d / conv_downsample_2d)', () => {
  it('flipSwapWeight is an involution and swaps the channel axes', () => {
    const w = randn64([3, 2, 3, 3], 1);
    const f = flipSwapWeight(w);
    expect(f.shape).toEqual([2, 3, 3, 3]);
    expect(f.data[((1 * 3 + 2) * 3 + 0) * 3 + 1]).toBe(w.data[((2 * 2 + 1) * 3 + 2) * 3 + 1]);
    expect(maxAbsDiff(flipSwapWeight(f), w)).toBe(0);
  });

  it('away from the borders, equal to the unfused chains (FIR then 3×3 conv, conv then FIR)', () => {
    const x = randn64([2, 2, 6, 8], 2);
    const w = randn64([3, 2, 3, 3], 3);
    const fusedUp = upsampleConv2dRef(x, w);
    expect(fusedUp.shape).toEqual([2, 3, 12, 16]);
    const chainUp = conv2dRef(firUpsample2dRef(x), w, null, { padding: 1 });
    expect(maxRelDiff(crop(fusedUp, 1), crop(chainUp, 1))).toBeLessThan(1e-14);
    expect(maxAbsDiff(fusedUp, chainUp)).toBeGreaterThan(1e-3); // the single padding really differs at the border

    const z = randn64([2, 2, 10, 10], 4);
    const fusedDown = convDownsample2dRef(z, w);
    expect(fusedDown.shape).toEqual([2, 3, 5, 5]);
    const chainDown = firDownsample2dRef(conv2dRef(z, w, null, { padding: 1 }));
    expect(maxRelDiff(crop(fusedDown, 1), crop(chainDown, 1))).toBeLessThan(1e-14);
  });

  it('1×1 conv: fused = FIR resample of the channel mix', () => {
    const x = randn64([1, 3, 4, 5], 5);
    const w = randn64([2, 3, 1, 1], 6);
    expect(maxRelDiff(upsampleConv2dRef(x, w), conv2dRef(firUpsample2dRef(x), w, null))).toBeLessThan(1e-14);
    const z = randn64([1, 3, 8, 6], 7);
    expect(maxRelDiff(convDownsample2dRef(z, w), firDownsample2dRef(conv2dRef(z, w, null)))).toBeLessThan(1e-14);
  });

  it('JVP/VJP vs finite differences and the dot identity', () => {
    const up = namedRefOp(
      ['x', 'w'],
      ([x, w]) => upsampleConv2dRef(x, w),
      ([x, w], t) => upsampleConv2dJvpRef(x, w, t),
      ([x, w], g) => upsampleConv2dVjpRef(x, w, g),
    );
    const down = namedRefOp(
      ['x', 'w'],
      ([x, w]) => convDownsample2dRef(x, w),
      ([x, w], t) => convDownsample2dJvpRef(x, w, t),
      ([x, w], g) => convDownsample2dVjpRef(x, w, g),
    );
    expectBilinearDerivatives(up, [randn64([1, 2, 3, 4], 1), randn64([3, 2, 3, 3], 2)], 1);
    expectBilinearDerivatives(up, [randn64([2, 1, 2, 3], 3), randn64([2, 1, 1, 1], 4)], 2);
    expectBilinearDerivatives(down, [randn64([1, 2, 6, 4], 5), randn64([3, 2, 3, 3], 6)], 3);
    expectBilinearDerivatives(down, [randn64([2, 1, 5, 7], 7), randn64([2, 1, 3, 3], 8)], 4);
    const x = randn64([1, 2, 3, 4], 1);
    const w = randn64([3, 2, 3, 3], 2);
    expect(maxAbsDiff(upsampleConv2dJvpRef(x, w, { x }), upsampleConv2dRef(x, w))).toBeLessThan(1e-14);
  });
});

describe('channels: concat / split', () => {
  it('known values and index-by-index agreement', () => {
    const a = t64([1, 1, 2, 2], [1, 2, 3, 4]);
    const b = t64([1, 2, 2, 2], [5, 6, 7, 8, 9, 10, 11, 12]);
    expect([...concatChannelsRef([a, b]).data]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const xs = [randn64([2, 3, 3, 5], 1), randn64([2, 1, 3, 5], 2), randn64([2, 2, 3, 5], 3)];
    const y = concatChannelsRef(xs);
    expect(y.shape).toEqual([2, 6, 3, 5]);
    for (let n = 0; n < 2; n++) {
      for (let c = 0; c < 6; c++) {
        const [k, ck] = c < 3 ? [0, c] : c < 4 ? [1, c - 3] : [2, c - 4];
        for (let i = 0; i < 3; i++) for (let j = 0; j < 5; j++) expect(at(y, n, c, i, j)).toBe(at(xs[k], n, ck, i, j));
      }
    }
    splitChannelsRef(y, [3, 1, 2]).forEach((s, k) => expect(maxAbsDiff(s, xs[k])).toBe(0));
    expect(() => concatChannelsRef([xs[0], randn64([2, 1, 3, 4], 4)])).toThrow();
  });

  it('JVP/VJP vs finite differences and the dot identity; absent tangents are zero', () => {
    const counts = [2, 1, 3];
    const op: RefOp = {
      f: (xs) => concatChannelsRef(xs),
      jvp: (xs, ts) => concatChannelsJvpRef(xs, ts),
      vjp: (_, g) => concatChannelsVjpRef(g, counts),
    };
    expectBilinearDerivatives(op, counts.map((c, k) => randn64([2, c, 3, 1], k)), 1);
    expectBilinearDerivatives(op, counts.map((c, k) => randn64([1, c], k + 5)), 2);
    const xs = counts.map((c, k) => randn64([1, c, 2, 3], k + 9));
    const t1 = randn64([1, 1, 2, 3], 20);
    const full = concatChannelsJvpRef(xs, [t64(xs[0].shape), t1, t64(xs[2].shape)]);
    expect(maxAbsDiff(concatChannelsJvpRef(xs, [undefined, t1, null]), full)).toBe(0);
  });
});

describe('channels: add / mul with per-(N, C) broadcast, scale, axpy', () => {
  it('known values', () => {
    const x = t64([1, 2, 1, 2], [1, 2, 3, 4]);
    const e = t64([1, 2], [10, 20]);
    expect([...addRef(x, e).data]).toEqual([11, 12, 23, 24]);
    expect([...mulRef(x, e).data]).toEqual([10, 20, 60, 80]);
    expect([...addRef(x, x).data]).toEqual([2, 4, 6, 8]);
    expect([...scaleRef(x, Math.SQRT1_2).data]).toEqual([1, 2, 3, 4].map((v) => v * Math.SQRT1_2));
    expect([...axpyRef(-2, x, t64([1, 2, 1, 2], [1, 1, 1, 1])).data]).toEqual([-1, -3, -5, -7]);
    expect(() => addRef(x, t64([2]))).toThrow(); // [C] alone is not a leading prefix of [N, C, H, W]
  });

  it('broadcast add equals adding the explicitly repeated tensor', () => {
    const x = randn64([2, 3, 5, 3], 1);
    const e = randn64([2, 3], 2);
    const rep = t64(x.shape);
    for (let i = 0; i < rep.data.length; i++) rep.data[i] = e.data[Math.floor(i / 15)];
    expect(maxAbsDiff(addRef(x, e), addRef(x, rep))).toBe(0);
    expect(maxAbsDiff(mulRef(x, e), mulRef(x, rep))).toBe(0);
  });

  const pairs: [number[], number[]][] = [
    [[2, 3, 4, 5], [2, 3, 4, 5]],
    [[2, 3, 3, 5], [2, 3]],
    [[1, 4, 3, 3], [1, 4]],
    [[3, 2, 1, 5], [3]],
    [[4, 5], [4, 5]],
  ];
  pairs.forEach(([aShape, bShape], c) => {
    it(`add/mul JVP/VJP vs finite differences and the dot identity: [${aShape}] ∘ [${bShape}]`, () => {
      const add = namedRefOp(
        ['a', 'b'],
        ([a, b]) => addRef(a, b),
        ([a, b], t) => addJvpRef(a, b, t),
        ([, b], g) => addVjpRef(g, b.shape),
      );
      const mul = namedRefOp(
        ['a', 'b'],
        ([a, b]) => mulRef(a, b),
        ([a, b], t) => mulJvpRef(a, b, t),
        ([a, b], g) => mulVjpRef(a, b, g),
      );
      const inputs = [randn64(aShape, c), randn64(bShape, c + 10)];
      expectBilinearDerivatives(add, inputs, c + 1);
      expectBilinearDerivatives(mul, inputs, c + 2);
    });
  });

  it('scale and axpy JVP/VJP vs finite differences and the dot identity; absent tangents', () => {
    const s = Math.SQRT1_2;
    const scale: RefOp = { f: ([x]) => scaleRef(x, s), jvp: (_, [t]) => scaleJvpRef(t, s), vjp: (_, g) => [scaleVjpRef(g, s)] };
    expectBilinearDerivatives(scale, [randn64([1, 3, 5, 5], 1)], 1);
    const alpha = -0.37;
    const axpy = namedRefOp(
      ['x', 'y'],
      ([x, y]) => axpyRef(alpha, x, y),
      ([x], t) => axpyJvpRef(alpha, x, t),
      (_, g) => axpyVjpRef(alpha, g),
    );
    expectBilinearDerivatives(axpy, [randn64([2, 3, 3, 1], 2), randn64([2, 3, 3, 1], 3)], 2);
    const x = randn64([2, 3], 4);
    const ty = randn64([2, 3], 5);
    expect(maxAbsDiff(axpyJvpRef(alpha, x, { y: ty }), ty)).toBe(0);
    expect(maxAbsDiff(mulJvpRef(x, x, {}), t64([2, 3]))).toBe(0);
  });
});
