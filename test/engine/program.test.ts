import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { defineProgram, describeProgramKey, ProgramCache, type InputShapes } from '../../engine/program.js';
import { f32s, reads, u32s, writes, type KernelSource } from '../../engine/kernel.js';
import { flatMain, grid } from '../../engine/wgsl.js';
import { SbgcError } from '../../engine/errors.js';

/** out = a·x + y (+ the rank of x when the rank is part of the key): a program with a spec and a shape dependency. */
function scaledAdd(builds: { count: number }, dependency?: 'rank' | 'dims') {
  return defineProgram<{ offset: number; square: boolean }>({
    name: 'test.scaled-add',
    spec: { offset: true, square: true },
    shapes: dependency ? { x: dependency } : undefined,
    build: ({ offset, square }, shapes: InputShapes): KernelSource => {
      builds.count++;
      const rank = shapes.x?.length ?? 0;
      const dims = shapes.x?.reduce((p, d) => p + d, 0) ?? 0;
      const v = square ? 'x[i] * x[i]' : 'x[i]';
      return {
        name: 'test.scaled-add',
        buffers: [...reads('x', 'y'), ...writes('out')],
        uniforms: [...u32s('n'), ...f32s('a')],
        workgroupSize: [64],
        body: flatMain({ wg: 64, count: 'params.n', body: `  out[i] = params.a * ${v} + y[i] + ${offset + rank * 100 + dims * 1000}.0;` }),
      };
    },
  });
}

describe('program objects', () => {
  const engine = useEngine();

  it('compiles once per distinct spec and reuses the pipeline across shapes', async () => {
    const e = engine();
    const builds = { count: 0 };
    const def = scaledAdd(builds);
    const run = async (shape: number[], offset: number, square: boolean) => {
      const n = shape.reduce((p, d) => p * d, 1);
      const x = e.tensor(Array.from({ length: n }, (_, i) => i), shape);
      const y = e.tensor(new Float32Array(n).fill(1), shape);
      const out = e.empty(shape);
      e.run(def, { offset, square }, { x, y, out }, { n, a: 2 }, grid(e, n, 64));
      return Array.from((await out.read()) as Float32Array);
    };
    const before = e.memory().pipelines;
    expect(await run([5], 0, false)).toEqual([1, 3, 5, 7, 9]);
    expect(await run([2, 3], 0, false)).toEqual([1, 3, 5, 7, 9, 11]);
    expect(builds.count).toBe(1);
    expect(await run([3], 10, true)).toEqual([11, 13, 19]);
    expect(await run([3], 0, true)).toEqual([1, 3, 9]);
    expect(builds.count).toBe(3);
    expect(e.memory().pipelines - before).toBe(3);
    // A hit builds nothing: 1 000 more dispatches, no new WGSL.
    const x = e.tensor([1, 2], [2]);
    const out = e.empty([2]);
    for (let k = 0; k < 1000; k++) e.run(def, { offset: 0, square: true }, { x, y: x, out }, { n: 2, a: 1 }, [1]);
    await e.sync();
    expect(builds.count).toBe(3);
  });

  it('keys rank-only inputs by rank and exact-dims inputs by their dims', async () => {
    const e = engine();
    const rankBuilds = { count: 0 };
    const byRank = scaledAdd(rankBuilds, 'rank');
    const dimBuilds = { count: 0 };
    const byDims = scaledAdd(dimBuilds, 'dims');
    const once = async (def: ReturnType<typeof scaledAdd>, shape: number[]) => {
      const n = shape.reduce((p, d) => p * d, 1);
      const x = e.tensor(new Float32Array(n), shape);
      const out = e.empty(shape);
      e.run(def, { offset: 0, square: false }, { x, y: x, out }, { n, a: 1 }, grid(e, n, 64));
      return ((await out.read()) as Float32Array)[0];
    };
    // The builder sees the rank (×100) and, for exact dims, the dims' sum (×1000); rank-only dims read as 0.
    expect(await once(byRank, [4])).toBe(100);
    expect(await once(byRank, [6])).toBe(100);
    expect(await once(byRank, [2, 3])).toBe(200);
    expect(rankBuilds.count).toBe(2);
    expect(await once(byDims, [4])).toBe(4100);
    expect(await once(byDims, [6])).toBe(6100);
    expect(await once(byDims, [4])).toBe(4100);
    expect(await once(byDims, [2, 2])).toBe(4200);
    expect(dimBuilds.count).toBe(3);
  });

  it('refuses a spec field the declaration does not list, and an unbound shape input', () => {
    const compiled: string[] = [];
    const cache = new ProgramCache<string>((src) => (compiled.push(src.name), src.name));
    const def = scaledAdd({ count: 0 });
    const bad = { offset: 1, square: false, extra: 3 } as unknown as { offset: number; square: boolean };
    expect(() => cache.get(def, bad)).toThrow(/spec field 'extra' is not declared/);
    const byRank = scaledAdd({ count: 0 }, 'rank');
    expect(() => cache.get(byRank, { offset: 0, square: false }, {})).toThrow(SbgcError);
    expect(cache.get(byRank, { offset: 0, square: false }, { x: { shape: [3, 4] } })).toBe('test.scaled-add');
    expect(compiled).toHaveLength(1);
    expect(describeProgramKey(def, { offset: 1, square: true })).toBe('test.scaled-add(offset=1, square=true)');
  });

  it('flatMain writes the index and the bounds guard that grid() matches', () => {
    const wgsl = flatMain({ wg: 128, count: 'params.rows', index: 'r', body: '  y[r] = 1.0;' });
    expect(wgsl).toContain('let r = gid.x + gid.y * nwg.x * 128u;');
    expect(wgsl).toContain('if (r >= params.rows) { return; }');
    const limits = { limits: { maxComputeWorkgroupsPerDimension: 10 } };
    expect(grid(limits, 128 * 10, 128)).toEqual([10, 1]);
    expect(grid(limits, 128 * 11, 128)).toEqual([6, 2]);
    expect(grid(limits, 0, 128)).toEqual([1, 1]);
  });
});
