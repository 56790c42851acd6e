import { describe, expect, it } from 'vitest';
import { useEngine } from '../../helpers/engine.js';
import { FMA_ADDEND, FMA_CHAINS, FMA_FLOPS_PER_ITERATION, FMA_SCALE, FMA_UNROLL, peakKernels } from '../../../bench/lib/peak-kernels.js';

const engine = useEngine();

/** float64 reference of one FMA invocation's written vec4: the sum of its chains after every step. */
function fmaReference(i: number, iterations: number): number[] {
  const s = Math.fround(Math.fround(i % 1024) * Math.fround(1e-3));
  const sum = [0, 0, 0, 0];
  for (let k = 0; k < FMA_CHAINS; k++) {
    const a = [s + k, s, s, s];
    for (let step = 0; step < iterations * FMA_UNROLL; step++) for (let l = 0; l < 4; l++) a[l] = a[l] * Math.fround(FMA_SCALE) + Math.fround(FMA_ADDEND);
    for (let l = 0; l < 4; l++) sum[l] += a[l];
  }
  return sum;
}

describe('bench/lib/peak-kernels', () => {
  it('the FMA kernel computes its chains (float64 reference) and the copy kernel copies every element', async () => {
    const e = engine();
    const sizes = { fmaInvocations: 70, fmaIterations: 2, copyElements: 2048 + 4 };
    const types = e.hasF16 ? (['f32', 'f16'] as const) : (['f32'] as const);
    for (const type of types) {
      const [fma, copy] = peakKernels(e, type, sizes);
      expect(fma.work).toBe(70 * 2 * FMA_FLOPS_PER_ITERATION);
      expect(FMA_FLOPS_PER_ITERATION).toBe(FMA_CHAINS * FMA_UNROLL * 8);
      expect(copy.work).toBe(2 * 2052 * (type === 'f32' ? 4 : 2));
      fma.record();
      copy.record();
      const [out, dst] = [await fma.result.readF64(), await copy.result.readF64()];
      const tol = type === 'f32' ? 1e-5 : 2e-2;
      for (let i = 0; i < sizes.fmaInvocations; i++) {
        const want = fmaReference(i, sizes.fmaIterations);
        for (let l = 0; l < 4; l++) expect(Math.abs(out[4 * i + l] - want[l]) / Math.abs(want[l]), `${type} invocation ${i} lane ${l}`).toBeLessThan(tol);
      }
      expect(Array.from(dst)).toEqual(Array.from({ length: 2052 }, (_, i) => (i % 1024) / 1024));
      fma.dispose();
      copy.dispose();
    }
  });
});
