// Float64 references for tensors, finite differences, dense layers and conv2d.
//
// Tolerances: every op here is linear or bilinear in its inputs, so a central difference has no truncation error
// at all in exact arithmetic (the h² term of a bilinear map cancels between +h and −h); what is left is roundoff,
// about eps·|f|/h ≈ 1e-16/1e-6 = 1e-10 relative. JVP and VJP vs finite differences: ≤ 1e-7 (a real bug shows up
// as O(1)). The dot-product identity ⟨J·v, u⟩ = ⟨v, Jᵀ·u⟩ compares two exact float64 sums of the same products in
// different orders: ~n·eps relative to the sum of absolute terms, so ≤ 1e-12.

import { describe, expect, it } from 'vitest';
import { expectBilinearDerivatives, namedRefOp, BILINEAR_DOT_TOL } from '../../helpers/reference-fd.js';
import { type T64, t64, randn64, makeRng, maxAbsDiff, maxRelDiff, size } from '../../../kernels/reference/tensor64.js';
import { jvpFD, vjpViaFD, dotIdentity } from '../../../kernels/reference/finite-diff.js';
import {
  matmulRef,
  matmulVjpRef,
  matmulJvpRef,
  transpose2dRef,
  linearRef,
  linearVjpRef,
  linearJvpRef,
} from '../../../kernels/reference/linear.js';
import {
  type Conv2dOptions,
  conv2dRef,
  conv2dVjpRef,
  conv2dJvpRef,
  conv2dOutShape,
  convTranspose2dRef,
  normalizePadding,
} from '../../../kernels/reference/conv2d.js';

describe('tensor64', () => {
  it('randn64 is deterministic in its seed and roughly standard normal', () => {
    const a = randn64([20000], 7);
    expect(maxAbsDiff(a, randn64([20000], 7))).toBe(0);
    expect(maxAbsDiff(a, randn64([20000], 8))).toBeGreaterThan(0.1);
    let m = 0;
    let v = 0;
    for (const x of a.data) m += x / a.data.length;
    for (const x of a.data) v += (x - m) ** 2 / a.data.length;
    expect(Math.abs(m)).toBeLessThan(0.03);
    expect(Math.abs(v - 1)).toBeLessThan(0.05);
    // Pinned first draw: a generator change would silently change every fixture seeded from it.
    expect(randn64([1], 123).data[0]).toBe(randn64([3], 123).data[0]);
  });

  it('t64 checks sizes; maxRelDiff is relative to the reference max', () => {
    expect(() => t64([2, 3], [1, 2])).toThrow();
    expect(size([])).toBe(1);
    const a = t64([3], [1, 2, 100]);
    const b = t64([3], [1, 2.5, 100]);
    expect(maxAbsDiff(a, b)).toBe(0.5);
    expect(maxRelDiff(a, b)).toBeCloseTo(0.005, 15);
    expect(() => maxAbsDiff(a, t64([1, 3]))).toThrow();
  });
});

describe('finite differences', () => {
  // A nonlinear f checks the helpers themselves: f(x, y) = x² ⊙ y, J·(v, w) = 2x⊙y⊙v + x²⊙w.
  const f = (xs: T64[]): T64 => t64(xs[0].shape, xs[0].data.map((x, i) => x * x * xs[1].data[i]));
  const x = randn64([7], 1);
  const y = randn64([7], 2);

  it('jvpFD and vjpViaFD match analytic derivatives of a nonlinear map', () => {
    const v = randn64([7], 3);
    const w = randn64([7], 4);
    const exact = t64([7], x.data.map((xi, i) => 2 * xi * y.data[i] * v.data[i] + xi * xi * w.data[i]));
    expect(maxRelDiff(jvpFD(f, [x, y], [v, w]), exact)).toBeLessThan(1e-8);
    const u = randn64([7], 5);
    const [gx, gy] = vjpViaFD(f, [x, y], u);
    expect(maxRelDiff(gx, t64([7], x.data.map((xi, i) => 2 * xi * y.data[i] * u.data[i])))).toBeLessThan(1e-8);
    expect(maxRelDiff(gy, t64([7], x.data.map((xi, i) => xi * xi * u.data[i])))).toBeLessThan(1e-8);
  });

  it('dotIdentity flags a wrong transpose', () => {
    const A = randn64([4, 3], 9);
    const v = randn64([3, 1], 10);
    const u = randn64([4, 1], 11);
    const jv = matmulRef(A, v);
    expect(dotIdentity(jv, u, [v], [matmulRef(transpose2dRef(A), u)]).relErr).toBeLessThan(BILINEAR_DOT_TOL);
    const wrong = matmulRef(transpose2dRef(A), u);
    wrong.data[0] += 0.1;
    expect(dotIdentity(jv, u, [v], [wrong]).relErr).toBeGreaterThan(1e-4);
  });
});

describe('matmul / linear', () => {
  it('matmul of known 2×2 and non-square values', () => {
    const y = matmulRef(t64([2, 2], [1, 2, 3, 4]), t64([2, 2], [5, 6, 7, 8]));
    expect([...y.data]).toEqual([19, 22, 43, 50]);
    const z = matmulRef(t64([1, 3], [1, 2, 3]), t64([3, 2], [1, 0, 0, 1, 1, 1]));
    expect(z.shape).toEqual([1, 2]);
    expect([...z.data]).toEqual([4, 5]);
  });

  it('linear equals x·Wᵀ + b computed naively; known values', () => {
    const y = linearRef(t64([1, 2], [1, 2]), t64([3, 2], [1, 0, 0, 1, 1, 1]), t64([3], [10, 20, 30]));
    expect([...y.data]).toEqual([11, 22, 33]);
    const rng = makeRng(5);
    for (let trial = 0; trial < 5; trial++) {
      const [N, I, O] = [rng.int(1, 4), rng.int(1, 7), rng.int(1, 6)];
      const x = randn64([N, I], 10 + trial);
      const w = randn64([O, I], 20 + trial);
      const b = randn64([O], 30 + trial);
      const ref = t64([N, O]);
      for (let n = 0; n < N; n++) {
        for (let o = 0; o < O; o++) {
          let s = b.data[o];
          for (let i = 0; i < I; i++) s += x.data[n * I + i] * w.data[o * I + i];
          ref.data[n * O + o] = s;
        }
      }
      expect(maxAbsDiff(linearRef(x, w, b), ref)).toBeLessThan(1e-14);
      expect(maxAbsDiff(linearRef(x, w), matmulRef(x, transpose2dRef(w)))).toBeLessThan(1e-14);
    }
  });

  it('matmul JVP/VJP vs finite differences and the dot identity', () => {
    const rng = makeRng(11);
    for (let trial = 0; trial < 4; trial++) {
      const [M, K, N] = [rng.int(1, 5), rng.int(1, 6), rng.int(1, 5)];
      const op = namedRefOp(
        ['a', 'b'],
        ([a, b]) => matmulRef(a, b),
        ([a, b], t) => matmulJvpRef(a, b, t),
        ([a, b], g) => matmulVjpRef(a, b, g),
      );
      expectBilinearDerivatives(op, [randn64([M, K], trial), randn64([K, N], 50 + trial)], trial + 1);
    }
  });

  it('linear JVP/VJP vs finite differences and the dot identity (random shapes, batch 1 included)', () => {
    const rng = makeRng(12);
    const shapes = [[1, 1, 1], [1, 5, 3], [3, 4, 7], [rng.int(1, 4), rng.int(1, 9), rng.int(1, 9)]];
    shapes.forEach(([N, I, O], trial) => {
      const op = namedRefOp(
        ['x', 'w', 'b'],
        ([x, w, b]) => linearRef(x, w, b),
        ([x, w], t) => linearJvpRef(x, w, t),
        ([x, w], g) => linearVjpRef(x, w, g),
      );
      expectBilinearDerivatives(op, [randn64([N, I], trial), randn64([O, I], 60 + trial), randn64([O], 70 + trial)], trial + 1);
    });
  });

  it('absent JVP tangents act as zeros', () => {
    const x = randn64([2, 3], 1);
    const w = randn64([4, 3], 2);
    const tw = randn64([4, 3], 3);
    const full = linearJvpRef(x, w, { x: t64([2, 3]), w: tw, b: t64([4]) });
    expect(maxAbsDiff(linearJvpRef(x, w, { w: tw }), full)).toBe(0);
    expect(maxAbs0(linearJvpRef(x, w, {}))).toBe(0);
    expect(maxAbsDiff(matmulJvpRef(x, transpose2dRef(w), { a: x }), matmulRef(x, transpose2dRef(w)))).toBe(0);
  });
});

function maxAbs0(x: T64): number {
  return x.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

/** Independent conv: explicit zero-padded copy, im2col rows, one matmul with W as [Cout, Cin·kh·kw]. */
function conv2dNaive(x: T64, w: T64, b: T64 | null, opts: Conv2dOptions): T64 {
  const [N, Cin, H, W] = x.shape;
  const [Cout, , KH, KW] = w.shape;
  const [pt, pb, pl, pr] = normalizePadding(opts.padding);
  const s = opts.stride ?? 1;
  const [sh, sw] = typeof s === 'number' ? [s, s] : s;
  const Hp = H + pt + pb;
  const Wp = W + pl + pr;
  const OH = Math.floor((Hp - KH) / sh) + 1;
  const OW = Math.floor((Wp - KW) / sw) + 1;
  const y = t64([N, Cout, OH, OW]);
  const wm = t64([Cout, Cin * KH * KW], w.data);
  for (let n = 0; n < N; n++) {
    const xp = new Float64Array(Cin * Hp * Wp);
    for (let c = 0; c < Cin; c++) {
      for (let i = 0; i < H; i++) {
        for (let j = 0; j < W; j++) xp[(c * Hp + i + pt) * Wp + j + pl] = x.data[((n * Cin + c) * H + i) * W + j];
      }
    }
    const cols = t64([Cin * KH * KW, OH * OW]);
    for (let c = 0; c < Cin; c++) {
      for (let a = 0; a < KH; a++) {
        for (let bb = 0; bb < KW; bb++) {
          const r = (c * KH + a) * KW + bb;
          for (let oh = 0; oh < OH; oh++) {
            for (let ow = 0; ow < OW; ow++) cols.data[r * OH * OW + oh * OW + ow] = xp[(c * Hp + oh * sh + a) * Wp + ow * sw + bb];
          }
        }
      }
    }
    const out = matmulRef(wm, cols);
    for (let co = 0; co < Cout; co++) {
      for (let p = 0; p < OH * OW; p++) y.data[(n * Cout + co) * OH * OW + p] = out.data[co * OH * OW + p] + (b ? b.data[co] : 0);
    }
  }
  return y;
}

describe('conv2d', () => {
  const x33 = t64([1, 1, 3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9]);

  it('hand-computed 3×3 cases: box filter, a shift (cross-correlation, not convolution), bias, stride 2', () => {
    const ones = t64([1, 1, 3, 3], new Float64Array(9).fill(1));
    expect([...conv2dRef(x33, ones, null, { padding: 1 }).data]).toEqual([12, 21, 16, 27, 45, 33, 24, 39, 28]);
    expect([...conv2dRef(x33, ones, null).data]).toEqual([45]);
    // Weight 1 at (row 1, col 2): y[i, j] = x[i, j + 1] under PyTorch's correlation.
    const shift = t64([1, 1, 3, 3], [0, 0, 0, 0, 0, 1, 0, 0, 0]);
    expect([...conv2dRef(x33, shift, t64([1], [0.5]), { padding: 1 }).data]).toEqual([2.5, 3.5, 0.5, 5.5, 6.5, 0.5, 8.5, 9.5, 0.5]);
    expect([...conv2dRef(x33, ones, null, { padding: 1, stride: 2 }).data]).toEqual([12, 16, 24, 28]);
    // score_sde Downsample: pad right/bottom by 1 then 3×3 stride 2 → windows at rows/cols {0, 2}.
    const x44 = t64([1, 1, 4, 4], Array.from({ length: 16 }, (_, i) => i + 1));
    const y = conv2dRef(x44, ones, null, { padding: [0, 1, 0, 1], stride: 2 });
    expect(y.shape).toEqual([1, 1, 2, 2]);
    expect([...y.data]).toEqual([54, 3 + 4 + 7 + 8 + 11 + 12, 9 + 10 + 11 + 13 + 14 + 15, 11 + 12 + 15 + 16]);
  });

  it('two input and output channels, known values', () => {
    const x = t64([1, 2, 2, 2], [1, 2, 3, 4, 10, 20, 30, 40]);
    const w = t64([2, 2, 1, 1], [1, 0.5, -1, 0]);
    expect([...conv2dRef(x, w, t64([2], [0, 1])).data]).toEqual([6, 12, 18, 24, 0, -1, -2, -3]);
  });

  const configs: { name: string; opts: Conv2dOptions; k: number }[] = [
    { name: '3×3 pad 1', opts: { padding: 1 }, k: 3 },
    { name: '1×1', opts: {}, k: 1 },
    { name: '3×3 stride 2 pad 1', opts: { stride: 2, padding: 1 }, k: 3 },
    { name: '3×3 stride 2 pad (0,1,0,1) (score_sde Downsample)', opts: { stride: 2, padding: [0, 1, 0, 1] }, k: 3 },
    { name: '3×3 stride [1,2] pad [2,0,1,3]', opts: { stride: [1, 2], padding: [2, 0, 1, 3] }, k: 3 },
    { name: '2×2 stride 3 pad [1, 0]', opts: { stride: 3, padding: [1, 0] }, k: 2 },
  ];

  it('forward equals an independent im2col computation on random shapes (odd sizes, batch 1)', () => {
    const rng = makeRng(21);
    configs.forEach(({ opts, k }, c) => {
      for (let trial = 0; trial < 3; trial++) {
        const N = trial === 0 ? 1 : rng.int(1, 3);
        const [Cin, Cout, H, W] = [rng.int(1, 4), rng.int(1, 4), rng.int(k + 1, 9), rng.int(k + 1, 9)];
        const x = randn64([N, Cin, H, W], 100 * c + trial);
        const w = randn64([Cout, Cin, k, k], 100 * c + trial + 50);
        const b = randn64([Cout], 100 * c + trial + 70);
        const y = conv2dRef(x, w, b, opts);
        expect(y.shape).toEqual(conv2dOutShape(x.shape, w.shape, opts));
        expect(maxRelDiff(y, conv2dNaive(x, w, b, opts))).toBeLessThan(1e-14);
      }
    });
  });

  it('stride-2 output is the stride-1 output subsampled', () => {
    const x = randn64([2, 3, 7, 6], 5);
    const w = randn64([2, 3, 3, 3], 6);
    const y1 = conv2dRef(x, w, null, { padding: [0, 1, 0, 1] });
    const y2 = conv2dRef(x, w, null, { padding: [0, 1, 0, 1], stride: 2 });
    const [, , H1, W1] = y1.shape;
    const [N, C, H2, W2] = y2.shape;
    expect([H2, W2]).toEqual([Math.ceil(H1 / 2), Math.ceil(W1 / 2)]);
    for (let p = 0; p < N * C; p++) {
      for (let i = 0; i < H2; i++) {
        for (let j = 0; j < W2; j++) expect(y2.data[(p * H2 + i) * W2 + j]).toBe(y1.data[(p * H1 + 2 * i) * W1 + 2 * j]);
      }
    }
  });

  configs.forEach(({ name, opts, k }, c) => {
    it(`JVP/VJP vs finite differences and the dot identity: ${name}`, () => {
      const rng = makeRng(300 + c);
      const shapes = [
        [1, 2, k + 2, k + 3, 3],
        [2, rng.int(1, 3), rng.int(k, 6), rng.int(k, 6), rng.int(1, 3)],
      ];
      shapes.forEach(([N, Cin, H, W, Cout], trial) => {
        const op = namedRefOp(
          ['x', 'w', 'b'],
          ([x, w, b]) => conv2dRef(x, w, b, opts),
          ([x, w], t) => conv2dJvpRef(x, w, t, opts),
          ([x, w], g) => conv2dVjpRef(x, w, g, opts),
        );
        const inputs = [randn64([N, Cin, H, W], trial + 1), randn64([Cout, Cin, k, k], trial + 2), randn64([Cout], trial + 3)];
        expectBilinearDerivatives(op, inputs, 10 * c + trial + 1);
      });
    });
  });

  it('JVP with absent tangents equals JVP with zero tangents', () => {
    const x = randn64([1, 2, 5, 4], 1);
    const w = randn64([3, 2, 3, 3], 2);
    const tx = randn64([1, 2, 5, 4], 3);
    const opts: Conv2dOptions = { stride: 2, padding: [0, 1, 0, 1] };
    expect(maxAbsDiff(conv2dJvpRef(x, w, { x: tx }, opts), conv2dJvpRef(x, w, { x: tx, w: t64(w.shape), b: t64([3]) }, opts))).toBe(0);
    expect(maxAbsDiff(conv2dJvpRef(x, w, { x: tx }, opts), conv2dRef(tx, w, null, opts))).toBe(0);
  });

  it('convTranspose2d: PyTorch output size, known values, adjoint of conv2d', () => {
    // 1 channel, 2×2 input, stride 2, 3×3 ones kernel: output (2−1)·2 + 3 = 5, overlapping taps add up.
    const x = t64([1, 1, 2, 2], [1, 2, 3, 4]);
    const ones = t64([1, 1, 3, 3], new Float64Array(9).fill(1));
    const y = convTranspose2dRef(x, ones, { stride: 2 });
    expect(y.shape).toEqual([1, 1, 5, 5]);
    expect([...y.data.subarray(0, 5)]).toEqual([1, 1, 3, 2, 2]);
    expect([...y.data.subarray(10, 15)]).toEqual([4, 4, 10, 6, 6]);
    expect(convTranspose2dRef(x, ones, { stride: 2, padding: 1, outputPadding: 1 }).shape).toEqual([1, 1, 4, 4]);
    // ⟨convT(u, w), v⟩ = ⟨u, conv2d(v, w)⟩ with w [Cin_T, Cout_T, k, k] read as a conv2d weight.
    const w = randn64([3, 2, 3, 3], 4);
    const u = randn64([2, 3, 4, 5], 5);
    const v = randn64([2, 2, 9, 11], 6);
    const ct = convTranspose2dRef(u, w, { stride: 2 });
    expect(ct.shape).toEqual(v.shape);
    expect(dotIdentity(ct, v, [u], [conv2dRef(v, w, null, { stride: 2 })]).relErr).toBeLessThan(BILINEAR_DOT_TOL);
  });
});
