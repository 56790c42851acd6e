/**
 * The layers of ARCHITECTURE.md, checked on the import lines of every source file: data flows one way only,
 * engine ← kernels ← model ← solvers ← eval ← cli, with data/ and formats/ beside (and train/ beside eval/).
 * No GPU, no module loading: the files are read as text.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = normalize(join(dirname(fileURLToPath(import.meta.url)), '..', '..'));

/** What each layer may import besides itself. cli/, bench/ and scripts/ sit on top and may import anything. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  engine: [],
  formats: ['engine'],
  data: ['engine', 'formats'],
  kernels: ['engine'],
  model: ['engine', 'kernels', 'formats'],
  solvers: ['engine', 'kernels', 'model'],
  train: ['engine', 'kernels', 'model', 'data', 'formats'],
  eval: ['engine', 'kernels', 'model', 'solvers', 'train', 'data', 'formats'],
};
const LAYERS = Object.keys(MAY_IMPORT);

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** Relative module specifiers of static imports, re-exports and dynamic imports. */
export function importSpecifiers(source: string): string[] {
  const specs: string[] = [];
  const patterns = [/\bfrom\s*'(\.{1,2}\/[^']+)'/g, /\bimport\s*\(\s*'(\.{1,2}\/[^']+)'\s*\)/g, /^\s*import\s*'(\.{1,2}\/[^']+)'/gm];
  for (const re of patterns) for (const m of source.matchAll(re)) specs.push(m[1]);
  return specs;
}

function layerOf(path: string): string {
  return relative(ROOT, path).split(/[\\/]/)[0];
}

/** Every import that runs against the layering, as "file → target". */
function upwardImports(): string[] {
  const bad: string[] = [];
  for (const layer of LAYERS) {
    for (const file of sourceFiles(join(ROOT, layer))) {
      for (const spec of importSpecifiers(readFileSync(file, 'utf8'))) {
        const target = layerOf(normalize(join(dirname(file), spec)));
        if (target !== layer && !MAY_IMPORT[layer].includes(target)) {
          bad.push(`${relative(ROOT, file)} → ${spec} (${layer}/ may import ${MAY_IMPORT[layer].join(', ') || 'nothing outside itself'})`);
        }
      }
    }
  }
  return bad;
}

describe('layers', () => {
  it('finds the imports it checks', () => {
    expect(importSpecifiers("import { a } from '../x/y.js';\nexport * from './z.js';\nconst m = await import('../w.js');")).toEqual([
      '../x/y.js',
      './z.js',
      '../w.js',
    ]);
  });

  it('no source file imports a layer above its own', () => {
    expect(upwardImports()).toEqual([]);
  });

  it('nothing outside cli/ imports cli/', () => {
    const fromBelow = upwardImports().filter((line) => / → (\.\.\/)+cli\//.test(line));
    expect(fromBelow).toEqual([]);
  });
});
