import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkXmlWellFormed } from '../../eval/xml-check.js';

/** The suite in its smoke mode (tiny sizes, seconds on lavapipe), so it cannot rot. */
describe('bench/roofline --smoke', () => {
  it('measures the roofs, places the kernels against them and writes json, md and a well-formed svg', () => {
    const out = mkdtempSync(join(tmpdir(), 'sbgc-roofline-test-'));
    try {
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/roofline.ts', '--smoke', '--out', out], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      const files = readdirSync(out).sort();
      expect(files.map((f) => f.replace(/^roofline-[a-z0-9-]+\./, ''))).toEqual(['json', 'md', 'svg']);
      const base = join(out, files[0].replace(/\.json$/, ''));
      const report = JSON.parse(readFileSync(`${base}.json`, 'utf8'));
      expect(report.command).toContain('roofline --smoke');
      const kinds = report.peaks.map((p: { type: string; kind: string }) => `${p.kind} ${p.type}`);
      expect(kinds).toEqual(expect.arrayContaining(['fma f32', 'copy f32']));
      for (const p of report.peaks) expect(p.value).toBeGreaterThan(0);
      expect(report.kernels.map((k: { op: string }) => k.op)).toEqual(['matmul', 'conv2d', 'conv2d.vjp', 'conv2d.dual']);
      for (const k of report.kernels) {
        expect(k.intensity).toBeCloseTo(k.flops / k.bytes, 10);
        expect(k.roofGflops).toBeLessThanOrEqual(report.peaks[0].value * (1 + 1e-12));
        expect(k.fractionOfRoof).toBeGreaterThan(0);
      }
      // matmul 32: A, B read once and C written once, f32.
      expect(report.kernels[0].bytes).toBe(4 * 3 * 32 * 32);
      expect(readFileSync(`${base}.md`, 'utf8')).toContain('| matmul 32 |');
      expect(checkXmlWellFormed(readFileSync(`${base}.svg`, 'utf8'))[0]).toBe('svg');
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  }, 60_000);
});
