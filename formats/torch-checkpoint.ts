/**
 * Reader for PyTorch ≥ 1.6 `torch.save` files (.pth/.pt): a zip archive (read with fflate) holding
 * `<archive>/data.pkl` (the object graph, pickled), `<archive>/data/<key>` (raw little-endian storage bytes),
 * `<archive>/version` or `<archive>/.data/version`, and optionally `<archive>/byteorder`. `<archive>` is whatever
 * directory the first entry sits in (torch names it after the saved file, or "archive" for buffers).
 *
 * Three parts, one file each: the zip container (zip-archive.ts), the pickle VM (pickle-vm.ts) with the allowlist
 * of globals it may reference (pickle-allow-list.ts), and the tensor values and their rebuild (torch-tensor.ts).
 * This file opens the archive, resolves torch's storage ids and re-exports the public names.
 *
 * Tensors come back as `TorchTensor`: dtype, shape, stride, storage offset, and `data`, a row-major contiguous copy
 * made on first access (so strided, offset and shared-storage views are materialised, and storages of tensors never
 * looked at are never extracted; `loadTensorData` extracts many at once). Every storage reference is checked against the zip listing
 * up front: a missing or wrongly sized storage record, or a view reaching past its storage, fails the read, naming the file and record.
 */
import { readFile } from 'node:fs/promises';

import { asInt, describeValue, PickleFault } from './pickle-allow-list.js';
import { unpickle } from './pickle-vm.js';
import { safetensorsItemSize } from './safetensors.js';
import { PickleGlobal, registerStorage, STORAGE_DTYPES, TorchCheckpointError, TorchStorage, type PickleValue } from './torch-tensor.js';
import { sizeMismatch, ZipArchive } from './zip-archive.js';

export {
  loadTensorData,
  PickleDict,
  PickleGlobal,
  TorchCheckpointError,
  TorchDevice,
  TorchStorage,
  TorchTensor,
  type PickleValue,
  type TorchDtype,
} from './torch-tensor.js';
export { unpickle } from './pickle-vm.js';


const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

function startsWith(bytes: Uint8Array, prefix: readonly number[], at = 0): boolean {
  if (bytes.length < at + prefix.length) return false;
  return prefix.every((b, i) => bytes[at + i] === b);
}

function notAZip(bytes: Uint8Array, source: string): TorchCheckpointError {
  if (startsWith(bytes, LEGACY_MAGIC)) {
    return new TorchCheckpointError(
      source,
      'legacy (pre-1.6, or _use_new_zipfile_serialization=False) torch.save format is not supported; ' +
        're-save it with torch.save(torch.load(path), path) under PyTorch >= 1.6',
    );
  }
  if (startsWith(bytes, [0x75, 0x73, 0x74, 0x61, 0x72], 257)) {
    return new TorchCheckpointError(source, 'tar-based legacy torch.save format is not supported; re-save it under PyTorch >= 1.6');
  }
  const head = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  return new TorchCheckpointError(
    source,
    `not a PyTorch checkpoint: expected a zip archive (torch.save since PyTorch 1.6), but the file starts with ${head || '(empty file)'}`,
  );
}

/**
 * Decodes a torch.save archive already in memory. `source` (the path) prefixes every error. Tensors keep a
 * reference to `bytes` and extract their storage on first `data` access.
 */
export function parseTorchCheckpoint(bytes: Uint8Array, source = '<buffer>'): PickleValue {
  if (!startsWith(bytes, [0x50, 0x4b, 0x03, 0x04])) throw notAZip(bytes, source);
  const zip = new ZipArchive(bytes, source);
  if (zip.entries.length === 0) throw new TorchCheckpointError(source, 'zip archive is empty');
  const first = zip.entries[0].name;
  const slash = first.indexOf('/');
  if (slash <= 0) throw new TorchCheckpointError(source, `not a torch.save archive: first entry '${first}' is not inside a directory`);
  const prefix = first.slice(0, slash + 1);
  const pklName = `${prefix}data.pkl`;
  if (!zip.get(pklName)) {
    const torchscript = zip.get(`${prefix}constants.pkl`) !== undefined;
    throw new TorchCheckpointError(
      source,
      torchscript
        ? 'this is a TorchScript archive (torch.jit.save), not a torch.save checkpoint'
        : `not a torch.save archive: no '${pklName}' record`,
    );
  }

  const versionName = zip.get(`${prefix}.data/version`) ? `${prefix}.data/version` : `${prefix}version`;
  if (!zip.get(versionName)) throw new TorchCheckpointError(source, `not a torch.save archive: no '${prefix}version' record`);
  const versionText = new TextDecoder().decode(zip.read(versionName)).trim();
  if (!/^\d+$/.test(versionText)) {
    throw new TorchCheckpointError(source, `record '${versionName}' is not a version number: ${JSON.stringify(versionText.slice(0, 20))}`);
  }

  let bigEndian = false;
  const byteorderName = `${prefix}byteorder`;
  if (zip.get(byteorderName)) {
    const order = new TextDecoder().decode(zip.read(byteorderName));
    if (order !== 'little' && order !== 'big') {
      throw new TorchCheckpointError(source, `record '${byteorderName}' must be "little" or "big", got ${JSON.stringify(order.slice(0, 20))}`);
    }
    bigEndian = order === 'big';
  }

  const storages = new Map<string, TorchStorage>();
  const persistentLoad = (pid: PickleValue): PickleValue => {
    if (!Array.isArray(pid) || pid.length !== 5) {
      throw new PickleFault(`persistent id must be a 5-tuple ('storage', type, key, location, numel), got ${describeValue(pid)}`);
    }
    const [typename, storageType, keyV, locationV, numelV] = pid.map((x) => (x instanceof Uint8Array ? new TextDecoder().decode(x) : x));
    if (typename !== 'storage') throw new PickleFault(`unknown persistent id type ${JSON.stringify(typename)}`);
    if (!(storageType instanceof PickleGlobal) || storageType.module !== 'torch' || !(storageType.name in STORAGE_DTYPES)) {
      throw new PickleFault(`persistent id storage type must be a torch storage class, got ${describeValue(storageType)}`);
    }
    if (typeof keyV !== 'string' || typeof locationV !== 'string') throw new PickleFault('persistent id key and location must be strings');
    const dtype = STORAGE_DTYPES[storageType.name];
    const numel = asInt(numelV, 'storage numel');
    if (numel < 0) throw new PickleFault(`storage '${keyV}' has negative numel ${numel}`);
    const cached = storages.get(keyV);
    if (cached) {
      if (cached.dtype !== dtype) throw new PickleFault(`storage '${keyV}' is referenced as both ${cached.dtype} and ${dtype}`);
      return cached;
    }
    const name = `${prefix}data/${keyV}`;
    const nbytes = numel * safetensorsItemSize(dtype);
    const entry = zip.get(name);
    if (!entry) throw new PickleFault(`missing storage record '${name}' (storage key '${keyV}', ${numel} × ${dtype})`);
    if (entry.originalSize !== nbytes) throw new PickleFault(`${sizeMismatch(name, entry.originalSize, nbytes)} (${numel} × ${dtype})`);
    const storage = new TorchStorage(keyV, dtype, numel, locationV);
    registerStorage(storage, { zip, record: name, bigEndian, itemsize: safetensorsItemSize(dtype) });
    storages.set(keyV, storage);
    return storage;
  };
  return unpickle(zip.read(pklName), `${source} (${pklName})`, persistentLoad);
}

/** Reads a `torch.save` file (PyTorch ≥ 1.6 zip format) into plain JS values; see the module comment. */
export async function readTorchCheckpoint(path: string): Promise<PickleValue> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new TorchCheckpointError(path, `cannot read: ${e instanceof Error ? e.message : String(e)}`);
  }
  return parseTorchCheckpoint(bytes, path);
}
