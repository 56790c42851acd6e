/**
 * sbgc export-weights CHECKPOINT --out W.safetensors [--which auto|ema|ema-debiased|raw]
 *
 * Writes one set of weights of a training checkpoint (train/checkpoint.ts) under the plain parameter names, so
 * evaluation commands (`--config … --weights W`) can read any saved step — e.g. copies of the rolling checkpoint
 * kept for an accuracy-vs-steps curve. Host only: no GPU is needed. `auto` follows the trainer's rule (EMA once
 * its share of the initial weights, decay^step, is under 1 %). `ema-debiased` removes that share exactly, as Adam's
 * bias correction does: the EMA starts at the initial weights θ₀ (re-drawn here from the run's seed, model/init.ts),
 * so ema_N = dᴺ·θ₀ + (1 − d)·Σₖ d^(N−k)·θₖ and (ema_N − dᴺ·θ₀)/(1 − dᴺ) is the average of the trained weights alone.
 */
import { SbgcError } from '../engine/errors.js';
import { parseCommandLine } from './flag-reader.js';
import { parseConfig } from '../model/config.js';
import { initParams } from '../model/init.js';
import { saveHostWeights } from '../model/weights.js';
import { autoEvalWeights, loadCheckpoint } from '../train/checkpoint.js';

export const EXPORT_USAGE = 'usage: sbgc export-weights CHECKPOINT.safetensors --out W.safetensors [--which auto|ema|ema-debiased|raw]';

export async function exportWeightsCommand(argv: string[]): Promise<boolean> {
  const parsed = parseCommandLine('export-weights', EXPORT_USAGE, argv, { out: { type: 'string' }, which: { type: 'string', default: 'auto' } }, true);
  if (!parsed) return true;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) throw new SbgcError(`export-weights: give exactly one checkpoint file\n${EXPORT_USAGE}`);
  if (!values.out) throw new SbgcError(`export-weights: --out W.safetensors is required\n${EXPORT_USAGE}`);
  const which = values.which;
  if (which !== 'auto' && which !== 'ema' && which !== 'ema-debiased' && which !== 'raw') {
    throw new SbgcError(`export-weights: --which must be auto, ema, ema-debiased or raw, got '${which}'`);
  }
  const path = positionals[0];
  const ckpt = await loadCheckpoint(path);
  const config = parseConfig(ckpt.state.model, `${path} (metadata model)`);
  const options = ckpt.state.options as { adam?: { emaDecay?: number | null } } | null;
  const decay = options?.adam?.emaDecay ?? null;
  const chosen = which === 'auto' ? autoEvalWeights(ckpt.state.step, decay) : which;
  if (chosen !== 'raw' && !ckpt.ema) throw new SbgcError(`export-weights: ${path} holds no EMA weights (trained with --ema 0?)`);
  const params =
    chosen === 'raw' ? ckpt.param : chosen === 'ema' ? ckpt.ema! : debiasedEma(ckpt.ema!, initParams(config, ckpt.state.philox.seed), decay, ckpt.state.step, path);
  await saveHostWeights(values.out, config, params, {
    model: JSON.stringify(ckpt.state.model),
    weights: chosen,
    step: String(ckpt.state.step),
    source: path,
    emaDecay: String(decay),
  });
  console.error(`export-weights: ${path} step ${ckpt.state.step} → ${values.out} (${chosen} weights of "${config.name}")`);
  return true;
}

/**
 * (ema − dᴺ·θ₀)/(1 − dᴺ) per element: the EMA without its share of the initialisation. θ₀ must be the run's own
 * initial weights; the step-0 case (ema = θ₀, nothing trained) has no debiased value and is refused.
 */
export function debiasedEma(
  ema: Map<string, Float32Array>,
  init: Map<string, Float32Array>,
  decay: number | null,
  step: number,
  path: string,
): Map<string, Float32Array> {
  if (decay === null || !(decay >= 0 && decay < 1)) throw new SbgcError(`export-weights: ${path} records no EMA decay in its options, so the EMA cannot be debiased`);
  if (step < 1) throw new SbgcError(`export-weights: ${path} is at step ${step}: its EMA is the initialisation, nothing to debias`);
  const share = decay ** step;
  const out = new Map<string, Float32Array>();
  for (const [name, e] of ema) {
    const t0 = init.get(name);
    if (!t0 || t0.length !== e.length) throw new SbgcError(`export-weights: ${path}: EMA tensor '${name}' has no initial value of the same size in the model's init`);
    const r = new Float32Array(e.length);
    for (let i = 0; i < e.length; i++) r[i] = (e[i] - share * t0[i]) / (1 - share);
    out.set(name, r);
  }
  return out;
}
