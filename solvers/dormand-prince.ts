/**
 * scipy's RK45 on a host Float64Array (solveIvp) and its pieces, re-exported from the one ODE driver in
 * solvers/ode/ for the code that imports them from here.
 */
export * from './ode/tableau.js';
export * from './ode/tableaus.js';
export * from './ode/tolerance.js';
export { powCorrectlyRounded } from './ode/pow-correctly-rounded.js';
export * from './ode/step-size.js';
export * from './ode/controller.js';
export * from './ode/rk-step.js';
export * from './ode/dense-output.js';
export type { OdeRhs, HostBatchRhs } from './ode/host-rhs.js';
export * from './ode/outcome.js';
export * from './ode/solve-ivp.js';
