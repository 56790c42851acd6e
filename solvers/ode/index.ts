/**
 * The public face of the one ODE driver: solveIvp (scipy's RK45 — or RK23 by `method` — on a host Float64Array),
 * solveBatch (a batch of systems, state on the GPU in float32 or on the host in float64), the tableaus, the step
 * controller and dense output. The library index re-exports this; code inside the repo imports the files.
 */
export type { EmbeddedRkTableau } from './tableau.js';
export { checkTableau } from './tableau.js';
export { RK23, RK45, RK45_A, RK45_B, RK45_C, RK45_E, RK45_P } from './tableaus.js';
export { MIN_RTOL, allFinite, rmsNorm, validateTolerances, type Tolerance } from './tolerance.js';
export { powCorrectlyRounded } from './pow-correctly-rounded.js';
export { initialStepFinal, initialStepGuess, minStepAt, nextAfter, selectInitialStep, type InitialStepOptions } from './step-size.js';
export { Rk45Controller, ScipyStepController, type StepController, type StepControllerOptions, type StepTrial } from './controller.js';
export { NONFINITE_Y, estimateErrorNorm, rkStep } from './rk-step.js';
export { DenseOutput, StepInterpolant } from './dense-output.js';
export type { OdeRhs } from './host-rhs.js';
export type { SolveIvpStatus } from './outcome.js';
export { SAVE_STEPS_DEFAULT_MAX_DIM, solveIvp, type SolveIvpOptions, type SolveIvpResult, type StepInfo } from './solve-ivp.js';
export * from './batch-types.js';
export { solveBatch } from './solve-batch.js';
export { GpuDenseOutput } from './dense-output-gpu.js';
