/**
 * The one broadcast: an elementwise kernel over a view [outer, mid, inner] of its output, whose operands may have
 * size-1 axes — the adjoint of every reduction in reduce.ts:
 *
 *   ins       [outer, mid, inner]  read at the element (`x[k]`, k = row·len + j, or any offset the caller writes)
 *   rowOps    [outer, mid]         read as `v[row]`               (adjoint of rowReduce; per-sample scalars, biases)
 *   midOps    [mid]                read as `v[row % params.mid]`  (adjoint of channelReduce; per-channel vectors)
 *   axisOps   [outer, inner]       read as `v[(row / params.mid) * params.len + j]` (adjoint of axisReduce)
 *
 * Two layouts. Rows of ≥ 16 (vectors): a 2-D dispatch, x along a row (j < len = inner), y·z over the rows
 * (row = o·mid + m), so no invocation divides by a runtime size unless an operand needs it (integer division is
 * scalarised on lavapipe and made these ops 2× slower, measured). Shorter rows: a flat index split as
 * row = i / len (one division), since a mostly idle workgroup per row costs far more — on lavapipe, [4096, 64] with
 * a [64] bias (rows of 1) takes 88 ms 2-D vs 2.0 flat, an [N, C, 2, 2] bias add 0.6 ms vs 0.06; from 16 up the two
 * are within noise (measured at 16, 25, 64, 256). vec4 loads and stores when len and the offsets allow and no
 * axis operand is read.
 * The statements (`exprs`) are WGSL constants of the caller: T is the element type (f32 or vec4<f32>), and the
 * uniforms params.len (per row, in units of T), params.mid, params.a1, params.a2 (offsets) and params.alpha.
 */
import type { Engine } from '../engine/engine.js';
import type { Tensor } from '../engine/tensor.js';
import { defineProgram } from '../engine/program.js';
import { reads, u32s } from '../engine/kernel.js';
import { flatMain, grid } from '../engine/wgsl.js';
import { INPUT_SLOT_FIELDS, nameSlots, usedSlots, type InputSlots } from './reduce-wgsl.js';

export interface Broadcast {
  /** Kernel name (a constant: part of the program key). */
  name: string;
  /** Per-element tensors (≤ 4). */
  ins: Record<string, Tensor>;
  /** Per-row operands [rows] (≤ 4). */
  rowOps?: Record<string, Tensor>;
  /** Per-mid operands [mid] (≤ 1), e.g. a channel vector of an [N, C, S] view. */
  midOps?: Record<string, Tensor>;
  /** Per-(outer, inner) operands (≤ 4): the axis `mid` is the one broadcast over. Scalar loads only. */
  axisOps?: Record<string, Tensor>;
  outs: Record<string, Tensor>;
  /** The view: rows = outer·mid rows of `len` (= inner) elements. */
  outer?: number;
  mid?: number;
  len: number;
  /** Offsets for copies (len, a1, a2 must all be multiples of 4 to vectorise). */
  a1?: number;
  a2?: number;
  alpha?: number;
  /** WGSL statements (a constant) using row, j, T and the uniforms. */
  exprs: string;
}

/** Buffer-name slots ('' = unused) of the row, mid and axis operands and of the outputs. */
type OperandSlots = Record<'row0' | 'row1' | 'row2' | 'row3' | 'mid0' | 'axis0' | 'axis1' | 'axis2' | 'axis3' | 'out0' | 'out1', string>;

type BroadcastSpec = InputSlots & OperandSlots & { name: string; exprs: string; vec4: boolean; flat: boolean; wg: number };

const WG = 256;
const SHORT_WG = 64;
/** Rows shorter than this (in units of T) take the flat layout (see the file comment). */
const FLAT_BELOW = 16;

const BROADCAST = defineProgram<BroadcastSpec>({
  name: 'broadcast',
  spec: {
    name: true, exprs: true, ...INPUT_SLOT_FIELDS,
    row0: true, row1: true, row2: true, row3: true, mid0: true, axis0: true, axis1: true, axis2: true, axis3: true,
    out0: true, out1: true, vec4: true, flat: true, wg: true,
  },
  build(s) {
    const elem = s.vec4 ? ('vec4<f32>' as const) : ('f32' as const);
    return {
      name: `${s.name}${s.vec4 ? '.vec4' : ''}`,
      buffers: [
        ...usedSlots(s.in0, s.in1, s.in2, s.in3).map((name) => ({ name, type: elem })),
        ...reads(...usedSlots(s.row0, s.row1, s.row2, s.row3, s.mid0, s.axis0, s.axis1, s.axis2, s.axis3)),
        ...usedSlots(s.out0, s.out1).map((name) => ({ name, type: elem, access: 'read_write' as const })),
      ],
      uniforms: [...u32s('n', 'rows', 'len', 'mid', 'a1', 'a2'), ['alpha', 'f32']],
      workgroupSize: [s.wg],
      body: s.flat
        ? `
alias T = ${elem};
${flatMain({ wg: s.wg, count: 'params.n', body: `  let row = i / params.len;\n  let j = i - row * params.len;\n  ${s.exprs}` })}`
        : `
alias T = ${elem};
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = gid.x;
  let row = gid.y + gid.z * nwg.y;
  if (j >= params.len || row >= params.rows) { return; }
  ${s.exprs}
}`,
    };
  },
});

/** Launches one broadcast (nothing when the view is empty). */
export function broadcast(e: Engine, b: Broadcast): void {
  const rows = (b.outer ?? 1) * (b.mid ?? 1);
  if (rows === 0 || b.len === 0) return;
  const a1 = b.a1 ?? 0;
  const a2 = b.a2 ?? 0;
  const [in0, in1, in2, in3] = nameSlots(b.name, 'inputs', b.ins, 4);
  const [row0, row1, row2, row3] = nameSlots(b.name, 'row operands', b.rowOps, 4);
  const [mid0] = nameSlots(b.name, 'mid operands', b.midOps, 1);
  const [axis0, axis1, axis2, axis3] = nameSlots(b.name, 'axis operands', b.axisOps, 4);
  const width = b.len % 4 === 0 && a1 % 4 === 0 && a2 % 4 === 0 && axis0 === '' ? 4 : 1;
  const len = b.len / width;
  const [out0, out1] = nameSlots(b.name, 'outputs', b.outs, 2);
  const flat = len < FLAT_BELOW;
  const spec = {
    name: b.name, exprs: b.exprs, in0, in1, in2, in3, row0, row1, row2, row3, mid0, axis0, axis1, axis2, axis3, out0, out1,
    vec4: width === 4, flat, wg: flat ? WG : len <= 64 ? SHORT_WG : WG,
  };
  const n = rows * len;
  const y = Math.min(rows, e.limits.maxComputeWorkgroupsPerDimension);
  e.run(
    BROADCAST,
    spec,
    { ...b.ins, ...b.rowOps, ...b.midOps, ...b.axisOps, ...b.outs },
    { n, rows, len, mid: b.mid ?? 1, a1: a1 / width, a2: a2 / width, alpha: b.alpha ?? 0 },
    flat ? grid(e, n, WG) : [Math.ceil(len / spec.wg), y, Math.ceil(rows / y)],
  );
}
