import { describe, expect, it } from 'vitest';
import { minStepAt, nextAfter } from '../../../solvers/ode/step-size.js';

describe('step-size arithmetic', () => {
  it('min_step and nextAfter', () => {
    expect(nextAfter(1, true)).toBe(1 + Number.EPSILON);
    expect(nextAfter(1, false)).toBe(1 - Number.EPSILON / 2);
    expect(nextAfter(-1, true)).toBe(-1 + Number.EPSILON / 2);
    expect(nextAfter(0, true)).toBe(Number.MIN_VALUE);
    expect(minStepAt(1, 1)).toBe(10 * Number.EPSILON);
    expect(minStepAt(1, -1)).toBe(5 * Number.EPSILON);
  });
});
