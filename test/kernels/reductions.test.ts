import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { checkHvp, checkOp, randomHost, roundF32, type Tolerances } from '../helpers/check-op.js';
import {
  mulPerSample,
  perSampleDot,
  perSampleSum,
  perSampleSumSq,
  rmsNormRatio,
  rowBroadcast,
  sumAll,
} from '../../kernels/reductions.js';
import { logSumExp, logSumExpBackward } from '../../kernels/reductions-axis.js';
import {
  logSumExpRef,
  logSumExpVjpRef,
  perSampleDotRef,
  perSampleSumRef,
  perSampleSumSqRef,
  perSampleSumSqVjpRef,
} from '../../kernels/reference/reductions.js';
import { ShapeError } from '../../engine/errors.js';
import { host, logSumExpBackwardRef, mulPerSampleRef, rmsNormRatioRef } from '../helpers/op-references.js';

// Tolerances, relative to the max-norm of the reference (ε = 6e-8). A reduced value passes ≤ 16 sequential adds
// per lane, a 2-term horizontal add and a 6-level tree per level (1–2 levels here): worst case ≈ 25·levels·ε of
// Σ|terms|, and Σ|terms| is ≤ ~2× the result's scale for these random inputs of mixed sign only in the worst case;
// measured ≤ 3e-7, so 1e-6. Kahan-summed axis reductions (logsumexp) are within a few ulp plus exp/log's 3 ulp.
const TOL: Tolerances = { forward: 1e-6, jvp: 1e-6, vjp: 1e-6 };
// mulPerSample: one f32 rounding per element (x·s; the JVP ẋ·s + x·ṡ two or three): ≤ 2 ulp = 2.4e-7 of the
// max-norm; its VJP in s is a perSampleDot (TOL).
const MUL_TOL: Tolerances = { forward: 2.5e-7, jvp: 2.5e-7, vjp: 1e-6 };

const shapes = [[1, 7], [3, 5, 7], [2, 3, 17, 19], [2, 3 * 4096 + 4], [1, 5001]];

describe('per-sample reductions', () => {
  const engine = useEngine();

  for (const shape of shapes) {
    it(`dot, sum, sum of squares, sumAll and their transposes on [${shape}]`, async () => {
      const e = engine();
      const a = randomHost(shape, 1);
      const b = randomHost(shape, 2);
      const n = shape[0];
      await checkOp(e, { op: perSampleDot, params: {}, inputs: [a, b], reference: ([x, y]) => perSampleDotRef(x!, y!), tol: TOL });
      await checkOp(e, { op: perSampleSum, params: {}, inputs: [a], reference: ([x]) => perSampleSumRef(x!), tol: TOL });
      await checkOp(e, { op: perSampleSumSq, params: {}, inputs: [a], reference: ([x]) => perSampleSumSqRef(x!), tol: TOL });
      await checkOp(e, {
        op: sumAll,
        params: {},
        inputs: [a],
        reference: ([x]) => host([], Float64Array.of(x!.data.reduce((p, q) => p + q, 0))),
        tol: TOL,
      });
      const g = randomHost([n], 3);
      await checkOp(e, { op: mulPerSample, params: {}, inputs: [b, g], reference: ([x, s]) => mulPerSampleRef(x!, s!), tol: MUL_TOL });
      await checkOp(e, {
        op: rowBroadcast,
        params: { shape },
        inputs: [g],
        reference: ([x]) => mulPerSampleRef(host(shape, new Float64Array(a.data.length).fill(1)), x!),
        tol: TOL,
      });
    });
  }

  // inner = 4 and 72 (vec4 rows), 35 (scalar rows); per-sample scalars of scale 2.
  for (const shape of [[1, 4], [3, 5, 7], [2, 3, 4, 6]]) {
    it(`mulPerSample on [${shape}]`, async () => {
      const e = engine();
      const x = randomHost(shape, 51);
      const s = randomHost([shape[0]], 53, 2);
      await checkOp(e, { op: mulPerSample, params: {}, inputs: [x, s], reference: ([p, q]) => mulPerSampleRef(p!, q!), tol: MUL_TOL });
    });
  }

  it('HVP of ⟨u, ‖x_n‖²⟩ (forward-over-reverse through mulPerSample)', async () => {
    const e = engine();
    await checkHvp(e, (x) => perSampleSumSq(e, [x], {}), randomHost([3, 5, 7], 4), (x, u) => perSampleSumSqVjpRef(x, u), [3], 1e-6);
  });

  // A short chain of the ops above (a few reductions of ≤ 30 terms): 5e-6.
  it('HVP of x·‖x‖² per sample (mulPerSample dual, perSampleDot)', async () => {
    const e = engine();
    const x = randomHost([2, 3, 2, 5], 61);
    const n = 30;
    await checkHvp(
      e,
      (t) => mulPerSample(e, [t, perSampleDot(e, [t, t], {})], {}),
      x,
      // ∇⟨u, x·q⟩ with q = ‖x‖²: u·q + 2x⟨u, x⟩ per sample.
      (xx, u) => {
        const q = perSampleDotRef(xx, xx);
        const ux = perSampleDotRef(u, xx);
        return host(
          xx.shape,
          xx.data.map((v, i) => u.data[i] * q.data[Math.floor(i / n)] + 2 * v * ux.data[Math.floor(i / n)]),
        );
      },
      x.shape,
      5e-6,
    );
  });

  it('sums 16.7M values (> 65535·256) to ~1e-8 of Σ|x|', async () => {
    const e = engine();
    const n = 65535 * 256 + 77;
    const data = new Float32Array(n);
    let exact = 0;
    let absSum = 0;
    // Deterministic values of mixed sign and magnitude (an LCG; exact sums in float64).
    let s = 12345;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      data[i] = (s / 2 ** 32 - 0.3) * (1 + (i % 7));
      exact += data[i];
      absSum += Math.abs(data[i]);
    }
    const t0 = performance.now();
    const got = await e.scope(async () => (await sumAll(e, [e.tensor(data, [n])], {}).read())[0]);
    const ms = performance.now() - t0;
    // Worst-case bound of the header: ≲ 25 adds per level × 3 levels × ε = 4.5e-6 of Σ|x|. Measured 1.4e-8
    // (errors of a tree-like sum grow like √levels); one sequential f32 accumulator gets 6.7e-5 on these data.
    // The test takes ~0.3 s of GPU time on lavapipe (≈ 300 MB/s, the speed of an elementwise kernel), so it is not
    // marked slow.
    expect(Math.abs(got - exact) / absSum).toBeLessThan(4.5e-6);
    expect(Math.abs(got - exact) / absSum).toBeLessThan(1e-7);
    expect(ms).toBeLessThan(30_000);
  });
});

describe('logSumExp', () => {
  const engine = useEngine();

  for (const [shape, axis] of [
    [[3, 5, 7], 0],
    [[3, 5, 7], 1],
    [[3, 5, 7], -1],
    [[1, 10], 1],
    [[2, 5001], 1],
    [[1, 8192], -1],
  ] as Array<[number[], number]>) {
    it(`forward, JVP, VJP on [${shape}] axis ${axis}, and its backward's fused dual`, async () => {
      const e = engine();
      const x = randomHost(shape, 5, 4);
      await checkOp(e, {
        op: logSumExp,
        params: { axis },
        inputs: [x],
        reference: ([a]) => logSumExpRef(a!, axis),
        // The weights p = exp(x − lse) inherit lse's f32 rounding (ulp(13)/2 ≈ 5e-7 absolute for 8192 terms of
        // ±4), and the tangent Σ p·ẋ cancels (|Σ p·ẋ| ≈ Σ|p·ẋ|/√len): measured 1.6e-6 at len 8192, so 4e-6.
        tol: { forward: 1e-6, jvp: 4e-6, vjp: 4e-6 },
      });
      const xr = roundF32(x);
      const lse = logSumExpRef(xr, axis);
      const g = randomHost(lse.shape, 6);
      await checkOp(e, {
        op: logSumExpBackward,
        params: { axis },
        inputs: [xr, lse, g],
        reference: ([a, l, gg]) => logSumExpBackwardRef(a!, l!, gg!, axis),
        tol: { forward: 1e-6, jvp: 2e-6, vjp: 2e-6 },
      });
    });
  }

  it('is stable for large logits and −∞ entries; HVP matches', async () => {
    const e = engine();
    await e.scope(async () => {
      const x = e.tensor([1000, 999, -Infinity, 3, -Infinity, -Infinity], [2, 3]);
      const out = await logSumExp(e, [x], { axis: 1 }).readF64();
      expect(out[0]).toBeCloseTo(1000 + Math.log(1 + Math.exp(-1)), 3);
      expect(out[1]).toBeCloseTo(3, 5);
    });
    await checkHvp(
      e,
      (x) => logSumExp(e, [x], { axis: -1 }),
      randomHost([4, 9], 7, 3),
      (x, u) => logSumExpVjpRef(x, -1, u),
      [4],
      1e-6,
    );
  });
});

describe('rmsNormRatio', () => {
  const engine = useEngine();

  for (const perSample of [false, true]) {
    for (const shape of [[1, 7], [2, 3, 9, 9], [2, 4100]]) {
      it(`forward, JVP, VJP on [${shape}], perSample ${perSample}`, async () => {
        const e = engine();
        // O(1) ratios with O(1) inputs: central differences with h = 1e-5 need inputs ≫ h (a scale of 1e-3
        // would put (h/s)² = 1e-4 of truncation error into the reference derivative).
        const err = randomHost(shape, 8);
        const sc = randomHost(shape, 9);
        sc.data = sc.data.map((v) => 0.5 + Math.abs(v));
        await checkOp(e, {
          op: rmsNormRatio,
          params: { perSample },
          inputs: [err, sc],
          reference: ([a, b]) => rmsNormRatioRef(a!, b!, perSample),
          // The value: a square root of a sum of positive terms, ≤ 1e-7 measured, so 1e-6. The JVP is one sum of
          // M mixed-sign terms q·(ė − q·ṡ)/s, each ~4 roundings off: error ≈ 4ε·Σ|terms| while the sum cancels
          // to ≈ Σ|terms|/√M, i.e. ≈ 4ε·√M relative (5e-6 at M = 486; measured 4.7e-6), so 1e-5.
          tol: { forward: 1e-6, jvp: 1e-5, vjp: 1e-5 },
        });
      });
    }
  }

  it('rejects mismatched shapes', () => {
    const e = engine();
    e.scope(() => {
      expect(() => rmsNormRatio(e, [e.zeros([2, 3]), e.zeros([3, 2])], {})).toThrow(ShapeError);
      expect(() => perSampleDot(e, [e.zeros([2, 3]), e.zeros([2, 4])], {})).toThrow(/perSampleDot b/);
      const x = e.zeros([2, 3, 4, 4], 'f32', 'h');
      expect(() => mulPerSample(e, [x, e.zeros([3], 'f32', 'std')], {})).toThrow(ShapeError);
      expect(() => mulPerSample(e, [x, e.zeros([3], 'f32', 'std')], {})).toThrow(/mulPerSample.*h/);
      expect(() => mulPerSample(e, [x, e.zeros([2], 'u32', 'std')], {})).toThrow(/std.*f32/);
      expect(() => logSumExp(e, [e.zeros([2, 3])], { axis: 2 })).toThrow(/axis 2/);
    });
  });
});
