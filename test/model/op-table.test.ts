import { describe, expect, it } from 'vitest';
import type { Engine } from '../../engine/engine.js';
import { useEngine } from '../helpers/engine.js';
import { testMixture } from '../helpers/mixture-model.js';
import { randomHost, type Host64 } from '../helpers/check-op.js';
import { isOp, runOpCase, type OpCase } from '../helpers/op-case.js';
import { KERNEL_OPS, type OpParams } from '../../kernels/op-table.js';
import { MIXTURE_OPS, MODEL_OPS } from '../../model/op-table.js';
import type { MixtureParams } from '../../model/analytic-models.js';
import * as mixtureModule from '../../model/mixture-ops.js';

const model = testMixture();
const D = model.dim;
const T = [1e-5, 0.1, 0.3, 0.6, 1];
const LABELS = [0, 1, 1, 0, 1];

function params(e: Engine): MixtureParams {
  const rows = new Float32Array(3 * T.length);
  T.forEach((t, b) => {
    const { m, sigma2 } = model.coefficients(t);
    rows.set([m, sigma2, 1], 3 * b);
  });
  return { model, rows: e.tensor(rows, [T.length, 3]), labels: e.tensor(Uint32Array.from(LABELS), [LABELS.length], 'u32') };
}

/** Applies a per-sample host function to a [B, …] Host64. */
function perRow(x: Host64, f: (row: Float64Array, b: number) => Float64Array): Host64 {
  const out = new Float64Array(x.data.length);
  for (let b = 0; b < x.data.length / D; b++) out.set(f(x.data.slice(b * D, (b + 1) * D), b), b * D);
  return { shape: x.shape, data: out };
}

type MixtureOpName = keyof typeof MIXTURE_OPS;
const x = randomHost([T.length, 1, 3, 5], 11, 1.5);

// Shapes, references and tolerances of solvers/analytic.test.ts (which measures and justifies them).
const MIXTURE_CASES: { readonly [K in MixtureOpName]: OpCase<OpParams<typeof MIXTURE_OPS, K>> } = {
  'mixture.score': {
    params,
    inputs: [x],
    reference: ([xx]) => perRow(xx!, (row, b) => model.scoreHost(row, T[b], LABELS[b])),
    tol: { forward: 1e-6, jvp: 5e-6, vjp: 5e-6 },
  },
  'mixture.jv': {
    params,
    inputs: [x, randomHost([T.length, 1, 3, 5], 12)],
    reference: ([xx, vv]) =>
      perRow(xx!, (row, b) => model.jacobianVectorHost(row, T[b], LABELS[b], vv!.data.subarray(b * D, (b + 1) * D))),
    tol: { forward: 3e-6, jvp: 1e-5, vjp: 1e-5 },
  },
};

describe('the model op table (kernel ops + the Gaussian-mixture score ops)', () => {
  const engine = useEngine();

  it('is the kernel table plus the mixture ops, each keyed by its name, holding every mixture op', () => {
    expect(Object.keys(MODEL_OPS).sort()).toEqual([...Object.keys(KERNEL_OPS), ...Object.keys(MIXTURE_OPS)].sort());
    for (const [key, op] of Object.entries(MIXTURE_OPS)) expect(op.def.name).toBe(key);
    const inTable = new Set<unknown>(Object.values(MIXTURE_OPS));
    const missing = Object.entries(mixtureModule).filter(([, v]) => isOp(v) && !inTable.has(v)).map(([n]) => n);
    expect(missing, 'ops of solvers/mixture-ops.ts missing from MIXTURE_OPS').toEqual([]);
  });

  // Kernel ops are walked by test/kernels/op-table.test.ts; these are the rest.
  for (const name of Object.keys(MIXTURE_OPS) as MixtureOpName[]) {
    it(`${name}: forward, JVP, VJP`, async () => {
      await runOpCase(engine(), MIXTURE_OPS[name], MIXTURE_CASES[name]);
    });
  }
});
