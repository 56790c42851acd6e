/**
 * The flag reader of every command: node:util parseArgs with errors that name the command and the flag (usage
 * appended), and typed value readers.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { SbgcError } from '../engine/errors.js';

export type OptionTable = NonNullable<ParseArgsConfig['options']>;
export type FlagValues = Record<string, string | boolean | string[] | boolean[] | undefined>;

/** Reads and checks the flags of one command; every error names the command and the flag. */
export class FlagReader {
  constructor(
    readonly command: string,
    readonly usage: string,
  ) {}

  /** An error about the command line (usage appended). */
  fail(message: string): never {
    throw new SbgcError(`${this.command}: ${message}\n\n${this.usage}`);
  }

  /** An error about an input (file contents, model mismatch): no usage text. */
  error(message: string): never {
    throw new SbgcError(`${this.command}: ${message}`);
  }

  parse(argv: string[], options: OptionTable, allowPositionals = false): { values: FlagValues; positionals: string[] } {
    const r = parseCommandArgs(this.command, this.usage, { args: argv, options, strict: true, allowPositionals });
    return { values: r.values as FlagValues, positionals: r.positionals };
  }

  string(values: FlagValues, name: string): string | undefined {
    const v = values[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') this.fail(`--${name} needs a value`);
    return v;
  }

  strings(values: FlagValues, name: string): string[] {
    const v = values[name];
    if (v === undefined) return [];
    return (Array.isArray(v) ? v : [v]).map(String);
  }

  int(values: FlagValues, name: string, fallback: number, min = 0): number {
    const raw = this.string(values, name);
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (raw.trim() === '' || !Number.isSafeInteger(v) || v < min) this.fail(`--${name} must be an integer ≥ ${min}, got '${raw}'`);
    return v;
  }

  positive(values: FlagValues, name: string, fallback: number): number {
    const raw = this.string(values, name);
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (raw.trim() === '' || !(v > 0) || !Number.isFinite(v)) this.fail(`--${name} must be a positive number, got '${raw}'`);
    return v;
  }

  oneOf<T extends string>(values: FlagValues, name: string, choices: readonly T[], fallback: T): T {
    const raw = this.string(values, name);
    if (raw === undefined) return fallback;
    if (!(choices as readonly string[]).includes(raw)) this.fail(`--${name} must be one of ${choices.join(', ')}, got '${raw}'`);
    return raw as T;
  }

  /** A comma list of positive integers, e.g. --ns 1,4,16. */
  intList(values: FlagValues, name: string, fallback: number[]): number[] {
    const raw = this.string(values, name);
    if (raw === undefined) return fallback;
    const parts = raw.split(',').map((s) => s.trim());
    const out = parts.map(Number);
    if (parts.some((s) => s === '') || out.some((v) => !Number.isSafeInteger(v) || v < 1)) {
      this.fail(`--${name} must be a comma list of positive integers, got '${raw}'`);
    }
    return out;
  }
}

/** The --help / -h flag every command accepts. */
export const HELP_FLAG = { type: 'boolean', short: 'h' } as const;

/** parseArgs entries of flags that take a value (`--name V`), by name; typed, so the parsed values stay typed. */
export function valueFlags<const N extends string>(...names: N[]): { readonly [K in N]: { readonly type: 'string' } } {
  return Object.fromEntries(names.map((name) => [name, { type: 'string' }])) as { [K in N]: { type: 'string' } };
}

/** parseArgs entries of on/off flags (`--name`), by name. */
export function switchFlags<const N extends string>(...names: N[]): { readonly [K in N]: { readonly type: 'boolean' } } {
  return Object.fromEntries(names.map((name) => [name, { type: 'boolean' }])) as { [K in N]: { type: 'boolean' } };
}

/**
 * A command's own typed flags (strict parseArgs, --help/-h added): the parsed flags, or null after printing the
 * usage for --help. A parse error names the command and carries its usage.
 */
export function parseCommandLine<O extends OptionTable>(command: string, usage: string, argv: string[], options: O, allowPositionals = false) {
  const parsed = parseCommandArgs(command, usage, { args: argv, options: { ...options, help: HELP_FLAG }, strict: true, allowPositionals });
  if ((parsed.values as FlagValues).help) {
    console.log(usage);
    return null;
  }
  return parsed;
}

/**
 * node:util parseArgs (strict) for a command with its own typed option table: a parse error (unknown flag,
 * missing value) names the command and carries its usage.
 */
export function parseCommandArgs<T extends ParseArgsConfig>(command: string, usage: string, config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    throw new SbgcError(`${command}: ${(e as Error).message}\n\n${usage}`);
  }
}
