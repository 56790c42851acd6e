// The NCSN++ network as an ordered list of typed blocks, built by one walk that mirrors score_sde's
// `NCSNpp.__init__` (module order = forward order there), so a forward pass only has to walk `blocks`.
// The same walk registers every parameter, which makes `params` the state-dict order by construction.
//
// Forward-pass state while walking: `x` (input), `temb` / `lemb` (embeddings, pre-activation), `h` (current
// activation), `hs` (skip stack), `inputPyramid` and `pyramid` (only for progressive_input / progressive ≠ none).
//
// Class conditioning (SPEC §6b; inferred from the paper's parameter count, not from released code) uses names
// outside the `all_modules.N` numbering, so score_sde checkpoints load unchanged:
//   label_embed.Dense_0.{weight [4nf, numClasses], bias [4nf]}   one-hot(y) → Dense_0 → SiLU → Dense_1
//   label_embed.Dense_1.{weight [4nf, 4nf],        bias [4nf]}
//   all_modules.N.Dense_label.{weight [C_out, 4nf], bias [C_out]}  in every residual block, added next to Dense_0
// They are ordered as if registered in PyTorch: Dense_label right after Dense_0 inside its block, and the
// `label_embed` module after `all_modules`. Init (our choice, matching the time MLP): default_init(), zero bias.

import { levelResolutions, type NcsnppConfig } from './config.js';
import { ParamCollector, type ConvRef, type DenseRef, type GroupNormRef } from './params.js';
import type { NetworkPlan, PlainResampleOp, PlanBlock, ResampleBlock, ResampleOp, ResnetBlock, TimeEmbeddingBlock } from './plan-blocks.js';

export type * from './plan-blocks.js';

/** upfirdn2d padding of score_sde's FIR resamplers for a 1-D kernel of `taps` and, for fused ops, a 3×3 conv. */
function firPadding(taps: number, kind: 'up' | 'down' | 'upConv' | 'downConv'): [number, number] {
  const fl = Math.floor;
  switch (kind) {
    case 'up': {
      const p = taps - 2;
      return [fl((p + 1) / 2) + 1, fl(p / 2)];
    }
    case 'down': {
      const p = taps - 2;
      return [fl((p + 1) / 2), fl(p / 2)];
    }
    case 'upConv': {
      const p = taps - 2 - 2;
      return [fl((p + 1) / 2) + 1, fl(p / 2) + 1];
    }
    case 'downConv': {
      const p = taps - 2 + 2;
      return [fl((p + 1) / 2), fl(p / 2)];
    }
  }
}

class PlanBuilder {
  readonly params = new ParamCollector();
  readonly blocks: PlanBlock[] = [];
  private nextModule = 0;
  private readonly c: NcsnppConfig;
  private readonly embDim: number;
  private readonly hasLabels: boolean;

  constructor(c: NcsnppConfig) {
    this.c = c;
    this.embDim = 4 * c.nf;
    this.hasLabels = c.numClasses > 0;
  }

  module(): { index: number; prefix: string } {
    const index = this.nextModule++;
    return { index, prefix: `all_modules.${index}` };
  }

  get moduleCount(): number {
    return this.nextModule;
  }

  plainResample(direction: 'up' | 'down'): PlainResampleOp {
    const { fir, firKernel } = this.c;
    if (!fir) return direction === 'up' ? { kind: 'nearestUp' } : { kind: 'meanDown' };
    const kernel = [...firKernel];
    return direction === 'up'
      ? { kind: 'firUp', kernel, gain: 4, firPad: firPadding(kernel.length, 'up') }
      : { kind: 'firDown', kernel, gain: 1, firPad: firPadding(kernel.length, 'down') };
  }

  /** layerspp.Upsample / Downsample(in, out, with_conv, fir) as a ResampleBlock. */
  resampleModule(target: ResampleBlock['target'], direction: 'up' | 'down', inCh: number, outCh: number, withConv: boolean, resIn: number): ResampleBlock {
    const { index, prefix } = this.module();
    const { fir, firKernel } = this.c;
    let op: ResampleOp;
    if (!withConv) {
      op = this.plainResample(direction);
    } else if (!fir) {
      op = direction === 'up'
        ? { kind: 'nearestUpConv', conv: this.params.conv(`${prefix}.Conv_0`, inCh, outCh, 3) }
        : { kind: 'strideConvDown', conv: this.params.conv(`${prefix}.Conv_0`, inCh, outCh, 3, 1, 2, { top: 0, bottom: 1, left: 0, right: 1 }) };
    } else {
      const kernel = [...firKernel];
      op = direction === 'up'
        ? { kind: 'firUpConv', kernel, gain: 4, firPad: firPadding(kernel.length, 'upConv'), conv: this.params.conv(`${prefix}.Conv2d_0`, inCh, outCh, 3) }
        : {
            kind: 'firDownConv', kernel, gain: 1, firPad: firPadding(kernel.length, 'downConv'),
            conv: this.params.conv(`${prefix}.Conv2d_0`, inCh, outCh, 3, 1, 2, { top: 0, bottom: 0, left: 0, right: 0 }),
          };
    }
    if (!withConv && inCh !== outCh) throw new Error(`${prefix}: resampling without conv cannot change channels`);
    const resOut = direction === 'up' ? resIn * 2 : resIn / 2;
    const block: ResampleBlock = { kind: 'resample', moduleIndex: index, paramPrefix: prefix, target, direction, inChannels: inCh, outChannels: outCh, resolutionIn: resIn, resolutionOut: resOut, op };
    this.blocks.push(block);
    return block;
  }

  resnet(hCh: number, skipCh: number, outCh: number, res: number, updown: 'up' | 'down' | null): void {
    const c = this.c;
    const { index, prefix } = this.module();
    const inCh = hCh + skipCh;
    const p = this.params;
    const eps = c.groupNormEps;
    const groupNorm0 = p.groupNorm(`${prefix}.GroupNorm_0`, inCh, eps);
    const conv0 = p.conv(`${prefix}.Conv_0`, inCh, outCh, 3);
    const timeDense = p.dense(`${prefix}.Dense_0`, this.embDim, outCh);
    const labelDense = this.hasLabels ? p.dense(`${prefix}.Dense_label`, this.embDim, outCh) : null;
    const groupNorm1 = p.groupNorm(`${prefix}.GroupNorm_1`, outCh, eps);
    const conv1 = p.conv(`${prefix}.Conv_1`, outCh, outCh, 3, c.initScale);
    let shortcut: ResnetBlock['shortcut'] = { kind: 'identity' };
    if (c.resblockType === 'biggan') {
      if (inCh !== outCh || updown !== null) shortcut = { kind: 'conv1x1', conv: p.conv(`${prefix}.Conv_2`, inCh, outCh, 1) };
    } else if (inCh !== outCh) {
      shortcut = { kind: 'nin', nin: p.nin(`${prefix}.NIN_0`, inCh, outCh) };
    }
    const resolutionOut = updown === 'up' ? res * 2 : updown === 'down' ? res / 2 : res;
    this.blocks.push({
      kind: 'resnet', variant: c.resblockType, moduleIndex: index, paramPrefix: prefix,
      inChannels: inCh, hChannels: hCh, skipChannels: skipCh, outChannels: outCh,
      resolutionIn: res, resolutionOut, resample: updown === null ? null : this.plainResample(updown),
      groupNorm0, conv0, timeDense: c.conditional ? timeDense : null, labelDense, groupNorm1,
      dropout: c.dropout, conv1, shortcut, skipRescale: c.skipRescale,
    });
  }

  attention(ch: number, res: number): void {
    const { index, prefix } = this.module();
    const p = this.params;
    this.blocks.push({
      kind: 'attention', moduleIndex: index, paramPrefix: prefix, channels: ch, resolution: res,
      groupNorm: p.groupNorm(`${prefix}.GroupNorm_0`, ch, this.c.groupNormEps),
      q: p.nin(`${prefix}.NIN_0`, ch, ch),
      k: p.nin(`${prefix}.NIN_1`, ch, ch),
      v: p.nin(`${prefix}.NIN_2`, ch, ch),
      out: p.nin(`${prefix}.NIN_3`, ch, ch, this.c.initScale),
      skipRescale: this.c.skipRescale,
    });
  }

  /** A top-level GroupNorm module followed by a top-level conv3x3 module (pyramid heads and the output head). */
  normConv(inCh: number, outCh: number, initScale: number): { moduleIndex: number; groupNorm: GroupNormRef; conv: ConvRef } {
    const gn = this.module();
    const groupNorm = this.params.groupNorm(gn.prefix, inCh, this.c.groupNormEps);
    const conv = this.params.conv(this.module().prefix, inCh, outCh, 3, initScale);
    return { moduleIndex: gn.index, groupNorm, conv };
  }
}

/** Build the plan: blocks in forward order and parameters in state-dict order. */
export function networkPlan(c: NcsnppConfig): NetworkPlan {
  const b = new PlanBuilder(c);
  const p = b.params;
  const nf = c.nf;
  const embDim = 4 * nf;
  const resolutions = levelResolutions(c);
  const levels = c.chMult.length;
  const attnAt = (res: number): boolean => c.attnResolutions.includes(res);

  // Time embedding (and its MLP when time-conditional).
  let embedding: TimeEmbeddingBlock['embedding'];
  if (c.embeddingType === 'fourier') {
    const W = p.add(`${b.module().prefix}.W`, [nf], { kind: 'normal', std: c.fourierScale }, false);
    embedding = { kind: 'fourier', W, size: nf, dim: 2 * nf, logOfLabel: true };
  } else {
    embedding = { kind: 'positional', dim: nf, maxPositions: 10000 };
  }
  let mlp: [DenseRef, DenseRef] | null = null;
  if (c.conditional) {
    const d0 = p.dense(b.module().prefix, embedding.dim, embDim);
    const d1 = p.dense(b.module().prefix, embDim, embDim);
    mlp = [d0, d1];
  }
  // score_sde get_score_fn: continuous (or sub-VP) models see 999·t whatever N is; discrete VP sees (N − 1)·t.
  const timeLabelScale = c.continuous || c.sde === 'subvp' ? 999 : c.numScales - 1;
  b.blocks.push({ kind: 'timeEmbedding', timeLabelScale, embedding, mlp });

  // Down path.
  const hsC: number[] = [];
  const push = (ch: number, res: number): void => {
    hsC.push(ch);
    b.blocks.push({ kind: 'pushSkip', channels: ch, resolution: res, depth: hsC.length });
  };
  const convInModule = b.module();
  b.blocks.push({
    kind: 'convIn', moduleIndex: convInModule.index, rescaleInput: !c.centered, setInputPyramid: c.progressiveInput !== 'none',
    conv: p.conv(convInModule.prefix, c.channels, nf, 3), resolution: c.imageSize,
  });
  push(nf, c.imageSize);
  let inCh = nf;
  let inputPyramidCh = c.channels;
  for (let level = 0; level < levels; level++) {
    const res = resolutions[level];
    for (let i = 0; i < c.numResBlocks; i++) {
      const outCh = nf * c.chMult[level];
      b.resnet(inCh, 0, outCh, res, null);
      inCh = outCh;
      if (attnAt(res)) b.attention(inCh, res);
      push(inCh, res);
    }
    if (level !== levels - 1) {
      if (c.resblockType === 'ddpm') b.resampleModule('h', 'down', inCh, inCh, c.resampWithConv, res);
      else b.resnet(inCh, 0, inCh, res, 'down');
      if (c.progressiveInput === 'input_skip') {
        b.resampleModule('inputPyramid', 'down', inputPyramidCh, inputPyramidCh, false, res);
        const m = b.module();
        const conv = p.conv(`${m.prefix}.Conv`, inputPyramidCh, inCh, 1);
        if (c.progressiveCombine === 'cat') inCh *= 2;
        b.blocks.push({ kind: 'combine', moduleIndex: m.index, paramPrefix: m.prefix, method: c.progressiveCombine, conv, outChannels: inCh, resolution: res / 2 });
      } else if (c.progressiveInput === 'residual') {
        b.resampleModule('inputPyramid', 'down', inputPyramidCh, inCh, true, res);
        inputPyramidCh = inCh;
        b.blocks.push({ kind: 'inputPyramidAdd', skipRescale: c.skipRescale });
      }
      push(inCh, res / 2);
    }
  }

  // Middle.
  const lowest = resolutions[levels - 1];
  inCh = hsC[hsC.length - 1];
  b.resnet(inCh, 0, inCh, lowest, null);
  b.attention(inCh, lowest);
  b.resnet(inCh, 0, inCh, lowest, null);

  // Up path.
  let pyramidCh = 0;
  for (let level = levels - 1; level >= 0; level--) {
    const res = resolutions[level];
    for (let i = 0; i < c.numResBlocks + 1; i++) {
      const outCh = nf * c.chMult[level];
      b.resnet(inCh, hsC.pop() as number, outCh, res, null);
      inCh = outCh;
    }
    if (attnAt(res)) b.attention(inCh, res);
    if (c.progressive !== 'none') {
      if (level === levels - 1) {
        const outCh = c.progressive === 'output_skip' ? c.channels : inCh;
        const head = b.normConv(inCh, outCh, c.progressive === 'output_skip' ? c.initScale : 1);
        b.blocks.push({ kind: 'pyramidHead', mode: 'set', ...head, resolution: res });
        pyramidCh = outCh;
      } else if (c.progressive === 'output_skip') {
        b.resampleModule('pyramid', 'up', pyramidCh, pyramidCh, false, res / 2);
        const head = b.normConv(inCh, c.channels, c.initScale);
        b.blocks.push({ kind: 'pyramidHead', mode: 'add', ...head, resolution: res });
        pyramidCh = c.channels;
      } else {
        b.resampleModule('pyramid', 'up', pyramidCh, inCh, true, res / 2);
        pyramidCh = inCh;
        b.blocks.push({ kind: 'pyramidAdd', skipRescale: c.skipRescale });
      }
    }
    if (level !== 0) {
      if (c.resblockType === 'ddpm') b.resampleModule('h', 'up', inCh, inCh, c.resampWithConv, res);
      else b.resnet(inCh, 0, inCh, res, 'up');
    }
  }
  if (hsC.length !== 0) throw new Error(`internal: ${hsC.length} skip connections left unused`);

  // Output head.
  if (c.progressive === 'output_skip') {
    b.blocks.push({ kind: 'output', moduleIndex: -1, head: null, channels: c.channels, resolution: c.imageSize });
  } else {
    const head = b.normConv(inCh, c.channels, c.initScale);
    b.blocks.push({ kind: 'output', moduleIndex: head.moduleIndex, head: { groupNorm: head.groupNorm, conv: head.conv }, channels: c.channels, resolution: c.imageSize });
  }
  const numModules = b.moduleCount;

  // The label embedding's params come last (module `label_embed` after `all_modules`), but it is computed
  // right after the time embedding, so its block goes there.
  if (c.numClasses > 0) {
    b.blocks.splice(1, 0, {
      kind: 'labelEmbedding', numClasses: c.numClasses,
      dense0: p.dense('label_embed.Dense_0', c.numClasses, embDim),
      dense1: p.dense('label_embed.Dense_1', embDim, embDim),
    });
  }

  return { config: c, params: p.entries, blocks: b.blocks, embDim, numModules, buffers: [] };
}
