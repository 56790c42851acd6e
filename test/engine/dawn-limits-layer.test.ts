import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  DAWN_LIMITS_LAYER,
  DAWN_LIMITS_LAYER_MANIFEST,
  dawnLimitsLayerEnv,
  defaultDawnLimitsLayerDir,
  enableDawnLimitsLayer,
} from '../../engine/dawn-limits-layer.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const WARNING = 'artificially reduced';

describe('dawnLimitsLayerEnv', () => {
  it('adds the folder and the layer to an empty environment', () => {
    expect(dawnLimitsLayerEnv({}, '/r/.vulkan-layer')).toEqual({
      VK_ADD_LAYER_PATH: '/r/.vulkan-layer',
      VK_INSTANCE_LAYERS: DAWN_LIMITS_LAYER,
    });
  });

  it('keeps what is set, and joins VK_LAYER_PATH when set (the loader then ignores VK_ADD_LAYER_PATH)', () => {
    expect(dawnLimitsLayerEnv({ VK_ADD_LAYER_PATH: '/a', VK_INSTANCE_LAYERS: 'VK_LAYER_X' }, '/d')).toEqual({
      VK_ADD_LAYER_PATH: '/a:/d',
      VK_INSTANCE_LAYERS: `VK_LAYER_X:${DAWN_LIMITS_LAYER}`,
    });
    expect(dawnLimitsLayerEnv({ VK_LAYER_PATH: '/p', VK_ADD_LAYER_PATH: '/a' }, '/d')).toEqual({
      VK_LAYER_PATH: '/p:/d',
      VK_INSTANCE_LAYERS: DAWN_LIMITS_LAYER,
    });
  });

  it('changes nothing when applied twice', () => {
    const once = { VK_INSTANCE_LAYERS: 'VK_LAYER_X', ...dawnLimitsLayerEnv({ VK_INSTANCE_LAYERS: 'VK_LAYER_X' }, '/d') };
    expect(dawnLimitsLayerEnv(once, '/d')).toEqual({ VK_ADD_LAYER_PATH: '/d', VK_INSTANCE_LAYERS: once.VK_INSTANCE_LAYERS });
  });

  it('leaves the environment alone where the layer is not built', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'sbgc-no-layer-'));
    const before = { ...process.env };
    try {
      expect(await enableDawnLimitsLayer(empty)).toBe(false);
      expect(process.env).toEqual(before);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('finds the folder setup.sh builds, at the repository root', async () => {
    expect(await defaultDawnLimitsLayerDir()).toBe(join(root, '.vulkan-layer'));
  });
});

/** Runs a module snippet in a fresh Node (the layer must be enabled before Dawn's Vulkan instance exists). */
function runNode(code: string): { stdout: string; stderr: string; status: number | null } {
  const env = { ...process.env };
  for (const k of ['VK_INSTANCE_LAYERS', 'VK_ADD_LAYER_PATH', 'VK_LAYER_PATH']) delete env[k];
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
    cwd: root,
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

const layerBuilt = existsSync(join(root, '.vulkan-layer', DAWN_LIMITS_LAYER_MANIFEST));
// Where setup.sh could build the layer (a C compiler and the Vulkan headers), a missing layer is a failure.
const canBuild =
  process.platform === 'linux' &&
  spawnSync('sh', ['-c', "echo '#include <vulkan/vk_layer.h>' | cc -E -x c - >/dev/null 2>&1"]).status === 0;

describe.runIf(layerBuilt || canBuild)('acquireDevice with the layer (Dawn prints no limit warnings)', () => {
  it('is built (bash scripts/setup.sh builds it)', () => {
    expect(layerBuilt, 'run bash scripts/setup.sh (or scripts/build-dawn-limits-layer.sh)').toBe(true);
  });

  it('acquires the device without the warnings, with the same adapter features and limits as plain Dawn', () => {
    const withLayer = runNode(`
      const { acquireDevice } = await import('./engine/gpu.ts');
      const { info, device } = await acquireDevice();
      console.log(JSON.stringify({ features: info.features, limits: info.limits }));
      device.destroy();
    `);
    expect(withLayer.status, withLayer.stderr).toBe(0);
    expect(withLayer.stderr).not.toContain(WARNING);
    // Plain Dawn, as the webgpu package gives it (no layer): what the engine must still see.
    const plain = runNode(`
      import { create, globals } from 'webgpu';
      Object.assign(globalThis, globals);
      const adapter = await create([]).requestAdapter({ powerPreference: 'high-performance' });
      const limits = {};
      for (const k in adapter.limits) if (typeof adapter.limits[k] === 'number') limits[k] = adapter.limits[k];
      console.log(JSON.stringify({ features: [...adapter.features].map(String).sort(), limits }));
    `);
    expect(plain.status, plain.stderr).toBe(0);
    expect(JSON.parse(withLayer.stdout)).toEqual(JSON.parse(plain.stdout));
  });
});
