/**
 * Inverted dropout with a counter-based mask: element i is kept iff u_i ≥ rate, where u_i is the Philox uniform
 * that `drawHost(n, 'uniform', {seed, stream, offset})` gives for index i (word i mod 4 of block offset + ⌊i/4⌋),
 * and kept elements are scaled by 1/(1 − rate). The mask is a pure function of (seed, stream, offset, i): no mask
 * buffer exists, the VJP and JVP regenerate it, and a host twin (`dropoutKeepMask`) reproduces it bit for bit.
 * Indices count from the start of the tensor passed in (a view counts from its own first element).
 *
 * Callers give each dropout site and each training step its own (seed, stream) — e.g. stream = layer index and
 * seed = the step's seed — so masks never repeat across layers or steps.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type Op } from '../engine/autodiff.js';
import { drawHost, philoxWgsl, seedKey, type Seed } from '../engine/rng.js';
import { defineProgram } from '../engine/program.js';
import { f32s, reads, u32s, writes } from '../engine/kernel.js';
import { flatMain, grid } from '../engine/wgsl.js';
import { SbgcError, ShapeError } from '../engine/errors.js';

const WG = 64;

export interface DropoutParams {
  /** Probability of dropping an element, in [0, 1). */
  rate: number;
  seed: Seed;
  /** Philox stream (default 0): one per dropout site. */
  stream?: number;
  /** First Philox block (default 0). */
  offset?: number;
}

export interface DropoutOptions extends DropoutParams {
  /** false (eval mode) makes dropout the identity. */
  training: boolean;
}

function checkRate(rate: number): void {
  if (!(rate >= 0 && rate < 1)) throw new SbgcError(`dropout: rate must be in [0, 1), got ${rate}`);
}

/** One Philox block (4 uniforms, laid out as rng.ts's uniform draw) per invocation; `dual` masks tx too. */
const DROPOUT = defineProgram<{ dual: boolean }>({
  name: 'dropout',
  spec: { dual: true },
  build: ({ dual }) => ({
    name: dual ? 'dropout.dual' : 'dropout',
    buffers: dual ? [...reads('x', 'tx'), ...writes('out', 'tout')] : [...reads('x'), ...writes('out')],
    uniforms: [...u32s('n', 'key0', 'key1', 'stream', 'offset_lo', 'offset_hi'), ...f32s('rate', 'scale')],
    workgroupSize: [WG],
    body: `${philoxWgsl}
${flatMain({
  wg: WG,
  index: 'blk',
  // Block blk covers elements 4·blk … 4·blk + 3: it has work iff 4·blk < n.
  prologue: '  let base = blk * 4u;\n',
  count: '(params.n + 3u) / 4u',
  body: `  let lo = params.offset_lo + blk;
  let hi = params.offset_hi + select(0u, 1u, lo < blk);
  let w = philox(vec4<u32>(lo, hi, params.stream, 0u), vec2<u32>(params.key0, params.key1));
  for (var j = 0u; j < 4u; j++) {
    let i = base + j;
    if (i >= params.n) { break; }
    let u = f32(w[j] >> 8u) * 5.9604644775390625e-8;
    // x·(mask·scale) as PyTorch does: a dropped NaN stays NaN.
    let m = select(0.0, params.scale, u >= params.rate);
    out[i] = x[i] * m;${dual ? '\n    tout[i] = tx[i] * m;' : ''}
  }`,
})}`,
  }),
});

function launch(e: Engine, p: DropoutParams, x: Tensor, out: Tensor, tx: Tensor | null, tout: Tensor | null): void {
  const dual = tx !== null && tout !== null;
  const [key0, key1] = seedKey(p.seed);
  const offset = p.offset ?? 0;
  const bindings: Record<string, Tensor> = dual ? { x, tx: tx!, out, tout: tout! } : { x, out };
  e.run(
    DROPOUT,
    { dual },
    bindings,
    {
      n: x.size,
      key0,
      key1,
      stream: p.stream ?? 0,
      offset_lo: offset >>> 0,
      offset_hi: Math.floor(offset / 2 ** 32) >>> 0,
      rate: p.rate,
      scale: 1 / (1 - p.rate),
    },
    grid(e, Math.ceil(x.size / 4), WG),
  );
}

/** x·mask/(1 − rate), always dispatching (use `dropout` for the eval-mode / rate-0 shortcut). Linear in x. */
export const dropoutMasked: Op<DropoutParams> = defineOp({
  name: 'dropout',
  inputs: ['x'],
  forward(e, [x], p) {
    checkRate(p.rate);
    const out = e.empty(x.shape, 'f32', 'dropout');
    if (x.size > 0) launch(e, p, x, out, null, null);
    return out;
  },
  // Same (seed, stream, offset) → same mask: the adjoint of a diagonal map is itself.
  vjp: (e, { params }, ct) => [dropoutMasked(e, [ct], params)],
  jvp: (e, { params }, [tx]) => (tx ? dropoutMasked(e, [tx], params) : null),
  dual(e, [x], [tx], p) {
    checkRate(p.rate);
    if (!tx) return [dropoutMasked.def.forward(e, [x], p), null];
    if (tx.size !== x.size) throw new ShapeError(`dropout: tangent ${tx.describe()} does not match ${x.describe()}`);
    const out = e.empty(x.shape, 'f32', 'dropout');
    const tout = e.empty(x.shape, 'f32', 'dropout.tangent');
    if (x.size > 0) launch(e, p, x, out, tx, tout); // one Philox evaluation serves primal and tangent
    return [out, tout];
  },
});

/** Dropout as the network uses it: the identity (the same tensor, no dispatch) in eval mode or at rate 0. */
export function dropout(e: Engine, x: Tensor, options: DropoutOptions): Tensor {
  checkRate(options.rate);
  if (!options.training || options.rate === 0) return x;
  const { training: _training, ...params } = options;
  return dropoutMasked(e, [x], params);
}

/** Host twin of the mask: keep[i] = 1 where element i survives. */
export function dropoutKeepMask(n: number, p: DropoutParams): Uint8Array {
  checkRate(p.rate);
  const u = drawHost(n, 'uniform', { seed: p.seed, stream: p.stream ?? 0, offset: p.offset ?? 0 }) as Float32Array;
  const rate = Math.fround(p.rate);
  return Uint8Array.from(u, (v) => (v >= rate ? 1 : 0));
}
