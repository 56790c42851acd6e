/**
 * One string names a dataset everywhere (CLI flags, configs, reports):
 *   mnist:train | mnist:test                   the fixed MNIST split (8 000 / 2 000), data/mnist.ts
 *   cifar10:<dir>:train | cifar10:<dir>:test   CIFAR-10 binary batches in <dir>
 *   cifar10c:<dir>:<corruption>:<severity>     CIFAR-10-C, severity 1..5
 *   png:<dir>                                  <dir>/<class>/*.png (labelled) or <dir>/*.png (unlabelled)
 * Paths may contain ':' — the fields after the path are taken from the right.
 */
import { SbgcError, ShapeError } from '../engine/errors.js';
import { loadCifar10 } from './cifar10.js';
import { loadCifar10C } from './cifar10c.js';
import type { ImageDataset, ImageShape } from './dataset.js';
import { loadMnist } from './mnist.js';
import { loadPngFolder } from './png-folder.js';

export const DATASET_SPEC_HELP = [
  'mnist:train | mnist:test',
  'cifar10:<dir>:train | cifar10:<dir>:test',
  'cifar10c:<dir>:<corruption>:<severity 1..5>',
  'png:<dir>   (<dir>/<class>/*.png or <dir>/*.png)',
].join('\n');

export interface LoadOptions {
  /** The [C, H, W] the consumer (the model) needs: PNG folders are converted to it, other datasets must match. */
  shape?: ImageShape;
  /** PNG folders only: expected class folder names in label order. */
  classes?: readonly string[];
}

export type DatasetSpec =
  | { kind: 'mnist'; split: 'train' | 'test' }
  | { kind: 'cifar10'; dir: string; split: 'train' | 'test' }
  | { kind: 'cifar10c'; dir: string; corruption: string; severity: number }
  | { kind: 'png'; dir: string };

function bad(spec: string, why: string): never {
  throw new SbgcError(`dataset spec '${spec}': ${why}; expected one of:\n${DATASET_SPEC_HELP}`);
}

/** Splits "a:b:c" into the head, a path in the middle and `tail` fields from the right. */
function fromRight(spec: string, rest: string, tail: number, form: string): [string, ...string[]] {
  const parts = rest.split(':');
  if (parts.length < tail + 1) bad(spec, `expected ${form}`);
  const fields = parts.slice(parts.length - tail);
  const dir = parts.slice(0, parts.length - tail).join(':');
  if (dir === '') bad(spec, `missing directory in ${form}`);
  return [dir, ...fields];
}

function parseSplit(spec: string, s: string): 'train' | 'test' {
  if (s !== 'train' && s !== 'test') bad(spec, `unknown split '${s}' (train or test)`);
  return s;
}

/** Parses a dataset spec without touching the file system. */
export function parseDatasetSpec(spec: string): DatasetSpec {
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const rest = colon < 0 ? '' : spec.slice(colon + 1);
  switch (kind) {
    case 'mnist':
      return { kind, split: parseSplit(spec, rest) };
    case 'cifar10': {
      const [dir, split] = fromRight(spec, rest, 1, 'cifar10:<dir>:train|test');
      return { kind, dir, split: parseSplit(spec, split) };
    }
    case 'cifar10c': {
      const [dir, corruption, sev] = fromRight(spec, rest, 2, 'cifar10c:<dir>:<corruption>:<severity>');
      if (!/^[1-5]$/.test(sev)) bad(spec, `severity '${sev}' must be 1..5`);
      if (corruption === '') bad(spec, 'missing corruption name');
      return { kind, dir, corruption, severity: Number(sev) };
    }
    case 'png':
      if (rest === '') bad(spec, 'missing directory in png:<dir>');
      return { kind, dir: rest };
    default:
      return bad(spec, `unknown dataset kind '${kind}'`);
  }
}

/** Loads the dataset a spec names (see the module comment); checks it against `opts.shape` when given. */
export async function loadDataset(spec: string, opts: LoadOptions = {}): Promise<ImageDataset> {
  const s = parseDatasetSpec(spec);
  if (opts.classes && s.kind !== 'png') bad(spec, "'classes' applies to png:<dir> datasets only");
  let ds: ImageDataset;
  switch (s.kind) {
    case 'mnist':
      ds = loadMnist(s.split);
      break;
    case 'cifar10':
      ds = await loadCifar10(s.dir, s.split);
      break;
    case 'cifar10c':
      ds = await loadCifar10C(s.dir, s.corruption, s.severity);
      break;
    case 'png': {
      const want = opts.shape?.[0];
      if (want !== undefined && want !== 1 && want !== 3) throw new ShapeError(`${spec}: PNG datasets have 1 or 3 channels, but ${want} are required`);
      const c = want as 1 | 3 | undefined;
      ds = await loadPngFolder(s.dir, {
        ...(c !== undefined ? { channels: c } : {}),
        ...(opts.shape ? { size: [opts.shape[1], opts.shape[2]] as const } : {}),
        ...(opts.classes ? { classes: opts.classes } : {}),
      });
      break;
    }
  }
  const want = opts.shape;
  if (want && (ds.shape[0] !== want[0] || ds.shape[1] !== want[1] || ds.shape[2] !== want[2])) {
    throw new ShapeError(`${spec}: images are [${ds.shape.join(', ')}] (C, H, W), but [${want.join(', ')}] is required`);
  }
  return ds;
}
