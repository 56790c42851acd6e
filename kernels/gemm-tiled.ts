/**
 * The 'tiled' GEMM variant (GPUs): the classic workgroup-memory tiled GEMM (64×64 tiles, 16×16 threads with 4×4
 * outputs each), written once over loader functions (loadA, loadB, storeC) so matmul and the implicit-GEMM
 * convolutions share it; its tile defaults and tuning candidates; and the ordered sum of split-K partials.
 */
import type { Engine } from '../engine/engine.js';
import { reads, u32s, writes, type BufferDecl, type KernelSource } from '../engine/kernel.js';
import { defineFixedProgram } from '../engine/program.js';
import { flatMain } from '../engine/wgsl.js';

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Workgroup tile of C (bm × bn), k-slab bk; each thread computes rm × rn outputs. Also the programs' spec fields. */
export type TileConfig = { bm: number; bn: number; bk: number; rm: number; rn: number };
export const TILE_SPEC_FIELDS = { bm: true, bn: true, bk: true, rm: true, rn: true } as const;

/**
 * What `tiledGemmKernel` assembles: tile, buffers, uniforms and loader WGSL. Programs derive it inside `build` from
 * their primitive spec (it is never built per dispatch).
 */
export interface TiledGemmLayout {
  name: string;
  /** Workgroup tile of C (bm × bn), k-slab bk; each thread computes rm × rn outputs. */
  bm: number;
  bn: number;
  bk: number;
  rm: number;
  rn: number;
  /** A second B operand and accumulator (the conv "dual": primal and tangent share the A loads). */
  dual: boolean;
  /** Split the reduction: workgroup z covers k in [z·kChunk, (z+1)·kChunk). */
  splitK: boolean;
  buffers: BufferDecl[];
  /** Must include M, N, K (and kChunk when splitK). */
  uniforms: Array<[string, 'u32' | 'i32' | 'f32']>;
  /**
   * WGSL defining fn loadA(m: u32, k: u32) -> f32, fn loadB(k: u32, n: u32) -> f32, fn storeC(m: u32, n: u32,
   * z: u32, v: f32) (and loadB2 / storeC2 when dual). Loaders are only called with m < M, n < N, k < K.
   */
  helpers: string;
}

/** Workgroup-memory tiled GEMM: cooperative tile loads, two barriers per k-slab, strided thread tiles. */
export function tiledGemmKernel(s: TiledGemmLayout): KernelSource {
  const tx = s.bn / s.rn;
  const ty = s.bm / s.rm;
  const threads = tx * ty;
  const acc = (p: string) => range(s.rm).flatMap((r) => range(s.rn).map((c) => `${p}${r}_${c}`));
  const duals = s.dual ? ['', '2'] : [''];
  const body = `
var<workgroup> As: array<f32, ${s.bk * s.bm}>;
${duals.map((d) => `var<workgroup> Bs${d}: array<f32, ${s.bk * s.bn}>;`).join('\n')}
${s.helpers}
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
  let M = params.M; let N = params.N; let K = params.K;
  let m0 = wg.y * ${s.bm}u; let n0 = wg.x * ${s.bn}u;
  let kBegin = ${s.splitK ? 'wg.z * params.kChunk' : '0u'};
  let kEnd = ${s.splitK ? 'min(K, kBegin + params.kChunk)' : 'K'};
  ${duals.map((d) => acc(`c${d}_`).map((a) => `var ${a} = 0.0;`).join(' ')).join('\n  ')}
  for (var kt = kBegin; kt < kEnd; kt += ${s.bk}u) {
    for (var e = li; e < ${s.bk * s.bm}u; e += ${threads}u) {
      let kk = e / ${s.bm}u; let mm = e % ${s.bm}u;
      var v = 0.0;
      if (m0 + mm < M && kt + kk < kEnd) { v = loadA(m0 + mm, kt + kk); }
      As[e] = v;
    }
    for (var e = li; e < ${s.bk * s.bn}u; e += ${threads}u) {
      let kk = e / ${s.bn}u; let nn = e % ${s.bn}u;
      ${duals.map((d) => `var v${d} = 0.0;`).join(' ')}
      if (n0 + nn < N && kt + kk < kEnd) { ${duals.map((d) => `v${d} = loadB${d}(kt + kk, n0 + nn);`).join(' ')} }
      ${duals.map((d) => `Bs${d}[e] = v${d};`).join(' ')}
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${s.bk}u; kk++) {
      ${range(s.rm).map((r) => `let a${r} = As[kk * ${s.bm}u + lid.y + ${r * ty}u];`).join(' ')}
      ${duals
        .map((d) =>
          range(s.rn)
            .map((c) => `let b${d}${c} = Bs${d}[kk * ${s.bn}u + lid.x + ${c * tx}u];`)
            .join(' '),
        )
        .join('\n      ')}
      ${duals
        .map((d) =>
          range(s.rm)
            .flatMap((r) => range(s.rn).map((c) => `c${d}_${r}_${c} += a${r} * b${d}${c};`))
            .join(' '),
        )
        .join('\n      ')}
    }
    workgroupBarrier();
  }
  ${range(s.rm)
    .flatMap((r) =>
      range(s.rn).map(
        (c) =>
          `{ let m = m0 + lid.y + ${r * ty}u; let n = n0 + lid.x + ${c * tx}u; if (m < M && n < N) { ${duals
            .map((d) => `storeC${d}(m, n, wg.z, c${d}_${r}_${c});`)
            .join(' ')} } }`,
      ),
    )
    .join('\n  ')}
}`;
  return { name: s.name, buffers: s.buffers, uniforms: s.uniforms, workgroupSize: [tx, ty], body };
}

export const TILED_DEFAULT: TileConfig = { bm: 64, bn: 64, bk: 16, rm: 4, rn: 4 };
/**
 * On CPU adapters 'tiled' only runs when forced (tests): a shorter k-slab keeps lavapipe's JIT time down (LLVM
 * unrolls the constant slab loop: ~5 s to compile at bk 16, ~1.7 s at bk 8).
 */
export const TILED_CPU_DEFAULT: TileConfig = { bm: 64, bn: 64, bk: 8, rm: 4, rn: 4 };

export function tiledDefault(e: Engine): TileConfig {
  return e.info.isCpu ? TILED_CPU_DEFAULT : TILED_DEFAULT;
}
export const TILED_CANDIDATES: TileConfig[] = [
  TILED_DEFAULT,
  { bm: 32, bn: 64, bk: 8, rm: 2, rn: 4 },
  TILED_CPU_DEFAULT,
  { bm: 32, bn: 64, bk: 16, rm: 2, rn: 4 },
  { bm: 64, bn: 32, bk: 16, rm: 4, rn: 2 },
  { bm: 32, bn: 32, bk: 32, rm: 2, rn: 2 },
  { bm: 128, bn: 64, bk: 8, rm: 8, rn: 4 },
];

// ---------------------------------------------------------------- split-reduction finish

/** out[i] = Σ_z partial[z·n + i], summed in z order (deterministic). */
export const SUM_PARTIALS = defineFixedProgram({
  name: 'gemm.sum-partials',
  buffers: [...reads('partial'), ...writes('out')],
  uniforms: u32s('n', 'parts'),
  workgroupSize: [64],
  body: flatMain({
    wg: 64,
    count: 'params.n',
    body: `  var s = 0.0;
  for (var z = 0u; z < params.parts; z++) { s += partial[z * params.n + i]; }
  out[i] = s;`,
  }),
});
