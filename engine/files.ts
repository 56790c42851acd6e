/**
 * Node-only file helpers, imported lazily so the library bundle still loads in browsers (where only the
 * byte-level parsers and encoders are used).
 */
import { SbgcError } from './errors.js';

/** Reads a whole file; errors name the path. */
export async function readFileBytes(path: string): Promise<Uint8Array> {
  const { readFile } = await import('node:fs/promises');
  try {
    return await readFile(path);
  } catch (e) {
    throw new SbgcError(`${path}: cannot read: ${(e as Error).message}`);
  }
}

/**
 * Writes `data` to `path` atomically: a temp file in the same directory is written, fsynced and
 * renamed over the target, so readers never see a partial file and a failed write leaves nothing.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const { open, rename, unlink } = await import('node:fs/promises');
  const { basename, dirname, join } = await import('node:path');
  const { randomBytes } = await import('node:crypto');
  const dir = dirname(path);
  // Leading dot + .tmp suffix: hidden from globbing and covered by the repo's *.tmp ignore rule.
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let created = false;
  try {
    const fh = await open(tmp, 'wx');
    created = true;
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    created = false;
  } catch (e) {
    if (created) await unlink(tmp).catch(() => undefined);
    const reason = e instanceof Error ? e.message : String(e);
    throw new SbgcError(`${path}: write failed: ${reason}`);
  }
}
