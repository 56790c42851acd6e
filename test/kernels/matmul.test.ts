import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { checkHvp, checkOp, randomHost, relErr, type Host64 } from '../helpers/check-op.js';
import { dense, matmul, tuneMatmul, type MatmulParams } from '../../kernels/matmul.js';
import { channelBroadcast, channelSum } from '../../kernels/bias.js';
import { availableVariants, type GemmVariant } from '../../kernels/gemm-wgsl.js';
import { silu } from '../../kernels/elementwise.js';
import { linearRef, matmulRef, transpose2dRef } from '../../kernels/reference/linear.js';
import { ShapeError } from '../../engine/errors.js';

// f32 dot products of K terms: rounding error ≲ √K·2⁻²⁴·Σ|a||b|, i.e. ~1e-7·√K relative to max|ref| for random
// operands; K ≤ 130 here, so 1e-5 leaves a wide margin while a wrong index (error ~1) cannot pass. Finite
// differences of the float64 reference are exact for a bilinear op up to ~1e-11 roundoff, so JVP/VJP share it.
const TOL = { forward: 1e-5, jvp: 1e-5, vjp: 1e-5 };

function matmulReference(p: MatmulParams) {
  return ([a, b, bias]: Array<Host64 | null>): Host64 => {
    const y = matmulRef(p.transA ? transpose2dRef(a!) : a!, p.transB ? transpose2dRef(b!) : b!);
    if (bias) {
      const n = y.shape[1];
      for (let i = 0; i < y.data.length; i++) y.data[i] += bias.data[i % n];
    }
    return y;
  };
}

// Each (shape, transposes, bias) is its own pipeline for the CPU variants (vec4 paths depend on divisibility) and
// lavapipe's JIT takes ~0.5–1 s per pipeline: three shapes cover scalar, vec4 and mixed paths.
const SHAPES: Array<[number, number, number]> = [
  [1, 7, 13], // batch 1, odd N and K: scalar loads, masked K tail
  [9, 12, 8], // multiples of 4 in N and K: the vec4 paths
  [13, 36, 37], // mixed
];

describe('matmul', () => {
  const engine = useEngine();

  it('lists its variants', () => {
    const v = availableVariants(engine());
    expect(v).toContain('register');
    expect(v).toContain('tiled');
  });

  for (const variant of ['register', 'subgroup', 'tiled'] as GemmVariant[]) {
    it(`${variant}: forward / JVP / VJP on odd and vec4 shapes, every transpose, with and without bias`, async (ctx) => {
      const e = engine();
      if (!availableVariants(e).includes(variant)) ctx.skip();
      let seed = 1;
      for (const [M, N, K] of SHAPES) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const p: MatmulParams = { transA, transB, variant };
            const a = randomHost(transA ? [K, M] : [M, K], seed++);
            const b = randomHost(transB ? [N, K] : [K, N], seed++);
            const withBias = (M + N + K + Number(transA)) % 2 === 0;
            const inputs = withBias ? [a, b, randomHost([N], seed++)] : [a, b];
            await checkOp(e, { op: matmul, params: p, inputs, reference: matmulReference(p), tol: TOL, seed });
          }
        }
      }
    });
  }

  it('dense = x·Wᵀ + b with W [out, in] (nn.Linear layout), every variant', async () => {
    const e = engine();
    for (const variant of availableVariants(e)) {
      for (const [n, i, o] of [
        [1, 13, 7],
        [6, 32, 20],
      ]) {
        await checkOp(e, {
          op: dense,
          params: { variant },
          inputs: [randomHost([n, i], 11), randomHost([o, i], 12), randomHost([o], 13)],
          reference: ([x, w, b]) => linearRef(x!, w!, b),
          tol: TOL,
        });
      }
    }
  });

  it('bias-gradient ops channelSum / channelBroadcast', async () => {
    const e = engine();
    // Sums of ≤ 300 terms: ~1e-7 relative.
    await checkOp(e, {
      op: channelSum,
      params: { axis: 1 },
      inputs: [randomHost([3, 5, 20], 4)],
      reference: ([x]) => {
        const out = { shape: [5], data: new Float64Array(5) };
        x!.data.forEach((v, i) => (out.data[Math.floor(i / 20) % 5] += v));
        return out;
      },
      tol: { forward: 2e-6, jvp: 2e-6, vjp: 2e-6 },
    });
    await checkOp(e, {
      op: channelBroadcast,
      params: { shape: [2, 3, 4], axis: 1 },
      inputs: [randomHost([3], 5)],
      reference: ([g]) => ({ shape: [2, 3, 4], data: Float64Array.from({ length: 24 }, (_, i) => g!.data[Math.floor(i / 4) % 3]) }),
      tol: { forward: 0, jvp: 1e-6, vjp: 1e-6 },
    });
  });

  it('HVP through dense → silu → dense (forward-over-reverse through both matmul VJPs)', async () => {
    const e = engine();
    const w1 = randomHost([12, 9], 21);
    const w2 = randomHost([5, 12], 22);
    const W1 = e.keep(e.tensor(Float32Array.from(w1.data), w1.shape));
    const W2 = e.keep(e.tensor(Float32Array.from(w2.data), w2.shape));
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    // ∇ₓ⟨u, W2·silu(W1·x)⟩ in float64 = W1ᵀ(silu'(z) ⊙ W2ᵀu) row by row.
    const refGrad = (x: Host64, u: Host64): Host64 => {
      const z = linearRef(x, w1);
      const back = matmulRef(u, w2);
      back.data.forEach((g, i) => (back.data[i] = g * sig(z.data[i]) * (1 + z.data[i] * (1 - sig(z.data[i])))));
      return matmulRef(back, w1);
    };
    // Two K ≤ 12 contractions around silu'': f32 rounding ~1e-6 relative.
    await checkHvp(e, (x) => dense(e, [silu(e, [dense(e, [x, W1], {})], {}), W2], {}), randomHost([3, 9], 23), refGrad, [3, 5], 2e-5);
    W1.dispose();
    W2.dispose();
  });

  it('the autotuner times candidates and the op then uses the choice', async () => {
    const e = engine();
    const r = await tuneMatmul(e, 33, 40, 24, { repeats: 1, variants: ['register'] });
    expect(r.timings.length).toBeGreaterThan(1);
    const a = randomHost([33, 24], 31);
    const b = randomHost([24, 40], 32);
    const got = await e.scope(async () =>
      matmul(e, [e.tensor(Float32Array.from(a.data), a.shape), e.tensor(Float32Array.from(b.data), b.shape)], {}).readF64(),
    );
    const want = matmulRef({ shape: a.shape, data: Float64Array.from(Float32Array.from(a.data)) }, { shape: b.shape, data: Float64Array.from(Float32Array.from(b.data)) });
    expect(relErr(got, want.data)).toBeLessThan(TOL.forward);
  });

  it('rejects bad shapes with a ShapeError naming the op', () => {
    const e = engine();
    e.scope(() => {
      const a = e.zeros([3, 4]);
      const b = e.zeros([5, 6]);
      expect(() => matmul(e, [a, b], {})).toThrow(ShapeError);
      expect(() => matmul(e, [a, b], {})).toThrow(/matmul/);
      expect(() => dense(e, [a, b], {})).toThrow(/dense/);
      expect(() => matmul(e, [a, e.zeros([4, 2]), e.zeros([3])], {})).toThrow(/bias/);
    });
  });
});
