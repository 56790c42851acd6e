/**
 * out[b,i,j] = α·Σ_{k1<K1, k2<K2} A(b,i,k1,k2)·B(b,k1,k2,j) (+ bias[i]), every operand addressed by strides: one
 * kernel for NIN (both orientations), NIN's weight gradient and attention's scores and mix products.
 *
 * Register-blocked, no workgroup memory (the layout lavapipe runs fastest): each invocation owns a 4×4 output
 * tile. Each operand is loaded in one of three modes, chosen from its strides on the host:
 *   'tile'    contiguous along the tile axis (i for A, j for B): one vec4 load per k;
 *   'k'       contiguous along k2: one vec4 per row/column per 4 k-steps (the k2 loop is then unrolled by 4);
 *   'scalar'  anything else: four scalar loads per k.
 * vec4 bindings need every stride of that operand to be a multiple of 4 (the tensors here start at offset 0).
 * Measured on lavapipe, the vec4 modes take a NIN at C = 256, HW = 256 from 3.2 to 6.5 GFLOP/s (scalar loads
 * are gathers there).
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import type { MaybeTensor } from '../engine/autodiff.js';
import { DeviceLimitError } from '../engine/errors.js';
import { defineProgram } from '../engine/program.js';
import { reads, u32s } from '../engine/kernel.js';

export interface StridedProduct {
  batch: number;
  I: number;
  J: number;
  K1: number;
  K2: number;
  /** A strides: batch, i, k1, k2. */
  a: [number, number, number, number];
  /** B strides: batch, j, k1, k2. */
  b: [number, number, number, number];
  /** Output strides: batch, i, j. */
  out: [number, number, number];
  alpha: number;
}

type LoadMode = 'tile' | 'k' | 'scalar';

const WG: [number, number] = [16, 4];
const Q = [0, 1, 2, 3];
const C4 = ['x', 'y', 'z', 'w'];

const all4 = (xs: number[]) => xs.every((v) => v % 4 === 0);

function modeOf(tileStride: number, tileLen: number, kStride: number, K2: number, others: number[]): LoadMode {
  if (tileStride === 1 && tileLen % 4 === 0 && all4([kStride, ...others])) return 'tile';
  if (kStride === 1 && K2 % 4 === 0 && all4([tileStride, ...others])) return 'k';
  return 'scalar';
}

/** WGSL of the kernel for one combination of load modes. */
function body(ma: LoadMode, mb: LoadMode, vecOut: boolean, bias: boolean): string {
  const unroll = ma === 'k' || mb === 'k';
  const consecutive = mb === 'tile' || vecOut;
  const L: string[] = [];
  if (consecutive) {
    // A lane's 4 columns are consecutive (vec4 loads/stores along j).
    L.push(`let j0 = (wid.x * ${WG[0]}u + lid.x) * 4u;`, 'let js = vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u);');
  } else {
    // A lane's 4 columns are WG.x apart, so neighbouring lanes touch neighbouring columns.
    L.push(
      `let j0 = wid.x * ${4 * WG[0]}u + lid.x;`,
      `let js = vec4<u32>(j0, j0 + ${WG[0]}u, j0 + ${2 * WG[0]}u, j0 + ${3 * WG[0]}u);`,
    );
  }
  L.push(
    `let i0 = (wid.y * ${WG[1]}u + lid.y) * 4u;`,
    'let b = wid.z;',
    'if (i0 >= params.I || j0 >= params.J) { return; }',
    // Rows/columns past the edge are clamped for loading (never read out of bounds) and skipped when storing.
    'let ia = b * params.ab + min(vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.I - 1u)) * params.ai;',
    'let jb = b * params.bb + min(js, vec4<u32>(params.J - 1u)) * params.bj;',
    ...Q.map((r) => `var c${r} = vec4<f32>(0.0);`),
    'for (var k1 = 0u; k1 < params.K1; k1++) {',
    '  let pa = ia + k1 * params.ak1;',
    '  let pb = jb + k1 * params.bk1;',
  );
  // a(q): vec4 over the 4 rows at k-step q; b(q): vec4 over the 4 columns at k-step q.
  const aAt = (k: string) =>
    ma === 'tile' ? `A[(pa.x + (${k}) * params.ak2) / 4u]` : `vec4<f32>(${Q.map((r) => `A[pa.${C4[r]} + (${k}) * params.ak2]`).join(', ')})`;
  const bAt = (k: string) =>
    mb === 'tile' ? `B[(pb.x + (${k}) * params.bk2) / 4u]` : `vec4<f32>(${Q.map((c) => `B[pb.${C4[c]} + (${k}) * params.bk2]`).join(', ')})`;
  const fma = (a: string, b: string) => Q.map((r) => `c${r} += ${a}.${C4[r]} * ${b};`);
  if (unroll) {
    L.push('  for (var k2 = 0u; k2 < params.K2; k2 += 4u) {');
    if (ma === 'k') {
      L.push(...Q.map((r) => `    let ra${r} = A[(pa.${C4[r]} + k2) / 4u];`));
      L.push(...Q.map((q) => `    let a${q} = vec4<f32>(${Q.map((r) => `ra${r}.${C4[q]}`).join(', ')});`));
    } else {
      L.push(...Q.map((q) => `    let a${q} = ${aAt(`k2 + ${q}u`)};`));
    }
    if (mb === 'k') {
      L.push(...Q.map((c) => `    let cb${c} = B[(pb.${C4[c]} + k2) / 4u];`));
      L.push(...Q.map((q) => `    let b${q} = vec4<f32>(${Q.map((c) => `cb${c}.${C4[q]}`).join(', ')});`));
    } else {
      L.push(...Q.map((q) => `    let b${q} = ${bAt(`k2 + ${q}u`)};`));
    }
    for (const q of Q) L.push(...fma(`a${q}`, `b${q}`).map((s) => `    ${s}`));
    L.push('  }');
  } else {
    L.push('  for (var k2 = 0u; k2 < params.K2; k2++) {', `    let a = ${aAt('k2')};`, `    let bv = ${bAt('k2')};`);
    L.push(...fma('a', 'bv').map((s) => `    ${s}`), '  }');
  }
  L.push('}');
  L.push(...Q.map((r) => `${r ? `if (i0 + ${r}u < params.I) { ` : ''}store(b * params.ob, i0 + ${r}u, js, c${r});${r ? ' }' : ''}`));
  const store = vecOut
    ? 'out[(o + js.x) / 4u] = v;'
    : ['out[o + js.x * params.oj] = v.x;', ...[1, 2, 3].map((c) => `if (js.${C4[c]} < params.J) { out[o + js.${C4[c]} * params.oj] = v.${C4[c]}; }`)].join('\n  ');
  return `
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  ${L.join('\n  ')}
}
fn store(ob: u32, i: u32, js: vec4<u32>, acc: vec4<f32>) {
  let v = params.alpha * acc${bias ? ' + bias[i]' : ''};
  let o = ob + i * params.oi;
  ${store}
}`;
}

type ProductSpec = { name: string; ma: LoadMode; mb: LoadMode; vecOut: boolean; bias: boolean };

const vec = (m: boolean) => (m ? 'vec4<f32>' : 'f32') as 'vec4<f32>' | 'f32';

/** One pipeline per (caller's name, load modes, vec4 output, bias); sizes and strides are uniforms. */
const STRIDED_PRODUCT = defineProgram<ProductSpec>({
  name: 'product',
  spec: { name: true, ma: true, mb: true, vecOut: true, bias: true },
  build: ({ name, ma, mb, vecOut, bias }) => ({
    name: `product.${name}.${ma}.${mb}${vecOut ? '.v4out' : ''}${bias ? '.bias' : ''}`,
    buffers: [
      { name: 'A', type: vec(ma !== 'scalar') },
      { name: 'B', type: vec(mb !== 'scalar') },
      ...reads(...(bias ? ['bias'] : [])),
      { name: 'out', type: vec(vecOut), access: 'read_write' },
    ],
    uniforms: [...u32s('I', 'J', 'K1', 'K2', 'ab', 'ai', 'ak1', 'ak2', 'bb', 'bj', 'bk1', 'bk2', 'ob', 'oi', 'oj'), ['alpha', 'f32']],
    workgroupSize: [WG[0], WG[1]],
    body: body(ma, mb, vecOut, bias),
  }),
});

/** Records out = A·B per the strides (out must be a fresh tensor covering every (b, i, j)). */
export function stridedProduct(e: Engine, name: string, A: Tensor, B: Tensor, bias: MaybeTensor, out: Tensor, p: StridedProduct): void {
  const [ab, ai, ak1, ak2] = p.a;
  const [bb, bj, bk1, bk2] = p.b;
  const [ob, oi, oj] = p.out;
  const ma = modeOf(ai, p.I, ak2, p.K2, [ab, ak1]);
  const mb = modeOf(bj, p.J, bk2, p.K2, [bb, bk1]);
  const vecOut = oj === 1 && p.J % 4 === 0 && all4([ob, oi]) && mb !== 'k';
  const gx = Math.ceil(p.J / (4 * WG[0]));
  const gy = Math.ceil(p.I / (4 * WG[1]));
  const max = e.limits.maxComputeWorkgroupsPerDimension;
  if (gx > max || gy > max || p.batch > max) {
    throw new DeviceLimitError(`product ${name}: grid [${gx}, ${gy}, ${p.batch}] exceeds ${max} per dimension`);
  }
  const bindings: Record<string, Tensor> = { A, B, out };
  if (bias) bindings.bias = bias;
  const u = { I: p.I, J: p.J, K1: p.K1, K2: p.K2, ab, ai, ak1, ak2, bb, bj, bk1, bk2, ob, oi, oj, alpha: p.alpha };
  e.run(STRIDED_PRODUCT, { name, ma, mb, vecOut, bias: !!bias }, bindings, u, [gx, gy, p.batch]);
}
