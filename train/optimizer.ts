/**
 * Adam with linear learning-rate warm-up, global-norm gradient clipping and an EMA of the parameters, all on the
 * GPU over a ParamArena (SPEC §6; score_sde's `optimization_manager` + flax Adam):
 *
 *   ‖g‖ = √(Σ over every parameter of g²)                                  (two-stage reduction, 2 dispatches)
 *   ĝ = g · c,  c = clip / max(‖g‖, clip)                                    (score_sde's clip; no clip when clip = 0)
 *   m ← β₁m + (1 − β₁)ĝ,  v ← β₂v + (1 − β₂)ĝ²
 *   p ← p − lr_k/(1 − β₁ᵏ) · m / (√v/√(1 − β₂ᵏ) + eps)                     (k = 1, 2, … the update count)
 *   ema ← ema + (1 − d)(p − ema)                                             (= d·ema + (1 − d)·p, exact when p = ema)
 *
 * The clip factor is computed inside the Adam kernel from the reduced norm, so clipping costs no extra pass, and
 * the EMA is fused into the same kernel: one dispatch per arena segment updates p, m, v and ema in place.
 *
 * Warm-up: lr_k = lr · min(k / warmup, 1) for the k-th update (k from 1). score_sde multiplies by
 * min(step / warmup, 1) with its step counter still at 0 for the first update (a zero-lr first step); we count
 * from 1 so no step is wasted — the schedules differ by one step.
 */
import type { Engine } from '../engine/engine.js';
import { SbgcError } from '../engine/errors.js';
import { defineFixedProgram, defineProgram } from '../engine/program.js';
import { f32s, reads, u32s, writes, type BufferDecl } from '../engine/kernel.js';
import { flatMain, grid } from '../engine/wgsl.js';
import type { Tensor } from '../engine/tensor.js';
import type { ParamArena } from './param-arena.js';

export interface AdamOptions {
  /** Peak learning rate. */
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Linear warm-up length in updates (0 = none). */
  warmupSteps: number;
  /** Global-norm clip threshold (0 = no clipping). */
  gradClipNorm: number;
  /** EMA decay d in [0, 1); null = no EMA update (the arena may still hold one). */
  emaDecay: number | null;
}

export const DEFAULT_ADAM: AdamOptions = {
  lr: 2e-4,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  warmupSteps: 5000,
  gradClipNorm: 1,
  emaDecay: 0.9999,
};

export function checkAdamOptions(o: AdamOptions): void {
  const bad = (field: string, want: string, v: unknown): never => {
    throw new SbgcError(`optimizer: ${field} must be ${want}, got ${String(v)}`);
  };
  if (!(o.lr > 0 && Number.isFinite(o.lr))) bad('lr', 'a positive finite number', o.lr);
  if (!(o.beta1 >= 0 && o.beta1 < 1)) bad('beta1', 'in [0, 1)', o.beta1);
  if (!(o.beta2 >= 0 && o.beta2 < 1)) bad('beta2', 'in [0, 1)', o.beta2);
  if (!(o.eps > 0)) bad('eps', 'positive', o.eps);
  if (!(Number.isInteger(o.warmupSteps) && o.warmupSteps >= 0)) bad('warmupSteps', 'a non-negative integer', o.warmupSteps);
  if (!(o.gradClipNorm >= 0 && Number.isFinite(o.gradClipNorm))) bad('gradClipNorm', 'a finite number >= 0', o.gradClipNorm);
  if (o.emaDecay !== null && !(o.emaDecay >= 0 && o.emaDecay < 1)) bad('emaDecay', 'in [0, 1)', o.emaDecay);
}

/** Learning rate of the k-th update (k = 1, 2, …). */
export function learningRateAt(o: Pick<AdamOptions, 'lr' | 'warmupSteps'>, k: number): number {
  return o.warmupSteps > 0 ? o.lr * Math.min(k / o.warmupSteps, 1) : o.lr;
}

/** The scalars of the k-th update as the kernel receives them (float64 here, rounded to f32 in the uniforms). */
export function adamStepScalars(o: AdamOptions, k: number): { stepSize: number; invSqrtBc2: number } {
  return {
    stepSize: learningRateAt(o, k) / (1 - o.beta1 ** k),
    invSqrtBc2: 1 / Math.sqrt(1 - o.beta2 ** k),
  };
}

const WG = 64;
const REDUCE_WG = 256;
/** Vec4s each invocation of the first reduction stage sums (strided), at most. */
const VEC4_PER_THREAD = 64;
const MAX_PARTIALS = 16384;

/** vec4<f32> storage buffers (every arena segment is a whole number of vec4s). */
function vec4s(access: 'read' | 'read_write', ...names: string[]): BufferDecl[] {
  return names.map((name) => ({ name, type: 'vec4<f32>', access }));
}

export class AdamOptimizer {
  /** Updates done so far (the next update is number `step + 1`). */
  step = 0;
  /** ‖g‖² of the latest update (on the GPU; valid in command order after `update`). */
  readonly gradNormSq: Tensor;
  private readonly partials: Tensor;
  private readonly partialBase: number[];
  private readonly partialCount: number[];

  constructor(
    readonly engine: Engine,
    readonly arena: ParamArena,
    readonly options: AdamOptions,
  ) {
    checkAdamOptions(options);
    if (options.emaDecay !== null && !arena.hasEma) throw new SbgcError('optimizer: emaDecay is set but the arena keeps no EMA');
    const e = engine;
    this.partialBase = [];
    this.partialCount = [];
    let total = 0;
    for (const seg of arena.segments) {
      const n4 = seg.size / 4;
      const p = Math.min(MAX_PARTIALS, Math.max(1, Math.ceil(n4 / VEC4_PER_THREAD)));
      this.partialBase.push(total);
      this.partialCount.push(p);
      total += p;
    }
    this.partials = e.keep(e.zeros([total], 'f32', 'adam.norm-partials'));
    this.gradNormSq = e.keep(e.zeros([1], 'f32', 'adam.grad-norm²'));
  }

  /**
   * Records one update from the gradients already loaded into the arena's gradient slots: the norm reduction
   * (needed only when clipping) and one fused Adam(+EMA) dispatch per segment.
   */
  update(): void {
    const e = this.engine;
    const o = this.options;
    this.recordGradNorm();
    const k = this.step + 1;
    const { stepSize, invSqrtBc2 } = adamStepScalars(o, k);
    const withEma = o.emaDecay !== null;
    for (const seg of this.arena.segments) {
      const bindings: Record<string, Tensor> = { p: seg.param, m: seg.m, v: seg.v, g: seg.grad, normsq: this.gradNormSq };
      if (withEma) bindings.ema = seg.ema!;
      e.run(
        ADAM,
        { withEma },
        bindings,
        {
          n4: seg.size / 4,
          b1: o.beta1,
          omb1: 1 - o.beta1,
          b2: o.beta2,
          omb2: 1 - o.beta2,
          step_size: stepSize,
          inv_sqrt_bc2: invSqrtBc2,
          eps: o.eps,
          clip: o.gradClipNorm,
          omd: withEma ? 1 - o.emaDecay! : 0,
        },
        grid(e, seg.size / 4, WG),
      );
    }
    this.step = k;
  }

  /** Records ‖g‖² of the arena's gradient slots into `gradNormSq` (fixed summation order: deterministic). */
  recordGradNorm(): void {
    const e = this.engine;
    this.arena.segments.forEach((seg, i) => {
      const p = this.partialCount[i];
      e.run(NORM_PARTIALS, {}, { g: seg.grad, partials: this.partials }, { n4: seg.size / 4, threads: p, base: this.partialBase[i] }, grid(e, p, WG));
    });
    e.run(NORM_FINISH, {}, { partials: this.partials, out: this.gradNormSq }, { n: this.partials.size }, [1]);
  }

  dispose(): void {
    this.partials.dispose();
    this.gradNormSq.dispose();
  }
}

/** Records an EMA update ema ← ema + (1 − d)(p − ema) over every segment (the unfused form, e.g. after a load). */
export function emaUpdate(e: Engine, arena: ParamArena, decay: number): void {
  if (!(decay >= 0 && decay < 1)) throw new SbgcError(`emaUpdate: decay must be in [0, 1), got ${decay}`);
  for (const seg of arena.segments) {
    if (!seg.ema) throw new SbgcError('emaUpdate: the arena keeps no EMA');
    e.run(EMA, {}, { p: seg.param, ema: seg.ema }, { n4: seg.size / 4, omd: 1 - decay }, grid(e, seg.size / 4, WG));
  }
}

const EMA = defineFixedProgram({
  name: 'train.ema',
  buffers: [...vec4s('read', 'p'), ...vec4s('read_write', 'ema')],
  uniforms: [...u32s('n4'), ...f32s('omd')],
  workgroupSize: [WG],
  body: flatMain({
    wg: WG,
    count: 'params.n4',
    body: `  let e = ema[i];
  ema[i] = e + params.omd * (p[i] - e);`,
  }),
});

/** Fused Adam (+ EMA when `withEma`): one invocation updates one vec4 of p, m, v (and ema). */
const ADAM = defineProgram<{ withEma: boolean }>({
  name: 'train.adam',
  spec: { withEma: true },
  build: ({ withEma }) => ({
    name: withEma ? 'train.adam.ema' : 'train.adam',
    buffers: [
      ...vec4s('read_write', 'p', 'm', 'v'),
      ...vec4s('read', 'g'),
      ...reads('normsq'),
      ...(withEma ? vec4s('read_write', 'ema') : []),
    ],
    uniforms: [...u32s('n4'), ...f32s('b1', 'omb1', 'b2', 'omb2', 'step_size', 'inv_sqrt_bc2', 'eps', 'clip', 'omd')],
    workgroupSize: [WG],
    body: flatMain({
      wg: WG,
      count: 'params.n4',
      body: `  // Clip factor from the reduced norm: every invocation recomputes the same scalar (cheaper than a pass).
  var c = 1.0;
  if (params.clip > 0.0) { c = params.clip / max(sqrt(normsq[0]), params.clip); }
  let gi = g[i] * c;
  let mi = params.b1 * m[i] + params.omb1 * gi;
  let vi = params.b2 * v[i] + params.omb2 * (gi * gi);
  m[i] = mi;
  v[i] = vi;
  let pi = p[i] - params.step_size * mi / (sqrt(vi) * params.inv_sqrt_bc2 + params.eps);
  p[i] = pi;
  ${withEma ? 'let e = ema[i]; ema[i] = e + params.omd * (pi - e);' : ''}`,
    }),
  }),
});

/** Stage 1: invocation j of `threads` sums g² over the vec4s j, j + threads, … (coalesced on GPUs, no barriers). */
const NORM_PARTIALS = defineFixedProgram({
  name: 'train.gradnorm.partials',
  buffers: [...vec4s('read', 'g'), ...writes('partials')],
  uniforms: u32s('n4', 'threads', 'base'),
  workgroupSize: [WG],
  body: flatMain({
    wg: WG,
    index: 'j',
    count: 'params.threads',
    body: `  var acc = vec4<f32>(0.0);
  for (var k = j; k < params.n4; k += params.threads) { let x = g[k]; acc += x * x; }
  partials[params.base + j] = (acc.x + acc.y) + (acc.z + acc.w);`,
  }),
});

/** Stage 2: one workgroup sums the partials (strided, then a tree). */
const NORM_FINISH = defineFixedProgram({
  name: 'train.gradnorm.finish',
  buffers: [...reads('partials'), ...writes('out')],
  uniforms: u32s('n'),
  workgroupSize: [REDUCE_WG],
  body: `
var<workgroup> part: array<f32, ${REDUCE_WG}>;
fn main(@builtin(local_invocation_index) lid: u32) {
  var s = 0.0;
  for (var k = lid; k < params.n; k += ${REDUCE_WG}u) { s += partials[k]; }
  part[lid] = s;
  workgroupBarrier();
  for (var w = ${REDUCE_WG / 2}u; w > 0u; w >>= 1u) {
    if (lid < w) { part[lid] += part[lid + w]; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[0] = part[0]; }
}`,
});
