/** The problems and options of the scipy RK fixtures (test/fixtures/rk45-scipy.json, rk23-scipy.json). */
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';
import type { OdeRhs, SolveIvpOptions } from '../../solvers/ode/solve-ivp.js';

export interface FixtureCase {
  name: string;
  problem: string;
  params: Record<string, number>;
  y0: number[];
  tSpan: [number, number];
  options: { rtol?: number; atol?: number | number[]; maxStep?: number; firstStep?: number; tEval?: number[] };
  expected: {
    t: number[];
    nfev: number;
    nAccepted: number;
    nRejected: number;
    status: number;
    message: string;
    yFinal: number[];
    denseT: number[];
    denseY: number[][];
    tEval?: number[];
    yEval?: number[][];
  };
}

export interface FixtureFile {
  scipy: string;
  cases: FixtureCase[];
}

/** test/fixtures/<method>-scipy.json, written by scripts/fixtures/make_rk45_fixtures.py. */
export function loadScipyFixtures(method: 'rk45' | 'rk23'): FixtureFile {
  return JSON.parse(readFileSync(new URL(`../fixtures/${method}-scipy.json`, import.meta.url), 'utf8')) as FixtureFile;
}

/** The fixture problems, written with the same operation order as scripts/fixtures/make_rk45_fixtures.py. */
export function rhs(problem: string, p: Record<string, number>): OdeRhs {
  switch (problem) {
    case 'exp-decay':
      return (_t, y, out) => {
        for (let i = 0; i < y.length; i++) out[i] = -p.k * y[i];
      };
    case 'rotation':
      return (_t, y, out) => {
        out[0] = p.w * y[1];
        out[1] = -p.w * y[0];
      };
    case 'van-der-pol':
      return (_t, y, out) => {
        out[0] = y[1];
        out[1] = p.mu * (1 - y[0] * y[0]) * y[1] - y[0];
      };
    case 'detest-a1':
      return (_t, y, out) => {
        out[0] = -y[0];
      };
    case 'detest-a2':
      return (_t, y, out) => {
        out[0] = (-y[0] * y[0] * y[0]) / 2;
      };
    case 'detest-b1':
      return (_t, y, out) => {
        out[0] = 2 * (y[0] - y[0] * y[1]);
        out[1] = -(y[1] - y[0] * y[1]);
      };
    case 'detest-b5':
      return (_t, y, out) => {
        out[0] = y[1] * y[2];
        out[1] = -y[0] * y[2];
        out[2] = -0.51 * y[0] * y[1];
      };
    case 'detest-c1':
      return (_t, y, out) => {
        const n = y.length;
        out[0] = -y[0];
        for (let i = 1; i < n - 1; i++) out[i] = y[i - 1] - y[i];
        out[n - 1] = y[n - 2];
      };
    case 'detest-d1':
      return (_t, y, out) => {
        const r2 = y[0] * y[0] + y[1] * y[1];
        const r3 = r2 * Math.sqrt(r2);
        out[0] = y[2];
        out[1] = y[3];
        out[2] = -y[0] / r3;
        out[3] = -y[1] / r3;
      };
    case 'blow-up':
      return (_t, y, out) => {
        out[0] = y[0] * y[0];
      };
    default:
      throw new Error(`unknown fixture problem ${problem}`);
  }
}

export function optionsOf(c: FixtureCase): SolveIvpOptions {
  const o = c.options;
  const opts: SolveIvpOptions = { denseOutput: true };
  if (o.rtol !== undefined) opts.rtol = o.rtol;
  if (o.atol !== undefined) opts.atol = typeof o.atol === 'number' ? o.atol : Float64Array.from(o.atol);
  if (o.maxStep !== undefined) opts.maxStep = o.maxStep;
  if (o.firstStep !== undefined) opts.firstStep = o.firstStep;
  if (o.tEval !== undefined) opts.tEval = o.tEval;
  return opts;
}

/** max_i |a_i − b_i| / max(|b_i|, floor): relative, with a floor from the vector's size for components near 0. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  let worst = 0;
  for (let i = 0; i < b.length; i++) {
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), 1e-3 * scale, 1e-300));
  }
  return worst;
}
