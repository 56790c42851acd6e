/**
 * Memory by scopes, not reference counts: every tensor is tracked while alive, and `run(fn)` disposes the tensors
 * created inside `fn` that it does not return (returned ones, also inside arrays, Maps and plain objects, move to
 * the enclosing scope).
 */
import { Tensor } from './tensor.js';

export class TensorScopes {
  private readonly stack: Set<Tensor>[] = [];
  private readonly live = new Set<Tensor>();

  get liveCount(): number {
    return this.live.size;
  }

  track(t: Tensor): void {
    this.live.add(t);
    this.stack[this.stack.length - 1]?.add(t);
  }

  untrack(t: Tensor): void {
    this.live.delete(t);
    for (let i = this.stack.length - 1; i >= 0; i--) if (this.stack[i].delete(t)) break;
  }

  /** Works for async `fn` too — scopes must then not interleave with other concurrent scopes. */
  run<T>(fn: () => T): T {
    const set = new Set<Tensor>();
    this.stack.push(set);
    let result: T;
    try {
      result = fn();
    } catch (e) {
      this.end(set, undefined);
      throw e;
    }
    if (result instanceof Promise) {
      return result.then(
        (v) => {
          this.end(set, v);
          return v;
        },
        (e) => {
          this.end(set, undefined);
          throw e;
        },
      ) as T;
    }
    this.end(set, result);
    return result;
  }

  /** Removes `t` from scope tracking: it lives until disposed by hand. */
  keep<T extends Tensor>(t: T): T {
    for (const s of this.stack) s.delete(t);
    return t;
  }

  private end(set: Set<Tensor>, result: unknown): void {
    const idx = this.stack.lastIndexOf(set);
    if (idx >= 0) this.stack.splice(idx, 1);
    const keepers = new Set<Tensor>();
    collectTensors(result, keepers, 0);
    const parent = this.stack[this.stack.length - 1];
    for (const t of set) {
      if (keepers.has(t)) parent?.add(t);
      else t.dispose();
    }
  }
}

function collectTensors(v: unknown, out: Set<Tensor>, depth: number): void {
  if (depth > 6 || v === null || typeof v !== 'object') return;
  if (v instanceof Tensor) {
    out.add(v);
    return;
  }
  if (Array.isArray(v)) {
    for (const x of v) collectTensors(x, out, depth + 1);
    return;
  }
  if (v instanceof Map) {
    for (const x of v.values()) collectTensors(x, out, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v as Record<string, unknown>)) collectTensors(x, out, depth + 1);
  }
}
