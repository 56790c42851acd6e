import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { checkOp, randomHost } from '../helpers/check-op.js';
import { dropout, dropoutKeepMask, dropoutMasked, type DropoutParams } from '../../kernels/dropout.js';
import { vjp } from '../../engine/autodiff.js';

describe('dropout (counter-based Philox mask)', () => {
  const engine = useEngine();
  const params: DropoutParams = { rate: 0.1, seed: 1234, stream: 3 };

  it('mask is the host twin’s, deterministic in (seed, stream) and different across them', async () => {
    const e = engine();
    const n = 1001; // not a multiple of 4: the last Philox block is partly used
    const x = Float32Array.from(randomHost([n], 5).data);
    const xt = e.tensor(x, [7, 11, 13]);
    const [a, b, c, d] = await e.readMany([
      dropoutMasked(e, [xt], params),
      dropoutMasked(e, [xt], params),
      dropoutMasked(e, [xt], { ...params, seed: 1235 }),
      dropoutMasked(e, [xt], { ...params, stream: 4 }),
    ]);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
    expect(a).not.toEqual(d);
    const keep = dropoutKeepMask(n, params);
    const scale = Math.fround(1 / (1 - params.rate));
    // Bit-exact: one f32 product per kept element.
    expect(Array.from(a)).toEqual(Array.from(x, (v, i) => (keep[i] ? Math.fround(v * scale) : v * 0))); // x·0 keeps the sign of zero
  });

  it('preserves the mean (inverted scaling) and drops ≈ rate of the elements', async () => {
    const e = engine();
    const n = 1 << 16;
    const y = await dropoutMasked(e, [e.tensor(new Float32Array(n).fill(1), [n])], { rate: 0.1, seed: 9 }).readF64();
    let sum = 0;
    let dropped = 0;
    for (const v of y) {
      sum += v;
      if (v === 0) dropped++;
    }
    // Std of the mean of n Bernoulli(0.9)/0.9 draws: √(0.1/0.9/n) = 1.3e-3; 4σ bound.
    expect(Math.abs(sum / n - 1)).toBeLessThan(5.2e-3);
    // Std of the dropped fraction: √(0.09/n) = 1.2e-3; 4σ bound.
    expect(Math.abs(dropped / n - 0.1)).toBeLessThan(4.7e-3);
  });

  it('VJP and JVP (fused dual) use the same mask as the forward', async () => {
    const e = engine();
    const shape = [2, 3, 5];
    const keep = dropoutKeepMask(30, params);
    const s = 1 / (1 - params.rate);
    // One f32 product per element: ≤ ½ ulp (6e-8) of the max-norm; the linear reference's central differences
    // are exact up to float64 roundoff.
    await checkOp(e, {
      op: dropoutMasked,
      params,
      inputs: [randomHost(shape, 6)],
      reference: ([x]) => ({ shape: x!.shape, data: x!.data.map((v, i) => (keep[i] ? v * Math.fround(s) : 0)) }),
      tol: { forward: 1.2e-7, jvp: 1.2e-7, vjp: 1.2e-7 },
    });
    // The gradient of Σ dropout(x) is the (scaled) mask itself.
    const x = e.tensor(new Float32Array(30).fill(2), shape);
    const r = vjp(e, (t) => dropoutMasked(e, [t], params), [x]);
    const g = await r.backward(e.tensor(new Float32Array(30).fill(1), shape))[0]!.readF64();
    const y = await r.output.readF64();
    expect(Array.from(g, (v) => (v !== 0 ? 1 : 0))).toEqual(Array.from(keep));
    expect(Array.from(y, (v) => (v !== 0 ? 1 : 0))).toEqual(Array.from(keep));
  });

  it('eval mode and rate 0 are the identity with no dispatch; bad rates are rejected', () => {
    const e = engine();
    const x = e.zeros([4, 4]);
    const before = e.pending;
    expect(dropout(e, x, { ...params, training: false })).toBe(x);
    expect(dropout(e, x, { ...params, rate: 0, training: true })).toBe(x);
    expect(e.pending).toBe(before);
    expect(dropout(e, x, { ...params, training: true })).not.toBe(x);
    expect(() => dropout(e, x, { ...params, rate: 1, training: true })).toThrow(/rate must be in \[0, 1\)/);
    expect(() => dropout(e, x, { ...params, rate: -0.1, training: false })).toThrow(/rate/);
  });
});
