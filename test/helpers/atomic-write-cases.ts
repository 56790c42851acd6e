import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';

/**
 * The cases every atomic file writer (write a temp file, then rename it) must pass, as tests of the calling
 * describe block: writing into a missing folder fails naming the path and creates nothing; a failed rename (the
 * target is a folder) leaves no temp file behind. `dir` is empty before and after; `ext` names the files.
 */
export function itWritesAtomically(dir: string, ext: string, write: (path: string) => Promise<unknown>): void {
  it('writing into a non-existent directory throws and creates nothing', async () => {
    const path = join(dir, 'missing', `a${ext}`);
    await expect(write(path)).rejects.toThrow(`${path}: write failed:`);
    expect(await readdir(dir)).toEqual([]);
  });

  it('a failed rename (target is a directory) leaves no temp file behind', async () => {
    const target = join(dir, `occupied${ext}`);
    await mkdir(target);
    await expect(write(target)).rejects.toThrow(`${target}: write failed:`);
    expect(await readdir(dir)).toEqual([`occupied${ext}`]);
    expect(await readdir(target)).toEqual([]);
    await rm(target, { recursive: true });
  });
}
