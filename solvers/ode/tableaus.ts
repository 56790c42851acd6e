/**
 * The embedded RK pairs of scipy's `solve_ivp`, as data (coefficients copied from scipy/integrate/_ivp/rk.py).
 * Adding a method is adding a constant here; the driver, both state implementations and the dense output take it.
 */
import type { EmbeddedRkTableau } from './tableau.js';

export const RK45_C: readonly number[] = Object.freeze([0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1]);
export const RK45_A: readonly (readonly number[])[] = Object.freeze([
  Object.freeze([]),
  Object.freeze([1 / 5]),
  Object.freeze([3 / 40, 9 / 40]),
  Object.freeze([44 / 45, -56 / 15, 32 / 9]),
  Object.freeze([19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729]),
  Object.freeze([9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656]),
]);
export const RK45_B: readonly number[] = Object.freeze([35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]);
export const RK45_E: readonly number[] = Object.freeze([
  -71 / 57600, 0, 71 / 16695, -71 / 1920, 17253 / 339200, -22 / 525, 1 / 40,
]);
/** Shampine's 4th-order interpolant with the optimal c₆ (Math. Comp. 46, 1986), as scipy's RK45 uses it. */
export const RK45_P: readonly (readonly number[])[] = Object.freeze([
  Object.freeze([1, -8048581381 / 2820520608, 8663915743 / 2820520608, -12715105075 / 11282082432]),
  Object.freeze([0, 0, 0, 0]),
  Object.freeze([0, 131558114200 / 32700410799, -68118460800 / 10900136933, 87487479700 / 32700410799]),
  Object.freeze([0, -1754552775 / 470086768, 14199869525 / 1410260304, -10690763975 / 1880347072]),
  Object.freeze([0, 127303824393 / 49829197408, -318862633887 / 49829197408, 701980252875 / 199316789632]),
  Object.freeze([0, -282668133 / 205662961, 2019193451 / 616988883, -1453857185 / 822651844]),
  Object.freeze([0, 40617522 / 29380423, -110615467 / 29380423, 69997945 / 29380423]),
]);

/** Dormand–Prince 5(4), scipy's RK45 (SPEC §4). */
export const RK45: EmbeddedRkTableau = Object.freeze({
  name: 'RK45',
  nStages: 6,
  order: 5,
  errorEstimatorOrder: 4,
  fsal: true,
  C: RK45_C,
  A: RK45_A,
  B: RK45_B,
  E: RK45_E,
  P: RK45_P,
});

/** Bogacki–Shampine 3(2), scipy's RK23: its own error weights and cubic Hermite dense output. */
export const RK23: EmbeddedRkTableau = Object.freeze({
  name: 'RK23',
  nStages: 3,
  order: 3,
  errorEstimatorOrder: 2,
  fsal: true,
  C: Object.freeze([0, 1 / 2, 3 / 4]),
  A: Object.freeze([Object.freeze([]), Object.freeze([1 / 2]), Object.freeze([0, 3 / 4])]),
  B: Object.freeze([2 / 9, 1 / 3, 4 / 9]),
  E: Object.freeze([5 / 72, -1 / 12, -1 / 9, 1 / 8]),
  P: Object.freeze([
    Object.freeze([1, -4 / 3, 5 / 9]),
    Object.freeze([0, 1, -2 / 3]),
    Object.freeze([0, 4 / 3, -8 / 9]),
    Object.freeze([0, -1, 1]),
  ]),
});
