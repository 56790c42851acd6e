/** Shared CLI plumbing: engine creation honouring global flags, JSON output, atomic writes. */
import { Engine } from '../engine/engine.js';
import { SbgcError } from '../engine/errors.js';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export interface GlobalOptions {
  profile: boolean;
  dawnToggles: string[];
}

export const globalOptions: GlobalOptions = { profile: false, dawnToggles: [] };

const engines: Engine[] = [];

export async function createEngine(): Promise<Engine> {
  const e = await Engine.create({ profile: globalOptions.profile, dawnToggles: globalOptions.dawnToggles });
  engines.push(e);
  return e;
}

export function createdEngines(): readonly Engine[] {
  return engines;
}

export async function destroyEngines(): Promise<void> {
  for (const e of engines.splice(0)) await e.destroy();
}

/** Writes a file atomically: temp file in the same directory, then rename. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path) || '.', { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

export function usageError(message: string): never {
  throw new SbgcError(message);
}
