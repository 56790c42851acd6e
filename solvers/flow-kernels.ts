/**
 * Kernels of the augmented probability-flow state (row b = [x_b (D values), ℓ_b], N = D + 1): extracting x for the
 * score model, the tiling and trace of the exact divergence, and the assembly
 * of [f̃, ∇·f̃] into the RHS output. Plain kernels, not ops: they act outside the score's autodiff trace.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { grid } from '../engine/rng.js';
import { WG, checkState } from './state-kernels.js';

/** x = Y[:, :D] as a contiguous [B, D] tensor (the network needs contiguous images). */
export function stateImages(e: Engine, y: Tensor, batch: number, d: number): Tensor {
  checkState('pf.stateImages y', y, batch, d + 1);
  const out = e.empty([batch, d], 'f32', 'pf.x');
  const program = e.program({
    name: 'pf.stateImages',
    buffers: [
      { name: 'y', type: 'f32' },
      { name: 'out', type: 'f32', access: 'read_write' },
    ],
    uniforms: [
      ['n', 'u32'],
      ['D', 'u32'],
    ],
    workgroupSize: [WG],
    body: `
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = g.x + g.y * nwg.x * ${WG}u;
  if (i >= params.n) { return; }
  let b = i / params.D;
  out[i] = y[i + b];
}`,
  });
  e.dispatch(program, { y, out }, { n: batch * d, D: d }, grid(e, batch * d, WG));
  return out;
}

/** x tiled `copies` times along the batch axis: out[k·B + b] = x[b] ([copies·B, D]). */
export function tileRows(e: Engine, x: Tensor, batch: number, d: number, copies: number): Tensor {
  checkState('pf.tileRows x', x, batch, d);
  const out = e.empty([copies * batch, d], 'f32', 'pf.tiled');
  const program = e.program({
    name: 'pf.tileRows',
    buffers: [
      { name: 'x', type: 'f32' },
      { name: 'out', type: 'f32', access: 'read_write' },
    ],
    uniforms: [
      ['n', 'u32'],
      ['m', 'u32'],
    ],
    workgroupSize: [WG],
    body: `
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = g.x + g.y * nwg.x * ${WG}u;
  if (i >= params.n) { return; }
  out[i] = x[i % params.m];
}`,
  });
  const n = copies * batch * d;
  e.dispatch(program, { x, out }, { n, m: batch * d }, grid(e, n, WG));
  return out;
}

/** The trace from D basis VJPs: g is [D·B, D] with row k·B + b = e_kᵀ·J_b; tr J_b = Σ_k g[k·B + b, k] → [B]. */
export function basisTrace(e: Engine, g: Tensor, batch: number, d: number): Tensor {
  checkState('pf.basisTrace g', g, d * batch, d);
  const out = e.empty([batch], 'f32', 'pf.trace');
  const program = e.program({
    name: 'pf.basisTrace',
    buffers: [
      { name: 'g', type: 'f32' },
      { name: 'out', type: 'f32', access: 'read_write' },
    ],
    uniforms: [
      ['B', 'u32'],
      ['D', 'u32'],
    ],
    workgroupSize: [64],
    body: `
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let b = gid.x;
  if (b >= params.B) { return; }
  var s = 0.0;
  for (var k = 0u; k < params.D; k++) { s = s + g[(k * params.B + b) * params.D + k]; }
  out[b] = s;
}`,
  });
  e.dispatch(program, { g, out }, { B: batch, D: d }, [Math.ceil(batch / 64)]);
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
  const program = e.program({
    name: 'pf.assemble',
    buffers: [
      { name: 'y', type: 'f32' },
      { name: 's', type: 'f32' },
      { name: 'tr', type: 'f32' },
      { name: 'coef', type: 'f32' },
      { name: 'out', type: 'f32', access: 'read_write' },
    ],
    uniforms: [
      ['n', 'u32'],
      ['D', 'u32'],
    ],
    workgroupSize: [WG],
    body: `
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = g.x + g.y * nwg.x * ${WG}u;
  if (i >= params.n) { return; }
  let N = params.D + 1u;
  let b = i / N;
  let k = i - b * N;
  let a = coef[2u * b];
  let c = coef[2u * b + 1u];
  if (k < params.D) {
    out[i] = a * y[i] + c * s[b * params.D + k];
  } else {
    out[i] = a * f32(params.D) + c * tr[b];
  }
}`,
  });
  const n = batch * (d + 1);
  e.dispatch(program, { y, s: score, tr: trace, coef, out }, { n, D: d }, grid(e, n, WG));
}
