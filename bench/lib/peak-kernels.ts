/**
 * The two kernels that measure an adapter's roofs: an FMA-bound one (GFLOP/s) and a copy-bound one (GB/s), in f32
 * and in f16 (the latter only where the device has `shader-f16`).
 */
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { defineProgram } from '../../engine/program.js';
import { u32s } from '../../engine/kernel.js';
import { flatMain, grid } from '../../engine/wgsl.js';

export type PeakType = 'f32' | 'f16';

const WG = 64;
/** Independent accumulators per invocation: enough to hide FMA latency on every adapter we know. */
export const FMA_CHAINS = 8;
/** FMA steps per chain per loop iteration, written out (unrolled) in the WGSL. */
export const FMA_UNROLL = 16;
/** The multiplier m of a = fma(a, m, c) (a uniform) and the constant c: values stay bounded. */
export const FMA_SCALE = 0.999;
export const FMA_ADDEND = 1e-3;
const [CHAINS, UNROLL] = [FMA_CHAINS, FMA_UNROLL];
/** FLOPs one invocation does per loop iteration: chains × steps × 4 lanes × 2 (multiply + add). */
export const FMA_FLOPS_PER_ITERATION = CHAINS * UNROLL * 4 * 2;

/**
 * Each invocation seeds CHAINS vec4 registers from its index, then runs `params.iters` rounds of UNROLL dependent
 * steps on each of the CHAINS independent chains: a = fma(a, m, c) with m slightly below 1 (uniform-driven, so the
 * compiler cannot fold it) keeps values bounded. The chains' sum is written once so nothing is optimised away.
 */
const FMA = defineProgram<{ type: PeakType }>({
  name: 'roofline.fma',
  spec: { type: true },
  build: ({ type }) => {
    const v = `vec4<${type}>`;
    const chains = Array.from({ length: CHAINS }, (_, k) => k);
    const step = chains.map((k) => `a${k} = fma(a${k}, m, c);`).join(' ');
    return {
      name: `roofline.fma.${type}`,
      buffers: [{ name: 'out', type: `vec4<${type}>`, access: 'read_write' }],
      uniforms: [...u32s('n', 'iters'), ['scale', 'f32']],
      workgroupSize: [WG],
      body: flatMain({
        wg: WG,
        count: 'params.n',
        body: `  let s = ${type}(f32(i % 1024u) * 1e-3);
  let m = ${v}(${type}(params.scale));
  let c = ${v}(${type}(${FMA_ADDEND}));
${chains.map((k) => `  var a${k} = ${v}(s + ${type}(${k}), s, s, s);`).join('\n')}
  for (var it = 0u; it < params.iters; it++) {
${Array.from({ length: UNROLL }, () => `    ${step}`).join('\n')}
  }
  out[i] = ${chains.map((k) => `a${k}`).join(' + ')};`,
      }),
    };
  },
});

/** out[i] = in[i] over vec4s: every byte read once and written once. */
const COPY = defineProgram<{ type: PeakType }>({
  name: 'roofline.copy',
  spec: { type: true },
  build: ({ type }) => ({
    name: `roofline.copy.${type}`,
    buffers: [
      { name: 'src', type: `vec4<${type}>` },
      { name: 'dst', type: `vec4<${type}>`, access: 'read_write' },
    ],
    uniforms: u32s('n'),
    workgroupSize: [WG],
    body: flatMain({ wg: WG, count: 'params.n', body: '  dst[i] = src[i];' }),
  }),
});

export interface PeakSizes {
  /** FMA-bound kernel: invocations and loop iterations each. */
  fmaInvocations: number;
  fmaIterations: number;
  /** Copy-bound kernel: elements (scalars) of the buffer copied. */
  copyElements: number;
}

/** A prepared peak kernel: its work, a recorder, and its buffers to free. */
export interface PeakKernel {
  name: string;
  type: PeakType;
  kind: 'fma' | 'copy';
  /** FLOPs (fma) or bytes read + written (copy) per dispatch. */
  work: number;
  /** The tensor the kernel writes (fma: one vec4 per invocation; copy: the destination). */
  result: Tensor;
  record(): void;
  dispose(): void;
}

const BYTES: Record<PeakType, number> = { f32: 4, f16: 2 };

export function peakKernels(e: Engine, type: PeakType, s: PeakSizes): PeakKernel[] {
  const out = e.keep(e.empty([s.fmaInvocations * 4], type, `roofline.fma.${type}.out`));
  // A ramp of k/1024 (exact in f16 too), so a copy that moved nothing would show.
  const ramp = new Float32Array(s.copyElements).map((_, i) => (i % 1024) / 1024);
  const src = e.keep(e.tensor(ramp, [s.copyElements], type, `roofline.copy.${type}.src`));
  const dst = e.keep(e.empty([s.copyElements], type, `roofline.copy.${type}.dst`));
  const vecs = s.copyElements / 4;
  const free = (ts: Tensor[]) => () => ts.forEach((t) => t.dispose());
  return [
    {
      name: `fma ${type}`,
      type,
      kind: 'fma',
      work: s.fmaInvocations * s.fmaIterations * FMA_FLOPS_PER_ITERATION,
      result: out,
      record: () =>
        e.run(FMA, { type }, { out }, { n: s.fmaInvocations, iters: s.fmaIterations, scale: FMA_SCALE }, grid(e, s.fmaInvocations, WG)),
      dispose: free([out]),
    },
    {
      name: `copy ${type}`,
      type,
      kind: 'copy',
      work: 2 * s.copyElements * BYTES[type],
      result: dst,
      record: () => e.run(COPY, { type }, { src, dst }, { n: vecs }, grid(e, vecs, WG)),
      dispose: free([src, dst]),
    },
  ];
}
