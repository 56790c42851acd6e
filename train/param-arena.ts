/**
 * A flat parameter arena: every parameter of a network lives in a few large f32 buffers ("segments") together
 * with its Adam moments, its EMA copy and a gradient slot at the same offsets. The network sees ordinary shaped
 * tensors (zero-copy views into the parameter buffer), while the optimizer updates a whole segment with ONE
 * dispatch instead of one per parameter.
 *
 * Each parameter starts at a multiple of the adapter's storage-offset alignment (so its view can be bound on its
 * own) and segments stay under maxStorageBufferBindingSize; padding elements are zero everywhere and stay zero
 * (zero gradient, zero moments → no update).
 */
import type { Engine } from '../engine/engine.js';
import type { MaybeTensor } from '../engine/autodiff.js';
import { SbgcError, ShapeError } from '../engine/errors.js';
import { shapeSize, type Tensor } from '../engine/tensor.js';

export interface ArenaParam {
  name: string;
  shape: readonly number[];
  /** Frozen parameters (e.g. the Fourier projection) keep a zero gradient, so Adam never moves them. */
  trainable: boolean;
}

export interface ArenaSlot extends ArenaParam {
  segment: number;
  /** First element inside the segment. */
  offset: number;
  size: number;
}

/** The per-element state kinds an arena holds (all with the same layout). */
export type ArenaBuffer = 'param' | 'm' | 'v' | 'ema' | 'grad';

export interface ArenaSegment {
  /** Elements (a multiple of 4, so kernels can use vec4 loads). */
  size: number;
  param: Tensor;
  m: Tensor;
  v: Tensor;
  ema: Tensor | null;
  grad: Tensor;
}

export interface ArenaOptions {
  /** Keep an EMA copy of the parameters. */
  ema: boolean;
  /** Largest segment in bytes (default: the adapter's binding limit, at most 1 GiB). For tests of multi-segment layouts. */
  maxSegmentBytes?: number;
}

export class ParamArena {
  private readonly paramViewMap = new Map<string, Tensor>();
  private readonly emaViewMap = new Map<string, Tensor>();
  private readonly gradViews: Tensor[] = [];
  /** Zeros as large as the largest parameter: the source for "this gradient is exactly zero". */
  private readonly zeroSource: Tensor;
  private disposed = false;

  private constructor(
    readonly engine: Engine,
    readonly slots: readonly ArenaSlot[],
    readonly segments: readonly ArenaSegment[],
  ) {
    const e = engine;
    for (const s of slots) {
      const seg = segments[s.segment];
      this.paramViewMap.set(s.name, view(e, seg.param, s));
      if (seg.ema) this.emaViewMap.set(s.name, view(e, seg.ema, s));
      this.gradViews.push(view(e, seg.grad, s));
    }
    const largest = Math.max(1, ...slots.map((s) => s.size));
    this.zeroSource = e.keep(e.zeros([largest], 'f32', 'arena.zero-gradient'));
  }

  /** Lays the parameters out (in the given order) and allocates zeroed buffers; upload values with `upload`. */
  static create(e: Engine, params: readonly ArenaParam[], options: ArenaOptions): ParamArena {
    if (params.length === 0) throw new SbgcError('ParamArena: no parameters');
    const names = new Set<string>();
    for (const p of params) {
      if (names.has(p.name)) throw new SbgcError(`ParamArena: parameter '${p.name}' is listed twice`);
      names.add(p.name);
    }
    const alignElems = Math.max(4, e.limits.minStorageBufferOffsetAlignment / 4);
    const limitBytes = Math.min(e.limits.maxStorageBufferBindingSize, e.limits.maxBufferSize, 2 ** 30);
    const maxElems = Math.floor(Math.min(options.maxSegmentBytes ?? limitBytes, limitBytes) / 4 / alignElems) * alignElems;
    const slots: ArenaSlot[] = [];
    const sizes: number[] = [0];
    for (const p of params) {
      const size = shapeSize(p.shape);
      const padded = Math.ceil(Math.max(size, 1) / alignElems) * alignElems;
      if (padded > maxElems) {
        throw new SbgcError(`ParamArena: parameter '${p.name}' [${p.shape.join('×')}] exceeds one segment (${maxElems} elements)`);
      }
      let seg = sizes.length - 1;
      if (sizes[seg] + padded > maxElems) {
        sizes.push(0);
        seg++;
      }
      slots.push({ name: p.name, shape: [...p.shape], trainable: p.trainable, segment: seg, offset: sizes[seg], size });
      sizes[seg] += padded;
    }
    const segments: ArenaSegment[] = sizes.map((size, i) => {
      const z = (what: string) => e.keep(e.zeros([size], 'f32', `arena${i}.${what}`));
      return { size, param: z('param'), m: z('m'), v: z('v'), ema: options.ema ? z('ema') : null, grad: z('grad') };
    });
    return new ParamArena(e, slots, segments);
  }

  get hasEma(): boolean {
    return this.segments[0].ema !== null;
  }

  /** Number of parameter scalars (without padding). */
  get numParams(): number {
    return this.slots.reduce((n, s) => n + s.size, 0);
  }

  /** Shaped views of the parameters, by name (owned by the arena: do not dispose). */
  params(): ReadonlyMap<string, Tensor> {
    this.assertLive();
    return this.paramViewMap;
  }

  /** Shaped views of the EMA parameters (throws when the arena has no EMA). */
  emaParams(): ReadonlyMap<string, Tensor> {
    this.assertLive();
    if (!this.hasEma) throw new SbgcError('ParamArena: this arena keeps no EMA');
    return this.emaViewMap;
  }

  /** Parameter views in slot order (the order `loadGradients` expects). */
  paramList(): Tensor[] {
    return this.slots.map((s) => this.paramViewMap.get(s.name)!);
  }

  /**
   * Records copies of the gradients (slot order; null = zero) into the gradient slots. Frozen parameters'
   * slots are never written, so they stay zero whatever is passed.
   */
  loadGradients(grads: readonly MaybeTensor[]): void {
    this.assertLive();
    if (grads.length !== this.slots.length) {
      throw new SbgcError(`ParamArena.loadGradients: ${grads.length} gradients for ${this.slots.length} parameters`);
    }
    const e = this.engine;
    this.slots.forEach((s, i) => {
      if (!s.trainable) return;
      const g = grads[i];
      const dst = this.gradViews[i];
      if (s.size === 0) return;
      if (!g) {
        // Views made here are disposed at once: the recorded copy holds the buffers, not the views.
        const zero = this.zeroSource.slice0(0, s.size);
        e.copy(zero, dst);
        zero.dispose();
        return;
      }
      if (g.size !== s.size || g.dtype !== 'f32') {
        throw new ShapeError(`ParamArena.loadGradients: gradient ${g.describe()} does not fit parameter '${s.name}' [${s.shape.join('×')}]`);
      }
      e.copy(g, dst);
    });
  }

  /** Writes host values (every slot must be present, in its exact size) into one of the buffers. */
  upload(which: Exclude<ArenaBuffer, 'grad'>, values: ReadonlyMap<string, ArrayLike<number>>, source = 'upload'): void {
    this.assertLive();
    const missing = this.slots.filter((s) => !values.has(s.name)).map((s) => s.name);
    const known = new Set(this.slots.map((s) => s.name));
    const extra = [...values.keys()].filter((k) => !known.has(k));
    if (missing.length || extra.length) {
      throw new SbgcError(
        `${source}: ${which} values do not match the parameters` +
          (missing.length ? `; missing: ${missing.join(', ')}` : '') +
          (extra.length ? `; unexpected: ${extra.join(', ')}` : ''),
      );
    }
    const hosts = this.segments.map((seg) => new Float32Array(seg.size));
    for (const s of this.slots) {
      const v = values.get(s.name)!;
      if (v.length !== s.size) {
        throw new ShapeError(`${source}: ${which} '${s.name}' has ${v.length} values, shape [${s.shape.join('×')}] needs ${s.size}`);
      }
      hosts[s.segment].set(v, s.offset);
    }
    this.segments.forEach((seg, i) => {
      const t = this.bufferOf(seg, which);
      this.engine.write(t, new Uint8Array(hosts[i].buffer));
    });
  }

  /** Host copies of one buffer, per parameter (one flush for all segments). */
  async read(which: ArenaBuffer): Promise<Map<string, Float32Array>> {
    this.assertLive();
    const data = (await this.engine.readMany(this.segments.map((seg) => this.bufferOf(seg, which)))) as Float32Array[];
    return new Map(this.slots.map((s) => [s.name, data[s.segment].slice(s.offset, s.offset + s.size)]));
  }

  /** Records copies of the parameters into the EMA buffer (EMA restarts at the current parameters). */
  resetEmaToParams(): void {
    for (const seg of this.segments) if (seg.ema) this.engine.copy(seg.param, seg.ema);
  }

  bufferOf(seg: ArenaSegment, which: ArenaBuffer): Tensor {
    const t = which === 'ema' ? seg.ema : seg[which];
    if (!t) throw new SbgcError('ParamArena: this arena keeps no EMA');
    return t;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of [...this.paramViewMap.values(), ...this.emaViewMap.values(), ...this.gradViews]) t.dispose();
    this.zeroSource.dispose();
    for (const seg of this.segments) for (const t of [seg.param, seg.m, seg.v, seg.ema, seg.grad]) t?.dispose();
  }

  private assertLive(): void {
    if (this.disposed) throw new SbgcError('ParamArena: used after dispose()');
  }
}

/** A kept, shaped view of a slot inside a segment buffer. */
function view(e: Engine, buffer: Tensor, s: ArenaSlot): Tensor {
  const flat = buffer.slice0(s.offset, s.offset + s.size);
  const shaped = e.keep(flat.reshape(s.shape));
  flat.dispose();
  return shaped;
}
