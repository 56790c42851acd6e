/**
 * `npm run bench -- overhead [--baseline REV] [--repeats R] [--quick]`: host overhead and end-to-end cost of the
 * engine's three everyday paths, for this tree and (optionally) a baseline revision, interleaved:
 *   - dispatch: host µs to record one dispatch of a cached tiny kernel (elementwise add, 256 floats), and µs per
 *     dispatch recorded + encoded + submitted + run, in batches of 1 000;
 *   - train: steady-state steps/s of `sbgc train --resume` on a scratch copy of the bundled mnist-small checkpoint;
 *   - classify: seconds per held-out digit at the demo's settings (n = 1, --batch 10, so the 3 digits share one solve
 *     of 30 rows), as half the difference between runs of 3 and 1 digits (so start-up and compilation cancel).
 * The baseline is checked out as a git worktree in a temp folder (node_modules linked, dist built there).
 * Writes bench/results/overhead-<adapter>.{json,md}.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { writeFileAtomic } from '../engine/files.js';
import type { AdapterDescription } from '../engine/gpu.js';
import { adapterSlug } from './lib/kernel-cases.js';
import { overheadMarkdown, type OverheadResult, type OverheadTree } from './lib/overhead-report.js';

const USAGE = 'usage: npm run bench -- overhead [--baseline REV] [--repeats R] [--quick]';
let values: { baseline?: string; repeats: string; quick: boolean; help?: boolean };
try {
  values = parseArgs({
    options: {
      baseline: { type: 'string' },
      repeats: { type: 'string', default: '2' },
      quick: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  }).values as typeof values;
} catch (err) {
  process.stderr.write(`overhead: ${(err as Error).message}\n${USAGE}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n  --baseline REV  also measure this revision (a git worktree beside the tree), interleaved\n  --repeats R     interleaved repeats (default 2)\n  --quick         fewer dispatches and training steps, no classify runs\n`);
  process.exit(0);
}
const repeats = Number(values.repeats);
const here = resolve('.');

/** A tree being measured: where it is, and the adapter its dispatch run found. */
type TreeResult = OverheadTree & { adapter?: AdapterDescription };

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) failed:\n${r.stderr}`);
  return r.stdout;
}

function prepareBaseline(rev: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sbgc-baseline-'));
  run('git', ['worktree', 'add', '--detach', dir, rev], here);
  symlinkSync(join(here, 'node_modules'), join(dir, 'node_modules'));
  run('node', ['scripts/build.mjs'], dir);
  return dir;
}

const DISPATCH_SCRIPT = (tree: string) => `
import { pathToFileURL } from 'node:url';
const { Engine } = await import(pathToFileURL(${JSON.stringify(join(tree, 'engine/engine.ts'))}).href);
const { add } = await import(pathToFileURL(${JSON.stringify(join(tree, 'kernels/elementwise.ts'))}).href);
const e = await Engine.create();
const a = e.tensor(new Float32Array(256).fill(1), [256]);
const b = e.tensor(new Float32Array(256).fill(2), [256]);
const batch = 1000, batches = ${values.quick ? 5 : 20};
for (let k = 0; k < 200; k++) e.scope(() => add(e, [a, b], {}));
await e.sync();
let record = 0;
const t0 = performance.now();
for (let j = 0; j < batches; j++) {
  const r0 = performance.now();
  e.scope(() => { for (let k = 0; k < batch; k++) add(e, [a, b], {}); });
  record += performance.now() - r0;
  await e.sync();
}
const total = performance.now() - t0;
console.log(JSON.stringify({ recordUs: (record / (batch * batches)) * 1000, endToEndUs: (total / (batch * batches)) * 1000, info: e.info }));
await e.destroy();
`;

function dispatchBench(tree: string): { recordUs: number; endToEndUs: number; info: AdapterDescription } {
  const file = join(mkdtempSync(join(tmpdir(), 'sbgc-dispatch-')), 'dispatch.mts');
  writeFileSync(file, DISPATCH_SCRIPT(tree));
  const out = run('node', ['--import', 'tsx', file], tree).trim().split('\n').pop()!;
  return JSON.parse(out) as { recordUs: number; endToEndUs: number; info: AdapterDescription };
}

function trainBench(tree: string): number {
  const dir = mkdtempSync(join(tmpdir(), 'sbgc-train-'));
  for (const f of ['checkpoint.safetensors', 'train-log.jsonl']) cpSync(join(here, 'model/weights/mnist-small', f), join(dir, f));
  const steps = values.quick ? 6 : 16;
  const startStep = Number(JSON.parse(readFileSync(join(dir, 'train-log.jsonl'), 'utf8').trim().split('\n').pop()!).step);
  const out = run('node', ['dist/cli.js', 'train', '--preset', 'mnist-small', '--out', dir, '--resume', '--steps', String(startStep + steps), '--log-every', '2', '--checkpoint-every', '100000'], tree);
  rmSync(dir, { recursive: true, force: true });
  const summary = JSON.parse(out.trim().split('\n').pop()!) as { stepsPerSecond: number | null };
  if (!summary.stepsPerSecond) throw new Error(`train in ${tree} reported no steady-state steps/s`);
  return summary.stepsPerSecond;
}

function classifySeconds(tree: string, limit: number): number {
  const dir = mkdtempSync(join(tmpdir(), 'sbgc-classify-'));
  const t0 = performance.now();
  run('node', ['dist/cli.js', 'classify', '--config', 'mnist-small', '--weights', join(here, 'model/weights/mnist-small/weights.safetensors'),
    '--data', 'mnist:test', '--limit', String(limit), '--eps-t', '1e-1', '--start', 'diffused', '--n', '1', '--rtol', '1e-2', '--atol', '1e-2',
    '--batch', '10', '--out', join(dir, 'r.json')], tree);
  rmSync(dir, { recursive: true, force: true });
  return (performance.now() - t0) / 1000;
}

const trees: TreeResult[] = [{ tree: here, rev: run('git', ['rev-parse', '--short', 'HEAD'], here).trim(), recordUs: [], endToEndUs: [], trainStepsPerSecond: [], classifySecondsPerDigit: [] }];
// Build this tree's dist/ so the CLI runs what the sources say.
run('node', ['scripts/build.mjs'], here);
let baselineDir: string | null = null;
if (values.baseline) {
  baselineDir = prepareBaseline(values.baseline);
  trees.unshift({ tree: baselineDir, rev: run('git', ['rev-parse', '--short', values.baseline], here).trim(), recordUs: [], endToEndUs: [], trainStepsPerSecond: [], classifySecondsPerDigit: [] });
}
const load0 = loadavg()[0];
try {
  for (let r = 0; r < repeats; r++) {
    for (const t of trees) {
      const d = dispatchBench(t.tree);
      t.recordUs.push(d.recordUs);
      t.endToEndUs.push(d.endToEndUs);
      t.adapter = d.info;
      console.error(`${t.rev}: dispatch record ${d.recordUs.toFixed(2)} µs, end to end ${d.endToEndUs.toFixed(2)} µs`);
    }
    for (const t of trees) {
      t.trainStepsPerSecond.push(trainBench(t.tree));
      console.error(`${t.rev}: train ${t.trainStepsPerSecond.at(-1)} steps/s`);
    }
    if (!values.quick) {
      for (const t of trees) {
        const one = classifySeconds(t.tree, 1);
        const three = classifySeconds(t.tree, 3);
        t.classifySecondsPerDigit.push((three - one) / 2);
        console.error(`${t.rev}: classify per digit ${((three - one) / 2).toFixed(2)} s (1 digit ${one.toFixed(1)} s, 3 digits ${three.toFixed(1)} s)`);
      }
    }
  }
} finally {
  if (baselineDir) {
    spawnSync('git', ['worktree', 'remove', '--force', baselineDir], { cwd: here });
    rmSync(baselineDir, { recursive: true, force: true });
  }
}
const load1 = loadavg()[0];
const info = trees.at(-1)!.adapter;
const slug = info ? adapterSlug(info) : 'adapter';
const result: OverheadResult = {
  suite: 'overhead',
  date: new Date().toISOString(),
  command: `npm run bench -- overhead${values.baseline ? ` --baseline ${values.baseline}` : ''} --repeats ${repeats}${values.quick ? ' --quick' : ''}`,
  adapter: info?.description ?? 'unknown',
  machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, loadAverageBefore: load0, loadAverageAfter: load1 },
  trees: trees.map(({ adapter: _adapter, ...t }) => ({ ...t, tree: t.tree === here ? 'this tree' : `baseline ${t.rev}` })),
};
const md = overheadMarkdown(result);
await writeFileAtomic(join(here, `bench/results/overhead-${slug}.json`), JSON.stringify(result, null, 2) + '\n');
await writeFileAtomic(join(here, `bench/results/overhead-${slug}.md`), md);
console.log(md);
