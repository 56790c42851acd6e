/**
 * The sbgc commands: the table, the top-level usage and `runCli` (global flags, dispatch, exit status); the
 * process entry is cli/main.ts. Subcommands parse their own flags with node:util parseArgs (cli/flag-reader.ts)
 * and each answers --help with its usage.
 *   sbgc info [--json]          adapter, backend, features, limits, version
 *   sbgc smoke                  kernel smoke check against float64
 *   sbgc demo                   the main job on the bundled default
 *   sbgc profile <command …>    runs a command with GPU timestamps and prints per-kernel times
 *   sbgc convert …              score_sde_pytorch .pth → safetensors
 * Global flags (before the command): --dawn-toggle NAME (repeatable, e.g. disable_robustness).
 */
import { globalOptions, createdEngines } from './context.js';
import { infoCommand } from './info.js';
import { smokeCommand } from './smoke.js';
import { SbgcError } from '../engine/errors.js';

export const USAGE = `usage: sbgc [--dawn-toggle NAME]… <command> [options]

commands:
  info [--json]           WebGPU adapter, backend, features and limits
  smoke                   run a kernel smoke check against float64 references
  demo                    the main job on the bundled default (see README)
  profile <command …>     run a command with per-kernel GPU timing and print a table
  classify MODEL INPUT [solver options] [--out F [--resume]]
                          generative classifier, JSON results (sbgc classify --help)
  likelihood MODEL INPUT [--label Y | --marginal] [...]
                          log p(x|y) and bits/dim
  study divergence [MODEL] [INPUT] [--out-dir D]
                          variance and accuracy vs number and kind of Hutchinson draws (JSON + SVG)
  forward --config C (--weights W | --init-seed N) --x x.npy --t t.npy [--y y.npy] --out out.npy
                          raw network output, for interop checks
  train --preset mnist-small [--steps N] [--batch B] [--t-sampling uniform|importance|mixture] [--resume] …
                          maximum-likelihood training (sbgc train --help for all flags)
  export-weights CHECKPOINT --out W.safetensors [--which auto|ema|ema-debiased|raw]
                          one weight set of a training checkpoint, for evaluation commands
  report RESULTS.json… [--out-dir DIR]
                          accuracy table (Wilson intervals, paired counts) and accuracy-vs-steps plot
  convert --in X.pth --out W.safetensors [--entry ema|model] [--config C]
                          score_sde_pytorch checkpoint → safetensors
  help                    this text`;

type Command = (argv: string[]) => Promise<boolean | void>;

const PROFILE_USAGE = `usage: sbgc profile <command> [options]\n\nRuns the command with GPU timestamp queries and prints the GPU time per kernel (adapters with timestamp-query).`;

export const commands: Record<string, Command> = {
  info: infoCommand,
  smoke: smokeCommand,
  demo: async (argv) => (await import('./demo.js')).demoCommand(argv),
  profile: profileCommand,
  classify: async (argv) => (await import('./classify.js')).classifyCommand(argv),
  likelihood: async (argv) => (await import('./likelihood.js')).likelihoodCommand(argv),
  study: async (argv) => (await import('./study.js')).studyCommand(argv),
  forward: async (argv) => (await import('./forward.js')).forwardCommand(argv),
  train: async (argv) => (await import('./train.js')).trainCommand(argv),
  convert: async (argv) => (await import('./convert.js')).convertCommand(argv),
  report: async (argv) => (await import('./report.js')).reportCommand(argv),
  'export-weights': async (argv) => (await import('./export-weights.js')).exportWeightsCommand(argv),
};

async function profileCommand(argv: string[]): Promise<boolean | void> {
  if (argv[0] === '--help' || argv[0] === '-h') {
    console.log(PROFILE_USAGE);
    return true;
  }
  if (argv.length === 0 || !commands[argv[0]] || argv[0] === 'profile') {
    throw new SbgcError(`profile: give a command to profile, e.g. 'sbgc profile smoke'\n\n${USAGE}`);
  }
  globalOptions.profile = true;
  const t0 = performance.now();
  const result = await commands[argv[0]](argv.slice(1));
  const wall = performance.now() - t0;
  for (const e of createdEngines()) {
    await e.sync();
    if (!e.profiler.supported) {
      console.error('profile: this adapter has no timestamp-query feature; no per-kernel times');
      continue;
    }
    console.error(`\nper-kernel GPU time (${e.info.description || e.info.device}; wall ${wall.toFixed(0)} ms):`);
    console.error(e.profiler.table());
  }
  return result;
}

/** Runs one command line; the exit status (0 ok, 1 a command reported failure; errors are thrown). */
export async function runCli(argv: string[]): Promise<number> {
  const args = [...argv];
  while (args[0]?.startsWith('--')) {
    const flag = args.shift()!;
    if (flag === '--dawn-toggle') {
      const v = args.shift();
      if (!v) throw new SbgcError('--dawn-toggle needs a toggle name');
      globalOptions.dawnToggles.push(v);
    } else if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      return 0;
    } else {
      throw new SbgcError(`unknown global flag ${flag}\n\n${USAGE}`);
    }
  }
  const name = args.shift();
  if (!name || name === 'help') {
    console.log(USAGE);
    return name ? 0 : 1;
  }
  const cmd = commands[name];
  if (!cmd) throw new SbgcError(`unknown command '${name}'\n\n${USAGE}`);
  const result = await cmd(args);
  return result === false ? 1 : 0;
}
