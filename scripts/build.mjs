// Bundles the library (dist/index.js) and the CLI (dist/cli.js) with esbuild; declarations come from tsc.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync, readFileSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
const common = {
  bundle: true,
  format: 'esm',
  target: 'es2022',
  sourcemap: true,
  // The native Dawn addon and optional deps stay external; everything else is bundled.
  external: ['webgpu', '@tensorflow/*', 'node:*'],
  logLevel: 'warning',
};
await build({ ...common, entryPoints: ['index.ts'], outfile: 'dist/index.js', platform: 'neutral', mainFields: ['module', 'main'] });
await build({
  ...common,
  entryPoints: ['cli/main.ts'],
  outfile: 'dist/cli.js',
  platform: 'node',
  banner: { js: '#!/usr/bin/env node\nimport { createRequire as __sbgcCreateRequire } from "node:module"; const require = __sbgcCreateRequire(import.meta.url);' },
});
execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
writeFileSync('dist/version.json', JSON.stringify({ version: pkg.version }) + '\n');
