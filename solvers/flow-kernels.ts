/**
 * Kernels of the augmented probability-flow state (row b = [x_b (D values), ℓ_b], N = D + 1): extracting x for the
 * score model, the tiling and trace of the exact divergence, and the assembly
 * of [f̃, ∇·f̃] into the RHS output. Plain kernels, not ops: they act outside the score's autodiff trace.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineFixedProgram } from '../engine/program.js';
import { flatMain, grid } from '../engine/wgsl.js';
import { reads, u32s, writes } from '../engine/kernel.js';
import { WG, checkState } from './state-kernels.js';

/** A spec-less flat kernel of this file: f32 buffers (the last is the output), u32 uniforms, a body over index i < params.n. */
function flowProgram(name: string, inputs: string[], uniforms: string[], body: string) {
  return defineFixedProgram({
    name,
    buffers: [...reads(...inputs), ...writes('out')],
    uniforms: u32s(...uniforms),
    workgroupSize: [WG],
    body: flatMain({ wg: WG, count: 'params.n', body }),
  });
}

const STATE_IMAGES = flowProgram('pf.stateImages', ['y'], ['n', 'D'], `  let b = i / params.D;
  out[i] = y[i + b];`);

const TILE_ROWS = flowProgram('pf.tileRows', ['x'], ['n', 'm'], '  out[i] = x[i % params.m];');

/** One invocation per row b: Σ_k g[k·B + b, k]. */
const BASIS_TRACE = flowProgram('pf.basisTrace', ['g'], ['n', 'D'], `  var s = 0.0;
  for (var k = 0u; k < params.D; k++) { s = s + g[(k * params.n + i) * params.D + k]; }
  out[i] = s;`);

const ASSEMBLE = flowProgram('pf.assemble', ['y', 's', 'tr', 'coef'], ['n', 'D'], `  let N = params.D + 1u;
  let b = i / N;
  let k = i - b * N;
  let a = coef[2u * b];
  let c = coef[2u * b + 1u];
  if (k < params.D) {
    out[i] = a * y[i] + c * s[b * params.D + k];
  } else {
    out[i] = a * f32(params.D) + c * tr[b];
  }`);

/** x = Y[:, :D] as a contiguous [B, D] tensor (the network needs contiguous images). */
export function stateImages(e: Engine, y: Tensor, batch: number, d: number): Tensor {
  checkState('pf.stateImages y', y, batch, d + 1);
  const out = e.empty([batch, d], 'f32', 'pf.x');
  e.run(STATE_IMAGES, {}, { y, out }, { n: batch * d, D: d }, grid(e, batch * d, WG));
  return out;
}

/** x tiled `copies` times along the batch axis: out[k·B + b] = x[b] ([copies·B, D]). */
export function tileRows(e: Engine, x: Tensor, batch: number, d: number, copies: number): Tensor {
  checkState('pf.tileRows x', x, batch, d);
  const out = e.empty([copies * batch, d], 'f32', 'pf.tiled');
  const n = copies * batch * d;
  e.run(TILE_ROWS, {}, { x, out }, { n, m: batch * d }, grid(e, n, WG));
  return out;
}

/** The trace from D basis VJPs: g is [D·B, D] with row k·B + b = e_kᵀ·J_b; tr J_b = Σ_k g[k·B + b, k] → [B]. */
export function basisTrace(e: Engine, g: Tensor, batch: number, d: number): Tensor {
  checkState('pf.basisTrace g', g, d * batch, d);
  const out = e.empty([batch], 'f32', 'pf.trace');
  e.run(BASIS_TRACE, {}, { g, out }, { n: batch, D: d }, grid(e, batch, WG));
  return out;
}

/**
 * The augmented right-hand side from its pieces: out[b, i] = a_b·y[b, i] + c_b·s[b, i] (i < D) and
 * out[b, D] = a_b·D + c_b·trace_b, with coef[b] = (a_b, c_b) = (−½β(t_b), −½g(t_b)²): the linear drift's
 * divergence a_b·D is exact, only the score part tr(∂s/∂x) is estimated.
 */
export function assembleFlow(
  e: Engine,
  y: Tensor,
  score: Tensor,
  trace: Tensor,
  coef: Tensor,
  out: Tensor,
  batch: number,
  d: number,
): void {
  checkState('pf.assemble y', y, batch, d + 1);
  checkState('pf.assemble out', out, batch, d + 1);
  checkState('pf.assemble score', score, batch, d);
  checkState('pf.assemble trace', trace, batch, 1);
  checkState('pf.assemble coef', coef, batch, 2);
  const n = batch * (d + 1);
  e.run(ASSEMBLE, {}, { y, s: score, tr: trace, coef, out }, { n, D: d }, grid(e, n, WG));
}
