import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import {
  encodeSafetensors,
  loadSafetensors,
  parseSafetensors,
  SafetensorsError,
  saveSafetensors,
  validateAgainstSpec,
  type SafetensorsTensor,
  type TensorSpec,
} from '../../formats/safetensors.js';
import { tempDir } from '../helpers/temp-dir.js';
import { itWritesAtomically } from '../helpers/atomic-write-cases.js';

// Fixtures are hand-built by scripts/fixtures/make_npy_fixtures.py following the reference layout.
const FIX = fileURLToPath(new URL('../fixtures/safetensors/', import.meta.url));
const fixture = (name: string): Promise<Buffer> => readFile(join(FIX, name));

/** A safetensors file from a header (object or raw JSON text) and a data buffer, for malformed-input tests. */
function craft(header: unknown, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const n = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + n + data.length).fill(0x20, 8, 8 + n);
  new DataView(out.buffer).setBigUint64(0, BigInt(n), true);
  out.set(json, 8);
  out.set(data, 8 + n);
  return out;
}

const t = <T extends SafetensorsTensor>(x: T): T => x;

describe('parseSafetensors on the fixture', () => {
  it('reads every dtype, shape and the metadata', async () => {
    const f = parseSafetensors(await fixture('mixed.safetensors'), 'mixed');
    expect(f.metadata).toEqual({ format: 'sbgc', note: 'fixture' });
    // File (offset) order: descending dtype, then name.
    expect([...f.tensors.keys()]).toEqual([
      'step', 'double', 'empty', 'layer.bias', 'layer.weight', 'counts', 'brain', 'half', 'pixels', 'mask',
    ]);
    const get = (k: string): SafetensorsTensor => {
      const x = f.tensors.get(k);
      if (!x) throw new Error(`missing ${k}`);
      return x;
    };
    expect(get('layer.weight')).toEqual({ dtype: 'F32', shape: [3, 2], data: Float32Array.from([0, 1, 2, 3, 4, 5], (i) => i * 0.25 - 0.5) });
    expect(get('layer.bias')).toEqual({ dtype: 'F32', shape: [2], data: Float32Array.from([1, -1]) });
    expect(get('step')).toEqual({ dtype: 'I64', shape: [], data: BigInt64Array.from([-(2n ** 40n)]) });
    expect(get('mask')).toEqual({ dtype: 'BOOL', shape: [4], data: Uint8Array.from([1, 0, 1, 1]) });
    expect(get('pixels')).toEqual({ dtype: 'U8', shape: [5], data: Uint8Array.from([0, 1, 127, 128, 255]) });
    expect(get('half')).toEqual({ dtype: 'F16', shape: [3], data: Uint16Array.from([0x3c00, 0xb800, 0x7bff]) });
    expect(get('brain')).toEqual({ dtype: 'BF16', shape: [2], data: Uint16Array.from([0x3f80, 0xc049]) });
    expect(get('counts')).toEqual({ dtype: 'I32', shape: [3], data: Int32Array.from([7, -8, 2147483647]) });
    const dbl = get('double');
    expect(dbl.dtype).toBe('F64');
    expect(dbl.shape).toEqual([2, 2]);
    expect(Array.from(dbl.data as Float64Array).slice(0, 3)).toEqual([0.1, 0.2, 0.3]);
    expect(Object.is((dbl.data as Float64Array)[3], -0)).toBe(true);
    expect(get('empty')).toEqual({ dtype: 'F32', shape: [0, 4], data: new Float32Array(0) });
  });

  it('no metadata gives {}', async () => {
    const f = parseSafetensors(await fixture('no_metadata.safetensors'));
    expect(f.metadata).toEqual({});
    expect(f.tensors.get('x')).toEqual({ dtype: 'F32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) });
  });

  it('tensor data owns aligned memory, detached from the input', async () => {
    const bytes = await fixture('mixed.safetensors');
    const f = parseSafetensors(bytes);
    for (const x of f.tensors.values()) expect(x.data.byteOffset).toBe(0);
    bytes.fill(0);
    expect(Array.from(f.tensors.get('counts')?.data as Int32Array)).toEqual([7, -8, 2147483647]);
  });

  it('accepts tensors listed out of offset order (older writers)', () => {
    const data = new Uint8Array(new Float32Array([1, 2, 3]).buffer);
    const f = parseSafetensors(
      craft({ b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] }, a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, data),
    );
    expect([...f.tensors.keys()]).toEqual(['a', 'b']);
    expect(Array.from(f.tensors.get('b')?.data as Float32Array)).toEqual([3]);
  });
});

describe('encodeSafetensors matches the reference layout', () => {
  it('re-encodes the fixture byte for byte', async () => {
    for (const name of ['mixed.safetensors', 'no_metadata.safetensors']) {
      const bytes = await fixture(name);
      const f = parseSafetensors(bytes, name);
      expect(Buffer.from(encodeSafetensors(f.tensors, f.metadata))).toEqual(bytes);
    }
  });

  it('orders by dtype then name regardless of input order; accepts a plain record', async () => {
    const f = parseSafetensors(await fixture('mixed.safetensors'));
    const reversed: Record<string, SafetensorsTensor> = {};
    for (const k of [...f.tensors.keys()].sort().reverse()) reversed[k] = f.tensors.get(k) as SafetensorsTensor;
    expect(Buffer.from(encodeSafetensors(reversed, { note: 'fixture', format: 'sbgc' }))).toEqual(await fixture('mixed.safetensors'));
  });

  it('pads the header with spaces to a multiple of 8 and aligns wide dtypes', () => {
    const bytes = encodeSafetensors({
      z: t({ dtype: 'U8', shape: [3], data: Uint8Array.from([1, 2, 3]) }),
      a: t({ dtype: 'F64', shape: [1], data: Float64Array.from([2]) }),
    });
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8');
    expect(header).toBe(`{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},"z":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}}`.padEnd(n, ' '));
  });

  it('round trips NaN payloads and -0 bit-identically', () => {
    const bits = new Uint32Array([0x7fc00001, 0xffbfffff, 0x7f800001, 0x80000000]);
    const f64 = new BigUint64Array([0x7ff0000000000001n, 0x8000000000000000n]);
    const back = parseSafetensors(
      encodeSafetensors({
        f: t({ dtype: 'F32', shape: [4], data: new Float32Array(bits.buffer) }),
        d: t({ dtype: 'F64', shape: [2], data: new Float64Array(f64.buffer) }),
        h: t({ dtype: 'F16', shape: [1], data: Uint16Array.from([0x7e01]) }),
      }),
    );
    const f = back.tensors.get('f')?.data as Float32Array;
    expect(Array.from(new Uint32Array(f.buffer, f.byteOffset, f.length))).toEqual(Array.from(bits));
    const d = back.tensors.get('d')?.data as Float64Array;
    expect(Array.from(new BigUint64Array(d.buffer, d.byteOffset, d.length))).toEqual(Array.from(f64));
    expect(Array.from(back.tensors.get('h')?.data as Uint16Array)).toEqual([0x7e01]);
  });

  it('round trips every supported dtype, including subarray views', () => {
    const base = new Int16Array([9, -1, 2, 9]);
    const tensors: Record<string, SafetensorsTensor> = {
      f64: t({ dtype: 'F64', shape: [1], data: Float64Array.from([1.25]) }),
      bf: t({ dtype: 'BF16', shape: [1], data: Uint16Array.from([0x3f80]) }),
      i64: t({ dtype: 'I64', shape: [2], data: BigInt64Array.from([-(2n ** 63n), 2n ** 63n - 1n]) }),
      u64: t({ dtype: 'U64', shape: [1], data: BigUint64Array.from([2n ** 64n - 1n]) }),
      i16: t({ dtype: 'I16', shape: [2], data: base.subarray(1, 3) }),
      u16: t({ dtype: 'U16', shape: [1], data: Uint16Array.from([65535]) }),
      u32: t({ dtype: 'U32', shape: [1, 1], data: Uint32Array.from([0xffffffff]) }),
      i8: t({ dtype: 'I8', shape: [2], data: Int8Array.from([-128, 127]) }),
    };
    const back = parseSafetensors(encodeSafetensors(tensors));
    for (const [k, v] of Object.entries(tensors)) expect(back.tensors.get(k)).toEqual({ dtype: v.dtype, shape: v.shape, data: v.data.slice() });
  });
});

describe('clear errors for bad input', () => {
  const scratch = tempDir('sbgc-st-');

  const f32 = (n: number): Uint8Array => new Uint8Array(4 * n);

  it('header length field', () => {
    expect(() => parseSafetensors(new Uint8Array(5), 'm.st')).toThrow('m.st: truncated: file is 5 bytes, too short for the 8-byte header length');
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true);
    expect(() => parseSafetensors(huge, 'm.st')).toThrow('m.st: header length 1099511627776 exceeds the 100000000-byte limit (corrupt or not a safetensors file)');
    const over = new Uint8Array(16);
    new DataView(over.buffer).setBigUint64(0, 64n, true);
    expect(() => parseSafetensors(over, 'm.st')).toThrow('m.st: truncated header: header length 64 needs at least 72 bytes but the file is 16 bytes');
  });

  it('invalid JSON / UTF-8 / non-object header', async () => {
    const bytes = Uint8Array.from(await fixture('no_metadata.safetensors'));
    bytes[8] = 0x5b; // '{' -> '['
    expect(() => parseSafetensors(bytes, 'j.st')).toThrow(/^j\.st: header is not valid JSON: /);
    bytes[8] = 0xff;
    expect(() => parseSafetensors(bytes, 'j.st')).toThrow('j.st: header is not valid UTF-8');
    expect(() => parseSafetensors(craft('[1,2]'), 'j.st')).toThrow('j.st: header JSON must be an object');
  });

  it('dtype, shape and field problems name the tensor', () => {
    expect(() => parseSafetensors(craft({ w: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }, f32(1)), 'd.st')).toThrow(
      `d.st: tensor 'w': unknown dtype "F33" (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL)`,
    );
    expect(() => parseSafetensors(craft({ w: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), 'd.st')).toThrow(
      /d\.st: tensor 'w': unsupported dtype "F8_E4M3"/,
    );
    expect(() => parseSafetensors(craft({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f32(1)), 'd.st')).toThrow(
      "d.st: tensor 'w': shape must be an array of non-negative integers, got [-1]",
    );
    expect(() => parseSafetensors(craft({ w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, f32(1)), 'd.st')).toThrow(/tensor 'w': shape must be/);
    expect(() => parseSafetensors(craft({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, f32(1)), 'd.st')).toThrow(
      "d.st: tensor 'w': data_offsets must be [begin, end] with 0 <= begin <= end, got [4,0]",
    );
    expect(() => parseSafetensors(craft({ w: { dtype: 'F32', shape: [1], data_offsets: [0, 4], extra: 1 } }, f32(1)), 'd.st')).toThrow(
      `d.st: tensor 'w': unknown field(s) "extra"`,
    );
    expect(() => parseSafetensors(craft({ w: 3 }), 'd.st')).toThrow("d.st: tensor 'w': header entry must be an object, got 3");
    expect(() => parseSafetensors(craft({ __metadata__: { a: 1 } }), 'd.st')).toThrow(/d\.st: __metadata__ must be an object of string values/);
  });

  it('data_offsets inconsistent with dtype x shape', () => {
    expect(() => parseSafetensors(craft({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, f32(3)), 'o.st')).toThrow(
      "o.st: tensor 'w': data_offsets [0,12] span 12 bytes but F32 [2,2] needs 16",
    );
  });

  it('gaps, overlaps and duplicate keys', () => {
    const gap = { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } };
    expect(() => parseSafetensors(craft(gap, f32(3)), 'g.st')).toThrow("g.st: tensor 'b': gap of 4 unreferenced bytes after tensor 'a' (ends at 4)");
    const lead = { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
    expect(() => parseSafetensors(craft(lead, f32(2)), 'g.st')).toThrow("g.st: tensor 'a': gap of 4 unreferenced bytes at the start of the data buffer");
    const overlap = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } };
    expect(() => parseSafetensors(craft(overlap, f32(2)), 'g.st')).toThrow("g.st: tensor 'b': data_offsets [4,8] overlap tensor 'a' (ends at 8)");
    const dup = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}';
    expect(() => parseSafetensors(craft(dup, f32(1)), 'g.st')).toThrow('g.st: duplicate header key "a"');
    // Keys nested inside entries are not top-level duplicates.
    const nested = '{"__metadata__":{"a":"x"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}';
    expect(parseSafetensors(craft(nested, f32(1))).metadata).toEqual({ a: 'x' });
  });

  it('truncated file reports expected vs actual size and the cut tensor', async () => {
    const bytes = await fixture('mixed.safetensors');
    expect(bytes.length).toBe(775);
    expect(() => parseSafetensors(bytes.subarray(0, 770), 'cut.st')).toThrow(
      "cut.st: truncated: header describes 103 data bytes, so the file should be 775 bytes, but it is 770 bytes (tensor 'pixels' at data_offsets [94,99] is cut off)",
    );
  });

  it('trailing bytes', async () => {
    const bytes = await fixture('no_metadata.safetensors');
    const longer = new Uint8Array(bytes.length + 3);
    longer.set(bytes);
    expect(() => parseSafetensors(longer, 'tail.st')).toThrow(
      'tail.st: trailing bytes: header describes 16 data bytes (file size 88) but the file is 91 bytes (3 extra, not covered by any tensor)',
    );
  });

  it('invalid BOOL bytes', () => {
    expect(() => parseSafetensors(craft({ m: { dtype: 'BOOL', shape: [2], data_offsets: [0, 2] } }, Uint8Array.from([1, 5])), 'b.st')).toThrow(
      "b.st: tensor 'm': invalid BOOL byte 5 at element 1 (must be 0 or 1)",
    );
  });

  it('loadSafetensors errors name the path', async () => {
    const path = join(scratch, 'cut.safetensors');
    await writeFile(path, (await fixture('mixed.safetensors')).subarray(0, 700));
    await expect(loadSafetensors(path)).rejects.toThrow(`${path}: truncated: header describes 103 data bytes`);
    await expect(loadSafetensors(path)).rejects.toBeInstanceOf(SafetensorsError);
  });

  it('encodeSafetensors rejects inconsistent tensors', () => {
    const bad = (x: unknown): SafetensorsTensor => x as SafetensorsTensor;
    expect(() => encodeSafetensors({ w: bad({ dtype: 'F32', shape: [2], data: new Float64Array(2) }) })).toThrow(
      "encodeSafetensors: tensor 'w': dtype F32 needs Float32Array data, got Float64Array",
    );
    expect(() => encodeSafetensors({ w: t({ dtype: 'I32', shape: [2, 2], data: new Int32Array(3) }) })).toThrow(
      "encodeSafetensors: tensor 'w': shape [2,2] implies 4 elements but data has 3",
    );
    expect(() => encodeSafetensors({ w: bad({ dtype: 'C64', shape: [1], data: new Float32Array(2) }) })).toThrow(/tensor 'w': unsupported dtype "C64"/);
    expect(() => encodeSafetensors({ __metadata__: t({ dtype: 'U8', shape: [0], data: new Uint8Array(0) }) })).toThrow(/"__metadata__" is reserved/);
    expect(() => encodeSafetensors({ m: t({ dtype: 'BOOL', shape: [1], data: Uint8Array.from([2]) }) })).toThrow(/tensor 'm': invalid BOOL value 2/);
    expect(() => encodeSafetensors({}, { k: 1 as unknown as string })).toThrow('encodeSafetensors: metadata "k": value must be a string, got number');
  });
});

describe('validateAgainstSpec', () => {
  const spec: TensorSpec[] = [
    { name: 'layer.weight', shape: [3, 2], dtype: 'F32' },
    { name: 'layer.bias', shape: [3], dtype: 'F32' },
    { name: 'counts', shape: [3], dtype: 'I64' },
    { name: 'conv.weight', shape: [8, 1, 3, 3], dtype: 'F32' },
    { name: 'conv.bias', shape: [8], dtype: 'F32' },
  ];

  it('passes when everything matches', async () => {
    const f = parseSafetensors(await fixture('mixed.safetensors'));
    const exact: TensorSpec[] = [...f.tensors].map(([name, x]) => ({ name, shape: x.shape, dtype: x.dtype }));
    expect(() => validateAgainstSpec(f, exact, 'mixed')).not.toThrow();
    expect(() => validateAgainstSpec(f.tensors, exact, 'mixed')).not.toThrow();
  });

  it('throws one error listing every missing, unexpected and mismatched tensor', async () => {
    const f = parseSafetensors(await fixture('mixed.safetensors'));
    let err: unknown;
    try {
      validateAgainstSpec(f, spec, 'weights.safetensors');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as Error).message).toBe(
      [
        'weights.safetensors: tensors do not match the expected spec (11 problems):',
        '  missing (2): conv.weight (F32 [8,1,3,3]), conv.bias (F32 [8])',
        '  unexpected (7): step (I64 []), double (F64 [2,2]), empty (F32 [0,4]), brain (BF16 [2]), half (F16 [3]), pixels (U8 [5]), mask (BOOL [4])',
        '  mismatched (2):',
        '    layer.bias: expected F32 [3], found F32 [2]',
        '    counts: expected I64 [3], found I32 [3]',
      ].join('\n'),
    );
  });

  it('rejects a spec that names a tensor twice', () => {
    expect(() => validateAgainstSpec(new Map(), [spec[0], spec[0]], 'w')).toThrow("w: expected spec lists tensor 'layer.weight' twice");
  });
});

describe('atomic writes', () => {
  const dir = tempDir('sbgc-st-atomic-');
  const tensors = { w: t({ dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) }) };

  it('save then load round trips', async () => {
    const path = join(dir, 'ok.safetensors');
    await saveSafetensors(path, tensors, { step: '3' });
    const f = await loadSafetensors(path);
    expect(f.metadata).toEqual({ step: '3' });
    expect(f.tensors.get('w')).toEqual(tensors.w);
    await rm(path);
  });

  itWritesAtomically(dir, '.safetensors', (path) => saveSafetensors(path, tensors));

  it('a failed encode leaves the old file intact', async () => {
    const path = join(dir, 'keep.safetensors');
    await saveSafetensors(path, tensors);
    const before = await readFile(path);
    await expect(saveSafetensors(path, { w: t({ dtype: 'F32', shape: [3], data: new Float32Array(2) }) })).rejects.toThrow(`${path}: tensor 'w'`);
    expect(await readFile(path)).toEqual(before);
    expect(await readdir(dir)).toEqual(['keep.safetensors']);
  });
});
