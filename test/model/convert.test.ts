// torch.save reader (formats/torch-checkpoint.ts) and score_sde → safetensors conversion (model/convert.ts).
// The fixture is written by scripts/fixtures/make_pth_fixture.py, whose docstring gives its layout and values.
import { existsSync } from 'node:fs';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from '../helpers/temp-dir.js';

import { unzipSync, zipSync, type Zippable } from 'fflate';
import { beforeAll, describe, expect, it, vi } from 'vitest';

import { convertCommand } from '../../cli/convert.js';

import { f16BitsToNumber } from '../../engine/tensor.js';
import { loadPreset, parseConfig, presetNames, type NcsnppConfig } from '../../model/config.js';
import { ConvertError, convertScoreSdeCheckpoint, scoreSdeWeights, toFloat32 } from '../../model/convert.js';
import { paramSpec } from '../../model/param-spec.js';
import { loadSafetensors, validateAgainstSpec } from '../../formats/safetensors.js';
import {
  PickleDict,
  TorchCheckpointError,
  TorchTensor,
  loadTensorData,
  parseTorchCheckpoint,
  readTorchCheckpoint,
  unpickle,
  type PickleValue,
} from '../../formats/torch-checkpoint.js';

const FIX_DIR = fileURLToPath(new URL('../fixtures/pth/', import.meta.url));
const FIXTURE = join(FIX_DIR, 'score_sde_micro.pth');
const CONFIG_PATH = join(FIX_DIR, 'micro-config.json');
const STEP = 1300001;

/** The fixture's value formula: spec parameter i, row-major element j. */
const modelValue = (i: number, j: number): number => (((i * 131 + j * 17) % 255) - 127) / 128;

let config: NcsnppConfig;
let spec: ReturnType<typeof paramSpec>;
let fixtureBytes: Uint8Array;
let root: PickleDict;
const dir = tempDir('sbgc-convert-');

beforeAll(async () => {
  config = parseConfig(await readFile(CONFIG_PATH, 'utf8'), CONFIG_PATH);
  spec = paramSpec(config);
  fixtureBytes = await readFile(FIXTURE);
  root = (await readTorchCheckpoint(FIXTURE)) as PickleDict;
});

function dict(v: PickleValue | undefined): PickleDict {
  expect(v).toBeInstanceOf(PickleDict);
  return v as PickleDict;
}

function tensor(v: PickleValue | undefined): TorchTensor {
  expect(v).toBeInstanceOf(TorchTensor);
  return v as TorchTensor;
}

function expected(i: number, offset = 0): number[] {
  const n = spec[i].shape.reduce((a, b) => a * b, 1);
  return Array.from({ length: n }, (_, j) => modelValue(i, j) + offset);
}

const specIndex = (name: string): number => spec.findIndex((p) => p.name === name);

/** The fixture re-zipped (stored, like torch) after editing its records. */
function rezip(edit: (records: Record<string, Uint8Array>) => void): Uint8Array {
  const records = unzipSync(fixtureBytes);
  edit(records);
  const z: Zippable = {};
  for (const [name, data] of Object.entries(records)) z[name] = [data, { level: 0 }];
  return zipSync(z);
}

async function writeTmp(name: string, bytes: Uint8Array | string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  return path;
}

// --- a minimal protocol-2 pickle writer for hand-made archives ------------------------------------------------

class PickleWriter {
  private readonly out: number[] = [0x80, 0x02];
  private readonly enc = new TextEncoder();

  raw(...bytes: number[]): this {
    this.out.push(...bytes);
    return this;
  }
  str(s: string): this {
    const b = this.enc.encode(s);
    return this.raw(0x58, b.length & 0xff, (b.length >> 8) & 0xff, 0, 0, ...b);
  }
  int(n: number): this {
    const b = new Uint8Array(new Int32Array([n]).buffer);
    return this.raw(0x4a, ...b);
  }
  global(module: string, name: string): this {
    return this.raw(0x63, ...this.enc.encode(`${module}\n${name}\n`));
  }
  ints(xs: number[]): this {
    this.raw(0x28);
    for (const x of xs) this.int(x);
    return this.raw(0x74);
  }
  /** _rebuild_tensor_v2(storage(key), offset, size, stride, False, OrderedDict()) */
  tensor(key: string, storageType: string, numel: number, offset: number, size: number[], stride: number[]): this {
    this.global('torch._utils', '_rebuild_tensor_v2').raw(0x28);
    this.raw(0x28).str('storage').global('torch', storageType).str(key).str('cpu').int(numel).raw(0x74, 0x51);
    this.int(offset).ints(size).ints(stride).raw(0x89).global('collections', 'OrderedDict').raw(0x29, 0x52);
    return this.raw(0x74, 0x52);
  }
  bytes(): Uint8Array {
    return Uint8Array.from([...this.out, 0x2e]);
  }
}

function archive(pkl: Uint8Array, storages: Record<string, Uint8Array> = {}, opts: { prefix?: string; byteorder?: string; version?: boolean } = {}): Uint8Array {
  const p = opts.prefix ?? 'archive';
  const z: Zippable = { [`${p}/data.pkl`]: [pkl, { level: 0 }] };
  if (opts.byteorder !== undefined) z[`${p}/byteorder`] = [new TextEncoder().encode(opts.byteorder), { level: 0 }];
  for (const [k, v] of Object.entries(storages)) z[`${p}/data/${k}`] = [v, { level: 0 }];
  if (opts.version !== false) z[`${p}/version`] = [new TextEncoder().encode('3\n'), { level: 0 }];
  return zipSync(z);
}

const f32Bytes = (xs: number[]): Uint8Array => new Uint8Array(new Float32Array(xs).buffer);

/** {'w': tensor} with one F32 storage '0' holding `values`. */
function oneTensorArchive(values: number[], offset: number, size: number[], stride: number[], opts = {}): Uint8Array {
  const pkl = new PickleWriter().raw(0x7d).str('w').tensor('0', 'FloatStorage', values.length, offset, size, stride).raw(0x73).bytes();
  return archive(pkl, { '0': f32Bytes(values) }, opts);
}

// ----------------------------------------------------------------------------------------------------------------

describe('readTorchCheckpoint on a score_sde checkpoint', () => {
  it('decodes the checkpoint dict: step, optimizer, ema metadata', () => {
    expect([...root.keys()]).toEqual(['optimizer', 'model', 'ema', 'step']);
    expect(root.get('step')).toBe(STEP);
    const opt = dict(root.get('optimizer'));
    const group = dict((opt.get('param_groups') as PickleValue[])[0]);
    expect(group.get('lr')).toBe(2e-4);
    expect(group.get('betas')).toEqual([0.9, 0.999]);
    expect(Object.isFrozen(group.get('betas'))).toBe(true); // tuples come back frozen
    expect(group.get('foreach')).toBeNull();
    expect(group.get('amsgrad')).toBe(false);
    expect(group.get('params')).toEqual(Array.from({ length: spec.length - 1 }, (_, i) => i));
    const state0 = dict(dict(opt.get('state')).get(0));
    const step = tensor(state0.get('step'));
    expect(step.shape).toEqual([]); // 0-d tensor
    expect(Array.from(step.data as Float32Array)).toEqual([STEP]);
    const ema = dict(root.get('ema'));
    expect(ema.get('decay')).toBe(0.9999);
    expect(ema.get('num_updates')).toBe(STEP);
  });

  it('reads the DataParallel state dict as an OrderedDict with module. keys, sigmas first, and every value', () => {
    const model = dict(root.get('model'));
    expect(model.pythonClass).toBe('collections.OrderedDict');
    expect(dict(model.attributes?.get('_metadata')).get('module.all_modules')).toBeInstanceOf(PickleDict);
    expect([...model.keys()]).toEqual(['module.sigmas', ...spec.map((p) => `module.${p.name}`)]);
    spec.forEach((p, i) => {
      const t = tensor(model.get(`module.${p.name}`));
      expect(t.shape, p.name).toEqual(p.shape);
      expect(Array.from(toFloat32(t)), p.name).toEqual(expected(i));
    });
    const sigmas = tensor(model.get('module.sigmas'));
    expect(sigmas.dtype).toBe('F64');
    const s = sigmas.data as Float64Array;
    expect(s.length).toBe(1000);
    // Python computed these in float64 with ** ; allow last-bit differences from Math.pow.
    for (const k of [0, 1, 500, 999]) expect(s[k]).toBeCloseTo(50 * (0.01 / 50) ** (k / 999), 12);
  });

  it('materialises a transposed view in row-major order', () => {
    const name = 'all_modules.1.weight';
    const t = tensor(dict(root.get('model')).get(`module.${name}`));
    expect(t.shape).toEqual([16, 8]);
    expect(t.stride).toEqual([1, 16]);
    expect(t.isContiguous).toBe(false);
    // Element (r, c) lives at storage index r + 16c: check against the raw storage, then the formula.
    const raw = new Float32Array(t.storage.bytes().buffer);
    const data = t.data as Float32Array;
    for (let r = 0; r < 16; r++) for (let c = 0; c < 8; c++) expect(data[r * 8 + c]).toBe(raw[r + 16 * c]);
    expect(Array.from(data)).toEqual(expected(specIndex(name)));
  });

  it('materialises a channels_last (4-d permuted) view', () => {
    const name = 'all_modules.4.Conv_0.weight';
    const t = tensor(dict(root.get('model')).get(`module.${name}`));
    expect(t.stride).toEqual([36, 1, 12, 4]);
    expect(Array.from(t.data as Float32Array)).toEqual(expected(specIndex(name)));
  });

  it('resolves two views of one shared storage at their offsets', () => {
    const model = dict(root.get('model'));
    const a = tensor(model.get('module.all_modules.1.bias'));
    const b = tensor(model.get('module.all_modules.2.bias'));
    expect(a.storage).toBe(b.storage); // one persistent id → one storage object
    expect([a.storageOffset, b.storageOffset]).toEqual([0, 16]);
    expect(a.storage.numel).toBe(32);
    expect(Array.from(a.data as Float32Array)).toEqual(expected(specIndex('all_modules.1.bias')));
    expect(Array.from(b.data as Float32Array)).toEqual(expected(specIndex('all_modules.2.bias')));
  });

  it('loads many tensors in one pass with the same values, copying views of shared storages', async () => {
    const fresh = dict(dict(await readTorchCheckpoint(FIXTURE)).get('model'));
    const all = [...fresh.values()].map(tensor);
    loadTensorData(all);
    spec.forEach((p, i) => expect(Array.from(toFloat32(tensor(fresh.get(`module.${p.name}`)))), p.name).toEqual(expected(i)));
    const a = tensor(fresh.get('module.all_modules.1.bias')).data;
    const b = tensor(fresh.get('module.all_modules.2.bias')).data;
    expect(a.buffer).not.toBe(b.buffer);
  });

  it('keeps a float16 tensor as raw half bits', () => {
    const name = 'all_modules.3.weight';
    const t = tensor(dict(root.get('model')).get(`module.${name}`));
    expect(t.dtype).toBe('F16');
    expect(t.data).toBeInstanceOf(Uint16Array);
    expect(Array.from(t.data as Uint16Array, f16BitsToNumber)).toEqual(expected(specIndex(name)));
  });

  it('gives EMA shadow params their own storages, strided like the parameters (clone keeps strides)', () => {
    const shadow = dict(root.get('ema')).get('shadow_params') as PickleValue[];
    expect(shadow).toHaveLength(spec.length - 1);
    const first = tensor(shadow[0]); // all_modules.1.weight: trainable #0
    expect(first.stride).toEqual([1, 16]);
    expect(Array.from(first.data as Float32Array)).toEqual(expected(1, 0.5));
  });

  it('accepts any archive directory name and big-endian storages', () => {
    const le = parseTorchCheckpoint(oneTensorArchive([1, 2, 3, 4, 5, 6], 0, [2, 3], [3, 1], { prefix: 'checkpoint_8' }), 'x.pth');
    expect(Array.from(tensor(dict(le).get('w')).data as Float32Array)).toEqual([1, 2, 3, 4, 5, 6]);
    const be = f32Bytes([1.5, -2]);
    for (let i = 0; i < be.length; i += 4) be.subarray(i, i + 4).reverse();
    const pkl = new PickleWriter().raw(0x7d).str('w').tensor('0', 'FloatStorage', 2, 0, [2], [1]).raw(0x73).bytes();
    const v = parseTorchCheckpoint(archive(pkl, { '0': be }, { byteorder: 'big' }), 'be.pth');
    expect(Array.from(tensor(dict(v).get('w')).data as Float32Array)).toEqual([1.5, -2]);
  });

  it('unpickles ints of every width, sets, memo references and protocol-2 bytes', () => {
    const enc = new TextEncoder();
    const pkl = Uint8Array.from([
      0x80, 0x02, 0x28, // PROTO 2, MARK
      0x4b, 0xff, 0x4d, 0x00, 0x01, 0x4a, 0xff, 0xff, 0xff, 0xff, // 255, 256, -1
      0x8a, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // LONG1 2^64 → bigint
      0x8a, 0x02, 0x00, 0x80, // LONG1 -32768
      0x63, ...enc.encode('__builtin__\nset\n'), 0x5d, 0x4b, 0x07, 0x61, 0x85, 0x52, // set([7])
      0x71, 0x00, 0x68, 0x00, // BINPUT 0, BINGET 0 (same object twice)
      0x63, ...enc.encode('_codecs\nencode\n'), 0x58, 3, 0, 0, 0, 0x61, 0xc3, 0xbf, 0x58, 6, 0, 0, 0, ...enc.encode('latin1'), 0x86, 0x52,
      0x6c, 0x2e, // LIST, STOP
    ]);
    const v = unpickle(pkl, 'ints.pkl') as PickleValue[];
    expect(v.slice(0, 5)).toEqual([255, 256, -1, 2n ** 64n, -32768]);
    expect(v[5]).toEqual(new Set([7]));
    expect(v[6]).toBe(v[5]);
    expect(v[7]).toEqual(Uint8Array.from([0x61, 0xff]));
  });
});

describe('reader errors name the file and the problem', () => {
  it('rejects a file that is not a zip', async () => {
    const path = await writeTmp('notzip.pth', 'hello, I am not a checkpoint');
    await expect(readTorchCheckpoint(path)).rejects.toThrow(`${path}: not a PyTorch checkpoint: expected a zip archive`);
    await expect(readTorchCheckpoint(path)).rejects.toBeInstanceOf(TorchCheckpointError);
    const legacy = await writeTmp('legacy.pth', Uint8Array.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]));
    await expect(readTorchCheckpoint(legacy)).rejects.toThrow(`${legacy}: legacy (pre-1.6`);
    await expect(readTorchCheckpoint(join(dir, 'absent.pth'))).rejects.toThrow(`${join(dir, 'absent.pth')}: cannot read`);
  });

  it('rejects a zip that is not a torch.save archive, or is cut short', () => {
    const other = zipSync({ 'notes/readme.txt': new TextEncoder().encode('hi') });
    expect(() => parseTorchCheckpoint(other, 'o.zip')).toThrow("o.zip: not a torch.save archive: no 'notes/data.pkl' record");
    expect(() => parseTorchCheckpoint(fixtureBytes.subarray(0, fixtureBytes.length - 200), 'cut.pth')).toThrow('cut.pth: not a readable zip archive');
    const noVersion = archive(new PickleWriter().raw(0x4e).bytes(), {}, { version: false });
    expect(() => parseTorchCheckpoint(noVersion, 'nv.pth')).toThrow("nv.pth: not a torch.save archive: no 'archive/version' record");
  });

  it('refuses a global outside the allowlist, naming it (nothing is called)', async () => {
    const evil = new PickleWriter().global('posix', 'system').str('echo pwned').raw(0x85, 0x52).bytes();
    const path = await writeTmp('evil.pth', archive(evil));
    await expect(readTorchCheckpoint(path)).rejects.toThrow(`${path} (archive/data.pkl): pickle: disallowed global 'posix.system'`);
    const viaStack = new PickleWriter().str('builtins').str('eval').raw(0x93).bytes(); // STACK_GLOBAL
    expect(() => unpickle(viaStack, 's.pkl')).toThrow("s.pkl: pickle: disallowed global 'builtins.eval'");
    const inst = Uint8Array.from([0x80, 0x02, 0x28, 0x69, ...new TextEncoder().encode('os\nsystem\n'), 0x2e]);
    expect(() => unpickle(inst, 'i.pkl')).toThrow('i.pkl: pickle: opcode INST is not supported (it instantiates arbitrary classes)');
  });

  it('reports a missing storage record', async () => {
    const path = await writeTmp('missing.pth', rezip((r) => delete r['archive/data/5']));
    await expect(readTorchCheckpoint(path)).rejects.toThrow(`${path} (archive/data.pkl): pickle: missing storage record 'archive/data/5'`);
  });

  it('reports a truncated storage record', async () => {
    let size = 0;
    const path = await writeTmp(
      'short.pth',
      rezip((r) => {
        size = r['archive/data/5'].length;
        r['archive/data/5'] = r['archive/data/5'].subarray(0, size - 4);
      }),
    );
    await expect(readTorchCheckpoint(path)).rejects.toThrow(
      `${path} (archive/data.pkl): pickle: truncated storage record 'archive/data/5': ${size - 4} bytes, but the pickle needs ${size}`,
    );
  });

  it('reports a view that reaches past its storage', () => {
    expect(() => parseTorchCheckpoint(oneTensorArchive([1, 2, 3, 4, 5, 6], 1, [2, 3], [3, 1]), 'v.pth')).toThrow(
      "v.pth (archive/data.pkl): pickle: tensor of size [2,3], stride [3,1], offset 1 reaches storage element 6, but storage '0' has only 6 elements",
    );
  });

  it('reports a truncated or malformed pickle with its position', () => {
    const pkl = new PickleWriter().raw(0x7d).str('w').bytes();
    expect(() => unpickle(pkl.subarray(0, 6), 't.pkl')).toThrow('t.pkl: pickle: truncated: needs 4 more bytes at byte 4');
    expect(() => unpickle(Uint8Array.from([0x80, 0x02, 0xff]), 'u.pkl')).toThrow('u.pkl: pickle: unknown opcode 0xff');
    expect(() => unpickle(Uint8Array.from([0x80, 0x02, 0x4e, 0x4e, 0x2e]), 'd.pkl')).toThrow('STOP with 2 values on the stack');
    expect(() => unpickle(Uint8Array.from([0x80, 0x02, 0x68, 0x03]), 'm.pkl')).toThrow('m.pkl: pickle: memo key 3 is not defined (opcode BINGET at byte 2)');
  });

  it('stops on a forged central-directory entry count instead of looping', () => {
    // torch.save archives end with ZIP64 records (miniz, MZ_ZIP_FLAG_WRITE_ZIP64); readers take the count there.
    const bytes = Uint8Array.from(fixtureBytes);
    const dv = new DataView(bytes.buffer);
    const eocd = bytes.length - 22;
    expect(dv.getUint32(eocd, true)).toBe(0x06054b50);
    expect(dv.getUint32(eocd - 20, true)).toBe(0x07064b50);
    const z64 = Number(dv.getBigUint64(eocd - 12, true));
    expect(dv.getUint32(z64, true)).toBe(0x06064b50);
    dv.setUint32(z64 + 24, 0xffffffff, true);
    dv.setUint32(z64 + 32, 0xffffffff, true);
    expect(() => parseTorchCheckpoint(bytes, 'forged.pth')).toThrow(/^forged\.pth: (corrupt zip|not a readable zip archive)/);
    // Pointing the directory past the end makes every forged entry read as zeros (no decoding error to stop at).
    dv.setUint32(z64 + 48, bytes.length, true);
    const t0 = performance.now();
    expect(() => parseTorchCheckpoint(bytes, 'forged.pth')).toThrow(
      'forged.pth: corrupt zip: central directory lists more entries than the file can hold',
    );
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});

describe('score_sde conversion', () => {
  it("maps ema.shadow_params onto the trainable parameters in model.parameters() order, W from 'model'", () => {
    for (const cfg of [undefined, config]) {
      const { tensors, report } = scoreSdeWeights(root, { entry: 'ema', config: cfg }, 'f.pth');
      expect([...tensors.keys()]).toEqual(spec.map((p) => p.name));
      expect(report.frozenFromModel).toEqual(['all_modules.0.W']);
      expect(report.droppedBuffers).toEqual(['sigmas']);
      expect(report.strippedModulePrefix).toBe(true);
      expect(report.ema).toEqual({ decay: 0.9999, numUpdates: STEP });
      expect(report.validatedAgainst).toBe(cfg ? 'micro-fourier' : null);
      spec.forEach((p, i) => {
        expect(Array.from(toFloat32(tensors.get(p.name)!)), p.name).toEqual(expected(i, p.trainable ? 0.5 : 0));
      });
    }
  });

  it('writes F32 safetensors that load back and match the config spec', async () => {
    const out = join(dir, 'ema.safetensors');
    const report = await convertScoreSdeCheckpoint(FIXTURE, out, { entry: 'ema', config });
    expect(report.converted).toEqual([{ name: 'all_modules.3.weight', from: 'F16' }]);
    expect(report.numel).toBe(spec.reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0));
    const file = await loadSafetensors(out);
    validateAgainstSpec(file, spec.map((p) => ({ name: p.name, shape: p.shape, dtype: 'F32' as const })), out);
    spec.forEach((p, i) => {
      expect(Array.from(file.tensors.get(p.name)!.data as Float32Array), p.name).toEqual(expected(i, p.trainable ? 0.5 : 0));
    });
    expect(file.metadata).toEqual({
      format: 'pt', source: 'score_sde_micro.pth', entry: 'ema', step: String(STEP),
      ema_decay: '0.9999', ema_num_updates: String(STEP), config: 'micro-fourier',
    });

    const modelOut = join(dir, 'model.safetensors');
    await convertScoreSdeCheckpoint(FIXTURE, modelOut, { entry: 'model' });
    const m = await loadSafetensors(modelOut);
    expect([...m.tensors.keys()].sort()).toEqual(spec.map((p) => p.name).sort());
    spec.forEach((p, i) => expect(Array.from(m.tensors.get(p.name)!.data as Float32Array), p.name).toEqual(expected(i)));
  });

  it('converts a bare state dict (no checkpoint wrapper) with entry model only', () => {
    const pkl = new PickleWriter().raw(0x7d).str('a.weight').tensor('0', 'FloatStorage', 2, 0, [2], [1]).raw(0x73).bytes();
    const sd = parseTorchCheckpoint(archive(pkl, { '0': f32Bytes([3, 4]) }), 'sd.pth');
    const { tensors, report } = scoreSdeWeights(sd, { entry: 'model' }, 'sd.pth');
    expect([...tensors.keys()]).toEqual(['a.weight']);
    expect(report.step).toBeNull();
    expect(report.strippedModulePrefix).toBe(false);
    expect(() => scoreSdeWeights(sd, { entry: 'ema' }, 'sd.pth')).toThrow("sd.pth: this file is a bare state dict (no 'ema' entry)");
  });

  it('lists missing, unexpected and mis-shaped keys against a config, and writes nothing', async () => {
    const out = join(dir, 'bad.safetensors');
    const withLabels3 = parseConfig({ ...JSON.parse(await readFile(CONFIG_PATH, 'utf8')), numClasses: 3 }, 'x');
    await expect(convertScoreSdeCheckpoint(FIXTURE, out, { entry: 'model', config: withLabels3 })).rejects.toThrow(
      `${FIXTURE}: 'model' does not match config "micro-fourier" (1 problem):\n  mis-shaped (1):\n    label_embed.Dense_0.weight: config needs [16,3], checkpoint has [16,2]`,
    );
    const tiny = loadPreset('tiny');
    for (const entry of ['model', 'ema'] as const) {
      const err = await convertScoreSdeCheckpoint(FIXTURE, out, { entry, config: tiny }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConvertError);
      const msg = (err as Error).message;
      expect(msg).toContain(`${FIXTURE}: 'model' does not match config "tiny"`);
      expect(msg).toMatch(/missing \(\d+\): all_modules\.0\.weight \[32,8\]/);
      expect(msg).toMatch(/unexpected \(\d+\): all_modules\.0\.W \[4\]/);
      expect(msg).toContain('all_modules.1.weight: config needs [32,32], checkpoint has [16,8]');
      expect(msg).toContain('hint: the checkpoint has Fourier projection all_modules.0.W');
    }
    expect(existsSync(out)).toBe(false);
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('refuses to map shadow params whose count or shapes do not fit the names', () => {
    const ema = dict(root.get('ema'));
    const shadow = ema.get('shadow_params') as TorchTensor[];
    const swapped = new PickleDict();
    for (const [k, v] of root) swapped.set(k, v);
    const e2 = new PickleDict();
    e2.set('shadow_params', [shadow[1], shadow[0], ...shadow.slice(2)]);
    swapped.set('ema', e2);
    expect(() => scoreSdeWeights(swapped, { entry: 'ema' }, 'f.pth')).toThrow(
      "f.pth: ema.shadow_params[0] has shape [16], but trainable parameter #0 of the 'model' state dict in model.parameters() order, 'all_modules.1.weight', has [16,8]",
    );
    e2.set('shadow_params', shadow.slice(1));
    expect(() => scoreSdeWeights(swapped, { entry: 'ema', config }, 'f.pth')).toThrow(
      'f.pth: ema.shadow_params has 175 tensors but config "micro-fourier" has 176 trainable parameters',
    );
  });

  it('rejects a bad output path and a missing entry clearly', async () => {
    await expect(convertScoreSdeCheckpoint(FIXTURE, FIXTURE, { entry: 'model' })).rejects.toThrow('output path is the input checkpoint');
    const noEma = new PickleDict();
    noEma.set('model', root.get('model')!);
    expect(() => scoreSdeWeights(noEma, { entry: 'ema' }, 'f.pth')).toThrow("f.pth: 'ema' must be a dict {decay, num_updates, shadow_params}, got missing (top-level keys: 'model')");
  });
});

describe('parameter order facts the EMA mapping relies on', () => {
  it('paramSpec names are unique and all_modules.0.W (Fourier) is the only frozen parameter', () => {
    for (const name of presetNames()) {
      for (const embeddingType of ['positional', 'fourier'] as const) {
        const cfg = parseConfig({ ...loadPreset(name), embeddingType }, name);
        const s = paramSpec(cfg);
        expect(new Set(s.map((p) => p.name)).size).toBe(s.length);
        expect(s.filter((p) => !p.trainable).map((p) => p.name)).toEqual(embeddingType === 'fourier' ? ['all_modules.0.W'] : []);
      }
    }
  });
});

describe('sbgc convert', () => {
  it('converts with a config file or preset name and prints what it did', async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    try {
      const out = join(dir, 'cli.safetensors');
      await convertCommand(['--in', FIXTURE, '--out', out, '--config', CONFIG_PATH]);
      const text = log.mock.calls.map((c) => String(c[0])).join('\n');
      expect(text).toContain(`converted ${FIXTURE} (entry 'ema', step ${STEP}, EMA decay 0.9999 after ${STEP} updates)`);
      expect(text).toContain('dropped non-parameter buffers: sigmas');
      expect(text).toContain("frozen parameters (not in the EMA) taken from 'model': all_modules.0.W");
      expect(text).toContain('converted to F32: all_modules.3.weight (F16)');
      expect(text).toContain('matches config "micro-fourier" (all 177 parameters, names and shapes)');
      expect((await loadSafetensors(out)).tensors.size).toBe(spec.length);
    } finally {
      log.mockRestore();
    }
  });

  it('rejects bad flags with a message', async () => {
    await expect(convertCommand(['--in', FIXTURE])).rejects.toThrow('convert: --in and --out are required');
    await expect(convertCommand(['--in', FIXTURE, '--out', join(dir, 'x.safetensors'), '--entry', 'optimizer'])).rejects.toThrow(
      "convert: --entry must be 'ema' or 'model', got 'optimizer'",
    );
    await expect(convertCommand(['--in', FIXTURE, '--out', join(dir, 'x.safetensors'), '--config', 'nope'])).rejects.toThrow('unknown preset');
    await expect(convertCommand(['--in', FIXTURE, '--out', join(dir, 'x.safetensors'), '--config', join(dir, 'none.json')])).rejects.toThrow(
      `--config ${join(dir, 'none.json')}: cannot read`,
    );
    await expect(convertCommand(['--bogus'])).rejects.toThrow("Unknown option '--bogus'");
    expect(existsSync(join(dir, 'x.safetensors'))).toBe(false);
  });
});
