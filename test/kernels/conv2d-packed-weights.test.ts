import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { randomHost, relErr, roundF32, type Host64 } from '../helpers/check-op.js';
import { conv2d, conv2dInputGrad, packedWeightStats, setConvDefault, type Conv2dParams } from '../../kernels/conv2d.js';
import { conv2dInputVjpRef, conv2dRef } from '../../kernels/reference/conv2d.js';
import { grid } from '../../engine/wgsl.js';
import { u32s, writes } from '../../engine/kernel.js';
import { flatTestProgram } from '../helpers/flat-program.js';
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';

// Packed weights are cached per weight storage and view, and repacked after any write into the storage. The
// register variant with packW is what every CPU adapter runs by default; it is forced here on every adapter.
const P: Conv2dParams = { padding: 1, variant: 'register' };
// W [4, 4, 4, 4] is 1 KiB, so views at multiples of it stay bindable (storage-offset alignment ≤ 256 bytes).
const X_SHAPE = [2, 4, 6, 6];
const W_SHAPE = [4, 4, 4, 4];
const W_SIZE = 256;

/** w[i] = 2·w[i] in place: a dispatch binding the weights read_write, as the optimizer's does. */
const DOUBLE_IN_PLACE = flatTestProgram('test.double-in-place', writes('w'), u32s('n'), '  w[i] = 2.0 * w[i];');

/** The inputs on host and device, and the engine's packing counters. */
interface Uploaded {
  x: Host64;
  w: Host64;
  xt: Tensor;
  wt: Tensor;
  stats: ReturnType<typeof packedWeightStats>;
}

const upload = (e: Engine, h: Host64): Tensor => e.tensor(Float32Array.from(h.data), h.shape);
const scaled = (h: Host64, s: number): Host64 => ({ shape: h.shape, data: h.data.map((v) => v * s) });

describe('packed conv weights', () => {
  const engine = useEngine();

  function setup(e: Engine) {
    setConvDefault(e, 'forward', { variant: 'register', tile: { tm: 4, tn: 4, packW: true } });
    setConvDefault(e, 'inputGrad', { variant: 'register', tile: { tm: 4, tn: 4, packW: true } });
    return { x: roundF32(randomHost(X_SHAPE, 1)), w: roundF32(randomHost(W_SHAPE, 2)) };
  }

  /** setup(), then `body` in a scope with x and W uploaded and the engine's packing counters. */
  async function withUploaded(e: Engine, body: (c: Uploaded) => Promise<void>): Promise<void> {
    const { x, w } = setup(e);
    await e.scope(() => body({ x, w, xt: upload(e, x), wt: upload(e, w), stats: packedWeightStats(e) }));
  }

  it('packs once per weight tensor and reuses the packing across calls (bit-identical results)', async () => {
    const e = engine();
    await withUploaded(e, async ({ x, w, xt, wt, stats }) => {
      const packs0 = stats.packs;
      const first = await conv2d(e, [xt, wt], P).read();
      expect(stats.packs - packs0).toBe(1);
      const hits0 = stats.hits;
      const again = await conv2d(e, [xt, wt], P).read();
      const third = await conv2d(e, [xt, wt], P).read();
      expect(stats.packs - packs0).toBe(1);
      expect(stats.hits - hits0).toBe(2);
      expect([...again]).toEqual([...first]);
      expect([...third]).toEqual([...first]);
      expect(relErr(Float64Array.from(first), conv2dRef(x, w, null, P).data)).toBeLessThan(1e-5);
      // The transposed conv packs W the other way round: its own entry, also packed once.
      const gy = upload(e, roundF32(randomHost([2, 4, 5, 5], 3)));
      const ig = { padding: 1, variant: 'register' as const, inputSize: [6, 6] as [number, number] };
      const g1 = await conv2dInputGrad(e, [gy, wt], ig).read();
      const g2 = await conv2dInputGrad(e, [gy, wt], ig).read();
      expect(stats.packs - packs0).toBe(2);
      expect([...g2]).toEqual([...g1]);
    });
  });

  it('repacks after engine.write, engine.copy and a read_write dispatch into the weights; results match a fresh tensor', async () => {
    const e = engine();
    await withUploaded(e, async ({ x, w, xt, wt, stats }) => {
      await conv2d(e, [xt, wt], P).read();
      const check = async (want: Host64, what: string) => {
        const packs0 = stats.packs;
        const got = await conv2d(e, [xt, wt], P).read();
        expect(stats.packs - packs0, what).toBe(1);
        // A fresh tensor holding the same values (its own storage: the uncached path) gives the same bits.
        const fresh = await conv2d(e, [xt, upload(e, want)], P).read();
        expect([...got], what).toEqual([...fresh]);
        expect(relErr(Float64Array.from(got), conv2dRef(x, want, null, P).data), what).toBeLessThan(1e-5);
      };
      const w2 = roundF32(randomHost(W_SHAPE, 4));
      e.write(wt, new Uint8Array(Float32Array.from(w2.data).buffer));
      await check(w2, 'after engine.write');
      const w3 = roundF32(randomHost(W_SHAPE, 5));
      e.copy(upload(e, w3), wt);
      await check(w3, 'after engine.copy');
      e.run(DOUBLE_IN_PLACE, {}, { w: wt }, { n: W_SIZE }, grid(e, W_SIZE, 64));
      await check(scaled(w3, 2), 'after a read_write dispatch');
      // And a write recorded between two convs of one batch: the second sees the new weights.
      const before = conv2d(e, [xt, wt], P);
      e.run(DOUBLE_IN_PLACE, {}, { w: wt }, { n: W_SIZE }, grid(e, W_SIZE, 64));
      const after = conv2d(e, [xt, wt], P);
      const [b, a] = await e.readMany([before, after]);
      expect(relErr(Float64Array.from(b), conv2dRef(x, scaled(w3, 2), null, P).data)).toBeLessThan(1e-5);
      expect(relErr(Float64Array.from(a), conv2dRef(x, scaled(w3, 4), null, P).data)).toBeLessThan(1e-5);
    });
  });

  it('keys views of one storage by offset, and frees packings with their weights (not scoped, not live tensors)', async () => {
    const e = engine();
    const { x, w } = setup(e);
    const w2 = roundF32(randomHost(W_SHAPE, 6));
    const xt = e.keep(upload(e, x));
    const bytes0 = e.memory().bytesInUse;
    const both = e.keep(e.tensor(Float32Array.from([...w.data, ...w2.data]), [2, ...W_SHAPE]));
    const views = [0, 1].map((k) => {
      const row = both.slice0(k, k + 1);
      const view = e.keep(row.reshape(W_SHAPE));
      row.dispose();
      return view;
    });
    const live0 = e.memory().liveTensors;
    const [y0, y1] = e.scope(() => views.map((v) => conv2d(e, [xt, v], P)));
    // Only the two outputs are new live tensors: the packings belong to the cache.
    expect(e.memory().liveTensors).toBe(live0 + 2);
    const [r0, r1] = await e.readMany([y0, y1]);
    expect(relErr(Float64Array.from(r0), conv2dRef(x, w, null, P).data)).toBeLessThan(1e-5);
    expect(relErr(Float64Array.from(r1), conv2dRef(x, w2, null, P).data)).toBeLessThan(1e-5);
    const gx = await e.scope(() => conv2dInputGrad(e, [y1, views[1]], { ...P, inputSize: [6, 6] }).readF64());
    expect(relErr(gx, conv2dInputVjpRef(roundF32({ shape: [2, 4, 5, 5], data: Float64Array.from(r1) }), w2, X_SHAPE, P).data)).toBeLessThan(1e-5);
    [y0, y1].forEach((t) => t.dispose());
    // Disposing the last view of the weights releases its storage and, with it, every packing made from it.
    [...views, both].forEach((t) => t.dispose());
    await e.sync();
    expect(e.memory().bytesInUse).toBe(bytes0);
    xt.dispose();
  });
});
