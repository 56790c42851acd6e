import { afterAll, beforeAll } from 'vitest';
import { Engine } from '../../engine/engine.js';

/**
 * One real WebGPU device per test file (lavapipe in CI, a GPU when present). Never mocked.
 * SBGC_ADAPTER_TOGGLES (comma list) passes Dawn toggles, e.g. disable_robustness.
 */
export function useEngine(): () => Engine {
  let engine: Engine | undefined;
  beforeAll(async () => {
    const toggles = process.env.SBGC_DAWN_TOGGLES?.split(',').filter(Boolean) ?? [];
    engine = await Engine.create({ dawnToggles: toggles });
  });
  afterAll(async () => {
    await engine?.destroy();
  });
  return () => {
    if (!engine) throw new Error('engine not initialised');
    return engine;
  };
}
