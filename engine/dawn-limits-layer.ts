/**
 * Enabling VK_LAYER_SBGC_dawn_limits for this process before Dawn starts (Node only).
 *
 * Why: on every start Dawn prints, straight to stderr and with no toggle,
 *   Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 …
 *   Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 …
 * because Mesa's lavapipe reports 1000000 ("unlimited") dynamic uniform/storage buffers per descriptor set and Dawn
 * clamps the WebGPU limits to its internal maximum, 16. The layer (scripts/dawn-limits-layer.c, built by
 * scripts/setup.sh into .vulkan-layer/) reports 16 for those two Vulkan limits, so Dawn clamps nothing, prints
 * nothing, and exposes the same limits as before. Where the layer is not built, or the Vulkan loader is older than
 * 1.3.208 (no VK_ADD_LAYER_PATH), Dawn runs exactly as without it, warnings included.
 */

export const DAWN_LIMITS_LAYER = 'VK_LAYER_SBGC_dawn_limits';
export const DAWN_LIMITS_LAYER_MANIFEST = 'VkLayer_sbgc_dawn_limits.json';
export const DAWN_LIMITS_LAYER_LIBRARY = 'libVkLayer_sbgc_dawn_limits.so';
/** Relative to this module: engine/ (sources) and dist/ (bundles) both sit one level below the repository root. */
const LAYER_DIR_FROM_MODULE = '../.vulkan-layer/';

type Environment = Record<string, string | undefined>;

function pathList(value: string | undefined): string[] {
  return value ? value.split(':').filter(Boolean) : [];
}

/**
 * The Vulkan loader variables that enable the layer found in `layerDir`, merged with those already set (nothing is
 * dropped; applying the result twice changes nothing). The loader ignores VK_ADD_LAYER_PATH when VK_LAYER_PATH is
 * set, so the folder joins whichever of the two is in effect.
 */
export function dawnLimitsLayerEnv(env: Environment, layerDir: string): Record<string, string> {
  const pathVar = env.VK_LAYER_PATH ? 'VK_LAYER_PATH' : 'VK_ADD_LAYER_PATH';
  const paths = pathList(env[pathVar]);
  const layers = pathList(env.VK_INSTANCE_LAYERS);
  return {
    [pathVar]: (paths.includes(layerDir) ? paths : [...paths, layerDir]).join(':'),
    VK_INSTANCE_LAYERS: (layers.includes(DAWN_LIMITS_LAYER) ? layers : [...layers, DAWN_LIMITS_LAYER]).join(':'),
  };
}

/** The folder setup.sh builds the layer into, for this checkout. */
export async function defaultDawnLimitsLayerDir(): Promise<string> {
  const { fileURLToPath } = await import('node:url');
  // A variable, not a literal, so bundlers do not treat the folder as an asset to copy.
  const relative = LAYER_DIR_FROM_MODULE;
  return fileURLToPath(new URL(relative, import.meta.url)).replace(/\/$/, '');
}

/**
 * Sets the loader variables in this process's environment when the layer's manifest is in `layerDir`; returns
 * whether it did. Must run before Dawn creates its Vulkan instance (the loader reads them there).
 */
export async function enableDawnLimitsLayer(layerDir?: string): Promise<boolean> {
  if (process.platform !== 'linux') return false; // setup.sh builds the layer on Linux only
  const dir = layerDir ?? (await defaultDawnLimitsLayerDir());
  const { existsSync } = await import('node:fs');
  const { join } = await import('node:path');
  if (!existsSync(join(dir, DAWN_LIMITS_LAYER_MANIFEST)) || !existsSync(join(dir, DAWN_LIMITS_LAYER_LIBRARY))) return false;
  Object.assign(process.env, dawnLimitsLayerEnv(process.env, dir));
  return true;
}
