import { createEngine } from './context.js';
import { parseCommandLine } from './flag-reader.js';
import { ENGINE_VERSION } from '../engine/engine.js';

const INFO_USAGE = `usage: sbgc info [--json]

The WebGPU adapter, backend, features and limits (--json: as JSON).`;

export async function infoCommand(argv: string[]): Promise<void> {
  const parsed = parseCommandLine('info', INFO_USAGE, argv, { json: { type: 'boolean', default: false } });
  if (!parsed) return;
  const { values } = parsed;
  const e = await createEngine();
  const report = {
    engine: 'sbgc',
    version: ENGINE_VERSION,
    node: process.versions.node,
    adapter: {
      vendor: e.info.vendor,
      architecture: e.info.architecture,
      device: e.info.device,
      description: e.info.description,
      backend: e.info.backend,
      isCpu: e.info.isCpu,
    },
    features: e.info.features,
    deviceFeatures: [...e.device.features].map(String).sort(),
    limits: e.info.limits,
  };
  if (values.json) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
    return;
  }
  const a = report.adapter;
  console.log(`sbgc ${report.version} (node ${report.node})`);
  console.log(`adapter:  ${[a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' | ')}`);
  console.log(`backend:  ${a.backend}${a.isCpu ? ' (CPU adapter: CPU kernel variants)' : ''}`);
  console.log(`features: ${report.features.join(', ')}`);
  const keys = [
    'maxStorageBufferBindingSize',
    'maxBufferSize',
    'maxStorageBuffersPerShaderStage',
    'maxComputeWorkgroupStorageSize',
    'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupsPerDimension',
  ];
  for (const k of keys) console.log(`  ${k.padEnd(36)} ${report.limits[k]}`);
}
