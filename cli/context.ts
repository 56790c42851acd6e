/** Shared CLI plumbing: engine creation honouring global flags, JSON output, atomic writes. */
import { Engine } from '../engine/engine.js';
import { SbgcError } from '../engine/errors.js';

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

export { writeFileAtomic } from '../engine/files.js';

export function usageError(message: string): never {
  throw new SbgcError(message);
}
