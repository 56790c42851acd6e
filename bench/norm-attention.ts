/**
 * `npm run bench -- norm-attention [gn|attention|block|reduce] [batch]`: wall-clock timings (min of 3 after a warm-up,
 * GPU work awaited) of GroupNorm and its duals, the attention-core variants and duals, the whole AttnBlockpp forward
 * and HVP, and the reductions — on whatever adapter the engine finds (lavapipe in CI). Prints a table.
 */
import { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { vjpAndHvp } from '../engine/autodiff.js';
import { scale } from '../kernels/elementwise.js';
import { groupNorm, groupNormBackward, groupNormGammaGrad, scoreSdeGroupNorm } from '../kernels/group-norm.js';
import { attentionCore, attnBlock, overrideAttentionVariant, type AttentionVariant } from '../kernels/attention.js';
import { ninApply } from '../kernels/attention-products.js';
import { perSampleDot, sumAll } from '../kernels/reductions.js';

const [what = 'all', batchArg = '1'] = process.argv.slice(2);
const batch = Number(batchArg);
const e = await Engine.create();
console.log(`adapter: ${e.info.description || e.info.device} (cpu: ${e.info.isCpu}), batch ${batch}`);

async function time(name: string, fn: () => unknown, flops = 0): Promise<void> {
  e.scope(() => void fn());
  await e.sync();
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    e.scope(() => void fn());
    await e.sync();
    best = Math.min(best, performance.now() - t0);
  }
  const rate = flops ? `  ${(flops / best / 1e6).toFixed(2)} GFLOP/s` : '';
  console.log(`  ${name.padEnd(42)} ${best.toFixed(2).padStart(9)} ms${rate}`);
}

const rand = (shape: number[], s = 1): Tensor =>
  e.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (Math.random() - 0.5) * s), shape);

if (what === 'all' || what === 'gn') {
  for (const [c, h] of [[128, 32], [256, 16], [256, 8]]) {
    const shape = [batch, c, h, h];
    const p = scoreSdeGroupNorm(c);
    const [x, tx, gy] = [rand(shape), rand(shape), rand(shape)];
    const [g, b] = [rand([c]), rand([c])];
    console.log(`GroupNorm [${shape}], ${p.groups} groups`);
    await time('scale (1 read + 1 write baseline)', () => scale(e, [x], { alpha: 2 }));
    await time('groupNorm', () => groupNorm(e, [x, g, b], p));
    await time('groupNorm dual (ẋ)', () => groupNorm.def.dual!(e, [x, g, b], [tx, null, null], p));
    await time('groupNormBackward', () => groupNormBackward(e, [x, g, gy], p));
    await time('groupNormBackward dual (ẋ, ġy)', () => groupNormBackward.def.dual!(e, [x, g, gy], [tx, null, tx], p));
    await time('groupNormGammaGrad', () => groupNormGammaGrad(e, [x, gy], p));
  }
}

const attnShapes = [[16, 32], [16, 128], [16, 256], [7, 32], [7, 128], [7, 256]];

if (what === 'all' || what === 'attention') {
  for (const [h, c] of attnShapes) {
    const shape = [batch, c, h, h];
    const s = h * h;
    const [q, k, v, t] = [rand(shape), rand(shape), rand(shape), rand(shape)];
    const alpha = 1 / Math.sqrt(c);
    const flops = 4 * batch * s * s * c;
    console.log(`attention core [${shape}] (HW = ${s})`);
    for (const variant of ['flash', 'scores', 'unfused'] as AttentionVariant[]) {
      overrideAttentionVariant(variant);
      await time(`forward ${variant}`, () => attentionCore(e, [q, k, v], { alpha }), flops);
    }
    overrideAttentionVariant('flash');
    await time('dual, fused flash kernel', () => attentionCore.def.dual!(e, [q, k, v], [t, t, t], { alpha }), 2 * flops);
    overrideAttentionVariant('unfused');
    await time('dual, composed', () => attentionCore.def.dual!(e, [q, k, v], [t, t, t], { alpha }), 2 * flops);
    overrideAttentionVariant(null);
    const W = rand([c, c], 1 / Math.sqrt(c));
    await time('one NIN', () => ninApply(e, [q, W, null], { transposed: false }), 2 * batch * c * c * s);
  }
}

if (what === 'all' || what === 'block') {
  for (const [h, c] of attnShapes) {
    const shape = [batch, c, h, h];
    const s = h * h;
    const nin = () => ({ W: rand([c, c], 1 / Math.sqrt(c)), b: rand([c], 0.1) });
    const params = { gamma: rand([c]), beta: rand([c]), nin0: nin(), nin1: nin(), nin2: nin(), nin3: nin() };
    const [x, u, v] = [rand(shape), rand(shape), rand(shape)];
    console.log(`AttnBlockpp [${shape}]`);
    await time('forward', () => attnBlock(e, x, params), batch * (8 * c * c * s + 4 * s * s * c));
    await time('HVP of ⟨u, block(x)⟩ (forward-over-reverse)', () => vjpAndHvp(e, (xx) => attnBlock(e, xx, params), x, u, v));
  }
}

if (what === 'all' || what === 'reduce') {
  for (const n of [1 << 20, 65535 * 256 + 77]) {
    const x = rand([n]);
    console.log(`reductions over ${n} values`);
    await time('scale (1 read + 1 write baseline)', () => scale(e, [x], { alpha: 2 }));
    await time('sumAll', () => sumAll(e, [x], {}));
    const rows = x.reshape([1, n]);
    await time('perSampleDot (x, x)', () => perSampleDot(e, [rows, rows], {}));
  }
}

await e.destroy();
