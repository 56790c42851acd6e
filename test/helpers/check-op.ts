/**
 * checkOp: one helper that checks an op's forward against a float64 reference, its JVP against central finite
 * differences of that reference, its VJP against the same directional derivatives, and the dot-product identity
 * ⟨u, J·v⟩ = ⟨Jᵀ·u, v⟩ between the GPU JVP and VJP. Every op test is a few lines calling it.
 *
 * Errors are measured relative to the max-norm of the reference quantity (the scale f32 rounding works at).
 */
import { expect } from 'vitest';
import type { Engine } from '../../engine/engine.js';
import type { Tensor } from '../../engine/tensor.js';
import { jvp, vjp, vjpAndHvp, type Op } from '../../engine/autodiff.js';
import '../../kernels/elementwise.js';

export interface Host64 {
  shape: number[];
  data: Float64Array;
}

export type RefFn = (inputs: Array<Host64 | null>) => Host64;

export interface Tolerances {
  /** max|gpu − ref| / max|ref| for the forward value. */
  forward: number;
  /** same for the JVP vs central differences of the reference. */
  jvp: number;
  /** relative error of ⟨Jᵀu, v⟩ (GPU VJP) against ⟨u, J v⟩ from finite differences. */
  vjp: number;
}

export interface CheckOpSpec<P> {
  op: Op<P>;
  params: P;
  inputs: Array<Host64 | null>;
  reference: RefFn;
  /** Inputs that get tangents and gradients (default: every non-null input). */
  differentiable?: boolean[];
  tol: Tolerances;
  seed?: number;
  /** Finite-difference step (default 1e-5: central differences, O(h²) truncation, float64 roundoff ~1e-11). */
  h?: number;
}

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    // xorshift32 → uniform(-1, 1): enough for test data, deterministic.
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return (s / 2 ** 32) * 2 - 1;
  };
}

export function randomHost(shape: number[], seed: number, scale = 1): Host64 {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: Float64Array.from({ length: n }, () => scale * r()) };
}

/** Rounds to f32 so the reference sees exactly what the GPU sees. */
export function roundF32(h: Host64): Host64 {
  return { shape: h.shape, data: Float64Array.from(Float32Array.from(h.data)) };
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

export function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  expect(got.length).toBe(want.length);
  let m = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m / Math.max(maxAbs(want), 1e-30);
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function axpyHost(x: Host64, v: Host64 | null, h: number): Host64 {
  if (!v) return x;
  return { shape: x.shape, data: x.data.map((xi, i) => xi + h * v.data[i]) };
}

export function fdDirectional(ref: RefFn, inputs: Array<Host64 | null>, dirs: Array<Host64 | null>, h: number): Float64Array {
  const plus = ref(inputs.map((x, i) => (x ? axpyHost(x, dirs[i], h) : null)));
  const minus = ref(inputs.map((x, i) => (x ? axpyHost(x, dirs[i], -h) : null)));
  return plus.data.map((p, i) => (p - minus.data[i]) / (2 * h));
}

export interface CheckReport {
  forward: number;
  jvp: number;
  vjp: number[];
  identity: number;
}

export async function checkOp<P>(e: Engine, spec: CheckOpSpec<P>): Promise<CheckReport> {
  const seed = spec.seed ?? 1;
  const h = spec.h ?? 1e-5;
  const inputs = spec.inputs.map((x) => (x ? roundF32(x) : null));
  const diff = spec.differentiable ?? inputs.map((x) => x !== null);
  const dirs = inputs.map((x, i) => (x && diff[i] ? roundF32(randomHost(x.shape, seed * 7919 + i)) : null));

  return e.scope(async () => {
    const tensors = inputs.map((x) => (x ? e.tensor(Float32Array.from(x.data), x.shape) : null));
    const tangents = dirs.map((d) => (d ? e.tensor(Float32Array.from(d.data), d.shape) : null));
    const active = tensors.map((t, i) => (t && diff[i] ? t : null));
    const activeIdx = active.map((t, i) => (t ? i : -1)).filter((i) => i >= 0);
    const call = (...xs: Tensor[]) => {
      const all = tensors.slice();
      activeIdx.forEach((k, j) => (all[k] = xs[j]));
      return spec.op(e, all, spec.params);
    };
    const activeTensors = activeIdx.map((i) => tensors[i]!);

    // Forward + JVP.
    const { output, tangent } = jvp(e, call, activeTensors, activeIdx.map((i) => tangents[i]));
    const ref = spec.reference(inputs);
    expect(output.shape).toEqual(ref.shape);
    const gpuOut = await output.readF64();
    const forward = relErr(gpuOut, ref.data);
    const fdJ = fdDirectional(spec.reference, inputs, dirs, h);
    const gpuTan = tangent ? await tangent.readF64() : new Float64Array(fdJ.length);
    const jvpErr = relErr(gpuTan, fdJ);

    // VJP against directional finite differences, input by input, and the JVP/VJP dot identity.
    const u = roundF32(randomHost(ref.shape, seed * 104729 + 17));
    const uT = e.tensor(Float32Array.from(u.data), u.shape);
    const grads = vjp(e, call, activeTensors).backward(uT);
    const vjpErrs: number[] = [];
    let sumGv = 0;
    for (let j = 0; j < activeIdx.length; j++) {
      const i = activeIdx[j];
      const g = grads[j] ? await grads[j]!.readF64() : new Float64Array(inputs[i]!.data.length);
      const gv = dot(g, dirs[i]!.data);
      sumGv += gv;
      const only = dirs.map((d, k) => (k === i ? d : null));
      const uJv = dot(u.data, fdDirectional(spec.reference, inputs, only, h));
      const scale = Math.sqrt(dot(g, g) * dot(dirs[i]!.data, dirs[i]!.data)) + 1e-30;
      vjpErrs.push(Math.abs(gv - uJv) / scale);
    }
    const uJvGpu = dot(u.data, gpuTan);
    const identity = Math.abs(uJvGpu - sumGv) / (Math.sqrt(dot(u.data, u.data) * dot(gpuTan, gpuTan)) + 1e-30);

    const report = { forward, jvp: jvpErr, vjp: vjpErrs, identity };
    expect(forward, `${spec.op.def.name} forward`).toBeLessThanOrEqual(spec.tol.forward);
    expect(jvpErr, `${spec.op.def.name} jvp vs finite differences`).toBeLessThanOrEqual(spec.tol.jvp);
    vjpErrs.forEach((err, j) =>
      expect(err, `${spec.op.def.name} vjp of input ${activeIdx[j]} vs finite differences`).toBeLessThanOrEqual(
        spec.tol.vjp,
      ),
    );
    expect(identity, `${spec.op.def.name} ⟨u, Jv⟩ = ⟨Jᵀu, v⟩`).toBeLessThanOrEqual(spec.tol.vjp);
    return report;
  });
}

/**
 * Checks the Hessian-vector product of ⟨u, f(x)⟩ computed forward-over-reverse on the GPU against central
 * differences of the reference gradient ∇ₓ⟨u, f⟩ (given in float64 by `referenceGrad`).
 */
export async function checkHvp(
  e: Engine,
  f: (x: Tensor) => Tensor,
  x0: Host64,
  referenceGrad: (x: Host64, u: Host64) => Host64,
  outShape: number[],
  tol: number,
  seed = 3,
  h = 1e-5,
): Promise<number> {
  const x = roundF32(x0);
  const u = roundF32(randomHost(outShape, seed));
  const v = roundF32(randomHost(x.shape, seed + 1));
  return e.scope(async () => {
    const xt = e.tensor(Float32Array.from(x.data), x.shape);
    const ut = e.tensor(Float32Array.from(u.data), u.shape);
    const vt = e.tensor(Float32Array.from(v.data), v.shape);
    const { hvp } = vjpAndHvp(e, f, xt, ut, vt);
    const got = hvp ? await hvp.readF64() : new Float64Array(x.data.length);
    const gp = referenceGrad(axpyHost(x, v, h), u).data;
    const gm = referenceGrad(axpyHost(x, v, -h), u).data;
    const want = gp.map((p, i) => (p - gm[i]) / (2 * h));
    const err = relErr(got, want);
    expect(err, 'HVP vs finite differences of the reference gradient').toBeLessThanOrEqual(tol);
    return err;
  });
}
