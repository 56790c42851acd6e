/**
 * sbgc export-weights CHECKPOINT --out W.safetensors [--which auto|ema|raw]
 *
 * Writes one set of weights of a training checkpoint (train/checkpoint.ts) under the plain parameter names, so
 * evaluation commands (`--config … --weights W`) can read any saved step — e.g. copies of the rolling checkpoint
 * kept for an accuracy-vs-steps curve. Host only: no GPU is needed. `auto` follows the trainer's rule (EMA once
 * its share of the initial weights, decay^step, is under 1 %).
 */
import { parseArgs } from 'node:util';
import { SbgcError } from '../engine/errors.js';
import { parseConfig } from '../model/config.js';
import { saveHostWeights } from '../model/weights.js';
import { autoEvalWeights, loadCheckpoint } from '../train/checkpoint.js';

export const EXPORT_USAGE = 'usage: sbgc export-weights CHECKPOINT.safetensors --out W.safetensors [--which auto|ema|raw]';

export async function exportWeightsCommand(argv: string[]): Promise<boolean> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { out: { type: 'string' }, which: { type: 'string', default: 'auto' }, help: { type: 'boolean' } },
  });
  if (values.help) {
    console.log(EXPORT_USAGE);
    return true;
  }
  if (positionals.length !== 1) throw new SbgcError(`export-weights: give exactly one checkpoint file\n${EXPORT_USAGE}`);
  if (!values.out) throw new SbgcError(`export-weights: --out W.safetensors is required\n${EXPORT_USAGE}`);
  const which = values.which;
  if (which !== 'auto' && which !== 'ema' && which !== 'raw') throw new SbgcError(`export-weights: --which must be auto, ema or raw, got '${which}'`);
  const path = positionals[0];
  const ckpt = await loadCheckpoint(path);
  const config = parseConfig(ckpt.state.model, `${path} (metadata model)`);
  const options = ckpt.state.options as { adam?: { emaDecay?: number | null } } | null;
  const decay = options?.adam?.emaDecay ?? null;
  const chosen = which === 'auto' ? autoEvalWeights(ckpt.state.step, decay) : which;
  if (chosen === 'ema' && !ckpt.ema) throw new SbgcError(`export-weights: ${path} holds no EMA weights (trained with --ema 0?)`);
  const params = chosen === 'ema' ? ckpt.ema! : ckpt.param;
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
