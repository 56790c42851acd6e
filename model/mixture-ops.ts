/**
 * The score of an isotropic Gaussian mixture (per row: the components of the row's class) as autodiff ops, for
 * analytic-models.ts. With u_c = (mμ_c − x)/v_c, r = softmax_c(log w_c − ½D·log v_c − ½‖x − mμ_c‖²/v_c):
 *   s = Σ_c r_c u_c,   J = ∂s/∂x = Σ_c r_c u_c u_cᵀ − ū ūᵀ − (Σ_c r_c/v_c)·I   (symmetric: the Hessian of log p),
 * so the VJP and the JVP are the same "J·v" op, and that op's derivative is the (fully symmetric) third-derivative
 * contraction T(v, w); T itself is a plain kernel (fourth order is never needed). All three are ONE per-row kernel
 * (a workgroup per row: per-component reductions, then the output pass), specialised by mode.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineOp, type Op } from '../engine/autodiff.js';
import { ShapeError } from '../engine/errors.js';
import { defineProgram } from '../engine/program.js';
import { reads, u32s, writes } from '../engine/kernel.js';
import { grid, groupMain } from '../engine/wgsl.js';
import { addMaybe } from '../kernels/elementwise.js';

const WG = 64;
/** Components per class the per-row kernel supports (its reductions fit 64 threads and 16 KiB). */
export const MAX_COMPONENTS_PER_CLASS = 16;

type Mode = 'score' | 'jv' | 'third';

/** What the kernel needs of a mixture model. */
export interface MixtureTables {
  readonly dim: number;
  readonly shape: readonly number[];
  readonly componentsPerClass: number;
  /** Means [classes·K, D] and (log w, s²) per component, on the GPU. */
  tables(e: Engine): { means: Tensor; comp: Tensor };
}

export interface MixtureParams {
  model: MixtureTables;
  /** [B, 3]: m(t_b), σ(t_b)², output scale (1 for the score, −σ(t_b) for ε). */
  rows: Tensor;
  /** [B] u32 class of each row. */
  labels: Tensor;
}

function reductions(mode: Mode, K: number): number {
  return mode === 'score' ? K : mode === 'jv' ? 2 * K : 3 * K + 1;
}

function mixtureKernelBody(mode: Mode, K: number): string {
  const NR = reductions(mode, K);
  const loadV = mode === 'score' ? '' : 'let vi = v[base + i];';
  const loadW = mode === 'third' ? 'let wi = w[base + i];' : '';
  const accV = mode === 'score' ? '' : `part[${K}u + c] = part[${K}u + c] + d * vi;`;
  const accW = mode === 'third' ? `part[${2 * K}u + c] = part[${2 * K}u + c] + d * wi;` : '';
  const accWV = mode === 'third' ? `part[${3 * K}u] = part[${3 * K}u] + vi * wi;` : '';
  // Per-row scalars → coefficients: out_i = osc·(cv·v_i + cw·w_i + Σ_c g_c·u_ci), u_ci = (mμ_ci − x_i)/v_c.
  let coeffs: string;
  if (mode === 'score') {
    coeffs = `for (var c = 0u; c < KC; c++) { g[c] = r[c]; }`;
  } else {
    coeffs = `
  var A = 0.0;
  var abar = 0.0;
  var alpha: array<f32, KC>;
  for (var c = 0u; c < KC; c++) { alpha[c] = invv[c] * tot[KC + c]; A = A + r[c] * invv[c]; abar = abar + r[c] * alpha[c]; }`;
    if (mode === 'jv') {
      coeffs += `
  cv = -A;
  for (var c = 0u; c < KC; c++) { g[c] = r[c] * (alpha[c] - abar); }`;
    } else {
      coeffs += `
  let wv = tot[3u * KC];
  var bbar = 0.0;
  var beta: array<f32, KC>;
  for (var c = 0u; c < KC; c++) { beta[c] = invv[c] * tot[2u * KC + c]; bbar = bbar + r[c] * beta[c]; }
  var dA = 0.0;
  var dabar = -A * wv;
  var raInv = 0.0;
  var dr: array<f32, KC>;
  for (var c = 0u; c < KC; c++) {
    dr[c] = r[c] * (beta[c] - bbar);
    dA = dA + dr[c] * invv[c];
    dabar = dabar + dr[c] * alpha[c];
    raInv = raInv + r[c] * alpha[c] * invv[c];
  }
  cv = -dA;
  cw = abar * A - raInv;
  for (var c = 0u; c < KC; c++) {
    let dalpha = -invv[c] * wv;
    g[c] = dr[c] * alpha[c] + r[c] * dalpha - dabar * r[c] - abar * dr[c];
  }`;
    }
  }
  const outExpr =
    mode === 'score' ? 'acc' : mode === 'jv' ? 'cv * v[base + i] + acc' : 'cv * v[base + i] + cw * w[base + i] + acc';
  return `
const KC: u32 = ${K}u;
const NR: u32 = ${NR}u;
var<workgroup> red: array<f32, ${WG * NR}>;
var<workgroup> tot: array<f32, ${NR}>;
${groupMain({
  index: 'b',
  count: 'params.B',
  body: `  let D = params.D;
  let base = b * D;
  let m = rowd[3u * b];
  let sig2 = rowd[3u * b + 1u];
  let osc = rowd[3u * b + 2u];
  let cls = lab[b];
  var part: array<f32, NR>;
  for (var k = 0u; k < NR; k++) { part[k] = 0.0; }
  for (var i = lid; i < D; i += ${WG}u) {
    let xi = x[base + i];
    ${loadV}
    ${loadW}
    for (var c = 0u; c < KC; c++) {
      let d = m * means[(cls * KC + c) * D + i] - xi;
      part[c] = part[c] + d * d;
      ${accV}
      ${accW}
    }
    ${accWV}
  }
  for (var k = 0u; k < NR; k++) { red[k * ${WG}u + lid] = part[k]; }
  workgroupBarrier();
  if (lid < NR) {
    var s = 0.0;
    for (var k = 0u; k < ${WG}u; k++) { s = s + red[lid * ${WG}u + k]; }
    tot[lid] = s;
  }
  workgroupBarrier();
  var invv: array<f32, KC>;
  var r: array<f32, KC>;
  var mx = -3.0e38;
  for (var c = 0u; c < KC; c++) {
    let comp = cls * KC + c;
    let vc = m * m * cd[2u * comp + 1u] + sig2;
    invv[c] = 1.0 / vc;
    r[c] = cd[2u * comp] - 0.5 * f32(D) * log(vc) - 0.5 * tot[c] * invv[c];
    mx = max(mx, r[c]);
  }
  var z = 0.0;
  for (var c = 0u; c < KC; c++) { r[c] = exp(r[c] - mx); z = z + r[c]; }
  for (var c = 0u; c < KC; c++) { r[c] = r[c] / z; }
  var g: array<f32, KC>;
  var cv = 0.0;
  var cw = 0.0;
  ${coeffs}
  for (var i = lid; i < D; i += ${WG}u) {
    let xi = x[base + i];
    var acc = 0.0;
    for (var c = 0u; c < KC; c++) { acc = acc + g[c] * (m * means[(cls * KC + c) * D + i] - xi) * invv[c]; }
    out[base + i] = osc * (${outExpr});
  }`,
})}`;
}

/** Output tensor names per mode (made once: an op call builds no string). */
const OUTPUT_NAMES: Record<Mode, string> = { score: 'mixture.score', jv: 'mixture.jv', third: 'mixture.third' };

/** One workgroup per row, specialised by mode (which also decides the bound tangents v, w) and components K. */
const MIXTURE = defineProgram<{ mode: Mode; K: number }>({
  name: 'mixture',
  spec: { mode: true, K: true },
  build: ({ mode, K }) => ({
    name: `mixture.${mode}`,
    buffers: [
      ...reads('x', ...(mode !== 'score' ? ['v'] : []), ...(mode === 'third' ? ['w'] : []), 'means', 'cd', 'rowd'),
      { name: 'lab', type: 'u32' },
      ...writes('out'),
    ],
    uniforms: u32s('B', 'D'),
    workgroupSize: [WG],
    body: mixtureKernelBody(mode, K),
  }),
});

function launchMixture(e: Engine, mode: Mode, x: Tensor, v: Tensor | null, w: Tensor | null, p: MixtureParams): Tensor {
  const model = p.model;
  const K = model.componentsPerClass;
  const D = model.dim;
  const B = x.size / D;
  if (!Number.isInteger(B) || x.shape[0] !== B) throw new ShapeError(`mixture.${mode}: ${x.describe()} is not [B, ${model.shape.join(', ')}]`);
  for (const [name, t] of [['v', v], ['w', w]] as const) {
    if (t && (t.size !== x.size || t.dtype !== 'f32')) throw new ShapeError(`mixture.${mode} ${name}: ${t.describe()} does not match ${x.describe()}`);
  }
  const { means, comp } = model.tables(e);
  const out = e.empty(x.shape, 'f32', OUTPUT_NAMES[mode]);
  const bindings: Record<string, Tensor> = { x, means, cd: comp, rowd: p.rows, lab: p.labels, out };
  if (v) bindings.v = v;
  if (w) bindings.w = w;
  e.run(MIXTURE, { mode, K }, bindings, { B, D }, grid(e, B, 1));
  return out;
}

/** T(x)[v, w]: the third-derivative contraction, ∂/∂x (J(x)·v)·w. Not differentiated further. */
function mixtureThird(e: Engine, x: Tensor, v: Tensor, w: Tensor, p: MixtureParams): Tensor {
  return launchMixture(e, 'third', x, v, w, p);
}

/** J(x)·v with J = ∂score/∂x (symmetric). */
export const mixtureJacobianVector: Op<MixtureParams> = defineOp({
  name: 'mixture.jv',
  inputs: ['x', 'v'],
  forward: (e, [x, v], p) => launchMixture(e, 'jv', x, v, null, p),
  // ⟨ct, J(x)v⟩: ∂/∂v = J ct (symmetric J); ∂/∂x = T[v, ct] (T fully symmetric).
  vjp: (e, { inputs: [x, v], params }, ct, needs) => [
    needs[0] ? mixtureThird(e, x, v, ct, params) : null,
    needs[1] ? mixtureJacobianVector(e, [x, ct], params) : null,
  ],
  jvp: (e, { inputs: [x, v], params }, [tx, tv]) =>
    addMaybe(e, tx ? mixtureThird(e, x, v, tx, params) : null, tv ? mixtureJacobianVector(e, [x, tv], params) : null),
});

/** The mixture score s(x) (times the per-row output scale). */
export const mixtureScore: Op<MixtureParams> = defineOp({
  name: 'mixture.score',
  inputs: ['x'],
  forward: (e, [x], p) => launchMixture(e, 'score', x, null, null, p),
  vjp: (e, { inputs: [x], params }, ct) => [mixtureJacobianVector(e, [x, ct], params)],
  jvp: (e, { inputs: [x], params }, [tx]) => (tx ? mixtureJacobianVector(e, [x, tx], params) : null),
});
