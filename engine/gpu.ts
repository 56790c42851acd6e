/**
 * Acquiring a WebGPU device: Dawn through the `webgpu` npm package in Node, `navigator.gpu` in browsers.
 * One interface for both; the engine asks for the adapter's largest storage limits it needs.
 */
import { enableDawnLimitsLayer } from './dawn-limits-layer.js';
import { DeviceLimitError, SbgcError } from './errors.js';

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  backend: string;
  /** True for CPU implementations (lavapipe, SwiftShader, WARP): kernels pick CPU-friendly variants. */
  isCpu: boolean;
  features: string[];
  limits: Record<string, number>;
}

export interface DeviceOptions {
  powerPreference?: GPUPowerPreference;
  /** Dawn toggles, e.g. 'disable_robustness' (Node/Dawn only). */
  dawnToggles?: string[];
  /** Ask for shader-f16 when the adapter has it (default true). */
  f16?: boolean;
}

export interface AcquiredDevice {
  gpu: GPU;
  adapter: GPUAdapter;
  device: GPUDevice;
  info: AdapterDescription;
}

/** Limits the engine raises to the adapter's maximum when granted (large tensors, many bindings). */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
] as const;

/** Minimum limits below which the engine refuses to run (kernels assume them). */
export const REQUIRED_LIMITS: Record<string, number> = {
  maxStorageBuffersPerShaderStage: 8,
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupStorageSize: 16384,
};

async function nodeGpu(toggles: string[]): Promise<GPU> {
  // The specifier is built at run time so browser bundles never try to resolve the native module.
  const name = 'webgpu';
  const mod = (await import(/* @vite-ignore */ name)) as {
    create: (flags: string[]) => GPU;
    globals: Record<string, unknown>;
  };
  // Dawn's WebGPU constants (GPUBufferUsage, …) are not globals in Node until installed.
  for (const [k, v] of Object.entries(mod.globals)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  // Mesa's Vulkan drivers warn (and some loaders fail) without a runtime dir; default it before Dawn starts.
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = `/tmp/xdg-runtime-${process.getuid?.() ?? 'user'}`;
    const fs = await import('node:fs');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
  // Lavapipe reports more dynamic buffers than Dawn's maximum, and Dawn warns on stderr each start when it clamps
  // them; a Vulkan layer built by setup.sh reports that maximum instead (see dawn-limits-layer.ts).
  await enableDawnLimitsLayer();
  const flags = toggles.length ? [`enable-dawn-features=${toggles.join(',')}`] : [];
  return mod.create(flags);
}

/**
 * One line naming an adapter, as the CLI prints it and results files record it: vendor, architecture and device
 * ids, the description (GPU drivers put their version there: "NVIDIA: 580.159.04 …"), the backend.
 */
export function describeAdapter(info: AdapterDescription): string {
  const ids = [info.vendor, info.architecture, info.device].filter(Boolean).join(' ');
  const name = [ids, info.description].filter(Boolean).join(' — ') || 'unknown adapter';
  return `${name} (${info.backend}${info.isCpu ? ', CPU' : ''})`;
}

function isNode(): boolean {
  return typeof process !== 'undefined' && !!process.versions?.node;
}

function describe(adapter: GPUAdapter): AdapterDescription {
  const i = adapter.info;
  const limits: Record<string, number> = {};
  // GPUSupportedLimits exposes getters on its prototype, so iterate with for..in.
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === 'number') limits[k] = v;
  }
  const text = `${i.vendor} ${i.architecture} ${i.device} ${i.description}`.toLowerCase();
  const isCpu = /llvmpipe|lavapipe|swiftshader|warp|cpu/.test(text);
  // Dawn's adapter info has no backend field here; in Node it uses the platform's default backend (we request no
  // other), and on Linux that is Vulkan (the NVIDIA driver's description names no API).
  const nodeDefault = isNode() ? ({ linux: 'vulkan', darwin: 'metal', win32: 'd3d12' } as Record<string, string>)[process.platform] : undefined;
  const backend = (i as unknown as { backendType?: string }).backendType ??
    (/vulkan|lavapipe|llvmpipe/.test(text) ? 'vulkan' : nodeDefault ?? 'unknown');
  return {
    vendor: i.vendor,
    architecture: i.architecture,
    device: i.device,
    description: i.description,
    backend,
    isCpu,
    features: [...adapter.features].map(String).sort(),
    limits,
  };
}

export async function acquireDevice(options: DeviceOptions = {}): Promise<AcquiredDevice> {
  let gpu: GPU | undefined;
  if (typeof navigator !== 'undefined' && (navigator as Navigator).gpu) {
    gpu = (navigator as Navigator).gpu;
  } else if (isNode()) {
    gpu = await nodeGpu(options.dawnToggles ?? []);
  }
  if (!gpu) throw new SbgcError('WebGPU is not available: no navigator.gpu and not running in Node');
  const adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new SbgcError(
      'No WebGPU adapter found. On Debian/Ubuntu without a GPU install Mesa lavapipe ' +
        '(bash scripts/setup.sh does it; Debian bookworm needs mesa-vulkan-drivers and libvulkan1 from bookworm-backports) ' +
        'and set XDG_RUNTIME_DIR.',
    );
  }
  const info = describe(adapter);
  for (const [k, min] of Object.entries(REQUIRED_LIMITS)) {
    if ((info.limits[k] ?? 0) < min) {
      throw new DeviceLimitError(`adapter limit ${k} = ${info.limits[k]} is below the ${min} sbgc needs`);
    }
  }
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) if (info.limits[k] !== undefined) requiredLimits[k] = info.limits[k];
  const requiredFeatures: GPUFeatureName[] = [];
  if (info.features.includes('timestamp-query')) requiredFeatures.push('timestamp-query');
  if ((options.f16 ?? true) && info.features.includes('shader-f16')) requiredFeatures.push('shader-f16');
  // Subgroup broadcasts let SIMD lanes share loads: on lavapipe that is what makes GEMMs fast (see kernels/gemm-wgsl.ts).
  if (info.features.includes('subgroups')) requiredFeatures.push('subgroups' as GPUFeatureName);
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'sbgc' });
  return { gpu, adapter, device, info };
}
