/** The probability-flow solver flags of SPEC §3, shared by the evaluation commands (classify, likelihood, study). */
import { switchFlags, valueFlags, type FlagReader, type FlagValues, type OptionTable } from './flag-reader.js';
import { LIKELIHOOD_STARTS, type ClassifyOptions, type LikelihoodStart, type ProbeKind } from '../eval/probability-flow-likelihood.js';
import { HUTCHINSON_PASSES, type HutchinsonPass } from '../solvers/divergence.js';
import type { StatePlacement, StepControl } from '../solvers/ode/batch-types.js';

export const PROBE_KINDS = ['rademacher', 'gaussian', 'exact'] as const satisfies readonly ProbeKind[];
export const PROBE_MODES = ['shared', 'independent'] as const;
export type ProbeMode = (typeof PROBE_MODES)[number];
export const STEP_CONTROLS = ['shared', 'per-sample'] as const satisfies readonly StepControl[];
export const STATES = ['gpu-f32', 'host-f64'] as const satisfies readonly StatePlacement[];
export const PRIORS = ['standard', 'exact'] as const;
export type PriorKind = (typeof PRIORS)[number];

/** The flags of the ODE solve itself: classify / likelihood and study (which sweeps the probe settings itself). */
export const ODE_FLAGS = {
  ...valueFlags('rtol', 'atol', 'eps-t', 'seed', 'step-control', 'state', 'prior', 'max-steps'),
  ...switchFlags('no-dequant'),
} satisfies OptionTable;

/** The solver flags of classify / likelihood (parseArgs table). */
export const SOLVER_FLAGS = { ...ODE_FLAGS, ...valueFlags('start', 'probes', 'n', 'hutchinson-pass', 'probes-mode') } satisfies OptionTable;

export const SOLVER_USAGE = `solver (SPEC §3; defaults are the paper's settings except n):
  --rtol R --atol A       RK45 tolerances (default 1e-5, 1e-5)
  --eps-t E               start time ε_t (default 1e-5)
  --start S               clean (default, the paper: the image is the state at ε_t) | diffused (a forward-process
                          draw m·x + σ·z at ε_t, shared across classes; log p bounds the likelihood; for ε_t ≫ 1e-5)
  --probes KIND           rademacher (default) | gaussian | exact (D score VJPs per evaluation: small images only)
  --n N                   Hutchinson draws per image, averaged (default 1; the paper used 30)
  --hutchinson-pass P     forward (default: εᵀ(Jε), one JVP, fused kernels) | reverse (εᵀJ·ε, one VJP as the
                          paper); the same estimate up to float32 rounding, forward is faster (bench: network)
  --seed S                seed of the probes and the dequantisation noise (default 0)
  --probes-mode MODE      shared (default: the same probes and noise for every class of an image) | independent
  --step-control MODE     shared (default, the reference: one step size per solve) | per-sample
  --state PLACE           gpu-f32 (default) | host-f64 (float64 state and error control, the reference)
  --prior KIND            standard (default: N(0, I)) | exact (analytic models: their exact p_T)
  --no-dequant            pixels/256 without U[0, 1/256) noise (deterministic; enables exact references)
  --max-steps M           give up a solve after M steps`;

/** Solver settings as recorded in output files (plain JSON values only). */
export interface SolverSettings {
  rtol: number;
  atol: number;
  epsT: number;
  start: LikelihoodStart;
  probes: ProbeKind;
  nProbes: number;
  hutchinsonPass: HutchinsonPass;
  seed: number;
  probesMode: ProbeMode;
  stepControl: StepControl;
  state: StatePlacement;
  prior: PriorKind;
  dequantise: boolean;
  maxSteps: number | null;
}

/** --eps-t: the start time, in (0, T = 1). */
export function readEpsT(f: FlagReader, values: FlagValues): number {
  const epsT = f.positive(values, 'eps-t', 1e-5);
  if (epsT >= 1) f.fail(`--eps-t must be below T = 1, got ${epsT}`);
  return epsT;
}

export function readSolverFlags(f: FlagReader, values: FlagValues): SolverSettings {
  const maxSteps = f.int(values, 'max-steps', 0, 1);
  return {
    rtol: f.positive(values, 'rtol', 1e-5),
    atol: f.positive(values, 'atol', 1e-5),
    epsT: readEpsT(f, values),
    start: f.oneOf(values, 'start', LIKELIHOOD_STARTS, 'clean'),
    probes: f.oneOf(values, 'probes', PROBE_KINDS, 'rademacher'),
    nProbes: f.int(values, 'n', 1, 1),
    hutchinsonPass: f.oneOf(values, 'hutchinson-pass', HUTCHINSON_PASSES, 'forward'),
    seed: f.int(values, 'seed', 0, 0),
    probesMode: f.oneOf(values, 'probes-mode', PROBE_MODES, 'shared'),
    stepControl: f.oneOf(values, 'step-control', STEP_CONTROLS, 'shared'),
    state: f.oneOf(values, 'state', STATES, 'gpu-f32'),
    prior: f.oneOf(values, 'prior', PRIORS, 'standard'),
    dequantise: values['no-dequant'] !== true,
    maxSteps: maxSteps === 0 ? null : maxSteps,
  };
}

/** The likelihood-module options of the settings (the prior density is supplied by the caller). */
export function solverOptions(s: SolverSettings): ClassifyOptions {
  return {
    rtol: s.rtol,
    atol: s.atol,
    epsT: s.epsT,
    start: s.start,
    probes: s.probes,
    nProbes: s.nProbes,
    hutchinsonPass: s.hutchinsonPass,
    seed: s.seed,
    stepControl: s.stepControl,
    state: s.state,
    dequantise: s.dequantise,
    sharedProbesAcrossClasses: s.probesMode === 'shared',
    ...(s.maxSteps !== null ? { maxSteps: s.maxSteps } : {}),
  };
}
