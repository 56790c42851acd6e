/**
 * Counter-based random numbers: Philox4x32-10 (Salmon et al. 2011, Random123). A draw is a pure function of
 * (seed, stream, counter), so the GPU kernel and the TypeScript twin below give bit-identical 32-bit words on every
 * device, and any slice of a stream can be regenerated without replaying it.
 *
 * Layout of a draw of n values with key = seed, stream s and block offset o:
 *   uniform / rademacher / bits: value i uses word (i mod 4) of block (o + ⌊i/4⌋);
 *   normal (Box–Muller):         value i uses words (2(i mod 2), 2(i mod 2)+1) of block (o + ⌊i/2⌋);
 *   a block's 128-bit counter is [block lo, block hi, s, 0].
 * uniform = (w >> 8)·2⁻²⁴ ∈ [0, 1) (exact in f32); rademacher = ±1 from the top bit; normal uses
 * u₁ = ((w₀ >> 8) + 1)·2⁻²⁴ ∈ (0, 1], u₂ = (w₁ >> 8)·2⁻²⁴ and z = √(−2 ln u₁)·cos(2π u₂) — its words are
 * bit-identical everywhere, its f32 value agrees to a few ulp (WGSL log/cos are not correctly rounded).
 */
import { flatMain, grid } from './wgsl.js';
import { defineProgram } from './program.js';
import { u32s } from './kernel.js';
import type { Engine } from './engine.js';
import type { Tensor } from './tensor.js';
import { SbgcError } from './errors.js';

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

export type Seed = number | bigint | readonly [number, number];
export type Distribution = 'uniform' | 'normal' | 'rademacher' | 'bits';

export interface DrawSpec {
  seed: Seed;
  /** Independent stream id (e.g. one per purpose: dequantisation, probes, dropout). */
  stream?: number;
  /** First Philox block to use (to continue a stream). */
  offset?: number;
}

export function seedKey(seed: Seed): [number, number] {
  if (typeof seed === 'bigint') {
    return [Number(seed & 0xffffffffn), Number((seed >> 32n) & 0xffffffffn)];
  }
  if (typeof seed === 'number') {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new SbgcError(`seed must be a non-negative integer, got ${seed}`);
    return [seed >>> 0, Math.floor(seed / 2 ** 32) >>> 0];
  }
  return [seed[0] >>> 0, seed[1] >>> 0];
}

function mulhi(a: number, b: number): number {
  const ah = a >>> 16;
  const al = a & 0xffff;
  const bh = b >>> 16;
  const bl = b & 0xffff;
  const mid = ah * bl + al * bh + Math.floor((al * bl) / 65536);
  return (ah * bh + Math.floor(mid / 65536)) >>> 0;
}

/** Philox4x32-10 of a 128-bit counter under a 64-bit key; writes 4 words into `out`. */
export function philox4x32(ctr: ArrayLike<number>, key: ArrayLike<number>, out = new Uint32Array(4)): Uint32Array {
  let c0 = ctr[0] >>> 0;
  let c1 = ctr[1] >>> 0;
  let c2 = ctr[2] >>> 0;
  let c3 = ctr[3] >>> 0;
  let k0 = key[0] >>> 0;
  let k1 = key[1] >>> 0;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
  return out;
}

const TWO_M24 = 2 ** -24;

/** Host twin of the GPU draw: returns exactly what `randomTensor` writes (normal: to a few ulp). */
export function drawHost(n: number, dist: Distribution, spec: DrawSpec): Float32Array | Uint32Array {
  const key = seedKey(spec.seed);
  const stream = (spec.stream ?? 0) >>> 0;
  const offset = spec.offset ?? 0;
  const w = new Uint32Array(4);
  const ctr = [0, 0, stream, 0];
  const setBlock = (b: number) => {
    ctr[0] = b >>> 0;
    ctr[1] = Math.floor(b / 2 ** 32) >>> 0;
  };
  if (dist === 'bits') {
    const out = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      if (i % 4 === 0) philox4x32((setBlock(offset + i / 4), ctr), key, w);
      out[i] = w[i % 4];
    }
    return out;
  }
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (dist === 'normal') {
      if (i % 2 === 0) philox4x32((setBlock(offset + i / 2), ctr), key, w);
      const j = 2 * (i % 2);
      const u1 = ((w[j] >>> 8) + 1) * TWO_M24;
      const u2 = (w[j + 1] >>> 8) * TWO_M24;
      out[i] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    } else {
      if (i % 4 === 0) philox4x32((setBlock(offset + i / 4), ctr), key, w);
      const word = w[i % 4];
      out[i] = dist === 'uniform' ? (word >>> 8) * TWO_M24 : word >>> 31 ? 1 : -1;
    }
  }
  return out;
}

/** Number of Philox blocks a draw of n values consumes (to continue a stream after it). */
export function blocksFor(n: number, dist: Distribution): number {
  return dist === 'normal' ? Math.ceil(n / 2) : Math.ceil(n / 4);
}

const PHILOX_WGSL = /* wgsl */ `
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
  let al = a & 0xffffu; let ah = a >> 16u; let bl = b & 0xffffu; let bh = b >> 16u;
  let ll = al * bl; let lh = al * bh; let hl = ah * bl; let hh = ah * bh;
  let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
  return vec2<u32>(hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u), a * b);
}
fn philox(ctr_in: vec4<u32>, key_in: vec2<u32>) -> vec4<u32> {
  var c = ctr_in; var k = key_in;
  for (var r = 0u; r < 10u; r++) {
    let p0 = mulhilo(0xd2511f53u, c.x);
    let p1 = mulhilo(0xcd9e8d57u, c.z);
    c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    k = k + vec2<u32>(0x9e3779b9u, 0xbb67ae85u);
  }
  return c;
}`;

/** WGSL source of the Philox function, for kernels that draw in place (e.g. fused dropout). */
export const philoxWgsl = PHILOX_WGSL;

/** The store loop of one Philox block: `perBlock` values of the distribution, guarded at the tail. */
function rngStore(dist: Distribution): string {
  if (dist === 'normal') {
    return `
    for (var j = 0u; j < 2u; j++) {
      let i = base + j;
      if (i >= params.n) { break; }
      let u1 = (f32(w[2u * j] >> 8u) + 1.0) * 5.9604644775390625e-8;
      let u2 = f32(w[2u * j + 1u] >> 8u) * 5.9604644775390625e-8;
      out[i] = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    }`;
  }
  const value =
    dist === 'bits'
      ? 'out[i] = w[j];'
      : dist === 'uniform'
        ? 'out[i] = f32(w[j] >> 8u) * 5.9604644775390625e-8;'
        : 'out[i] = select(-1.0, 1.0, (w[j] >> 31u) == 1u);';
  return `
    for (var j = 0u; j < 4u; j++) {
      let i = base + j;
      if (i >= params.n) { break; }
      ${value}
    }`;
}

const RNG_WG = 64;

/**
 * One invocation per Philox block. The guard `blk ≥ ⌈n / perBlock⌉` is the old `blk·perBlock ≥ n` (equal for
 * integers); the store loop guards the block's tail values.
 */
const RNG = defineProgram<{ dist: Distribution }>({
  name: 'rng',
  spec: { dist: true },
  build: ({ dist }) => {
    const perBlock = dist === 'normal' ? 2 : 4;
    return {
      name: `rng.${dist}`,
      buffers: [{ name: 'out', type: dist === 'bits' ? 'u32' : 'f32', access: 'read_write' }],
      uniforms: u32s('n', 'key0', 'key1', 'stream', 'offset_lo', 'offset_hi'),
      workgroupSize: [RNG_WG],
      body: `${PHILOX_WGSL}
${flatMain({
  wg: RNG_WG,
  index: 'blk',
  count: `(params.n + ${perBlock - 1}u) / ${perBlock}u`,
  body: `  let base = blk * ${perBlock}u;
  // 64-bit block index = offset + blk, carried into the high word.
  let lo = params.offset_lo + blk;
  let hi = params.offset_hi + select(0u, 1u, lo < blk);
  let w = philox(vec4<u32>(lo, hi, params.stream, 0u), vec2<u32>(params.key0, params.key1));
  ${rngStore(dist)}`,
})}`,
    };
  },
});

/** Fills a new tensor with a draw. Same spec → same numbers, on every device and as `drawHost`. */
export function randomTensor(engine: Engine, shape: readonly number[], dist: Distribution, spec: DrawSpec): Tensor {
  const out = engine.empty(shape, dist === 'bits' ? 'u32' : 'f32', `random.${dist}`);
  fillRandom(engine, out, dist, spec);
  return out;
}

/** Overwrites `out` with a draw. */
export function fillRandom(engine: Engine, out: Tensor, dist: Distribution, spec: DrawSpec): void {
  const n = out.size;
  const [key0, key1] = seedKey(spec.seed);
  const offset = spec.offset ?? 0;
  engine.run(
    RNG,
    { dist },
    { out },
    {
      n,
      key0,
      key1,
      stream: spec.stream ?? 0,
      offset_lo: offset >>> 0,
      offset_hi: Math.floor(offset / 2 ** 32) >>> 0,
    },
    grid(engine, blocksFor(n, dist), RNG_WG),
  );
}

/**
 * A host-side stream with explicit state (for t-sampling, flips, shuffles): its whole state is
 * {seed, stream, block}, so checkpoints can save and resume it bit-identically.
 */
export class HostRng {
  private words = new Uint32Array(4);
  private used = 4;
  constructor(
    readonly seed: Seed,
    readonly stream = 0,
    private block = 0,
  ) {}

  state(): { seed: [number, number]; stream: number; block: number; used: number } {
    return { seed: seedKey(this.seed), stream: this.stream, block: this.block, used: this.used };
  }

  static restore(s: { seed: [number, number]; stream: number; block: number; used: number }): HostRng {
    const r = new HostRng(s.seed, s.stream, s.block - (s.used < 4 ? 1 : 0));
    if (s.used < 4) {
      r.nextU32();
      r.used = s.used;
    }
    return r;
  }

  nextU32(): number {
    if (this.used === 4) {
      const b = this.block++;
      philox4x32([b >>> 0, Math.floor(b / 2 ** 32) >>> 0, this.stream, 0], seedKey(this.seed), this.words);
      this.used = 0;
    }
    return this.words[this.used++];
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  normal(): number {
    const u1 = 1 - this.uniform();
    const u2 = this.uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }
}
