/**
 * Test fixtures for the training machinery: a tiny class-conditional MLP ε-model (dense + SiLU + sinusoidal time
 * embedding + one-hot labels) and a small synthetic labelled image dataset (stripes per class + jitter).
 */
import type { Engine } from '../../engine/engine.js';
import { HostRng } from '../../engine/rng.js';
import type { Tensor } from '../../engine/tensor.js';
import { add, silu } from '../../kernels/elementwise.js';
import { dense } from '../../kernels/matmul.js';
import { oneHot, timestepEmbedding } from '../../kernels/embeddings.js';
import { createSde } from '../../model/sde.js';
import type { ImageDataset } from '../../data/dataset.js';
import type { TrainableModel } from '../../train/model.js';
import { reshapeOp } from '../../kernels/reshape.js';

export interface ToyModelSpec {
  channels: number;
  size: number;
  hidden: number;
  numClasses: number;
  timeDim: number;
}

export const TOY_SPEC: ToyModelSpec = { channels: 1, size: 4, hidden: 32, numClasses: 3, timeDim: 16 };

export function toyModel(spec: ToyModelSpec = TOY_SPEC): TrainableModel {
  const d = spec.channels * spec.size * spec.size;
  const { hidden: h, numClasses: k, timeDim: td } = spec;
  const shapes: Array<[string, number[]]> = [
    ['in.weight', [h, d]],
    ['in.bias', [h]],
    ['time.weight', [h, td]],
    ['time.bias', [h]],
    ['label.weight', [h, k]],
    ['mid.weight', [h, h]],
    ['mid.bias', [h]],
    ['out.weight', [d, h]],
    ['out.bias', [d]],
  ];
  return {
    name: 'toy-mlp',
    imageShape: [spec.channels, spec.size, spec.size],
    numClasses: k,
    sde: createSde('vp', 0.1, 20),
    centered: true,
    params: shapes.map(([name, shape]) => ({ name, shape, trainable: true })),
    initialParams(seed) {
      const out = new Map<string, Float32Array>();
      shapes.forEach(([name, shape], i) => {
        const n = shape.reduce((a, b) => a * b, 1);
        const v = new Float32Array(n);
        if (shape.length === 2) {
          const rng = new HostRng(seed, 1000 + i);
          const lim = Math.sqrt(3 / ((shape[0] + shape[1]) / 2));
          for (let j = 0; j < n; j++) v[j] = (2 * rng.uniform() - 1) * lim;
        }
        out.set(name, v);
      });
      return out;
    },
    predictNoise(e: Engine, w: ReadonlyMap<string, Tensor>, x: Tensor, t: Float64Array, labels: Tensor | null) {
      const b = x.shape[0];
      const g = (n: string) => w.get(n)!;
      const tNet = e.tensor(Float32Array.from(t, (v) => 999 * v), [b], 'f32', 'tNet');
      const temb = timestepEmbedding(e, tNet, td);
      const xin = dense(e, [x.reshape([b, d]), g('in.weight'), g('in.bias')], {});
      let hcur = add(e, [xin, dense(e, [temb, g('time.weight'), g('time.bias')], {})], {});
      if (labels) hcur = add(e, [hcur, dense(e, [oneHot(e, labels, k), g('label.weight'), null], {})], {});
      hcur = silu(e, [hcur], {});
      hcur = silu(e, [dense(e, [hcur, g('mid.weight'), g('mid.bias')], {})], {});
      const out = dense(e, [hcur, g('out.weight'), g('out.bias')], {});
      return reshapeOp(e, [out], { shape: x.shape });
    },
    describe: () => ({ kind: 'toy-mlp', ...spec }),
  };
}

/** n images of [c, size, size] in `classes` classes: class k is a stripe pattern of period k + 2, plus jitter. */
export function toyDataset(n: number, spec: ToyModelSpec = TOY_SPEC, seed = 7): ImageDataset {
  const dims = spec.channels * spec.size * spec.size;
  const pixels = new Uint8Array(n * dims);
  const labels = new Uint8Array(n);
  const rng = new HostRng(seed, 99);
  for (let i = 0; i < n; i++) {
    const k = i % spec.numClasses;
    labels[i] = k;
    for (let j = 0; j < dims; j++) {
      const col = j % spec.size;
      const base = Math.floor(col / 1) % (k + 2) === 0 ? 220 : 40;
      pixels[i * dims + j] = Math.max(0, Math.min(255, base + Math.round((rng.uniform() - 0.5) * 40)));
    }
  }
  return {
    name: 'toy-stripes',
    length: n,
    shape: [spec.channels, spec.size, spec.size],
    numClasses: spec.numClasses,
    image: (i) => pixels.slice(i * dims, (i + 1) * dims),
    label: (i) => labels[i],
  };
}
