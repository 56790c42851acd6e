/**
 * `npm run bench -- <suite> [args…]` runs bench/<suite>.ts (each suite writes JSON + markdown to bench/results/).
 * Benchmarks are never part of `npm test`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const suites = readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .map((f) => f.replace(/\.ts$/, ''));
const [suite, ...rest] = process.argv.slice(2);
if (!suite || !existsSync(join(here, `${suite}.ts`))) {
  console.error(`usage: npm run bench -- <suite> [args…]\nsuites: ${suites.join(', ') || '(none yet)'}`);
  process.exit(suite ? 2 : 1);
}
const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, `${suite}.ts`), ...rest], { stdio: 'inherit' });
process.exit(r.status ?? 1);
