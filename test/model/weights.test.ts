import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadPreset, parseConfig, type NcsnppConfig } from '../../model/config.js';
import { initParam, initParams } from '../../model/init.js';
import { paramSpec } from '../../model/param-spec.js';
import { numberToF16Bits } from '../../engine/tensor.js';
import { saveSafetensors, type SafetensorsTensor } from '../../formats/safetensors.js';
import { initWeights, loadHostWeights, loadWeights, saveHostWeights, saveWeights } from '../../model/weights.js';
import { useEngine } from '../helpers/engine.js';
import { tempDir } from '../helpers/temp-dir.js';

const tiny = loadPreset('tiny');
const getEngine = useEngine();
const dir = tempDir('sbgc-weights-');

function stats(a: Float32Array): { mean: number; variance: number; min: number; max: number } {
  let s = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of a) {
    s += v;
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const mean = s / a.length;
  let q = 0;
  for (const v of a) q += (v - mean) ** 2;
  return { mean, variance: q / a.length, min, max };
}

describe('initialisation (score_sde initialisers)', () => {
  it('variance scaling fan_avg uniform: U(−limit, limit) statistics on a 590k-element conv', () => {
    const cfg = loadPreset('cifar10-sbgc');
    // The first 256→256 3×3 Conv_0 (init scale 1; Conv_1 uses init_scale 0 → 1e-10, same law, tiny limit).
    const entry = paramSpec(cfg).find((p) => p.name.endsWith('Conv_0.weight') && p.shape.join() === '256,256,3,3')!;
    if (entry.init.kind !== 'varianceScaling') throw new Error('expected varianceScaling');
    const limit = entry.init.limit;
    const v = initParam(entry, 7);
    const s = stats(v);
    const n = v.length;
    // Uniform(−L, L): mean 0 with sd L/√(3n); variance L²/3 with relative sd √(0.8/n) (kurtosis 9/5). 5σ bounds.
    expect(Math.abs(s.mean)).toBeLessThan((5 * limit) / Math.sqrt(3 * n));
    expect(Math.abs(s.variance / (limit * limit / 3) - 1)).toBeLessThan(5 * Math.sqrt(0.8 / n));
    expect(s.max).toBeLessThanOrEqual(limit);
    expect(s.min).toBeGreaterThanOrEqual(-limit);
    // With 590k draws the extremes come within 1e-4·L of the bounds (P(miss) = (1 − 5e-5)^n ≈ e^{−29}).
    expect(s.max).toBeGreaterThan(limit * (1 - 1e-4));
    expect(s.min).toBeLessThan(-limit * (1 - 1e-4));
  });

  it('zeros, ones and the Fourier projection normal(std = fourierScale)', () => {
    const fourier: NcsnppConfig = parseConfig({ ...loadPreset('cifar10-ddpmpp'), embeddingType: 'fourier', nf: 128, name: 'fourier' }, 'test');
    const params = initParams(fourier, 3);
    const W = params.get('all_modules.0.W')!;
    expect(W.length).toBe(128);
    const s = stats(W);
    // 128 normal draws with sd 16: sample sd within ±25 % (≈ 4σ of the sd estimator, σ ≈ 16/√256).
    expect(Math.abs(Math.sqrt(s.variance) / 16 - 1)).toBeLessThan(0.25);
    for (const p of paramSpec(fourier)) {
      if (p.init.kind === 'zeros') expect(params.get(p.name)!.every((v) => v === 0)).toBe(true);
      if (p.init.kind === 'ones') expect(params.get(p.name)!.every((v) => v === 1)).toBe(true);
    }
  });

  it('is deterministic per (seed, name): same seed same bits, other seeds differ, label modules change nothing else', () => {
    const a = initParams(tiny, 11);
    const b = initParams(tiny, 11);
    const c = initParams(tiny, 12);
    for (const [k, v] of a) expect(Buffer.from(v.buffer).equals(Buffer.from(b.get(k)!.buffer))).toBe(true);
    expect(a.get('all_modules.3.Conv_0.weight')).not.toEqual(c.get('all_modules.3.Conv_0.weight'));
    const uncond = initParams(parseConfig({ ...tiny, numClasses: 0 }, 'test'), 11);
    for (const [k, v] of uncond) expect(a.get(k)).toEqual(v);
  });
});

describe('weights files', () => {
  it('save → load is bit-identical and keeps metadata', async () => {
    const e = getEngine();
    const w = initWeights(e, tiny, 5);
    const path = join(dir, 'tiny.safetensors');
    await saveWeights(path, w, { preset: 'tiny', step: '0' });
    const { params, metadata } = await loadHostWeights(tiny, path);
    expect(metadata).toEqual({ preset: 'tiny', step: '0' });
    const loaded = await loadWeights(e, tiny, path);
    const before = await w.toHost();
    const after = await loaded.toHost();
    expect([...after.keys()]).toEqual(paramSpec(tiny).map((p) => p.name));
    for (const [k, v] of before) {
      expect(Buffer.from(after.get(k)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
      expect(Buffer.from(params.get(k)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    }
    expect(loaded.numParams).toBe(53_683);
    w.dispose();
    loaded.dispose();
  });

  it('a truncated file is a clear error naming the file', async () => {
    const path = join(dir, 'trunc.safetensors');
    await saveHostWeights(path, tiny, initParams(tiny, 1));
    const bytes = await readFile(path);
    await writeFile(path, bytes.subarray(0, bytes.length - 100));
    await expect(loadHostWeights(tiny, path)).rejects.toThrow(new RegExp(`${path}.*truncated`));
  });

  it('mismatched keys and shapes are listed in one error', async () => {
    const params = initParams(tiny, 1);
    const tensors = new Map<string, SafetensorsTensor>();
    for (const p of paramSpec(tiny)) tensors.set(p.name, { dtype: 'F32', shape: p.shape, data: params.get(p.name)! });
    tensors.delete('label_embed.Dense_1.bias');
    tensors.delete('all_modules.1.weight');
    tensors.set('all_modules.99.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) });
    tensors.set('all_modules.2.bias', { dtype: 'F32', shape: [7], data: new Float32Array(7) });
    tensors.set('all_modules.3.GroupNorm_0.bias', { dtype: 'I32', shape: [8], data: new Int32Array(8) });
    const path = join(dir, 'mismatch.safetensors');
    await saveSafetensors(path, tensors);
    const err = await loadHostWeights(tiny, path).catch((x: unknown) => x as Error);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    expect(msg).toContain(path);
    expect(msg).toMatch(/4 problems|5 problems/);
    expect(msg).toMatch(/missing \(2\): .*all_modules\.1\.weight.*label_embed\.Dense_1\.bias|missing \(2\): .*label_embed\.Dense_1\.bias/);
    expect(msg).toContain('unexpected (1): all_modules.99.weight');
    expect(msg).toContain('all_modules.2.bias: expected F32 [8], found F32 [7]');
    expect(msg).toContain('all_modules.3.GroupNorm_0.bias: expected F32 [8], found I32 [8]');
  });

  it('F16, BF16 and F64 files are converted to f32', async () => {
    const params = initParams(tiny, 2);
    const tensors = new Map<string, SafetensorsTensor>();
    const dtypes = ['F16', 'BF16', 'F64', 'F32'] as const;
    paramSpec(tiny).forEach((p, i) => {
      const v = params.get(p.name)!;
      const dtype = dtypes[i % 4];
      if (dtype === 'F16') tensors.set(p.name, { dtype, shape: p.shape, data: Uint16Array.from(v, numberToF16Bits) });
      else if (dtype === 'BF16') tensors.set(p.name, { dtype, shape: p.shape, data: Uint16Array.from(new Uint32Array(v.buffer), (b) => b >>> 16) });
      else if (dtype === 'F64') tensors.set(p.name, { dtype, shape: p.shape, data: Float64Array.from(v) });
      else tensors.set(p.name, { dtype, shape: p.shape, data: v });
    });
    const path = join(dir, 'mixed.safetensors');
    await saveSafetensors(path, tensors);
    const { params: got } = await loadHostWeights(tiny, path);
    paramSpec(tiny).forEach((p, i) => {
      const want = params.get(p.name)!;
      const have = got.get(p.name)!;
      expect(have).toBeInstanceOf(Float32Array);
      // F16 keeps 11 significant bits (values here are ≥ 2^-14 in magnitude or tiny): 2^-11 relative plus a
      // subnormal floor; BF16 truncates to 8 bits (2^-7 relative); F64 of f32 values round-trips exactly.
      const rel = [2 ** -11, 2 ** -7, 0, 0][i % 4];
      for (let j = 0; j < want.length; j++) expect(Math.abs(have[j] - want[j])).toBeLessThanOrEqual(rel * Math.abs(want[j]) + (i % 4 === 0 ? 2 ** -24 : 0));
    });
  });

  it('NaN or Inf in a tensor is an error naming it (on load and on save)', async () => {
    const params = initParams(tiny, 3);
    params.get('all_modules.4.Conv_1.weight')![17] = Number.NaN;
    const path = join(dir, 'nan.safetensors');
    await expect(saveHostWeights(path, tiny, params)).rejects.toThrow(/all_modules\.4\.Conv_1\.weight.*NaN.*element 17/);
    const tensors = new Map<string, SafetensorsTensor>();
    for (const p of paramSpec(tiny)) tensors.set(p.name, { dtype: 'F32', shape: p.shape, data: params.get(p.name)! });
    await saveSafetensors(path, tensors);
    await expect(loadHostWeights(tiny, path)).rejects.toThrow(/all_modules\.4\.Conv_1\.weight.*non-finite/);
  });
});
