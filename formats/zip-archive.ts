/**
 * The zip container of a torch.save file, read with fflate. Record sizes come from an untrusted directory, so each
 * is checked for plausibility before anything is allocated; errors name the file and the record.
 */
import { unzipSync } from 'fflate';

import { TorchCheckpointError } from './torch-tensor.js';


export interface ZipEntry {
  name: string;
  size: number;
  originalSize: number;
  compression: number;
}

export class ZipArchive {
  readonly entries: ZipEntry[] = [];
  private readonly byName = new Map<string, ZipEntry>();

  constructor(
    private readonly bytes: Uint8Array,
    private readonly source: string,
  ) {
    // Each central-directory record is at least 46 bytes; a count beyond that is corruption, and stopping here
    // keeps a forged entry count from making fflate loop for billions of iterations.
    const maxEntries = Math.floor(bytes.length / 46);
    this.unzip((info) => {
      if (this.entries.length >= maxEntries) {
        throw new TorchCheckpointError(source, 'corrupt zip: central directory lists more entries than the file can hold');
      }
      const e = { name: info.name, size: info.size, originalSize: info.originalSize, compression: info.compression };
      this.entries.push(e);
      if (!this.byName.has(e.name)) this.byName.set(e.name, e);
      return false;
    });
  }

  private unzip(filter: (info: ZipEntry) => boolean): Record<string, Uint8Array> {
    try {
      return unzipSync(this.bytes, { filter });
    } catch (e) {
      if (e instanceof TorchCheckpointError) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      throw new TorchCheckpointError(this.source, `not a readable zip archive (${msg})`);
    }
  }

  get(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  /** The record's bytes; `expected` bytes exactly, else an error naming the record. */
  read(name: string, expected?: number): Uint8Array {
    return this.readMany(new Map([[name, expected]])).get(name)!;
  }

  /** Several records in one pass over the directory; each must have its expected size (when given). */
  readMany(wanted: ReadonlyMap<string, number | undefined>): Map<string, Uint8Array> {
    for (const [name, expected] of wanted) {
      const entry = this.byName.get(name);
      if (!entry) throw new TorchCheckpointError(this.source, `missing record '${name}'`);
      if (entry.compression !== 0 && entry.compression !== 8) {
        throw new TorchCheckpointError(this.source, `record '${name}' uses unsupported zip compression method ${entry.compression}`);
      }
      // Sizes come from the (untrusted) directory and fflate allocates originalSize up front; deflate cannot
      // expand more than ~1032:1, and a stored record is its own size.
      const plausible = entry.compression === 0 ? entry.originalSize === entry.size : entry.originalSize <= entry.size * 1032 + 1024;
      if (!plausible) {
        throw new TorchCheckpointError(this.source, `corrupt zip: record '${name}' claims ${entry.originalSize} bytes from ${entry.size} stored`);
      }
      if (expected !== undefined && entry.originalSize !== expected) {
        throw new TorchCheckpointError(this.source, sizeMismatch(name, entry.originalSize, expected));
      }
    }
    const seen = new Set<string>();
    const files = this.unzip((info) => {
      // First occurrence only, like the listing (torch never writes a name twice).
      const hit = wanted.has(info.name) && !seen.has(info.name);
      if (hit) seen.add(info.name);
      return hit;
    });
    const out = new Map<string, Uint8Array>();
    for (const name of wanted.keys()) {
      const data = files[name];
      if (!data) throw new TorchCheckpointError(this.source, `missing record '${name}'`);
      // Callers build typed views on the result, so it must own an ArrayBuffer starting at offset 0.
      const own = data.byteOffset === 0 && data.buffer.byteLength === data.length ? data : data.slice();
      // fflate clamps a stored entry at the end of the buffer, so a cut-off file shows up as a short record.
      const size = this.byName.get(name)!.originalSize;
      if (own.length !== size) {
        throw new TorchCheckpointError(this.source, `record '${name}' is truncated: the zip directory says ${size} bytes, only ${own.length} are present`);
      }
      out.set(name, own);
    }
    return out;
  }
}

export function sizeMismatch(name: string, got: number, expected: number): string {
  return got < expected
    ? `truncated storage record '${name}': ${got} bytes, but the pickle needs ${expected}`
    : `storage record '${name}' has ${got} bytes, but the pickle describes ${expected}`;
}
