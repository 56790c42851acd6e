/**
 * ×2 spatial resampling of NCHW tensors, the two families of score_sde's up_or_down_sampling.py:
 * - 'naive' (fir=False, what DDPM++ cont. uses): nearest ×2 upsample (naive_upsample_2d) and 2×2 average pool
 *   (naive_downsample_2d);
 * - 'fir' (fir=True): upsample_2d / downsample_2d = upfirdn2d with the separable kernel [1,3,3,1], factor 2, gain 1
 *   and score_sde's padding. Per axis that is
 *     up:   y[2i] = ¼x[i−1] + ¾x[i],   y[2i+1] = ¾x[i] + ¼x[i+1]
 *     down: y[o]  = (x[2o−1] + 3x[2o] + 3x[2o+1] + x[2o+2]) / 8
 *   with zeros outside the image (so a constant image keeps its value except in the outermost row/column).
 *
 * Every map is linear, and the two directions of each family are adjoint up to a factor: up(g)ᵀ = down(4g) and
 * down(g)ᵀ = up(g/4). So the VJP of one op is the other op, the JVP is the op itself, and the pair is closed under
 * differentiation (forward-over-reverse works without extra kernels). `gain` carries those factors.
 *
 * One low-resolution pixel per invocation (its 2×2 high-resolution block as two vec2 rows), no workgroup memory:
 * the ops are memory-bound, and neighbouring taps are shared through caches on GPUs and lavapipe alike.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type Op } from '../engine/autodiff.js';
import { defineProgram } from '../engine/program.js';
import { reads, u32s, writes } from '../engine/kernel.js';
import { flatMain, grid } from '../engine/wgsl.js';
import { SbgcError, ShapeError } from '../engine/errors.js';

const WG = 256;

export type ResampleFilter = 'naive' | 'fir';

export interface ResampleParams {
  /** 'naive': nearest / 2×2 mean; 'fir': score_sde's [1,3,3,1] FIR. */
  filter: ResampleFilter;
  /** Output multiplier (default 1); the adjoints use 4 and ¼. */
  gain?: number;
}

function nchw(x: Tensor, what: string): [number, number, number, number] {
  if (x.rank !== 4) throw new ShapeError(`${what}: input ${x.describe()} must be NCHW (rank 4)`);
  return [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
}

function gainOf(p: ResampleParams, what: string): number {
  const g = p.gain ?? 1;
  if (!Number.isFinite(g)) throw new SbgcError(`${what}: gain must be finite, got ${g}`);
  if (p.filter !== 'naive' && p.filter !== 'fir') throw new SbgcError(`${what}: unknown filter '${String(p.filter)}'`);
  return g;
}

// Both directions iterate over the low-resolution grid [planes, LH, LW]: invocation i is one low-res pixel
// (plane p = n·C + c, row ly, column lx) and the 2×2 high-res block above it. The high-res tensor is bound as
// vec2<f32> (its rows have 2·LW floats), so a block row is one vec2. LH, LW are pipeline constants: division by a
// constant compiles to a multiply-shift, which made these kernels 1.5–2× faster on lavapipe than uniform sizes.
const INDEX = `
  let lx = i % LW;
  let r = i / LW;
  let ly = r % LH;
  let p = r / LH;
  let plane = p * LH * LW;
  let row0 = (p * 2u * LH + 2u * ly) * LW + lx;
  let row1 = row0 + LW;
  // Neighbouring low-res row/column indices, clamped: out-of-image taps get weight 0 and never read outside.
  let yPrev = select(ly, ly - 1u, ly > 0u);
  let yNext = select(ly, ly + 1u, ly + 1u < LH);
  let xPrev = select(lx, lx - 1u, lx > 0u);
  let xNext = select(lx, lx + 1u, lx + 1u < LW);`;

/** Per axis FIR up: hi[2i] = ¼·lo[i−1] + ¾·lo[i], hi[2i+1] = ¾·lo[i] + ¼·lo[i+1] (0 outside). */
const UP_BODY: Record<ResampleFilter, string> = {
  naive: `
  let v = vec2<f32>(params.gain * lo[i]);
  hi[row0] = v;
  hi[row1] = v;`,
  fir: `
  let wl = select(0.0, 0.25, lx > 0u);
  let wr = select(0.0, 0.25, lx + 1u < LW);
  let wt = select(0.0, 0.25, ly > 0u);
  let wb = select(0.0, 0.25, ly + 1u < LH);
  let rt = plane + yPrev * LW;
  let rm = plane + ly * LW;
  let rb = plane + yNext * LW;
  let ht = vec2<f32>(wl * lo[rt + xPrev] + 0.75 * lo[rt + lx], 0.75 * lo[rt + lx] + wr * lo[rt + xNext]);
  let hm = vec2<f32>(wl * lo[rm + xPrev] + 0.75 * lo[rm + lx], 0.75 * lo[rm + lx] + wr * lo[rm + xNext]);
  let hb = vec2<f32>(wl * lo[rb + xPrev] + 0.75 * lo[rb + lx], 0.75 * lo[rb + lx] + wr * lo[rb + xNext]);
  hi[row0] = params.gain * (wt * ht + 0.75 * hm);
  hi[row1] = params.gain * (0.75 * hm + wb * hb);`,
};

/** Per axis FIR down: lo[o] = (hi[2o−1] + 3·hi[2o] + 3·hi[2o+1] + hi[2o+2]) / 8 (0 outside). */
const DOWN_BODY: Record<ResampleFilter, string> = {
  naive: `
  let a = hi[row0];
  let b = hi[row1];
  lo[i] = params.gain * 0.25 * ((a.x + a.y) + (b.x + b.y));`,
  fir: `
  let wx = vec4<f32>(select(0.0, 0.125, lx > 0u), 0.375, 0.375, select(0.0, 0.125, lx + 1u < LW));
  let rt = (p * 2u * LH + 2u * yPrev + 1u) * LW; // hi row 2ly − 1 (clamped, weight 0 at the top)
  let rb = (p * 2u * LH + 2u * yNext) * LW;      // hi row 2ly + 2 (clamped, weight 0 at the bottom)
  let r0 = row0 - lx;
  let r1 = row1 - lx;
  let s = select(0.0, 0.125, ly > 0u) * dot(wx, vec4<f32>(hi[rt + xPrev].y, hi[rt + lx], hi[rt + xNext].x))
    + 0.375 * dot(wx, vec4<f32>(hi[r0 + xPrev].y, hi[r0 + lx], hi[r0 + xNext].x))
    + 0.375 * dot(wx, vec4<f32>(hi[r1 + xPrev].y, hi[r1 + lx], hi[r1 + xNext].x))
    + select(0.0, 0.125, ly + 1u < LH) * dot(wx, vec4<f32>(hi[rb + xPrev].y, hi[rb + lx], hi[rb + xNext].x));
  lo[i] = params.gain * s;`,
};

/** Output tensor names, made once (an op call builds no string). */
const UP_NAMES: Record<ResampleFilter, string> = { naive: 'upsample2x.naive', fir: 'upsample2x.fir' };
const DOWN_NAMES: Record<ResampleFilter, string> = { naive: 'downsample2x.naive', fir: 'downsample2x.fir' };

/** One program per direction, filter and low-res size (LH, LW are pipeline constants, see INDEX). */
const RESAMPLE = defineProgram<{ up: boolean; filter: ResampleFilter; LH: number; LW: number }>({
  name: 'resample',
  spec: { up: true, filter: true, LH: true, LW: true },
  build: ({ up, filter, LH, LW }) => ({
    name: `resample.${up ? 'up' : 'down'}2x.${filter}`,
    buffers: up
      ? [...reads('lo'), { name: 'hi', type: 'vec2<f32>', access: 'read_write' }]
      : [{ name: 'hi', type: 'vec2<f32>' }, ...writes('lo')],
    uniforms: [...u32s('total'), ['gain', 'f32']],
    workgroupSize: [WG],
    constants: { LH, LW },
    body: `
override LH: u32;
override LW: u32;
${flatMain({ wg: WG, count: 'params.total', body: `${INDEX}${(up ? UP_BODY : DOWN_BODY)[filter]}` })}`,
  }),
});

/** One dispatch over the low-res grid; `up` writes `hi` from `lo`, otherwise `lo` from `hi`. */
function launch(e: Engine, up: boolean, filter: ResampleFilter, lo: Tensor, hi: Tensor, gain: number): void {
  const spec = { up, filter, LH: lo.shape[2], LW: lo.shape[3] };
  e.run(RESAMPLE, spec, { lo, hi }, { total: lo.size, gain }, grid(e, lo.size, WG));
}

/** [N, C, H, W] → [N, C, 2H, 2W]: nearest ('naive') or score_sde's upsample_2d ('fir'), times gain. */
export const upsample2x: Op<ResampleParams> = defineOp({
  name: 'resample.up2x',
  inputs: ['x'],
  forward(e, [x], params) {
    const what = `upsample2x (${params.filter})`;
    const gain = gainOf(params, what);
    const [n, c, h, w] = nchw(x, what);
    const out = e.empty([n, c, 2 * h, 2 * w], 'f32', UP_NAMES[params.filter]);
    if (out.size > 0) launch(e, true, params.filter, x, out, gain);
    return out;
  },
  vjp: (e, { params }, ct) => [downsample2x(e, [ct], { filter: params.filter, gain: 4 * (params.gain ?? 1) })],
  jvp: (e, { params }, [tx]) => (tx ? upsample2x(e, [tx], params) : null),
});

/** [N, C, H, W] → [N, C, H/2, W/2] for even H, W: 2×2 mean ('naive') or score_sde's downsample_2d ('fir'). */
export const downsample2x: Op<ResampleParams> = defineOp({
  name: 'resample.down2x',
  inputs: ['x'],
  forward(e, [x], params) {
    const what = params.filter === 'naive' ? 'avgPool2x (naive downsample2x)' : 'downsample2x (fir)';
    const gain = gainOf(params, what);
    const [n, c, h, w] = nchw(x, what);
    // The network halves 32→16→8→4 only; score_sde's reshape-based mean needs even sizes too.
    if (h % 2 !== 0 || w % 2 !== 0) {
      throw new ShapeError(`${what}: input ${x.describe()} must have even height and width, got ${h}×${w}`);
    }
    const out = e.empty([n, c, h / 2, w / 2], 'f32', DOWN_NAMES[params.filter]);
    if (out.size > 0) launch(e, false, params.filter, out, x, gain);
    return out;
  },
  vjp: (e, { params }, ct) => [upsample2x(e, [ct], { filter: params.filter, gain: (params.gain ?? 1) / 4 })],
  jvp: (e, { params }, [tx]) => (tx ? downsample2x(e, [tx], params) : null),
});

/** score_sde naive_upsample_2d: nearest ×2. */
export function upsampleNearest2x(e: Engine, x: Tensor): Tensor {
  return upsample2x(e, [x], { filter: 'naive' });
}

/** score_sde naive_downsample_2d: 2×2 average pool, stride 2 (even H, W). */
export function avgPool2x(e: Engine, x: Tensor): Tensor {
  return downsample2x(e, [x], { filter: 'naive' });
}

/** score_sde upsample_2d(x, k=[1,3,3,1], factor=2, gain=1). */
export function firUpsample2x(e: Engine, x: Tensor): Tensor {
  return upsample2x(e, [x], { filter: 'fir' });
}

/** score_sde downsample_2d(x, k=[1,3,3,1], factor=2, gain=1) (even H, W). */
export function firDownsample2x(e: Engine, x: Tensor): Tensor {
  return downsample2x(e, [x], { filter: 'fir' });
}
