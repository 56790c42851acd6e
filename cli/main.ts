/** The sbgc process entry: runs the command line (cli/commands.ts), then releases the GPU and sets the exit status. */
import { destroyEngines } from './context.js';
import { runCli } from './commands.js';
import { SbgcError } from '../engine/errors.js';

runCli(process.argv.slice(2))
  .then(async (code) => {
    await destroyEngines();
    process.exitCode = code;
  })
  .catch(async (e: unknown) => {
    const err = e as Error;
    console.error(`sbgc: ${err instanceof SbgcError || err.name === 'TypeError' ? err.message : (err.stack ?? err.message)}`);
    await destroyEngines().catch(() => undefined);
    process.exitCode = 2;
  });
