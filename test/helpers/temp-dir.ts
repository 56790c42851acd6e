import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

/**
 * A fresh temp folder for the calling test file or describe block: made now (while the tests are collected) and
 * removed with everything in it after the block's tests. Call it at file or describe level, not inside a test.
 */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * For tests that each want their own folder: returns a maker of fresh temp folders (callable inside a test);
 * every folder it made is removed after the calling file's or describe block's tests.
 */
export function useTempDirs(defaultPrefix: string): (prefix?: string) => string {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  return (prefix = defaultPrefix) => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
}
