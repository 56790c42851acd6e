/**
 * A small kernel smoke check: real kernels on the adapter against float64 host computations.
 * Used by `npm run demo` until the classifier exists, and by `sbgc smoke`.
 */
import { createEngine } from './context.js';
import { parseCommandLine } from './flag-reader.js';
import { describeAdapter } from '../engine/gpu.js';
import { drawHost, randomTensor } from '../engine/rng.js';
import { silu, axpy } from '../kernels/elementwise.js';
import { vjpAndHvp } from '../engine/autodiff.js';

const SMOKE_USAGE = `usage: sbgc smoke

Runs a few kernels on the adapter (Philox bits, SiLU, axpy, a forward-over-reverse HVP) against float64 host
references; exit status 1 when one is off.`;

export async function smokeCommand(argv: string[] = []): Promise<boolean> {
  if (!parseCommandLine('smoke', SMOKE_USAGE, argv, {})) return true;
  const e = await createEngine();
  console.log(`adapter: ${describeAdapter(e.info)}`);
  let ok = true;
  const check = (name: string, err: number, tol: number) => {
    const pass = err <= tol;
    ok &&= pass;
    console.log(`  ${pass ? 'ok  ' : 'FAIL'} ${name.padEnd(44)} max rel err ${err.toExponential(2)} (tol ${tol.toExponential(0)})`);
  };
  const n = 100_003;
  await e.scope(async () => {
    // Philox on the GPU vs the TypeScript twin: bit-identical.
    const bits = (await randomTensor(e, [n], 'bits', { seed: 2024, stream: 1 }).read()) as Uint32Array;
    const host = drawHost(n, 'bits', { seed: 2024, stream: 1 }) as Uint32Array;
    let mism = 0;
    for (let i = 0; i < n; i++) if (bits[i] !== host[i]) mism++;
    check('philox4x32-10 bits vs TypeScript', mism, 0);
    // SiLU, axpy and a forward-over-reverse HVP vs float64.
    const x = randomTensor(e, [n], 'normal', { seed: 7 });
    const xs = Float64Array.from((await x.read()) as Float32Array);
    const y = axpy(e, [silu(e, [x], {}), x], { alpha: 0.5 });
    const got = (await y.read()) as Float32Array;
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    let err = 0;
    for (let i = 0; i < n; i++) err = Math.max(err, Math.abs(got[i] - (0.5 * xs[i] * sig(xs[i]) + xs[i])));
    check('axpy(silu(x), x) vs float64', err / 4, 1e-6);
    const u = randomTensor(e, [n], 'rademacher', { seed: 8 });
    const us = (await u.read()) as Float32Array;
    const { hvp } = vjpAndHvp(e, (t) => silu(e, [t], {}), x, u, u);
    const h = (await hvp!.read()) as Float32Array;
    let herr = 0;
    for (let i = 0; i < n; i++) {
      const s = sig(xs[i]);
      const d2 = s * (1 - s) * (2 + xs[i] * (1 - 2 * s));
      herr = Math.max(herr, Math.abs(h[i] - us[i] * d2 * us[i]));
    }
    check('HVP of <u, silu(x)> along u vs float64', herr, 1e-6);
  });
  console.log(ok ? 'smoke check passed' : 'smoke check FAILED');
  return ok;
}
