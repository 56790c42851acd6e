/**
 * Every op of the engine: the kernel table plus the model-level ops (the analytic Gaussian-mixture score and its
 * Jacobian-vector product). A name in both tables is a compile error (joinOpTables).
 */
import { KERNEL_OPS, joinOpTables, type OpTable } from '../kernels/op-table.js';
import { mixtureJacobianVector, mixtureScore } from './mixture-ops.js';

export const MIXTURE_OPS = {
  'mixture.score': mixtureScore,
  'mixture.jv': mixtureJacobianVector,
} as const satisfies OpTable;

export const MODEL_OPS = joinOpTables(KERNEL_OPS, MIXTURE_OPS);

export type ModelOpName = keyof typeof MODEL_OPS;
