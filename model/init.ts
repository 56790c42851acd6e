// Deterministic parameter initialisation from each ParamEntry's InitSpec (score_sde's initialisers, params.ts).
// Each parameter draws from its own Philox stream keyed by a hash of its NAME, so a parameter's initial values
// depend only on (seed, name, shape): adding the label modules does not change any other parameter's draw.

import { HostRng } from '../engine/rng.js';
import type { NcsnppConfig } from './config.js';
import { paramSpec } from './param-spec.js';
import { numel, type InitSpec, type ParamEntry } from './params.js';

/** FNV-1a 32-bit hash of a parameter name: its RNG stream id. */
export function paramStream(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Fills `out` according to `init`, drawing from `rng` (float64 draws rounded once to f32). */
export function fillInit(out: Float32Array, init: InitSpec, rng: HostRng): void {
  switch (init.kind) {
    case 'zeros':
      out.fill(0);
      return;
    case 'ones':
      out.fill(1);
      return;
    case 'varianceScaling':
      // JAX variance_scaling(scale, 'fan_avg', 'uniform'): U(−limit, limit).
      for (let i = 0; i < out.length; i++) out[i] = (2 * rng.uniform() - 1) * init.limit;
      return;
    case 'normal':
      for (let i = 0; i < out.length; i++) out[i] = init.std * rng.normal();
      return;
  }
}

/** Initial values of one parameter. */
export function initParam(entry: ParamEntry, seed: number): Float32Array {
  const out = new Float32Array(numel(entry.shape));
  fillInit(out, entry.init, new HostRng(seed, paramStream(entry.name)));
  return out;
}

/** Every parameter of `config` (state-dict order) initialised from `seed`; same seed → same bits. */
export function initParams(config: NcsnppConfig, seed: number): Map<string, Float32Array> {
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`initParams: seed must be a non-negative integer, got ${seed}`);
  const out = new Map<string, Float32Array>();
  for (const entry of paramSpec(config)) out.set(entry.name, initParam(entry, seed));
  return out;
}
