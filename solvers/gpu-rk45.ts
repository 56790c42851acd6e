/**
 * The batched solve (solveBatch: GPU right-hand side, GPU float32 or host float64 state, shared or per-sample
 * control) and its types, re-exported from the one ODE driver in solvers/ode/ for the code that imports them here.
 * The precision of each state placement: PRECISION_NOTE, and the header of solvers/ode/solve-batch.ts.
 */
export * from './ode/batch-types.js';
export { solveBatch } from './ode/solve-batch.js';
export { GpuDenseOutput } from './ode/dense-output-gpu.js';
