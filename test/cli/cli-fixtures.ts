/**
 * Shared fixtures of the CLI tests: a temp folder, a small analytic model file, npy writers and an in-process
 * CommandIo with captured output and the test's engine.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Engine } from '../../engine/engine.js';
import { encodeNpy, type NpyArray } from '../../formats/npy.js';
import { CapturedText, type CommandIo } from '../../cli/progress.js';
import { parseAnalyticSpec } from '../../cli/model-source.js';
import { GaussianMixtureScoreModel } from '../../model/analytic-models.js';

/** The commands' default ε_t (where the likelihood integration starts), at which the closed forms are compared. */
export const EPS_T = 1e-5;

export { tempDir } from '../helpers/temp-dir.js';

export function writeNpyFile(path: string, arr: NpyArray): string {
  writeFileSync(path, encodeNpy(arr));
  return path;
}

export function f4(path: string, shape: number[], data: ArrayLike<number>): string {
  return writeNpyFile(path, { dtype: 'f4', shape, data: Float32Array.from(data), fortranOrder: false });
}

export function i8(path: string, data: number[]): string {
  return writeNpyFile(path, { dtype: 'i8', shape: [data.length], data: BigInt64Array.from(data, (v) => BigInt(v)), fortranOrder: false });
}

/** Three classes on 1×2×2 (D = 4); class 2 is a two-component mixture. Uncentred [0, 1) model space. */
export const MIXTURE_SPEC = {
  shape: [1, 2, 2],
  classes: [
    [{ mean: [0.3, 0.4, 0.5, 0.6], variance: 0.01 }, { mean: [0.35, 0.45, 0.5, 0.55], variance: 0.02 }],
    [{ mean: [0.5, 0.5, 0.4, 0.4], variance: 0.015 }, { mean: [0.55, 0.45, 0.4, 0.45], variance: 0.01 }],
    [{ mean: [0.6, 0.3, 0.6, 0.3], variance: 0.01, weight: 2 }, { mean: [0.4, 0.5, 0.3, 0.5], variance: 0.03 }],
  ],
  classNames: ['a', 'b', 'c'],
};

/** MIXTURE_SPEC as the commands load it from a model file. */
export function mixtureModel(): GaussianMixtureScoreModel {
  return new GaussianMixtureScoreModel(parseAnalyticSpec('analytic:mixture', MIXTURE_SPEC, 'test').spec);
}

export function writeModelFile(dir: string, spec: unknown = MIXTURE_SPEC, name = 'mixture.json'): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(spec));
  return path;
}

export interface TestIo extends CommandIo {
  stdout: CapturedText;
  stderr: CapturedText;
}

export function testIo(engine: () => Engine): TestIo {
  return { stdout: new CapturedText(), stderr: new CapturedText(), engine: async () => engine() };
}

/** The file without its wall-clock part. */
export function withoutTiming<T extends { timing?: unknown }>(file: T): Omit<T, 'timing'> {
  const { timing: _timing, ...rest } = file;
  return rest;
}
