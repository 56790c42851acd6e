/** Checking a safetensors file's tensors against the list a consumer expects (names, shapes, dtypes). */
import { SafetensorsError, type SafetensorsDtype, type SafetensorsFile, type SafetensorsTensor } from './safetensors.js';

export interface TensorSpec {
  name: string;
  shape: readonly number[];
  dtype: SafetensorsDtype;
}

function describe(t: { dtype: string; shape: readonly number[] }): string {
  return `${t.dtype} [${t.shape.join(',')}]`;
}

/**
 * Checks loaded tensors against an expected list (e.g. a network's parameters) and throws ONE error
 * listing every missing, unexpected and mis-shaped/mis-typed tensor, so a wrong checkpoint is
 * diagnosed in a single run.
 */
export function validateAgainstSpec(
  loaded: SafetensorsFile | ReadonlyMap<string, SafetensorsTensor>,
  expected: ReadonlyArray<TensorSpec>,
  source: string,
): void {
  const tensors: ReadonlyMap<string, SafetensorsTensor> = loaded instanceof Map ? loaded : (loaded as SafetensorsFile).tensors;
  const want = new Map<string, TensorSpec>();
  for (const s of expected) {
    if (want.has(s.name)) throw new SafetensorsError(source, `expected spec lists tensor '${s.name}' twice`);
    want.set(s.name, s);
  }
  const missing: string[] = [];
  const mismatched: string[] = [];
  for (const s of expected) {
    const t = tensors.get(s.name);
    if (!t) {
      missing.push(`${s.name} (${describe(s)})`);
      continue;
    }
    const sameShape = t.shape.length === s.shape.length && t.shape.every((d, i) => d === s.shape[i]);
    if (!sameShape || t.dtype !== s.dtype) mismatched.push(`${s.name}: expected ${describe(s)}, found ${describe(t)}`);
  }
  const unexpected = [...tensors.entries()].filter(([k]) => !want.has(k)).map(([k, t]) => `${k} (${describe(t)})`);
  const count = missing.length + unexpected.length + mismatched.length;
  if (count === 0) return;
  const lines = [`tensors do not match the expected spec (${count} problem${count === 1 ? '' : 's'}):`];
  if (missing.length) lines.push(`  missing (${missing.length}): ${missing.join(', ')}`);
  if (unexpected.length) lines.push(`  unexpected (${unexpected.length}): ${unexpected.join(', ')}`);
  if (mismatched.length) lines.push(`  mismatched (${mismatched.length}):`, ...mismatched.map((m) => `    ${m}`));
  throw new SafetensorsError(source, lines.join('\n'));
}
