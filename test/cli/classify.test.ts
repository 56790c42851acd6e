import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { HostRng } from '../../engine/rng.js';
import { runClassify, type ClassifyRecord } from '../../cli/classify.js';
import type { RunFile } from '../../cli/run-file.js';
import { useEngine } from '../helpers/engine.js';
import { loadPreset } from '../../model/config.js';
import { initWeights, saveWeights } from '../../model/weights.js';
import { describeAdapter } from '../../engine/gpu.js';
import {
  EPS_T,
  f4,
  i8,
  MIXTURE_SPEC,
  mixtureModel,
  tempDir,
  testIo,
  withoutTiming,
  writeModelFile,
  writeNpyFile,
} from './cli-fixtures.js';

describe('sbgc classify', () => {
  const engine = useEngine();
  const dir = tempDir('sbgc-classify-');
  const modelFile = writeModelFile(dir);
  const model = mixtureModel();

  // Points drawn around the class means (f32, as the GPU sees them), labelled by the class drawn from.
  const N = 8;
  const rng = new HostRng(3);
  const xs = Float64Array.from({ length: N * 4 }, (_, i) => {
    const y = Math.floor(i / 4) % 3;
    return Math.fround(MIXTURE_SPEC.classes[y][0].mean[i % 4] + 0.12 * rng.normal());
  });
  const labels = Array.from({ length: N }, (_, i) => i % 3);
  const xPath = f4(join(dir, 'x.npy'), [N, 1, 2, 2], xs);
  const yPath = i8(join(dir, 'y.npy'), labels);
  const bayes = Array.from({ length: N }, (_, i) => model.bayes(xs.subarray(i * 4, (i + 1) * 4), EPS_T));
  const common = ['--model', 'analytic:mixture', '--model-file', modelFile, '--npy', xPath, '--npy-space', 'model', '--labels', yPath];

  it('on an analytic mixture (exact prior, exact divergence) equals the Bayes classifier, and writes valid JSON', async () => {
    const io = testIo(engine);
    const file = await runClassify([...common, '--prior', 'exact', '--probes', 'exact', '--no-progress'], io);
    // The JSON on stdout parses and is the returned file.
    const printed = JSON.parse(io.stdout.text) as RunFile<ClassifyRecord>;
    expect(printed).toEqual(JSON.parse(JSON.stringify(file)));
    expect(printed.format).toBe('sbgc.classify/1');
    expect(printed.complete).toBe(true);
    expect(printed.settings).toMatchObject({ rtol: 1e-5, atol: 1e-5, epsT: 1e-5, probes: 'exact', nProbes: 1, probesMode: 'shared-across-classes', stepControl: 'shared', state: 'gpu-f32', prior: 'exact' });
    expect(printed.model.classNames).toEqual(['a', 'b', 'c']);
    expect(printed.images.map((r) => r.index)).toEqual([...Array(N).keys()]);
    let minMargin = Infinity;
    let bayesWrong = 0;
    for (let i = 0; i < N; i++) {
      const r = printed.images[i];
      const b = bayes[i];
      const sorted = [...b.logp].sort((p, q) => q - p);
      minMargin = Math.min(minMargin, sorted[0] - sorted[1]);
      expect(r.predicted, `image ${i}`).toBe(b.predicted);
      expect(r.exact!.predicted).toBe(b.predicted);
      expect(r.label).toBe(labels[i]);
      expect(r.nfe).toBeGreaterThan(10);
      expect(r.status).toBe('success');
      if (b.predicted !== labels[i]) bayesWrong++;
      for (let y = 0; y < 3; y++) {
        // rtol = atol = 1e-5 on f32 state: measured ≤ 3e-4 nats here; 1e-3 is still far below the smallest margin.
        expect(Math.abs(r.logpPerClass[y] - b.logp[y]), `image ${i} class ${y}`).toBeLessThan(1e-3);
        expect(r.posterior[y]).toBeCloseTo(b.posterior[y], 3);
      }
      expect(r.pTop).toBeCloseTo(b.posterior[b.predicted], 3);
    }
    // The points are not trivial: some margins are small and the Bayes classifier errs on some.
    expect(minMargin).toBeLessThan(1);
    expect(minMargin).toBeGreaterThan(0.01);
    expect(bayesWrong).toBeGreaterThan(0);
    expect(printed.summary).toMatchObject({ images: N, labelled: N, correct: N - bayesWrong, exactAgreement: 1, failed: 0 });
    // One line per image on stderr, with the class, p, bits/dim, NFE and the running accuracy.
    const lines = io.stderr.text.trim().split('\n').filter((l) => l.startsWith('#'));
    expect(lines).toHaveLength(N);
    expect(lines[N - 1]).toMatch(new RegExp(`acc ${N - bayesWrong}/${N} = `));
    expect(lines[0]).toMatch(/ŷ \d \([abc]\) p=0\.\d{4} \| y 0 \(a\) (ok|WRONG) \| \d+\.\d{4} bits\/dim \| NFE \d+/);
  });

  it('--out then --resume: skips done images, and the final file equals an uninterrupted run', async () => {
    const flags = [...common, '--n', '2', '--batch', '3', '--per-draw', '--no-progress', '--quiet'];
    const full = join(dir, 'full.json');
    await runClassify([...flags, '--out', full], testIo(engine));
    const whole = JSON.parse(readFileSync(full, 'utf8')) as RunFile<ClassifyRecord>;
    expect(whole.images[0].logpPerDraw).toHaveLength(2);
    expect(whole.timing.parts).toBe(1);

    // Part 1: the first 6 images (a multiple of --batch), then resume for the rest.
    const parts = join(dir, 'parts.json');
    const io1 = testIo(engine);
    const first = await runClassify([...flags, '--out', parts, '--limit', '6'], io1);
    expect(first!.images).toHaveLength(6);
    const io2 = testIo(engine);
    const second = await runClassify([...flags, '--out', parts, '--resume'], io2);
    expect(io2.stderr.text).toMatch(/resuming .*parts\.json: 6 of 8 images done, 2 to go/);
    const resumed = JSON.parse(readFileSync(parts, 'utf8')) as RunFile<ClassifyRecord>;
    expect(resumed.timing.parts).toBe(2);
    expect(withoutTiming(resumed)).toEqual(withoutTiming(whole));
    expect(withoutTiming(second!)).toEqual(withoutTiming(whole));

    // A run cut after its first chunk (the file as written then) continues to the same result.
    const cut = join(dir, 'cut.json');
    writeFileSync(cut, JSON.stringify({ ...whole, complete: false, images: whole.images.slice(0, 3) }));
    await runClassify([...flags, '--out', cut, '--resume'], testIo(engine));
    expect(withoutTiming(JSON.parse(readFileSync(cut, 'utf8')))).toEqual(withoutTiming(whole));

    // The Hutchinson pass changes float32 rounding only: a resume may switch it, and the file keeps a line saying
    // which images were made before the switch. A file from before the setting existed counts as 'reverse'.
    const mixed = join(dir, 'mixed.json');
    writeFileSync(mixed, JSON.stringify({ ...whole, complete: false, images: whole.images.slice(0, 3) }));
    const io4 = testIo(engine);
    await runClassify([...flags, '--out', mixed, '--resume', '--hutchinson-pass', 'reverse'], io4);
    const note = 'part 2: hutchinsonPass "forward" → "reverse" (float32 rounding only); the file\'s 3 images (indices 0–2) were made before it';
    expect(io4.stderr.text).toContain(`note: ${note}`);
    const m = JSON.parse(readFileSync(mixed, 'utf8')) as RunFile<ClassifyRecord>;
    expect(m.settings.hutchinsonPass).toBe('reverse');
    expect(m.history).toEqual([note]);
    expect(m.images.map((r) => r.predicted)).toEqual(whole.images.map((r) => r.predicted));
    const old = join(dir, 'old.json');
    const { hutchinsonPass: _pass, ...oldSettings } = whole.settings;
    writeFileSync(old, JSON.stringify({ ...whole, settings: oldSettings, complete: false, images: whole.images.slice(0, 3) }));
    const io5 = testIo(engine);
    await runClassify([...flags, '--out', old, '--resume', '--hutchinson-pass', 'reverse'], io5);
    expect(io5.stderr.text).not.toContain('note:');
    expect((JSON.parse(readFileSync(old, 'utf8')) as RunFile<ClassifyRecord>).history).toBeUndefined();

    // The adapter is recorded; resuming on another one (or a file from before it was recorded) is allowed and noted.
    expect(whole.adapter).toBe(describeAdapter(engine().info));
    for (const [label, adapter] of [['elsewhere', 'Some GPU (vulkan)'], ['unrecorded', undefined]] as const) {
      const moved = join(dir, `${label}.json`);
      writeFileSync(moved, JSON.stringify({ ...whole, adapter, complete: false, images: whole.images.slice(0, 3) }));
      const io6 = testIo(engine);
      await runClassify([...flags, '--out', moved, '--resume'], io6);
      const line = `part 2: adapter ${adapter === undefined ? '(not recorded)' : JSON.stringify(adapter)} → ${JSON.stringify(whole.adapter)} (float32 rounding only); the file's 3 images (indices 0–2) were made before it`;
      expect(io6.stderr.text).toContain(`note: ${line}`);
      const f = JSON.parse(readFileSync(moved, 'utf8')) as RunFile<ClassifyRecord>;
      expect(f.history).toEqual([line]);
      expect(f.adapter).toBe(whole.adapter);
      expect(withoutTiming({ ...f, history: undefined })).toEqual(withoutTiming({ ...whole, history: undefined }));
    }

    // A finished file: nothing to solve.
    const io3 = testIo(engine);
    const again = await runClassify([...flags, '--out', full, '--resume'], io3);
    expect(io3.stderr.text).toMatch(/8 of 8 images done, 0 to go/);
    expect(withoutTiming(again!)).toEqual(withoutTiming(whole));

    // Different settings, or no --resume, are refused.
    await expect(runClassify([...flags, '--out', full, '--resume', '--rtol', '1e-4'], testIo(engine))).rejects.toThrow(
      /--resume: .*full\.json was written by a different run:\n {2}rtol: 0\.00001 in the file, 0\.0001 now/,
    );
    await expect(runClassify([...flags, '--out', full], testIo(engine))).rejects.toThrow(/--out .*full\.json exists: pass --resume to continue it, or --overwrite/);
    await expect(runClassify([...flags, '--resume'], testIo(engine))).rejects.toThrow(/--resume needs --out FILE/);
  });

  it('reads 8-bit pixels from PNG files and folders, and NHWC uint8 npy', async () => {
    const png = (name: string, grey: number[]) => {
      const p = new PNG({ width: 2, height: 2 });
      grey.forEach((g, k) => p.data.set([g, g, g, 255], 4 * k));
      const path = join(dir, name);
      writeFileSync(path, PNG.sync.write(p));
      return path;
    };
    const a = png('a.png', [80, 100, 130, 150]);
    const b = png('b.png', [140, 120, 100, 100]);
    const io = testIo(engine);
    const file = await runClassify(['--model', 'analytic:mixture', '--model-file', modelFile, '--png', a, b, '--no-dequant', '--no-progress'], io);
    expect(file!.images.map((r) => r.source)).toEqual([a, b]);
    expect(file!.images[0].label).toBeNull();
    // No dequantisation: deterministic points, so the exact reference is reported.
    expect(file!.images[0].exact).toBeDefined();
    expect(file!.input.description).toMatch(/2 PNG images .* 1×2×2 8-bit pixels/);

    // The same pixels as NHWC uint8 npy give the same numbers.
    const pixels = Uint8Array.of(80, 100, 130, 150, 140, 120, 100, 100);
    const nhwc = writeNpyFile(join(dir, 'px.npy'), { dtype: 'u1', shape: [2, 2, 2, 1], data: pixels, fortranOrder: false });
    const fromNpy = await runClassify(['--model', 'analytic:mixture', '--model-file', modelFile, '--npy', nhwc, '--no-dequant', '--no-progress'], testIo(engine));
    expect(fromNpy!.input.description).toMatch(/read as NHWC/);
    expect(fromNpy!.images.map((r) => r.logpPerClass)).toEqual(file!.images.map((r) => r.logpPerClass));
  });

  it('refuses bad input with errors naming the flag and the file', async () => {
    const run = (argv: string[]) => runClassify(argv, testIo(engine));
    const m = ['--model', 'analytic:mixture', '--model-file', modelFile];
    const wrongShape = f4(join(dir, 'wrong.npy'), [2, 1, 3, 3], new Float32Array(18));
    await expect(run([...m, '--npy', wrongShape, '--npy-space', 'model'])).rejects.toThrow(
      /--npy .*wrong\.npy: shape \[2, 1, 3, 3\] does not fit the model's images 1×2×2: expected \[N, 1, 2, 2\] \(NCHW\) or \[N, 2, 2, 1\] \(NHWC\)/,
    );
    const nan = f4(join(dir, 'nan.npy'), [1, 1, 2, 2], [0.1, NaN, 0.2, 0.3]);
    await expect(run([...m, '--npy', nan, '--npy-space', 'model'])).rejects.toThrow(/--npy .*nan\.npy: element 1 \(image 0\) is NaN \(not finite\)/);
    await expect(run([...m, '--npy', nan])).rejects.toThrow(/--npy .*nan\.npy: dtype f4 is not 8-bit pixel data .*pass --npy-space model/);
    const badLabels = i8(join(dir, 'bad-y.npy'), [0, 1, 5, 0, 0, 0, 0, 0]);
    await expect(run([...m, '--npy', xPath, '--npy-space', 'model', '--labels', badLabels])).rejects.toThrow(
      /--labels .*bad-y\.npy: label of image 2 \(.*x\.npy\[2\]\) is 5, outside \[0, 3\)/,
    );
    const shortLabels = i8(join(dir, 'short-y.npy'), [0, 1]);
    await expect(run([...m, '--npy', xPath, '--npy-space', 'model', '--labels', shortLabels])).rejects.toThrow(/--labels .*short-y\.npy: shape \[2\] must be \[8\]/);
    const big = writeNpyFile(join(dir, 'big.npy'), { dtype: 'i4', shape: [1, 1, 2, 2], data: Int32Array.of(0, 300, 0, 0), fortranOrder: false });
    await expect(run([...m, '--npy', big])).rejects.toThrow(/element 1 \(image 0\) is 300, outside the pixel range 0\.\.255/);
    const p3 = new PNG({ width: 3, height: 3 });
    p3.data.fill(255);
    writeFileSync(join(dir, 'three.png'), PNG.sync.write(p3));
    await expect(run([...m, '--png', join(dir, 'three.png')])).rejects.toThrow(/three\.png: wrong size: 3×3 \(W×H\), the model needs 2×2/);
    await expect(run([...m, '--npy', join(dir, 'missing.npy')])).rejects.toThrow(/--npy .*missing\.npy: /);
    await expect(run(['--model', 'analytic:foo', '--npy', xPath])).rejects.toThrow(
      /unknown model type 'analytic:foo'; known: analytic:gaussian, analytic:mixture/,
    );
    const badSpec = writeModelFile(dir, { ...MIXTURE_SPEC, classes: [[{ mean: [0, 0, 0, 0], variance: -1 }]] }, 'bad.json');
    await expect(run(['--model', 'analytic:mixture', '--model-file', badSpec, '--npy', xPath])).rejects.toThrow(
      /--model-file .*bad\.json: classes\[0\]\[0\]\.variance: expected a positive number, got -1/,
    );
    const typo = writeModelFile(dir, { ...MIXTURE_SPEC, sigma: 1 }, 'typo.json');
    await expect(run(['--model', 'analytic:mixture', '--model-file', typo, '--npy', xPath])).rejects.toThrow(/\(root\): unknown key 'sigma'/);
    await expect(run(['--model', 'analytic:gaussian', '--npy', xPath, '--npy-space', 'model'])).rejects.toThrow(/the model is unconditional .*use sbgc likelihood/);
    await expect(run([...m, '--npy', xPath, '--probes', 'normal'])).rejects.toThrow(/--probes must be one of rademacher, gaussian, exact, got 'normal'/);
    await expect(run([...m, '--npy', xPath, '--n', '0'])).rejects.toThrow(/--n must be an integer ≥ 1, got '0'/);
    await expect(run([...m, '--npy', xPath, '--eps-t', '1'])).rejects.toThrow(/--eps-t must be below T = 1/);
    await expect(run([...m, '--npy', xPath, '--bogus'])).rejects.toThrow(/Unknown option '--bogus'/);
    await expect(run([...m])).rejects.toThrow(/no input: give --png, --npy or --data/);
    await expect(run([...m, '--npy', xPath, '--data', 'mnist:test'])).rejects.toThrow(/give one input, not --npy and --data/);
    await expect(run([...m, '--data', 'mnist:test'])).rejects.toThrow(/--data mnist:test: .*\[1, 28, 28\].*the model's images are 1×2×2/);
    await expect(run([...m, '--npy', xPath, '--npy-space', 'model', '--offset', '8'])).rejects.toThrow(/--offset 8: the input has only 8 images/);
    await expect(run(['--config', 'tiny', '--init-seed', '0', '--npy', xPath, '--prior', 'exact'])).rejects.toThrow(/--prior exact needs an analytic model/);
  });

  it('an untrained network says so loudly, in the output and on stderr', async () => {
    // tiny: 8×8×3, 3 classes. Loose tolerances keep this to a few dozen network evaluations.
    const x = f4(join(dir, 'tiny-x.npy'), [1, 3, 8, 8], Array.from({ length: 192 }, (_, i) => Math.sin(i) * 0.5));
    const io = testIo(engine);
    const file = await runClassify(['--config', 'tiny', '--init-seed', '3', '--npy', x, '--npy-space', 'model', '--rtol', '1e-2', '--atol', '1e-2', '--eps-t', '0.5', '--no-progress'], io);
    expect(io.stderr.text).toMatch(/WARNING: UNTRAINED network "tiny" \(random init, seed 3\)/);
    expect(file!.model.untrained).toBe(true);
    expect(file!.summary.warning).toMatch(/UNTRAINED/);
    expect(file!.images[0].logpPerClass).toHaveLength(3);
    expect(file!.images[0].status).toBe('success');
  });

  it('weights files: results record their metadata and sha256; --resume refuses other weights under the same path', async () => {
    const e = engine();
    const tiny = loadPreset('tiny');
    const wPath = join(dir, 'tiny-w.safetensors');
    const w1 = initWeights(e, tiny, 1);
    await saveWeights(wPath, w1, { step: '7', weights: 'raw' });
    w1.dispose();
    const x = f4(join(dir, 'tiny-x2.npy'), [2, 3, 8, 8], Array.from({ length: 384 }, (_, i) => Math.cos(i) * 0.5));
    const out = join(dir, 'tiny-run.json');
    const flags = ['--config', 'tiny', '--weights', wPath, '--npy', x, '--npy-space', 'model', '--rtol', '1e-2', '--atol', '1e-2', '--eps-t', '0.5', '--no-progress', '--quiet', '--out', out];
    const first = await runClassify([...flags, '--limit', '1'], testIo(engine));
    expect(first!.model.weights).toMatchObject({ step: '7', weights: 'raw', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const w2 = initWeights(e, tiny, 2);
    await saveWeights(wPath, w2, { step: '7', weights: 'raw' });
    w2.dispose();
    await expect(runClassify([...flags, '--resume'], testIo(engine))).rejects.toThrow(/--resume: .*tiny-run\.json was written by a different run:\n {2}weights: .*sha256/);
  });
});
