/**
 * Conv weights packed for the row-conv kernels' packedW mode: one vec4 per (input channel, kernel row, output
 * channel) holding the ≤ 4 column taps, so the kernel does one weight load instead of one per tap.
 *
 * Packing is cached per weight tensor: keyed by its Storage (a WeakMap, so the cache never keeps a storage alive),
 * the view's byte offset and the packing, and valid while the storage's `version` is unchanged. The engine bumps
 * that version on every write, copy or clear into the storage and every dispatch binding it read_write (an Adam
 * step), so in-place training updates repack on the next use; inference packs once. A packed tensor is owned by
 * the cache (not by any scope, not counted as a live tensor) and freed when it is replaced or when its weight
 * storage is released.
 */
import type { Engine } from '../engine/engine.js';
import type { Storage, Tensor } from '../engine/tensor.js';
import { defineFixedProgram } from '../engine/program.js';
import { reads, u32s } from '../engine/kernel.js';
import { flatMain, grid } from '../engine/wgsl.js';
import type { TapRun } from './conv2d-wgsl.js';

const WG = 64;

/** Wp[(k·KHp + kh)·M + m] = (W[m·wsM + k·wsK + kh·KW + kw_c] for the ≤ 4 column taps c), zero-padded. */
const PACK_WEIGHTS = defineFixedProgram({
  name: 'conv2d.pack-weights',
  buffers: [...reads('W'), { name: 'Wp', type: 'vec4<f32>', access: 'read_write' }],
  uniforms: u32s('n', 'M', 'KHp', 'wsM', 'wsK', 'KW', 'nU', 'kw0', 'kw1', 'kw2', 'kw3'),
  workgroupSize: [WG],
  body: flatMain({
    wg: WG,
    count: 'params.n',
    body: `  let m = i % params.M; let kh = (i / params.M) % params.KHp; let k = i / (params.M * params.KHp);
  let base = m * params.wsM + k * params.wsK + kh * params.KW;
  let kw = vec4<u32>(params.kw0, params.kw1, params.kw2, params.kw3);
  var v = vec4<f32>(0.0);
  for (var c = 0u; c < params.nU; c++) { v[c] = W[base + kw[c]]; }
  Wp[i] = v;`,
  }),
});

/** How one weight tensor is packed: W read as [M rows of wsM] × [KC of wsK] × [KH rows of KW], these taps. */
export interface Packing {
  M: number;
  KC: number;
  KH: number;
  KW: number;
  wsM: number;
  wsK: number;
  taps: TapRun;
}

interface Packed {
  version: number;
  tensor: Tensor;
}
/** A trie of Maps over the numbers of a packing (no key strings are built per call). */
interface PackTrie {
  next: Map<number, PackTrie>;
  packed?: Packed;
}

const caches = new WeakMap<Storage, PackTrie>();
const stats = new WeakMap<Engine, { packs: number; hits: number }>();

/** Pack dispatches recorded and cache hits, per engine (tests and benchmarks). */
export function packedWeightStats(e: Engine): { packs: number; hits: number } {
  let s = stats.get(e);
  if (!s) stats.set(e, (s = { packs: 0, hits: 0 }));
  return s;
}

function freeAll(node: PackTrie): void {
  node.packed?.tensor.dispose();
  node.packed = undefined;
  for (const child of node.next.values()) freeAll(child);
}

function entryFor(w: Tensor, p: Packing): PackTrie {
  let root = caches.get(w.storage);
  if (!root) {
    const created: PackTrie = { next: new Map() };
    caches.set(w.storage, created);
    (w.storage.onRelease ??= []).push(() => freeAll(created));
    root = created;
  }
  let node: PackTrie = root;
  for (const k of [w.byteOffset, p.M, p.KC, p.KH, p.KW, p.wsM, p.wsK, p.taps.count, p.taps.w0, p.taps.wStep]) {
    let child: PackTrie | undefined = node.next.get(k);
    if (!child) node.next.set(k, (child = { next: new Map() }));
    node = child;
  }
  return node;
}

/**
 * W packed for rowConvKernel's packedW mode (≤ 4 taps), from the cache while W's storage is unchanged. The
 * result belongs to the cache: callers bind it and never dispose it.
 */
export function packedWeights(e: Engine, w: Tensor, p: Packing): Tensor {
  w.assertLive();
  const node = entryFor(w, p);
  const counts = packedWeightStats(e);
  const hit = node.packed;
  if (hit && hit.version === w.storage.version && !hit.tensor.disposed) {
    counts.hits++;
    return hit.tensor;
  }
  hit?.tensor.dispose();
  const n = p.KC * p.KH * p.M;
  const tensor = e.empty([n, 4], 'f32', 'conv2d.packed-weights');
  e.untrack(tensor); // owned by the cache: outside every scope and the live-tensor count
  const kw = [0, 1, 2, 3].map((c) => (c < p.taps.count ? p.taps.w0 + c * p.taps.wStep : 0));
  const uniforms = {
    n, M: p.M, KHp: p.KH, wsM: p.wsM, wsK: p.wsK, KW: p.KW, nU: p.taps.count, kw0: kw[0], kw1: kw[1], kw2: kw[2], kw3: kw[3],
  };
  e.run(PACK_WEIGHTS, {}, { W: w, Wp: tensor }, uniforms, grid(e, n, WG));
  counts.packs++;
  node.packed = { version: w.storage.version, tensor };
  return tensor;
}
