import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { encodeNpy, NpyError, parseNpy, readNpy, writeNpy, type NpyArray } from '../../formats/npy.js';
import { tempDir } from '../helpers/temp-dir.js';
import { itWritesAtomically } from '../helpers/atomic-write-cases.js';

// Fixtures are written by scripts/fixtures/make_npy_fixtures.py (numpy 2.x) and committed.
const FIX = fileURLToPath(new URL('../fixtures/npy/', import.meta.url));
const fixture = (name: string): Promise<Buffer> => readFile(join(FIX, name));

function f32Bits(a: Float32Array): number[] {
  return Array.from(new Uint32Array(a.buffer, a.byteOffset, a.length));
}

/** A v1.0 .npy from a raw header dict text (padded like numpy) and data bytes, for malformed-input tests. */
function craft(header: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const hlen = header.length + 1;
  const pad = 64 - ((10 + hlen) % 64);
  const text = header + ' '.repeat(pad) + '\n';
  const out = new Uint8Array(10 + text.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, text.length, true);
  for (let i = 0; i < text.length; i++) out[10 + i] = text.charCodeAt(i);
  out.set(data, 10 + text.length);
  return out;
}

/** Replaces an equal-length ASCII substring inside the header bytes. */
function patch(bytes: Uint8Array, from: string, to: string): Uint8Array {
  expect(to.length).toBe(from.length);
  const text = Buffer.from(bytes).toString('latin1');
  const at = text.indexOf(from);
  expect(at).toBeGreaterThan(0);
  const out = Uint8Array.from(bytes);
  for (let i = 0; i < to.length; i++) out[at + i] = to.charCodeAt(i);
  return out;
}

describe('parseNpy on numpy-written fixtures', () => {
  it('f4 1-D odd length, incl. -0, ±inf, NaN, subnormal, max', async () => {
    const a = parseNpy(await fixture('f4_1d_odd.npy'));
    expect(a.dtype).toBe('f4');
    expect(a.shape).toEqual([7]);
    expect(a.fortranOrder).toBe(false);
    if (a.dtype !== 'f4') throw new Error('narrowing');
    const d = Array.from(a.data);
    expect(d[0]).toBe(1.5);
    expect(Object.is(d[1], -0)).toBe(true);
    expect(d.slice(2, 4)).toEqual([Infinity, -Infinity]);
    expect(Number.isNaN(d[4])).toBe(true);
    expect(d[5]).toBe(Math.fround(1e-45));
    expect(d[6]).toBe(3.4028234663852886e38);
  });

  it('f8 3-D', async () => {
    const a = parseNpy(await fixture('f8_3d.npy'));
    expect(a.dtype).toBe('f8');
    expect(a.shape).toEqual([2, 3, 4]);
    expect(a.data).toBeInstanceOf(Float64Array);
    expect(Array.from(a.data as Float64Array)).toEqual(Array.from({ length: 24 }, (_, i) => i * 0.5 - 3));
  });

  it('u1 image 2x28x28', async () => {
    const a = parseNpy(await fixture('u1_image.npy'));
    expect(a.dtype).toBe('u1');
    expect(a.shape).toEqual([2, 28, 28]);
    const want = new Uint8Array(2 * 28 * 28);
    for (let i = 0; i < 2; i++) for (let j = 0; j < 28; j++) for (let k = 0; k < 28; k++) want[(i * 28 + j) * 28 + k] = (i * 7 + j * 3 + k) % 256;
    expect(a.data).toEqual(want);
  });

  it('i8 and u8 as bigint arrays, full range', async () => {
    const a = parseNpy(await fixture('i8.npy'));
    expect(a.dtype).toBe('i8');
    expect(Array.from(a.data as BigInt64Array)).toEqual([0n, -1n, 2n ** 62n, -(2n ** 63n), 2n ** 63n - 1n, 12345n]);
    const b = parseNpy(await fixture('u8.npy'));
    expect(b.dtype).toBe('u8');
    expect(Array.from(b.data as BigUint64Array)).toEqual([0n, 2n ** 64n - 1n]);
  });

  it('bool, i1, u2, i4, f2', async () => {
    const b = parseNpy(await fixture('bool.npy'));
    expect(b.dtype).toBe('b1');
    expect(Array.from(b.data as Uint8Array)).toEqual([1, 0, 0, 1, 1]);
    expect(Array.from(parseNpy(await fixture('i1.npy')).data as Int8Array)).toEqual([-128, -1, 0, 127]);
    expect(Array.from(parseNpy(await fixture('u2.npy')).data as Uint16Array)).toEqual([0, 1, 65535]);
    const i4 = parseNpy(await fixture('i4_2x3.npy'));
    expect(i4.shape).toEqual([2, 3]);
    expect(Array.from(i4.data as Int32Array)).toEqual([-3000, -2000, -1000, 0, 1000, 2000]);
    const f2 = parseNpy(await fixture('f2.npy'));
    expect(f2.dtype).toBe('f2');
    expect(Array.from(f2.data as Uint16Array)).toEqual([0x3c00, 0xc100, 0x7bff, 0x7c00]);
  });

  it('0-d scalar and empty (0,3)', async () => {
    const s = parseNpy(await fixture('scalar_0d.npy'));
    expect(s.shape).toEqual([]);
    expect(Array.from(s.data as Float32Array)).toEqual([3.5]);
    const e = parseNpy(await fixture('empty_0x3.npy'));
    expect(e.shape).toEqual([0, 3]);
    expect(e.data.length).toBe(0);
  });

  it('header padding edge cases (1 space, full 64 spaces)', async () => {
    for (const name of ['pad1_u1.npy', 'pad64_u1.npy']) {
      const bytes = await fixture(name);
      const a = parseNpy(bytes, name);
      const n = a.shape.reduce((x, y) => x * y, 1);
      expect(a.data.length).toBe(n);
      expect(Array.from(a.data as Uint8Array)).toEqual(Array.from({ length: n }, (_, i) => i % 251));
      expect((bytes.length - n) % 64).toBe(0);
    }
    const p64 = (await fixture('pad64_u1.npy')).toString('latin1');
    expect(p64).toContain(`}${' '.repeat(64)}`);
  });

  it('big-endian is converted to native little-endian', async () => {
    const a = parseNpy(await fixture('f4_be.npy'));
    expect(a.dtype).toBe('f4');
    expect(Array.from(a.data as Float32Array)).toEqual([1.5, -2, Math.fround(1e-3)]);
  });

  it('Fortran order is transposed to C order', async () => {
    const i4 = parseNpy(await fixture('i4_fortran_2x3.npy'));
    expect(i4.fortranOrder).toBe(false);
    expect(i4.shape).toEqual([2, 3]);
    expect(Array.from(i4.data as Int32Array)).toEqual([-3000, -2000, -1000, 0, 1000, 2000]);
    const f8 = parseNpy(await fixture('f8_3d_fortran.npy'));
    expect(f8.shape).toEqual([2, 3, 4]);
    expect(Array.from(f8.data as Float64Array)).toEqual(Array.from({ length: 24 }, (_, i) => i * 0.5 - 3));
  });

  it('format versions 2.0 and 3.0', async () => {
    for (const name of ['v2_f4.npy', 'v3_f4.npy']) {
      const a = parseNpy(await fixture(name), name);
      expect(a.shape).toEqual([3]);
      expect(Array.from(a.data as Float32Array)).toEqual([1, 2, 3]);
    }
  });

  it('accepts Python 2 long suffixes and double-quoted strings', () => {
    const a = parseNpy(craft(`{"descr": "<i2", "fortran_order": False, "shape": (2L,)}`, new Uint8Array([1, 0, 255, 255])));
    expect(Array.from(a.data as Int16Array)).toEqual([1, -1]);
  });

  it('returns data that owns an aligned buffer even from an unaligned input view', async () => {
    const bytes = await fixture('f8_3d.npy');
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    const a = parseNpy(shifted.subarray(3));
    expect(a.data.byteOffset).toBe(0);
    expect((a.data as Float64Array)[1]).toBe(-2.5);
    // The result must not alias the input (Node Buffer.slice would): clobbering the input changes nothing.
    bytes.fill(0);
    shifted.fill(0);
    expect((a.data as Float64Array)[1]).toBe(-2.5);
  });
});

describe('encodeNpy matches np.save byte for byte', () => {
  const same = [
    'f4_1d_odd.npy', 'f8_3d.npy', 'u1_image.npy', 'i8.npy', 'u8.npy', 'bool.npy', 'scalar_0d.npy',
    'empty_0x3.npy', 'f2.npy', 'i4_2x3.npy', 'u2.npy', 'i1.npy', 'pad1_u1.npy', 'pad64_u1.npy',
  ];
  for (const name of same) {
    it(name, async () => {
      const bytes = await fixture(name);
      expect(Buffer.from(encodeNpy(parseNpy(bytes, name)))).toEqual(bytes);
    });
  }

  it('Fortran-order input re-encodes as numpy writes the C-order array', async () => {
    expect(Buffer.from(encodeNpy(parseNpy(await fixture('i4_fortran_2x3.npy'))))).toEqual(await fixture('i4_2x3.npy'));
    expect(Buffer.from(encodeNpy(parseNpy(await fixture('f8_3d_fortran.npy'))))).toEqual(await fixture('f8_3d.npy'));
  });

  it('from hand-built arrays (not parsed)', async () => {
    const f8: NpyArray = { dtype: 'f8', shape: [2, 3, 4], data: Float64Array.from({ length: 24 }, (_, i) => i * 0.5 - 3), fortranOrder: false };
    expect(Buffer.from(encodeNpy(f8))).toEqual(await fixture('f8_3d.npy'));
    const b: NpyArray = { dtype: 'b1', shape: [5], data: Uint8Array.from([1, 0, 0, 1, 1]), fortranOrder: false };
    expect(Buffer.from(encodeNpy(b))).toEqual(await fixture('bool.npy'));
    // A subarray view must encode only its own elements.
    const big = new Int32Array([99, -3000, -2000, -1000, 0, 1000, 2000, 99]);
    const i4: NpyArray = { dtype: 'i4', shape: [2, 3], data: big.subarray(1, 7), fortranOrder: false };
    expect(Buffer.from(encodeNpy(i4))).toEqual(await fixture('i4_2x3.npy'));
  });
});

describe('round trip', () => {
  const dir = tempDir('sbgc-npy-');

  it('f4 NaN payloads and -0 survive bit-identically (bytes and file)', async () => {
    const bits = new Uint32Array([0x7fc00001, 0xffbfffff, 0x7f800001, 0x80000000, 0x00000001, 0x7fffffff, 0x3f800000]);
    const arr: NpyArray = { dtype: 'f4', shape: [7], data: new Float32Array(bits.buffer), fortranOrder: false };
    const back = parseNpy(encodeNpy(arr));
    expect(f32Bits(back.data as Float32Array)).toEqual(Array.from(bits));
    const path = join(dir, 'nan.npy');
    await writeNpy(path, arr);
    expect(f32Bits((await readNpy(path)).data as Float32Array)).toEqual(Array.from(bits));
  });

  it('f8 NaN payload and every dtype', async () => {
    const f8bits = new BigUint64Array([0x7ff8000000000001n, 0x8000000000000000n, 0xfff0000000000abcn]);
    const cases: NpyArray[] = [
      { dtype: 'f8', shape: [3], data: new Float64Array(f8bits.buffer), fortranOrder: false },
      { dtype: 'f2', shape: [2, 1], data: new Uint16Array([0x7e01, 0x8000]), fortranOrder: false },
      { dtype: 'i2', shape: [2], data: new Int16Array([-32768, 32767]), fortranOrder: false },
      { dtype: 'u4', shape: [1, 1, 2], data: new Uint32Array([0, 0xffffffff]), fortranOrder: false },
      { dtype: 'i8', shape: [], data: new BigInt64Array([-5n]), fortranOrder: false },
    ];
    for (const c of cases) {
      const back = parseNpy(encodeNpy(c));
      expect(back.dtype).toBe(c.dtype);
      expect(back.shape).toEqual(c.shape);
      const raw = (x: NpyArray): Uint8Array => new Uint8Array(x.data.buffer, x.data.byteOffset, x.data.byteLength);
      expect(raw(back)).toEqual(raw(c));
    }
  });
});

describe('clear errors for bad input', () => {
  const scratch = tempDir('sbgc-npy-');

  it('bad magic', () => {
    expect(() => parseNpy(new Uint8Array([0x50, 0x4b, 3, 4, 0, 0, 0, 0, 0, 0]), 'x.npy')).toThrow(/^x\.npy: not a \.npy file: bad magic .*got 50 4b 03 04 00 00/);
    expect(() => parseNpy(new Uint8Array(0), 'empty.npy')).toThrow(/empty\.npy: .*bad magic.*got nothing/);
    expect(() => parseNpy(new Uint8Array(0), 'empty.npy')).toThrow(NpyError);
  });

  it('unsupported version', async () => {
    const bytes = Uint8Array.from(await fixture('f4_1d_odd.npy'));
    bytes[6] = 4;
    expect(() => parseNpy(bytes, 'v4.npy')).toThrow('v4.npy: unsupported .npy format version 4.0 (supported: 1.0, 2.0, 3.0)');
  });

  it('truncated header', async () => {
    const bytes = (await fixture('f4_1d_odd.npy')).subarray(0, 50);
    expect(() => parseNpy(bytes, 't.npy')).toThrow('t.npy: truncated header: header declares 118 bytes but only 40 follow the preamble');
    expect(() => parseNpy(bytes.subarray(0, 9), 't.npy')).toThrow(/t\.npy: truncated: 9 bytes/);
  });

  it('unparsable header', async () => {
    const bytes = await fixture('f4_1d_odd.npy');
    expect(() => parseNpy(patch(bytes, 'False', 'Fals3'), 'h.npy')).toThrow(/^h\.npy: unparsable header: unexpected name 'Fals3'/);
    expect(() => parseNpy(patch(bytes, '(7,)', '(7,]'), 'h.npy')).toThrow(/h\.npy: unparsable header: .*"\{'descr'/);
    expect(() => parseNpy(patch(bytes, "'descr'", "'dtype'"), 'h.npy')).toThrow(
      "h.npy: unparsable header: keys must be exactly 'descr', 'fortran_order', 'shape'; got ['dtype', 'fortran_order', 'shape']",
    );
    expect(() => parseNpy(craft(`{'descr': '<f4', 'fortran_order': False, 'shape': [3]}`, new Uint8Array(12)), 'h.npy')).toThrow(
      'h.npy: unparsable header: shape must be a tuple of ints, got [3]',
    );
    expect(() => parseNpy(craft(`{'descr': '<f4', 'fortran_order': 0, 'shape': ()}`, new Uint8Array(4)), 'h.npy')).toThrow(/fortran_order must be True or False, got 0/);
    expect(() => parseNpy(craft(`{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}`), 'h.npy')).toThrow(/h\.npy: invalid shape \(-1,\)/);
    expect(() => parseNpy(craft(`{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}`), 'h.npy')).toThrow(/duplicate key 'descr'/);
    expect(() => parseNpy(craft(`[1, 2]`), 'h.npy')).toThrow(/h\.npy: unparsable header: expected a dict/);
  });

  it('unsupported dtypes', async () => {
    const c8 = await fixture('unsupported_c8.npy');
    expect(() => parseNpy(c8, 'c.npy')).toThrow(/^c\.npy: unsupported dtype '<c8' \(supported: '<f2', '<f4'/);
    expect(() => parseNpy(craft(`{'descr': '=f4', 'fortran_order': False, 'shape': ()}`, new Uint8Array(4)), 'n.npy')).toThrow(/n\.npy: ambiguous byte order in dtype '=f4'/);
    expect(() => parseNpy(craft(`{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': ()}`, new Uint8Array(4)), 's.npy')).toThrow(
      /s\.npy: unsupported dtype: structured\/compound descr \[\('a', '<f4'\)\]/,
    );
    expect(() => parseNpy(craft(`{'descr': '<U3', 'fortran_order': False, 'shape': ()}`, new Uint8Array(12)), 'u.npy')).toThrow(/unsupported dtype '<U3'/);
  });

  it('data shorter than the shape implies gives expected vs actual bytes', async () => {
    const bytes = await fixture('f4_1d_odd.npy');
    expect(() => parseNpy(bytes.subarray(0, bytes.length - 3), 'short.npy')).toThrow(
      "short.npy: data truncated: shape (7,) of '<f4' needs 28 bytes, file has 25 bytes after the 128-byte header",
    );
  });

  it('trailing bytes', async () => {
    const bytes = await fixture('u1_image.npy');
    const longer = new Uint8Array(bytes.length + 4);
    longer.set(bytes);
    expect(() => parseNpy(longer, 'long.npy')).toThrow("long.npy: trailing bytes: shape (2, 28, 28) of '<u1' needs 1568 bytes, file has 1572 bytes after the header (4 extra)");
  });

  it('bool bytes other than 0/1', () => {
    expect(() => parseNpy(craft(`{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }`, new Uint8Array([1, 0, 2])), 'b.npy')).toThrow(
      'b.npy: invalid bool data: byte 2 at element 2 (must be 0 or 1)',
    );
  });

  it('readNpy errors name the file', async () => {
    const path = join(scratch, 'cut.npy');
    await writeFile(path, (await fixture('f8_3d.npy')).subarray(0, 200));
    await expect(readNpy(path)).rejects.toThrow(`${path}: data truncated: shape (2, 3, 4) of '<f8' needs 192 bytes, file has 72 bytes`);
  });

  it('encodeNpy rejects inconsistent arrays', () => {
    const bad = (x: unknown): NpyArray => x as NpyArray;
    expect(() => encodeNpy(bad({ dtype: 'f4', shape: [2], data: new Float64Array(2), fortranOrder: false }))).toThrow(
      "encodeNpy: dtype 'f4' needs Float32Array data, got Float64Array",
    );
    expect(() => encodeNpy({ dtype: 'f4', shape: [2, 2], data: new Float32Array(3), fortranOrder: false })).toThrow(
      'encodeNpy: shape (2, 2) implies 4 elements but data has 3',
    );
    expect(() => encodeNpy({ dtype: 'u1', shape: [-1], data: new Uint8Array(0), fortranOrder: false })).toThrow(/invalid shape \[-1\]/);
    expect(() => encodeNpy(bad({ dtype: 'c8', shape: [], data: new Float32Array(2), fortranOrder: false }))).toThrow(/unsupported dtype "c8"/);
    expect(() => encodeNpy({ dtype: 'b1', shape: [2], data: new Uint8Array([0, 7]), fortranOrder: false })).toThrow(/invalid bool data: value 7 at element 1/);
    expect(() => encodeNpy(bad({ dtype: 'u1', shape: [1], data: new Uint8Array(1), fortranOrder: true }))).toThrow(/fortranOrder must be false/);
    expect(() => parseNpy(new Uint8Array(0)), 'default source').toThrow(/^<buffer>: /);
  });
});

describe('atomic writes', () => {
  const dir = tempDir('sbgc-npy-atomic-');
  const arr: NpyArray = { dtype: 'f4', shape: [3], data: new Float32Array([1, 2, 3]), fortranOrder: false };

  itWritesAtomically(dir, '.npy', (path) => writeNpy(path, arr));

  it('an invalid array never touches the existing file; a valid one replaces it whole', async () => {
    const path = join(dir, 'keep.npy');
    await writeNpy(path, arr);
    const before = await readFile(path);
    await expect(writeNpy(path, { dtype: 'f4', shape: [4], data: new Float32Array(3), fortranOrder: false })).rejects.toThrow(`${path}: shape (4,) implies 4 elements`);
    expect(await readFile(path)).toEqual(before);
    await writeNpy(path, { dtype: 'u1', shape: [2], data: new Uint8Array([5, 6]), fortranOrder: false });
    expect(Array.from((await readNpy(path)).data as Uint8Array)).toEqual([5, 6]);
    expect(await readdir(dir)).toEqual(['keep.npy']);
  });
});
