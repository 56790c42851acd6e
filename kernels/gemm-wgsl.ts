/**
 * WGSL generators for GEMM-shaped kernels, in the variants an adapter may pick:
 *
 * - 'register' (CPU adapters, barrier-free): each invocation keeps a TM×TN accumulator tile in registers and
 *   loads its operands straight from storage, vec4 where the layout allows. lavapipe runs a workgroup as 8-lane
 *   SIMD code in which every storage load is a per-lane scalarised access (~1.5 ns a lane) while an FMA costs
 *   ~0.15 ns a lane, and a barrier is a coroutine switch: loads per FMA decide everything, shared memory does not
 *   help (its loads are as slow, measured).
 * - 'subgroup' (CPU adapters with the `subgroups` feature and a fixed subgroup size): as 'register', but the
 *   operand that every lane of a SIMD group needs (the TM rows of A, conv weights) is loaded once across the
 *   lanes — lane l fetches row l — and handed out with subgroupBroadcast, a register shuffle. That removes most
 *   loads: 25–37 GFLOP/s for matmul 1024 on lavapipe against 8–10 without.
 * - 'tiled' (GPUs): the classic workgroup-memory tiled GEMM (64×64 tiles, 16×16 threads with 4×4 outputs each),
 *   written once over loader functions so matmul and the implicit-GEMM convolutions share it: gemm-tiled.ts.
 */
import type { Engine } from '../engine/engine.js';
import { generateWgsl, type BufferDecl, type KernelSource } from '../engine/kernel.js';
import { defineProgram } from '../engine/program.js';

export type GemmVariant = 'register' | 'subgroup' | 'tiled';

const subgroupSupport = new WeakMap<Engine, number>();

/**
 * Subgroup size usable by the 'subgroup' variants, or 0: the device must have the `subgroups` feature, the kernel
 * generator must emit `enable subgroups;`, and the adapter's subgroup size must be fixed (min = max), because the
 * kernels unroll over it.
 */
export function subgroupSize(e: Engine): number {
  const hit = subgroupSupport.get(e);
  if (hit !== undefined) return hit;
  let size = 0;
  if (e.device.features.has('subgroups')) {
    const probe = generateWgsl({
      name: 'probe',
      buffers: [],
      workgroupSize: [1],
      body: 'fn main(@builtin(subgroup_invocation_id) sl: u32) { _ = subgroupBroadcast(f32(sl), 0u); }',
    });
    const info = e.adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
    const min = info.subgroupMinSize ?? 0;
    if (/enable\s+subgroups\s*;/.test(probe) && min > 0 && min === info.subgroupMaxSize && min <= 64) size = min;
  }
  subgroupSupport.set(e, size);
  return size;
}

/** Variants this engine can run, best first for its adapter (before any tuning). */
export function availableVariants(e: Engine): GemmVariant[] {
  if (!e.info.isCpu) return ['tiled', 'register'];
  return subgroupSize(e) ? ['subgroup', 'register', 'tiled'] : ['register', 'tiled'];
}

// ---------------------------------------------------------------- CPU matmul (register / subgroup)

export type CpuMatmulSpec = {
  /** Rows of C per invocation (a multiple of the subgroup size in subgroup mode). */
  tm: number;
  /** Columns of C per invocation, a multiple of 4. */
  tn: number;
  transA: boolean;
  transB: boolean;
  /** A bound as vec4: its contiguous dimension is a multiple of 4 (never with subgroup + transA). */
  vecA: boolean;
  vecB: boolean;
  /** C (and bias) bound as vec4: N is a multiple of 4. */
  vecC: boolean;
  /** K is not a multiple of 4: one masked step after the main loop. */
  kTail: boolean;
  /** bias[N] added to every row ('cols', dense layers) or bias[M] to every column ('rows', 1×1 convs). */
  biasAxis: 'cols' | 'rows';
  bias: boolean;
  /** With dual: bias2 (same axis) added to C2. */
  bias2: boolean;
  /** Workgroup z indexes a batch; element offsets z·sA, z·sB, z·sC (uniforms; sA = 0 shares A). */
  batched: boolean;
  /** A second B (B2 → C2) sharing every A load: the 1×1 conv dual. */
  dual: boolean;
  /** Subgroup size when A rows are shared by subgroupBroadcast, 0 for plain loads. */
  subgroup: number;
  wg: number;
};

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const C4 = ['x', 'y', 'z', 'w'];

/**
 * C[M,N] = op(A)·op(B) (+ bias); A is [M,K] or [K,M] (transA), B is [K,N] or [N,K] (transB). Invocations run
 * along N (tn columns each); a workgroup shares tm rows. Out-of-range rows/columns are clamped for loads (never an
 * out-of-bounds read) and skipped for stores, so odd sizes and batch 1 need no padding.
 */
export function cpuMatmulKernel(s: CpuMatmulSpec): KernelSource {
  const { tm, tn } = s;
  const tn4 = tn / 4;
  const sg = s.subgroup;
  const bs = s.dual ? [['B', 'b', 'c', 'C'], ['B2', 'e', 'f', 'C2']] : [['B', 'b', 'c', 'C']];
  const L: string[] = [];
  // Clamped row / column indices (element units), computed once per invocation.
  L.push(`let M = params.M; let N = params.N; let K = params.K;`);
  if (s.batched) {
    const off = (name: string, vec: boolean) => `let ${name}O = wg.z * params.s${name}${vec ? ' / 4u' : ''};`;
    L.push(off('A', s.vecA), off('B', s.vecB), off('C', s.vecC));
  }
  L.push(`let n0 = (wg.x * ${s.wg}u + li) * ${tn}u;`);
  L.push(`let m0 = wg.y * ${tm}u;`);
  if (sg) {
    for (let g = 0; g < tm / sg; g++) L.push(`let ml${g} = min(m0 + ${g * sg}u + sl, M - 1u);`);
  } else if (s.transA && s.vecA) {
    for (let i4 = 0; i4 < tm / 4; i4++) L.push(`let mb${i4} = min(m0 / 4u + ${i4}u, M / 4u - 1u);`);
  }
  if (!sg) for (let i = 0; i < tm; i++) L.push(`let mr${i} = min(m0 + ${i}u, M - 1u);`);
  for (let j = 0; j < tn; j++) L.push(`let nc${j} = min(n0 + ${j}u, N - 1u);`);
  if (s.vecB && !s.transB) for (let jv = 0; jv < tn4; jv++) L.push(`let nb${jv} = min(n0 / 4u + ${jv}u, N / 4u - 1u);`);

  // Accumulators c{i}_{jv} (and f{i}_{jv} for the dual): vec4 over 4 consecutive columns.
  const biasInit = (name: string, i: number, jv: number): string =>
    s.biasAxis === 'rows'
      ? `vec4<f32>(${name}[min(m0 + ${i}u, M - 1u)])`
      : s.vecC
        ? `${name}[min(n0 / 4u + ${jv}u, N / 4u - 1u)]`
        : `vec4<f32>(${range(4).map((c) => `${name}[nc${4 * jv + c}]`).join(', ')})`;
  for (let i = 0; i < tm; i++) {
    for (let jv = 0; jv < tn4; jv++) {
      for (const [, , acc] of bs) {
        const has = acc === 'c' ? s.bias : s.bias2;
        L.push(`var ${acc}${i}_${jv} = ${has ? biasInit(acc === 'c' ? 'bias' : 'bias2', i, jv) : 'vec4<f32>(0.0)'};`);
      }
    }
  }

  /** One quad of A for row expression `row` at k..k+3 as a vec4 (masked: k+q may pass K). */
  const aQuadScalar = (row: string, masked: boolean): string =>
    `vec4<f32>(${range(4)
      .map((q) => {
        const kq = masked ? `min(k + ${q}u, K - 1u)` : `k + ${q}u`;
        const v = s.transA ? `A[(${kq}) * M + ${row}]` : `A[${row} * K + ${kq}]`;
        return masked ? `select(0.0, ${v}, k + ${q}u < K)` : v;
      })
      .join(', ')})`;

  const step = (masked: boolean): string[] => {
    const B: string[] = [];
    // A quads a{i} = (A[m_i, k..k+3]).
    if (sg) {
      for (let g = 0; g < tm / sg; g++) {
        const own = !s.transA && s.vecA && !masked ? `A[ml${g} * (K / 4u) + k / 4u]` : aQuadScalar(`ml${g}`, masked);
        B.push(`let al${g} = ${own};`);
      }
      for (let i = 0; i < tm; i++) B.push(`let a${i} = subgroupBroadcast(al${Math.floor(i / sg)}, ${i % sg}u);`);
    } else if (s.transA && s.vecA && !masked) {
      for (let i4 = 0; i4 < tm / 4; i4++) {
        for (let q = 0; q < 4; q++) B.push(`let ac${i4}_${q} = A[(k + ${q}u) * (M / 4u) + mb${i4}];`);
        for (let c = 0; c < 4; c++) {
          B.push(`let a${4 * i4 + c} = vec4<f32>(${range(4).map((q) => `ac${i4}_${q}.${C4[c]}`).join(', ')});`);
        }
      }
    } else if (s.transA && s.vecA) {
      // masked tail of a vec4-bound transposed A: read components of the clamped vec4 rows
      for (let i = 0; i < tm; i++) {
        const comps = range(4).map((q) => {
          const kq = `min(k + ${q}u, K - 1u)`;
          return `select(0.0, A[(${kq}) * (M / 4u) + mr${i} / 4u][mr${i} % 4u], k + ${q}u < K)`;
        });
        B.push(`let a${i} = vec4<f32>(${comps.join(', ')});`);
      }
    } else if (s.vecA) {
      for (let i = 0; i < tm; i++) B.push(`let a${i} = A[mr${i} * (K / 4u) + k / 4u];`);
    } else {
      for (let i = 0; i < tm; i++) B.push(`let a${i} = ${aQuadScalar(`mr${i}`, masked)};`);
    }
    // B rows {b}{q}_{jv} = (B[k+q, n0+4jv .. +3]). The masked tail reads clamped k: A is zero there.
    const kq = (q: number): string => (masked ? `min(k + ${q}u, K - 1u)` : `k + ${q}u`);
    for (const [buf, v] of bs) {
      if (!s.transB && s.vecB) {
        for (let q = 0; q < 4; q++) for (let jv = 0; jv < tn4; jv++) B.push(`let ${v}${q}_${jv} = ${buf}[(${kq(q)}) * (N / 4u) + nb${jv}];`);
      } else if (!s.transB) {
        for (let q = 0; q < 4; q++) {
          for (let jv = 0; jv < tn4; jv++) {
            B.push(`let ${v}${q}_${jv} = vec4<f32>(${range(4).map((c) => `${buf}[(${kq(q)}) * N + nc${4 * jv + c}]`).join(', ')});`);
          }
        }
      } else {
        for (let j = 0; j < tn; j++) {
          const col = s.vecB && !masked
            ? `${buf}[nc${j} * (K / 4u) + k / 4u]`
            : `vec4<f32>(${range(4).map((q) => (s.vecB ? `${buf}[nc${j} * (K / 4u) + (${kq(q)}) / 4u][(${kq(q)}) % 4u]` : `${buf}[nc${j} * K + ${kq(q)}]`)).join(', ')})`;
          B.push(`let ${v}c${j} = ${col};`);
        }
        for (let q = 0; q < 4; q++) {
          for (let jv = 0; jv < tn4; jv++) {
            B.push(`let ${v}${q}_${jv} = vec4<f32>(${range(4).map((c) => `${v}c${4 * jv + c}.${C4[q]}`).join(', ')});`);
          }
        }
      }
      const acc = v === 'b' ? 'c' : 'f';
      for (let i = 0; i < tm; i++) {
        for (let jv = 0; jv < tn4; jv++) {
          B.push(`${acc}${i}_${jv} += a${i}.x * ${v}0_${jv} + a${i}.y * ${v}1_${jv} + a${i}.z * ${v}2_${jv} + a${i}.w * ${v}3_${jv};`);
        }
      }
    }
    return B;
  };

  L.push(`let K4 = K / 4u;`);
  L.push(`for (var k4 = 0u; k4 < K4; k4++) {\n    let k = k4 * 4u;\n    ${step(false).join('\n    ')}\n  }`);
  if (s.kTail) L.push(`{\n    let k = K4 * 4u;\n    ${step(true).join('\n    ')}\n  }`);

  // Stores.
  for (let i = 0; i < tm; i++) {
    const S: string[] = [];
    for (const [, , acc, out] of bs) {
      for (let jv = 0; jv < tn4; jv++) {
        if (s.vecC) {
          S.push(`if (n0 + ${4 * jv}u < N) { ${out}[m * (N / 4u) + n0 / 4u + ${jv}u] = ${acc}${i}_${jv}; }`);
        } else {
          for (let c = 0; c < 4; c++) S.push(`if (n0 + ${4 * jv + c}u < N) { ${out}[m * N + n0 + ${4 * jv + c}u] = ${acc}${i}_${jv}.${C4[c]}; }`);
        }
      }
    }
    L.push(`{ let m = m0 + ${i}u; if (m < M) {\n    ${S.join('\n    ')}\n  } }`);
  }
  let body = L.join('\n  ');
  // Batch offsets on every operand access (the expressions above index within one batch item).
  if (s.batched) body = body.replace(/\b(A|B2|B|C2|C)\[/g, (_, n: string) => `${n}[${n[0]}O + `);

  const f = (v: boolean) => (v ? 'vec4<f32>' : 'f32') as BufferDecl['type'];
  const buffers: BufferDecl[] = [{ name: 'A', type: f(s.vecA) }];
  for (const [buf] of bs) buffers.push({ name: buf, type: f(s.vecB) });
  const biasType = s.biasAxis === 'cols' ? f(s.vecC) : 'f32';
  if (s.bias) buffers.push({ name: 'bias', type: biasType });
  if (s.dual && s.bias2) buffers.push({ name: 'bias2', type: biasType });
  for (const [, , , out] of bs) buffers.push({ name: out, type: f(s.vecC), access: 'read_write' });
  const sgArg = sg ? ', @builtin(subgroup_invocation_id) sl: u32' : '';
  return {
    name: `matmul.${sg ? 'subgroup' : 'register'}`,
    buffers,
    uniforms: [
      ['M', 'u32'],
      ['N', 'u32'],
      ['K', 'u32'],
      ...(s.batched ? ([['sA', 'u32'], ['sB', 'u32'], ['sC', 'u32']] as Array<[string, 'u32']>) : []),
    ],
    workgroupSize: [s.wg],
    body: `
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32${sgArg}) {
  ${body}
}`,
  };
}

/** The CPU matmul as a program: every field of the spec is a primitive the WGSL depends on. */
export const CPU_MATMUL = defineProgram<CpuMatmulSpec>({
  name: 'matmul.cpu',
  spec: {
    tm: true, tn: true, transA: true, transB: true, vecA: true, vecB: true, vecC: true, kTail: true, biasAxis: true,
    bias: true, bias2: true, batched: true, dual: true, subgroup: true, wg: true,
  },
  build: cpuMatmulKernel,
});
