/**
 * Kernels on a GPU-resident batch ODE state Y [B, N] (f32, row b = one independent system) and its Runge–Kutta
 * stages. The stages K₀…K_s live in ONE buffer (`StageBuffer`, one slot per stage of the tableau), so that a stage
 * combination binds a fixed, small number of buffers (≤ 8 on every adapter) whatever the number of terms.
 *
 * None of these is differentiated: the solver state is outside every autodiff trace (the score VJP is taken
 * inside the right-hand side, on a fresh x tensor).
 *
 * Operation order follows solvers/ode/state-host.ts (the host reference): a stage is y + (Σⱼ Kⱼaⱼ)·h with the sum
 * left to right, the error (Σⱼ KⱼEⱼ)·h / (atol + max(|y|, |y_new|)·rtol). Non-finite values are detected from the
 * bit pattern (exponent all ones), which no fast-math compilation can fold away, unlike `v != v`.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { ShapeError } from '../engine/errors.js';
import { defineFixedProgram, defineProgram } from '../engine/program.js';
import { f32s, reads, u32s, writes, type UniformDecl } from '../engine/kernel.js';
import { flatMain, grid, groupMain } from '../engine/wgsl.js';

/** Elementwise workgroup size. */
export const WG = 256;
/** Threads per row in the per-row reductions. */
const ROW_WG = 64;

const NONFINITE_WGSL = /* wgsl */ `
fn nonfinite(v: f32) -> bool { return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u; }`;

/**
 * The stages of a batch state [B, N] in one buffer (`slots` of them: a tableau's stages and its FSAL stage):
 * slot s starts at element s·stride, stride = B·N rounded up to 64 elements so that each slot's view starts on a
 * 256-byte boundary (the storage-offset alignment of WebGPU).
 */
export class StageBuffer {
  readonly stride: number;
  readonly buffer: Tensor;
  /** One [B, N] view per physical slot (what a right-hand side writes into). */
  readonly views: Tensor[];

  constructor(
    e: Engine,
    readonly batch: number,
    readonly dim: number,
    readonly slots: number,
  ) {
    const n = batch * dim;
    const align = Math.max(1, e.limits.minStorageBufferOffsetAlignment / 4);
    this.stride = Math.max(align, Math.ceil(n / align) * align);
    this.buffer = e.zeros([slots, this.stride], 'f32', 'rk.stages');
    this.views = [];
    for (let s = 0; s < slots; s++) {
      // Each step makes a view sharing the storage; only the last one is kept.
      const chain: Tensor[] = [this.buffer.slice0(s, s + 1)];
      chain.push(chain[0].reshape([this.stride]));
      chain.push(chain[1].slice0(0, n));
      this.views.push(chain[2].reshape([batch, dim]));
      for (const t of chain) t.dispose();
    }
  }

  offset(slot: number): number {
    return slot * this.stride;
  }

  dispose(): void {
    for (const v of this.views) v.dispose();
    this.buffer.dispose();
  }
}

/** f32 with batch·dim elements (any shape). */
export function checkState(what: string, t: Tensor, batch: number, dim: number): void {
  t.assertDType('f32', what);
  if (t.size !== batch * dim) throw new ShapeError(`${what}: ${t.describe()} is not a [${batch}, ${dim}] state`);
}

/** A linear combination term: physical stage slot and coefficient. */
export interface StageTerm {
  slot: number;
  coef: number;
}

/** Uniform names of the terms' slot offsets and coefficients, made once (a dispatch builds no string). */
const MAX_TERMS = 16;
const OFFSET = Array.from({ length: MAX_TERMS }, (_, j) => `o${j}`);
const COEF = Array.from({ length: MAX_TERMS }, (_, j) => `a${j}`);

function termUniforms(leading: UniformDecl[], terms: number): UniformDecl[] {
  return [...leading, ...u32s(...OFFSET.slice(0, terms)), ...f32s(...COEF.slice(0, terms))];
}

/** The values of `termUniforms`: the leading ones, then each term's slot offset and coefficient. */
function termValues(leading: Record<string, number>, stages: StageBuffer, terms: readonly StageTerm[]): Record<string, number> {
  const u = { ...leading };
  terms.forEach((t, j) => {
    u[OFFSET[j]] = stages.offset(t.slot);
    u[COEF[j]] = t.coef;
  });
  return u;
}

const COMBINE = defineProgram<{ terms: number }>({
  name: 'rk.combine',
  spec: { terms: true },
  build: ({ terms }) => {
    let sum = '  var acc = 0.0;';
    for (let j = 0; j < terms; j++) sum += `\n  acc = acc + K[params.${OFFSET[j]} + i] * params.${COEF[j]};`;
    return {
      name: `rk.combine${terms}`,
      buffers: [...reads('y', 'K', 'h'), ...writes('out')],
      uniforms: termUniforms(u32s('n', 'N'), terms),
      workgroupSize: [WG],
      body: flatMain({
        wg: WG,
        count: 'params.n',
        body: `  let hb = h[i / params.N];
  if (hb == 0.0) { out[i] = y[i]; return; }
${sum}
  out[i] = y[i] + acc * hb;`,
      }),
    };
  },
});

/**
 * out = y + (Σⱼ K[slotⱼ]·coefⱼ)·h_b for every row b (h: [B] per-row step sizes). Rows with h_b = 0 are frozen:
 * out = y exactly, even where their stages hold NaN. 1…slots terms, in the order given (left-to-right sum).
 */
export function combineStages(
  e: Engine,
  y: Tensor,
  stages: StageBuffer,
  terms: readonly StageTerm[],
  h: Tensor,
  out: Tensor,
): void {
  const { batch: B, dim: N } = stages;
  checkState('rk.combine y', y, B, N);
  checkState('rk.combine out', out, B, N);
  checkState('rk.combine h', h, B, 1);
  if (terms.length < 1 || terms.length > stages.slots || terms.length > MAX_TERMS) {
    throw new ShapeError(`rk.combine: 1..${stages.slots} terms (the stage slots), got ${terms.length}`);
  }
  const u = termValues({ n: B * N, N }, stages, terms);
  e.run(COMBINE, { terms: terms.length }, { y, K: stages.buffer, h, out }, u, grid(e, B * N, WG));
}

/** Workgroups for one workgroup per row. */
function rowGrid(e: Engine, rows: number): [number, number] {
  return grid(e, rows, 1);
}

/**
 * The WGSL of a per-row sum of squares with a non-finite flag, one workgroup per row b: `loop` sets r (and may set
 * bad) for component i = b·N + j, after `setup` ran once per invocation. Thread 0 sums the partials and ORs the
 * flags: out[b] = Σ r², out[B + b] = flag (0/1). One barrier.
 */
function rowSumSquaresWgsl(setup: string, loop: string): string {
  return `${NONFINITE_WGSL}
var<workgroup> partS: array<f32, ${ROW_WG}>;
var<workgroup> partBad: array<u32, ${ROW_WG}>;
${groupMain({
  index: 'b',
  count: 'params.B',
  body: `${setup}  var s = 0.0;
  var bad = 0u;
  for (var j = lid; j < params.N; j += ${ROW_WG}u) {
    let i = b * params.N + j;
${loop}
    s = s + r * r;
  }
  partS[lid] = s;
  partBad[lid] = bad;
  workgroupBarrier();
  if (lid == 0u) {
    var tot = 0.0;
    var anyBad = 0u;
    for (var k = 0u; k < ${ROW_WG}u; k++) { tot = tot + partS[k]; anyBad = anyBad | partBad[k]; }
    out[b] = tot;
    out[params.B + b] = f32(anyBad);
  }`,
})}`;
}

/** Uniforms of the per-row scaled norms: the state's rows and columns, then the tolerances. */
const TOLERANCE_UNIFORMS = [...u32s('B', 'N'), ...f32s('rtol', 'atol')];

const ERROR_NORM = defineProgram<{ terms: number }>({
  name: 'rk.error',
  spec: { terms: true },
  build: ({ terms }) => {
    let body = 'var acc = 0.0;';
    for (let j = 0; j < terms; j++) {
      body += `\n    let k${j} = K[params.${OFFSET[j]} + i];
    if (nonfinite(k${j})) { bad = 1u; }
    acc = acc + k${j} * params.${COEF[j]};`;
    }
    return {
      name: `rk.error${terms}`,
      buffers: [...reads('y', 'ynew', 'K', 'h'), ...writes('out')],
      uniforms: termUniforms(TOLERANCE_UNIFORMS, terms),
      workgroupSize: [ROW_WG],
      body: rowSumSquaresWgsl(
        '  let hb = h[b];\n',
        `    let yn = ynew[i];
    if (nonfinite(yn)) { bad = 1u; }
    ${body}
    let sc = params.atol + max(abs(y[i]), abs(yn)) * params.rtol;
    let r = (acc * hb) / sc;`,
      ),
    };
  },
});

/**
 * The fused error estimate of a step: per row b, S_b = Σᵢ ((Σⱼ K[slotⱼ]ᵢ·Eⱼ)·h_b / (atol + max(|yᵢ|, |y_newᵢ|)·rtol))²
 * over the row's N components, and a non-finite flag (any stage or y_new entry NaN/±Inf). Writes out[0..B) = S,
 * out[B..2B) = flag (0/1) — the only values read back per step.
 */
export function errorSumSquares(
  e: Engine,
  y: Tensor,
  yNew: Tensor,
  stages: StageBuffer,
  terms: readonly StageTerm[],
  h: Tensor,
  rtol: number,
  atol: number,
  out: Tensor,
): void {
  const { batch: B, dim: N } = stages;
  checkState('rk.error y', y, B, N);
  checkState('rk.error yNew', yNew, B, N);
  checkState('rk.error h', h, B, 1);
  checkState('rk.error out', out, 2 * B, 1);
  if (terms.length < 1 || terms.length > MAX_TERMS) throw new ShapeError(`rk.error: 1..${MAX_TERMS} terms, got ${terms.length}`);
  const u = termValues({ B, N, rtol, atol }, stages, terms);
  e.run(ERROR_NORM, { terms: terms.length }, { y, ynew: yNew, K: stages.buffer, h, out }, u, rowGrid(e, B));
}

const SCALED_SUM_SQUARES = defineProgram<{ diff: boolean }>({
  name: 'rk.scaledSumSq',
  spec: { diff: true },
  build: ({ diff }) => ({
    name: diff ? 'rk.scaledSumSqDiff' : 'rk.scaledSumSq',
    buffers: [...reads('a', ...(diff ? ['bb'] : []), 'y'), ...writes('out')],
    uniforms: TOLERANCE_UNIFORMS,
    workgroupSize: [ROW_WG],
    body: rowSumSquaresWgsl(
      '',
      `    let v = ${diff ? 'a[i] - bb[i]' : 'a[i]'};
    if (nonfinite(v)) { bad = 1u; }
    let r = v / (params.atol + abs(y[i]) * params.rtol);`,
    ),
  }),
});

/**
 * For the initial step: per row b, S_b = Σᵢ ((aᵢ − bᵢ) / (atol + |yᵢ|·rtol))² (without `b`: aᵢ alone) and a flag
 * for non-finite a (or b). Output layout as errorSumSquares: out[0..B) sums, out[B..2B) flags.
 */
export function scaledSumSquares(
  e: Engine,
  a: Tensor,
  b: Tensor | null,
  y: Tensor,
  batch: number,
  dim: number,
  rtol: number,
  atol: number,
  out: Tensor,
): void {
  checkState('rk.scaledSumSq a', a, batch, dim);
  if (b) checkState('rk.scaledSumSq b', b, batch, dim);
  checkState('rk.scaledSumSq y', y, batch, dim);
  checkState('rk.scaledSumSq out', out, 2 * batch, 1);
  const bindings: Record<string, Tensor> = { a, y, out };
  if (b) bindings.bb = b;
  e.run(SCALED_SUM_SQUARES, { diff: b !== null }, bindings, { B: batch, N: dim, rtol, atol }, rowGrid(e, batch));
}

const COMMIT = defineFixedProgram({
  name: 'rk.commit',
  buffers: [...reads('ynew', 'accept'), ...writes('y', 'K')],
  uniforms: u32s('n', 'N', 'oFirst', 'oLast'),
  workgroupSize: [WG],
  body: flatMain({
    wg: WG,
    count: 'params.n',
    body: `  if (accept[i / params.N] == 0.0) { return; }
  y[i] = ynew[i];
  K[params.oFirst + i] = K[params.oLast + i];`,
  }),
});

/**
 * Per-sample acceptance: for rows with accept[b] ≠ 0, y ← y_new and K[firstSlot] ← K[lastSlot] (FSAL); other rows keep
 * their state and first stage (they retry, or are frozen).
 */
export function commitRows(
  e: Engine,
  y: Tensor,
  yNew: Tensor,
  stages: StageBuffer,
  firstSlot: number,
  lastSlot: number,
  accept: Tensor,
): void {
  const { batch: B, dim: N } = stages;
  checkState('rk.commit y', y, B, N);
  checkState('rk.commit yNew', yNew, B, N);
  checkState('rk.commit accept', accept, B, 1);
  e.run(
    COMMIT,
    {},
    { ynew: yNew, accept, y, K: stages.buffer },
    { n: B * N, N, oFirst: stages.offset(firstSlot), oLast: stages.offset(lastSlot) },
    grid(e, B * N, WG),
  );
}
