import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runStudy, type StudyOutput } from '../../cli/study.js';
import { checkXmlWellFormed } from '../../eval/xml-check.js';
import { useEngine } from '../helpers/engine.js';
import { MIXTURE_SPEC, tempDir, testIo, writeModelFile } from './cli-fixtures.js';

describe('sbgc study divergence', () => {
  const engine = useEngine();
  const dir = tempDir('sbgc-study-');
  const modelFile = writeModelFile(dir, MIXTURE_SPEC);

  it('writes the JSON table and an SVG plot that parses as XML and names every series', async () => {
    const outDir = join(dir, 'out');
    const io = testIo(engine);
    const ret = await runStudy(
      ['divergence', '--model', 'analytic:mixture', '--model-file', modelFile, '--ns', '1,2,4', '--groups', '2', '--images-per-class', '4', '--out-dir', outDir, '--no-progress'],
      io,
    );
    const json = JSON.parse(readFileSync(join(outDir, 'divergence.json'), 'utf8')) as StudyOutput;
    expect(json).toEqual(JSON.parse(JSON.stringify(ret)));
    expect(json.format).toBe('sbgc.study.divergence/1');
    const r = json.result;
    expect(r).toMatchObject({ images: 12, numClasses: 3, drawsPerImage: 8, ns: [1, 2, 4], referenceKind: 'exact divergence', failedImages: [] });
    expect(r.cells).toHaveLength(2 * 2 * 3);
    for (const c of r.cells) {
      expect(c.groups).toBe(8 / c.n);
      expect(c.varLogp).toBeGreaterThan(0);
      expect(c.accuracy).toBeGreaterThanOrEqual(0);
      expect(c.accuracy).toBeLessThanOrEqual(1);
    }
    const cell = (p: string, s: string, n: number) => r.cells.find((c) => c.probes === p && c.sharing === s && c.n === n)!;
    // var₁/n is exactly the single-draw variance over n.
    expect(cell('rademacher', 'shared', 4).varLogpFromSingle).toBeCloseTo(cell('rademacher', 'shared', 1).varLogp / 4, 6);
    // Shared probes: the margin is far less noisy than with independent probes (common random numbers).
    expect(cell('rademacher', 'shared', 1).varMargin).toBeLessThan(cell('rademacher', 'independent', 1).varMargin);
    // Analytic samples are deterministic points: the exact Bayes accuracy is reported next to the reference's.
    expect(json.bayesAccuracy).not.toBeNull();
    expect(r.reference!.accuracy).not.toBeNull();
    expect(io.stdout.text).toMatch(/probes +sharing +n +var log p/);
    expect(io.stdout.text).toMatch(/rademacher +independent +4 /);

    const svg = readFileSync(join(outDir, 'divergence.svg'), 'utf8');
    expect(svg).toContain('<svg');
    const elements = checkXmlWellFormed(svg);
    expect(elements[0]).toBe('svg');
    expect(elements.filter((e) => e === 'polyline').length).toBeGreaterThanOrEqual(4 * 3);
    for (const name of ['rademacher, shared', 'rademacher, independent', 'gaussian, shared', 'gaussian, independent', 'exact divergence']) {
      expect(svg).toContain(name);
    }
  });

  it('refuses unknown studies and bad lists', async () => {
    await expect(runStudy(['nope'], testIo(engine))).rejects.toThrow(/unknown study 'nope'; known: divergence/);
    await expect(runStudy([], testIo(engine))).rejects.toThrow(/which study\? known: divergence/);
    await expect(runStudy(['divergence', '--probes', 'rademacher,cauchy'], testIo(engine))).rejects.toThrow(/--probes: 'cauchy' is not one of rademacher, gaussian/);
    await expect(runStudy(['divergence', '--ns', '1,x'], testIo(engine))).rejects.toThrow(/--ns must be a comma list of positive integers/);
    await expect(runStudy(['divergence', '--model', 'analytic:gaussian'], testIo(engine))).rejects.toThrow(/needs ≥ 2/);
  });
});
