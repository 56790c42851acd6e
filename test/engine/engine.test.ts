import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { DeviceLimitError, DTypeError, ShapeError } from '../../engine/errors.js';
import { defineFixedProgram } from '../../engine/program.js';
import { grid } from '../../engine/wgsl.js';
import { f32s, reads, u32s, writes } from '../../engine/kernel.js';
import { flatTestProgram } from '../helpers/flat-program.js';

const AXPY = flatTestProgram(
  'test.axpy',
  [...reads('x', 'y'), ...writes('out')],
  [...u32s('n'), ...f32s('a')],
  '  out[i] = params.a * x[i] + y[i];',
);

const BROKEN = defineFixedProgram({
  name: 'test.broken',
  buffers: writes('out'),
  workgroupSize: [1],
  body: 'fn main() { out[0] = undefined_symbol; }',
});

function axpy(e: Engine, a: number, x: Tensor, y: Tensor): Tensor {
  const out = e.empty(x.shape, 'f32', 'axpy.out');
  e.run(AXPY, {}, { x, y, out }, { n: x.size, a }, grid(e, x.size, 64));
  return out;
}

describe('engine', () => {
  const engine = useEngine();

  it('acquires a real adapter and describes it', () => {
    const e = engine();
    expect(e.info.limits.maxStorageBufferBindingSize).toBeGreaterThan(0);
    expect(typeof e.info.description).toBe('string');
    expect(e.device.limits.maxStorageBuffersPerShaderStage).toBeGreaterThanOrEqual(8);
  });

  it('uploads, computes, reads back; batches many dispatches into one submit', async () => {
    const e = engine();
    const n = 1023;
    const xs = Float32Array.from({ length: n }, (_, i) => i * 0.5);
    const x = e.tensor(xs, [n]);
    let y = e.zeros([n]);
    for (let k = 0; k < 100; k++) {
      const next = axpy(e, 1, x, y);
      y.dispose();
      y = next;
    }
    expect(e.pending).toBeGreaterThanOrEqual(100);
    const out = (await y.read()) as Float32Array;
    for (let i = 0; i < n; i += 97) expect(out[i]).toBe(100 * xs[i]);
    x.dispose();
    y.dispose();
  });

  it('uploads recorded after pending work are ordered after it (reused pool buffers)', async () => {
    const e = engine();
    const a = e.tensor([1, 2, 3], [3]);
    const b = axpy(e, 2, a, a); // pending: reads a
    a.dispose(); // a's buffer returns to the pool while the dispatch is still unsubmitted
    const c = e.tensor([10, 20, 30], [3]); // may reuse a's buffer: must not clobber a before b is computed
    expect([...((await b.read()) as Float32Array)]).toEqual([3, 6, 9]);
    expect([...((await c.read()) as Float32Array)]).toEqual([10, 20, 30]);
    b.dispose();
    c.dispose();
  });

  it('views: reshape and slice0 share storage; storage is released after the last view', async () => {
    const e = engine();
    const before = e.memory().bytesInUse;
    const t = e.tensor(Float32Array.from({ length: 4 * 64 }, (_, i) => i), [4, 64]);
    const r = t.reshape([-1]);
    expect(r.shape).toEqual([256]);
    const s = t.slice0(2, 4);
    expect([...((await s.read()) as Float32Array)].slice(0, 3)).toEqual([128, 129, 130]);
    t.dispose();
    r.dispose();
    expect(e.memory().bytesInUse).toBeGreaterThan(before);
    s.dispose();
    expect(e.memory().bytesInUse).toBe(before);
    expect(() => t.reshape([3, 7])).toThrow(/disposed/);
  });

  it('keeps live bytes flat across 1 000 scoped iterations', async () => {
    const e = engine();
    const x = e.keep(e.tensor(new Float32Array(4096).fill(1), [4096]));
    const acc = e.keep(e.zeros([4096]));
    const samples: number[] = [];
    for (let it = 0; it < 1000; it++) {
      e.scope(() => {
        const t1 = axpy(e, 0.5, x, x);
        const t2 = axpy(e, 1, t1, acc);
        e.copy(t2, acc);
      });
      if (it % 100 === 0) await e.flush();
      samples.push(e.memory().bytesInUse);
    }
    const out = (await acc.read()) as Float32Array;
    expect(out[0]).toBeCloseTo(1500, 3);
    expect(new Set(samples.slice(10)).size).toBe(1);
    const m = e.memory();
    expect(m.bytesHeld).toBeLessThanOrEqual(4 * 16384);
    expect(m.peakBytesInUse).toBeGreaterThanOrEqual(m.bytesInUse);
    x.dispose();
    acc.dispose();
  });

  it('scope returns tensors to the parent and disposes the rest, also for async functions', async () => {
    const e = engine();
    const live0 = e.memory().liveTensors;
    const kept = await e.scope(async () => {
      const a = e.tensor([1, 2], [2]);
      const b = e.tensor([3, 4], [2]);
      await e.flush();
      return { sum: axpy(e, 1, a, b) };
    });
    expect(e.memory().liveTensors).toBe(live0 + 1);
    expect([...((await kept.sum.read()) as Float32Array)]).toEqual([4, 6]);
    kept.sum.dispose();
  });

  it('gives clear errors: bad shape, dtype mismatch, over the binding size limit, unbound buffer', () => {
    const e = engine();
    expect(() => e.tensor([1, 2, 3], [2, 2])).toThrow(ShapeError);
    expect(() => e.tensor([1, 2, 3], [2, 2])).toThrow(/3 values do not fill shape \[2×2\]/);
    expect(() => e.empty([2, -1])).toThrow(/invalid shape/);
    const u = e.tensor([1, 2], [2], 'u32', 'labels');
    expect(() => u.assertDType('f32', 'conv2d input')).toThrow(DTypeError);
    expect(() => u.assertDType('f32', 'conv2d input')).toThrow(/conv2d input: labels\[2\] u32 must be f32/);
    const max = e.limits.maxStorageBufferBindingSize;
    expect(() => e.empty([max / 4 + 16], 'f32', 'huge')).toThrow(DeviceLimitError);
    expect(() => e.empty([max / 4 + 16], 'f32', 'huge')).toThrow(/huge .* maxStorageBufferBindingSize/);
    const x = e.tensor([1], [1]);
    expect(() => axpyUnbound(e, x)).toThrow(/buffer 'y' was not bound/);
    u.dispose();
    x.dispose();
  });

  it('reports a WGSL compile error naming the kernel', async () => {
    const e = engine();
    const out = e.empty([1]);
    e.run(BROKEN, {}, { out }, {}, [1]);
    await expect(e.flush()).rejects.toThrow(/test\.broken/);
    out.dispose();
  });

  it('profiles per kernel with timestamp queries', async () => {
    const e = engine();
    if (!e.profiler.supported) return;
    e.profiler.reset();
    e.profiler.enable(true);
    const x = e.tensor(new Float32Array(1 << 16).fill(1), [1 << 16]);
    for (let i = 0; i < 5; i++) axpy(e, 1, x, x).dispose();
    await e.sync();
    e.profiler.enable(false);
    const rows = e.profiler.report();
    const row = rows.find((r) => r.name === 'test.axpy');
    expect(row?.calls).toBe(5);
    expect(row!.totalMs).toBeGreaterThan(0);
    expect(e.profiler.table()).toMatch(/test\.axpy\s+5/);
    x.dispose();
  });
});

function axpyUnbound(e: Engine, x: Tensor): void {
  e.run(AXPY, {}, { x, out: x }, { n: 1, a: 1 }, [1]);
}
