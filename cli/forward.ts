/**
 * sbgc forward: the raw network output net(x, timeInput(t), y) for a batch stored in .npy files.
 *
 *   sbgc forward --config C (--weights W | --init-seed N) --x x.npy --t t.npy [--y y.npy] --out out.npy
 *                [--batch-size B]
 *
 * --config is a preset name (model/presets) or a JSON config file. x is [N, C, H, W] float (f2/f4/f8, model
 * space), t is [N] (or one value for all) continuous times in [0, 1] (the network sees timeInput(t), e.g. 999·t),
 * y is [N] integer class labels (required iff the config is class-conditional). out.npy is f4 [N, C, H, W],
 * written atomically. Samples are run in chunks of --batch-size (default 16) to bound GPU memory.
 */
import { readFile } from 'node:fs/promises';
import { createEngine } from './context.js';
import { parseCommandLine, valueFlags } from './flag-reader.js';
import { SbgcError } from '../engine/errors.js';
import { npyFloat64, readNpy, writeNpy, type NpyArray } from '../formats/npy.js';
import { loadPreset, parseConfig, presetNames, type NcsnppConfig } from '../model/config.js';
import { NetworkScoreModel } from '../model/score.js';
import { initWeights, loadWeights, type NetworkWeights } from '../model/weights.js';

const FORWARD_USAGE = `usage: sbgc forward --config PRESET|FILE.json (--weights W.safetensors | --init-seed N)
                    --x x.npy --t t.npy [--y y.npy] --out out.npy [--batch-size B]`;

function fail(message: string): never {
  throw new SbgcError(`forward: ${message}\n\n${FORWARD_USAGE}`);
}

/** A preset name, or a path to a JSON config. */
export async function resolveConfig(spec: string): Promise<NcsnppConfig> {
  if (presetNames().includes(spec)) return loadPreset(spec);
  let text: string;
  try {
    text = await readFile(spec, 'utf8');
  } catch (e) {
    fail(`--config ${spec}: neither a preset (${presetNames().join(', ')}) nor a readable file (${(e as Error).message})`);
  }
  return parseConfig(text, spec);
}

async function readArray(flag: string, path: string): Promise<NpyArray> {
  try {
    return await readNpy(path);
  } catch (e) {
    fail(`${flag} ${path}: ${(e as Error).message}`);
  }
}

/** Float npy data as float64 numbers; other dtypes are an error naming the flag and file. */
function floatValues(flag: string, path: string, a: NpyArray): Float64Array {
  return npyFloat64(a) ?? fail(`${flag} ${path}: dtype ${a.dtype} is not a float type (f2, f4 or f8)`);
}

function integerValues(flag: string, path: string, a: NpyArray): number[] {
  switch (a.dtype) {
    case 'i1': case 'u1': case 'i2': case 'u2': case 'i4': case 'u4':
      return Array.from(a.data as ArrayLike<number>);
    case 'i8': case 'u8':
      return Array.from(a.data as BigInt64Array | BigUint64Array, (v) => Number(v));
    default:
      fail(`${flag} ${path}: dtype ${a.dtype} is not an integer type`);
  }
}

export async function forwardCommand(argv: string[]): Promise<boolean> {
  const parsed = parseCommandLine('forward', FORWARD_USAGE, argv, valueFlags('config', 'weights', 'init-seed', 'x', 't', 'y', 'out', 'batch-size'));
  if (!parsed) return true;
  const { values } = parsed;
  for (const flag of ['config', 'x', 't', 'out'] as const) if (!values[flag]) fail(`--${flag} is required`);
  if ((values.weights === undefined) === (values['init-seed'] === undefined)) fail('give exactly one of --weights and --init-seed');
  let seed = 0;
  if (values['init-seed'] !== undefined) {
    seed = Number(values['init-seed']);
    if (!Number.isSafeInteger(seed) || seed < 0) fail(`--init-seed ${values['init-seed']}: not a non-negative integer`);
  }
  const batchSize = values['batch-size'] === undefined ? 16 : Number(values['batch-size']);
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) fail(`--batch-size ${values['batch-size']}: not a positive integer`);

  const config = await resolveConfig(values.config!);
  const [C, S] = [config.channels, config.imageSize];

  const xPath = values.x!;
  const xArr = await readArray('--x', xPath);
  const xData = floatValues('--x', xPath, xArr);
  if (xArr.shape.length !== 4 || xArr.shape[1] !== C || xArr.shape[2] !== S || xArr.shape[3] !== S) {
    fail(`--x ${xPath}: shape [${xArr.shape.join(', ')}] must be [N, ${C}, ${S}, ${S}] for config "${config.name}"`);
  }
  const N = xArr.shape[0];
  if (N === 0) fail(`--x ${xPath}: the batch is empty`);
  const bad = xData.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) fail(`--x ${xPath}: element ${bad} is ${xData[bad]} (not finite)`);

  const tPath = values.t!;
  const tArr = await readArray('--t', tPath);
  const tRaw = floatValues('--t', tPath, tArr);
  if (!(tArr.shape.length <= 1 && (tRaw.length === N || tRaw.length === 1))) {
    fail(`--t ${tPath}: shape [${tArr.shape.join(', ')}] must be [${N}] (one time per sample) or a single value`);
  }
  const t = tRaw.length === N ? tRaw : new Float64Array(N).fill(tRaw[0]);
  t.forEach((v, i) => {
    if (!(v >= 0 && v <= 1)) fail(`--t ${tPath}: time ${i} is ${v}, outside [0, 1]`);
  });

  let labels: number[] | null = null;
  if (config.numClasses > 0) {
    if (!values.y) fail(`--y is required: config "${config.name}" is class-conditional (${config.numClasses} classes)`);
    const yArr = await readArray('--y', values.y);
    if (yArr.shape.length !== 1 || yArr.shape[0] !== N) fail(`--y ${values.y}: shape [${yArr.shape.join(', ')}] must be [${N}]`);
    labels = integerValues('--y', values.y, yArr);
    labels.forEach((v, i) => {
      if (!(v >= 0 && v < config.numClasses)) fail(`--y ${values.y}: label ${i} is ${v}, outside [0, ${config.numClasses})`);
    });
  } else if (values.y) {
    fail(`--y ${values.y}: config "${config.name}" is class-unconditional (numClasses 0); drop --y`);
  }

  const e = await createEngine();
  let weights: NetworkWeights;
  if (values.weights) weights = await loadWeights(e, config, values.weights);
  else weights = initWeights(e, config, seed);
  const model = new NetworkScoreModel(weights);
  const out = new Float32Array(N * C * S * S);
  const per = C * S * S;
  const t0 = performance.now();
  for (let start = 0; start < N; start += batchSize) {
    const end = Math.min(N, start + batchSize);
    const chunk = await e.scope(async () => {
      const x = e.tensor(Float32Array.from(xData.subarray(start * per, end * per)), [end - start, C, S, S], 'f32', 'x');
      const y = model.epsilon(e, x, t.subarray(start, end), labels ? labels.slice(start, end) : null);
      return (await y.read()) as Float32Array;
    });
    out.set(chunk, start * per);
  }
  const seconds = (performance.now() - t0) / 1000;
  weights.dispose();
  await writeNpy(values.out!, { dtype: 'f4', shape: [N, C, S, S], data: out, fortranOrder: false });
  console.log(`forward: wrote ${values.out} f4 [${N}, ${C}, ${S}, ${S}] (${config.name}, ${values.weights ?? `init seed ${seed}`}; ${seconds.toFixed(2)} s)`);
  return true;
}
