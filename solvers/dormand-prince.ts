/**
 * solveIvp (scipy's RK45 on a host Float64Array, or RK23 by `method`) and its pieces, re-exported from the one ODE
 * driver in solvers/ode/ for the code that imports them from here.
 */
export type { EmbeddedRkTableau } from './ode/tableau.js';
export { checkTableau } from './ode/tableau.js';
export { RK23, RK45, RK45_A, RK45_B, RK45_C, RK45_E, RK45_P } from './ode/tableaus.js';
export { MIN_RTOL, allFinite, rmsNorm, validateTolerances, type Tolerance } from './ode/tolerance.js';
export { powCorrectlyRounded } from './ode/pow-correctly-rounded.js';
export { initialStepFinal, initialStepGuess, minStepAt, nextAfter, selectInitialStep, type InitialStepOptions } from './ode/step-size.js';
export { Rk45Controller, ScipyStepController, type StepController, type StepControllerOptions, type StepTrial } from './ode/controller.js';
export { NONFINITE_Y, estimateErrorNorm, rkStep } from './ode/rk-step.js';
export { DenseOutput, StepInterpolant } from './ode/dense-output.js';
export type { OdeRhs } from './ode/host-rhs.js';
export type { SolveIvpStatus } from './ode/outcome.js';
export { SAVE_STEPS_DEFAULT_MAX_DIM, solveIvp, type SolveIvpOptions, type SolveIvpResult, type StepInfo } from './ode/solve-ivp.js';
