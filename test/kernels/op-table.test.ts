import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { useEngine } from '../helpers/engine.js';
import { isOp, runOpCase } from '../helpers/op-case.js';
import { KERNEL_OPS, type OpName } from '../../kernels/op-table.js';
import { KERNEL_OP_CASES } from './op-table-cases.js';

const NAMES = Object.keys(KERNEL_OPS) as OpName[];
const KERNELS_DIR = fileURLToPath(new URL('../../kernels/', import.meta.url));

describe('the kernel op table', () => {
  const engine = useEngine();

  it("keys every op by its own name, each name once", () => {
    for (const key of NAMES) expect(KERNEL_OPS[key].def.name, key).toBe(key);
    const names = NAMES.map((k) => KERNEL_OPS[k].def.name);
    expect(new Set(names).size).toBe(names.length);
    expect(new Set(Object.values(KERNEL_OPS)).size, 'an op listed under two keys').toBe(NAMES.length);
  });

  it('holds every op that kernels/*.ts exports', async () => {
    const inTable = new Set<unknown>(Object.values(KERNEL_OPS));
    const missing: string[] = [];
    for (const file of readdirSync(KERNELS_DIR).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))) {
      const exports = (await import(`${KERNELS_DIR}${file}`)) as Record<string, unknown>;
      for (const [name, value] of Object.entries(exports)) {
        if (isOp(value) && !inTable.has(value)) missing.push(`kernels/${file}: ${name} ('${value.def.name}')`);
      }
    }
    expect(missing, 'ops missing from KERNEL_OPS').toEqual([]);
  });

  // Forward vs float64, JVP and VJP vs central differences, ⟨Jv, u⟩ = ⟨v, Jᵀu⟩: every op, one case each.
  for (const name of NAMES) {
    it(`${name}: forward, JVP, VJP`, async () => {
      await runOpCase(engine(), KERNEL_OPS[name], KERNEL_OP_CASES[name]);
    });
  }
});
