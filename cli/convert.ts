/**
 * sbgc convert --in ckpt.pth --out weights.safetensors [--entry model|ema] [--config preset|file.json]
 * Converts a score_sde_pytorch checkpoint to sbgc's F32 safetensors weights (model/convert.ts).
 */
import { readFile } from 'node:fs/promises';

import { SbgcError } from '../engine/errors.js';
import { parseCommandLine, valueFlags } from './flag-reader.js';
import { ConfigError, loadPreset, parseConfig, presetNames, type NcsnppConfig } from '../model/config.js';
import { convertScoreSdeCheckpoint, type ConvertReport, type ScoreSdeEntry } from '../model/convert.js';

export const CONVERT_USAGE = `usage: sbgc convert --in CKPT.pth --out WEIGHTS.safetensors [--entry ema|model] [--config PRESET|FILE.json]

  --in       score_sde_pytorch checkpoint (torch.save, PyTorch >= 1.6): {optimizer, model, ema, step},
             or a bare model state dict
  --out      safetensors file to write (F32, score_sde parameter names; written atomically)
  --entry    ema (default: the averaged weights score_sde samples and evaluates with) or model
  --config   check names and shapes against this config: a preset (${presetNames().join(', ')}) or a JSON file`;

/** A preset name, or a path to a config JSON (anything ending in .json or containing a path separator). */
async function resolveConfig(spec: string): Promise<NcsnppConfig> {
  try {
    if (spec.endsWith('.json') || spec.includes('/') || spec.includes('\\')) {
      let text: string;
      try {
        text = await readFile(spec, 'utf8');
      } catch (e) {
        throw new SbgcError(`--config ${spec}: cannot read: ${e instanceof Error ? e.message : String(e)}`);
      }
      return parseConfig(text, spec);
    }
    return loadPreset(spec);
  } catch (e) {
    // ConfigError is not an SbgcError; rewrap so the CLI prints the message rather than a stack.
    if (e instanceof ConfigError) throw new SbgcError(e.message);
    throw e;
  }
}

function summary(inPath: string, outPath: string, r: ConvertReport): string {
  const lines: string[] = [];
  const step = r.step === null ? '' : `, step ${r.step}`;
  const ema = r.ema ? `, EMA decay ${r.ema.decay ?? '?'} after ${r.ema.numUpdates ?? '?'} updates` : '';
  lines.push(`converted ${inPath} (entry '${r.entry}'${step}${ema})`);
  lines.push(`  wrote ${outPath}: ${r.names.length} tensors, ${r.numel} values, F32`);
  if (r.strippedModulePrefix) lines.push("  stripped the DataParallel 'module.' prefix");
  if (r.droppedBuffers.length) lines.push(`  dropped non-parameter buffers: ${r.droppedBuffers.join(', ')}`);
  if (r.frozenFromModel.length) lines.push(`  frozen parameters (not in the EMA) taken from 'model': ${r.frozenFromModel.join(', ')}`);
  if (r.converted.length) lines.push(`  converted to F32: ${r.converted.map((c) => `${c.name} (${c.from})`).join(', ')}`);
  lines.push(
    r.validatedAgainst !== null
      ? `  matches config "${r.validatedAgainst}" (all ${r.names.length} parameters, names and shapes)`
      : '  not checked against a config (pass --config to check names and shapes)',
  );
  return lines.join('\n');
}

export async function convertCommand(argv: string[]): Promise<void> {
  const parsed = parseCommandLine('convert', CONVERT_USAGE, argv, { ...valueFlags('in', 'out', 'config'), entry: { type: 'string', default: 'ema' } });
  if (!parsed) return;
  const { values } = parsed;
  if (!values.in || !values.out) throw new SbgcError(`convert: --in and --out are required\n\n${CONVERT_USAGE}`);
  const entry = values.entry;
  if (entry !== 'ema' && entry !== 'model') throw new SbgcError(`convert: --entry must be 'ema' or 'model', got '${entry}'`);
  const config = values.config === undefined ? undefined : await resolveConfig(values.config);
  const report = await convertScoreSdeCheckpoint(values.in, values.out, { entry: entry satisfies ScoreSdeEntry, config });
  console.log(summary(values.in, values.out, report));
}
