/**
 * `npm run bench -- network [--presets tiny,mnist-small] [--batch 8] [--repeats 3]`: the score network's forward,
 * VJP (reverse mode: ⟨u, net(x)⟩ → ∇ₓ) and forward-over-reverse HVP (the adjoint's ∇ₓ(εᵀJε)), each as a ratio of
 * the forward time of the same network and batch — the Kernels issue asks VJP ≤ 2.5× and HVP ≤ 4×.
 * "VJP" is the backward pass alone (the tape's forward is reported separately); "VJP total" includes it. "JVP total"
 * is forward mode, net(x) and J·u in one pass (fused dual kernels): the likelihood's default Hutchinson pass, against
 * "VJP total", the reverse pass.
 * Median of timed repeats after a warm-up, between e.sync() boundaries. Writes bench/results/network-<adapter>.{json,md}.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Engine } from '../engine/engine.js';
import { jvp, vjp, vjpAndHvp } from '../engine/autodiff.js';
import { randomTensor } from '../engine/rng.js';
import { loadPreset } from '../model/config.js';
import { initWeights } from '../model/weights.js';
import { NetworkScoreModel } from '../model/score.js';
import { forwardFlops } from '../model/flops.js';
import '../kernels/elementwise.js';

const { values } = parseArgs({
  options: {
    presets: { type: 'string', default: 'tiny,mnist-small' },
    batch: { type: 'string', default: '8' },
    repeats: { type: 'string', default: '3' },
  },
});
const batch = Number(values.batch);
const repeats = Number(values.repeats);

async function timeIt(e: Engine, fn: () => Promise<void> | void): Promise<number> {
  await e.sync();
  const times: number[] = [];
  for (let r = 0; r <= repeats; r++) {
    const t0 = performance.now();
    await e.scope(async () => {
      await fn();
      await e.sync();
    });
    if (r > 0) times.push(performance.now() - t0); // r = 0 is the warm-up (compiles, autotunes)
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

interface Row {
  preset: string;
  batch: number;
  gflopPerForward: number;
  forwardMs: number;
  forwardGflops: number;
  tapeForwardMs: number;
  vjpMs: number;
  vjpTotalMs: number;
  hvpTotalMs: number;
  jvpTotalMs: number;
  vjpOverForward: number;
  vjpTotalOverForward: number;
  hvpOverForward: number;
  jvpTotalOverForward: number;
}

const e = await Engine.create();
const rows: Row[] = [];
for (const preset of values.presets!.split(',')) {
  const config = loadPreset(preset);
  const weights = initWeights(e, config, 1);
  const model = new NetworkScoreModel(weights);
  const shape = [batch, config.channels, config.imageSize, config.imageSize];
  const x = e.keep(randomTensor(e, shape, 'normal', { seed: 1 }));
  const u = e.keep(randomTensor(e, shape, 'rademacher', { seed: 2 }));
  const t = Float64Array.from({ length: batch }, (_, i) => 0.1 + (0.8 * i) / batch);
  const labels = config.numClasses ? Uint32Array.from({ length: batch }, (_, i) => i % config.numClasses) : null;
  const net = (xx: typeof x) => model.epsilon(e, xx, t, labels);

  const forwardMs = await timeIt(e, () => void net(x));
  const tapeForwardMs = await timeIt(e, () => void vjp(e, net, [x]).output);
  const vjpTotalMs = await timeIt(e, () => void vjp(e, net, [x]).backward(u));
  const hvpTotalMs = await timeIt(e, () => void vjpAndHvp(e, net, x, u, u).hvp);
  // Forward mode: net(x) and J·u in one pass (fused dual kernels): the other way to get a Hutchinson uᵀJu.
  const jvpTotalMs = await timeIt(e, () => void jvp(e, net, [x], [u]).tangent);
  // The backward pass alone: the tape's forward is synced before the clock starts.
  const backward: number[] = [];
  for (let r = 0; r <= repeats; r++) {
    await e.scope(async () => {
      const tape = vjp(e, net, [x]);
      await e.sync();
      const t0 = performance.now();
      tape.backward(u);
      await e.sync();
      if (r > 0) backward.push(performance.now() - t0);
    });
  }
  backward.sort((a, b) => a - b);
  const vjpMs = backward[Math.floor(backward.length / 2)];
  const gflop = forwardFlops(config, batch) / 1e9;
  rows.push({
    preset,
    batch,
    gflopPerForward: gflop,
    forwardMs,
    forwardGflops: gflop / (forwardMs / 1000),
    tapeForwardMs,
    vjpMs,
    vjpTotalMs,
    hvpTotalMs,
    vjpOverForward: vjpMs / forwardMs,
    vjpTotalOverForward: vjpTotalMs / forwardMs,
    hvpOverForward: hvpTotalMs / forwardMs,
    jvpTotalMs,
    jvpTotalOverForward: jvpTotalMs / forwardMs,
  });
  process.stderr.write(`${preset}: forward ${forwardMs.toFixed(1)} ms, vjp ${vjpMs.toFixed(1)} ms (total ${vjpTotalMs.toFixed(1)}), jvp total ${jvpTotalMs.toFixed(1)} ms, hvp ${hvpTotalMs.toFixed(1)} ms\n`);
  x.dispose();
  u.dispose();
  weights.dispose();
}

const adapter = (e.info.device || e.info.description || 'adapter').split(/[^A-Za-z0-9]+/)[0] || 'adapter';
const md = [
  `# Network benchmark: ${e.info.description || e.info.device}`,
  '',
  `node ${process.versions.node}, ${new Date().toISOString()}; median of ${repeats} after a warm-up. Command: \`npm run bench -- network --presets ${values.presets} --batch ${batch}\`.`,
  '',
  '| preset | batch | GFLOP/forward | forward ms | GFLOP/s | VJP (backward) ms | VJP / fwd | VJP total / fwd | HVP total ms | HVP / fwd | JVP total ms | JVP total / fwd |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map(
    (r) =>
      `| ${r.preset} | ${r.batch} | ${r.gflopPerForward.toFixed(2)} | ${r.forwardMs.toFixed(1)} | ${r.forwardGflops.toFixed(1)} | ` +
      `${r.vjpMs.toFixed(1)} | ${r.vjpOverForward.toFixed(2)} | ${r.vjpTotalOverForward.toFixed(2)} | ${r.hvpTotalMs.toFixed(1)} | ${r.hvpOverForward.toFixed(2)} | ` +
      `${r.jvpTotalMs.toFixed(1)} | ${r.jvpTotalOverForward.toFixed(2)} |`,
  ),
  '',
].join('\n');
const dir = join(dirname(fileURLToPath(import.meta.url)), 'results');
mkdirSync(dir, { recursive: true });
const write = (name: string, text: string) => {
  const tmp = join(dir, `.${name}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, join(dir, name));
};
write(`network-${adapter}.json`, JSON.stringify({ adapter: e.info, rows }, null, 2) + '\n');
write(`network-${adapter}.md`, md);
console.log(md);
await e.destroy();
