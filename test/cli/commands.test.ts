// Every command answers --help with its usage (exit status 0, no GPU work) and refuses an unknown flag with it.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { commands, runCli } from '../../cli/commands.js';
import { createdEngines } from '../../cli/context.js';

/** What the command line printed to stdout (console.log and direct writes). */
function captureStdout(): () => string {
  let text = '';
  vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => {
    text += args.map(String).join(' ') + '\n';
  });
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    text += typeof chunk === 'string' ? chunk : new TextDecoder().decode(chunk);
    return true;
  });
  return () => text;
}

afterEach(() => {
  vi.restoreAllMocks();
});

const names = Object.keys(commands);

describe('sbgc <command> --help', () => {
  it('knows the commands the top-level usage lists', () => {
    expect(names).toEqual(expect.arrayContaining(['info', 'smoke', 'demo', 'profile', 'classify', 'likelihood', 'study', 'forward', 'train', 'convert', 'report', 'export-weights']));
  });

  for (const name of names) {
    it(`${name} --help prints its usage and exits 0`, async () => {
      const stdout = captureStdout();
      expect(await runCli([name, '--help'])).toBe(0);
      expect(await runCli([name, '-h'])).toBe(0);
      expect(stdout()).toContain(`usage: sbgc ${name}`);
      // --help answers without touching the GPU (`smoke --help` used to run the smoke check).
      expect(createdEngines()).toHaveLength(0);
    });
  }

  it('sbgc --help and sbgc help print the top-level usage', async () => {
    const stdout = captureStdout();
    expect(await runCli(['--help'])).toBe(0);
    expect(await runCli(['help'])).toBe(0);
    expect(stdout()).toContain('usage: sbgc [--dawn-toggle NAME]');
  });

  for (const name of names.filter((n) => n !== 'profile')) {
    it(`${name} refuses an unknown flag with its usage`, async () => {
      captureStdout();
      await expect(runCli([name, '--bogus'])).rejects.toThrow(new RegExp(`--bogus[^]*usage: sbgc ${name}`));
      expect(createdEngines()).toHaveLength(0);
    });
  }
});
