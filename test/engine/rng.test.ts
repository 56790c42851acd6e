import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { drawHost, philox4x32, randomTensor, HostRng, blocksFor } from '../../engine/rng.js';

const hex = (w: Uint32Array) => [...w].map((x) => x.toString(16).padStart(8, '0')).join(' ');

describe('Philox4x32-10', () => {
  it('matches the Random123 known-answer vectors', () => {
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0]))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    expect(hex(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff]))).toBe(
      '408f276d 41c83b0e a20bc7c6 6d5451fd',
    );
    expect(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toBe(
      'd16cfe09 94fdcceb 5001e420 24126ea1',
    );
  });
});

describe('GPU random draws', () => {
  const engine = useEngine();

  it('bits, uniform and rademacher are bit-identical to the TypeScript twin (odd sizes, offsets, streams)', async () => {
    const e = engine();
    for (const [n, spec] of [
      [1, { seed: 0 }],
      [1001, { seed: 42, stream: 3 }],
      [4099, { seed: 2n ** 40n + 7n, stream: 1, offset: 2 ** 32 - 3 }],
    ] as const) {
      for (const dist of ['bits', 'uniform', 'rademacher'] as const) {
        const t = randomTensor(e, [n], dist, spec);
        const gpu = await t.read();
        const host = drawHost(n, dist, spec);
        expect(Buffer.from(gpu.buffer).equals(Buffer.from(host.buffer))).toBe(true);
        t.dispose();
      }
    }
  });

  it('normal draws agree with the host to a few ulp (WGSL log/cos are not correctly rounded)', async () => {
    const e = engine();
    const n = 3001;
    const t = randomTensor(e, [n], 'normal', { seed: 7, stream: 2 });
    const gpu = (await t.read()) as Float32Array;
    const host = drawHost(n, 'normal', { seed: 7, stream: 2 }) as Float32Array;
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(gpu[i] - host[i]) / Math.max(1, Math.abs(host[i])));
    // f32 log/cos on lavapipe are within ~2 ulp; with sqrt and the product, a few 1e-7 relative.
    expect(worst).toBeLessThan(5e-6);
    t.dispose();
  });

  it('has the right moments', async () => {
    const e = engine();
    const n = 1 << 18;
    // Standard errors at n = 2^18: mean ~0.002 (normal), variance ~0.0028. Bounds are ~5 standard errors.
    const u = (await randomTensor(e, [n], 'uniform', { seed: 1 }).read()) as Float32Array;
    const z = (await randomTensor(e, [n], 'normal', { seed: 1 }).read()) as Float32Array;
    const r = (await randomTensor(e, [n], 'rademacher', { seed: 1 }).read()) as Float32Array;
    const mean = (a: Float32Array) => a.reduce((s, x) => s + x, 0) / a.length;
    const vari = (a: Float32Array) => {
      const m = mean(a);
      return a.reduce((s, x) => s + (x - m) ** 2, 0) / a.length;
    };
    expect(Math.abs(mean(u) - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / n));
    expect(Math.abs(vari(u) - 1 / 12)).toBeLessThan(0.002);
    expect(u.reduce((a, x) => Math.min(a, x), 1)).toBeGreaterThanOrEqual(0);
    expect(u.reduce((a, x) => Math.max(a, x), 0)).toBeLessThan(1);
    expect(Math.abs(mean(z))).toBeLessThan(5 / Math.sqrt(n));
    expect(Math.abs(vari(z) - 1)).toBeLessThan(5 * Math.sqrt(2 / n));
    const m4 = z.reduce((s, x) => s + x ** 4, 0) / n;
    expect(Math.abs(m4 - 3)).toBeLessThan(0.1);
    expect(r.every((x) => x === 1 || x === -1)).toBe(true);
    expect(Math.abs(mean(r))).toBeLessThan(5 / Math.sqrt(n));
  });

  it('different streams and seeds are uncorrelated; same spec repeats exactly', async () => {
    const n = 4096;
    const a = drawHost(n, 'normal', { seed: 5, stream: 0 }) as Float32Array;
    const b = drawHost(n, 'normal', { seed: 5, stream: 1 }) as Float32Array;
    const c = drawHost(n, 'normal', { seed: 5, stream: 0 }) as Float32Array;
    let dot = 0;
    for (let i = 0; i < n; i++) dot += a[i] * b[i];
    expect(Math.abs(dot / n)).toBeLessThan(5 / Math.sqrt(n));
    expect(c).toEqual(a);
    // Continuing a stream with an offset equals drawing it in one go.
    const whole = drawHost(1000, 'uniform', { seed: 9 });
    const tail = drawHost(600, 'uniform', { seed: 9, offset: blocksFor(400, 'uniform') });
    expect(tail).toEqual(whole.slice(400));
  });

  it('HostRng state round-trips bit-identically', () => {
    const r = new HostRng(123, 4);
    for (let i = 0; i < 7; i++) r.nextU32();
    const s = r.state();
    const next = [r.nextU32(), r.nextU32(), r.uniform(), r.normal()];
    const r2 = HostRng.restore(s);
    expect([r2.nextU32(), r2.nextU32(), r2.uniform(), r2.normal()]).toEqual(next);
  });
});
