import { describe, expect, it } from 'vitest';
import { ConfigError, loadPreset, parseConfig, presetNames, type NcsnppConfig } from '../../model/config.js';
import { forwardFlops } from '../../model/flops.js';
import { networkPlan, type NetworkPlan, type PlanBlock } from '../../model/network-plan.js';
import { countParams, paramSpec } from '../../model/param-spec.js';

const shapeOf = (cfg: NcsnppConfig, name: string): number[] | undefined => paramSpec(cfg).find((p) => p.name === name)?.shape;

/** Replays the plan on (channels, resolution) pairs: a shape-level forward pass that checks walkability. */
function simulate(plan: NetworkPlan): void {
  const c = plan.config;
  let h: [number, number] | null = null;
  let inPyr: [number, number] | null = null;
  let pyr: [number, number] | null = null;
  const hs: [number, number][] = [];
  let temb = false;
  const at = (blk: PlanBlock, cond: boolean, what: string): void => {
    if (!cond) throw new Error(`${blk.kind} ${'paramPrefix' in blk ? blk.paramPrefix : ''}: ${what}`);
  };
  for (const blk of plan.blocks) {
    switch (blk.kind) {
      case 'timeEmbedding':
        temb = blk.mlp !== null;
        break;
      case 'labelEmbedding':
        at(blk, blk.dense1.outFeatures === plan.embDim, 'label width');
        break;
      case 'convIn':
        h = [blk.conv.outChannels, blk.resolution];
        at(blk, blk.conv.inChannels === c.channels, 'input channels');
        if (blk.setInputPyramid) inPyr = [c.channels, c.imageSize];
        break;
      case 'pushSkip':
        at(blk, h !== null && h[0] === blk.channels && h[1] === blk.resolution, 'push shape');
        hs.push(h as [number, number]);
        at(blk, hs.length === blk.depth, 'depth');
        break;
      case 'resnet': {
        at(blk, h !== null && h[0] === blk.hChannels && h[1] === blk.resolutionIn, `h ${String(h)} vs ${blk.hChannels}@${blk.resolutionIn}`);
        if (blk.skipChannels > 0) {
          const s = hs.pop();
          at(blk, s !== undefined && s[0] === blk.skipChannels && s[1] === blk.resolutionIn, 'skip shape');
        }
        at(blk, blk.groupNorm0.channels === blk.inChannels && blk.conv0.inChannels === blk.inChannels, 'GN0/conv0');
        at(blk, (blk.timeDense !== null) === temb, 'temb use');
        h = [blk.conv1.outChannels, blk.resolutionOut];
        break;
      }
      case 'attention':
        at(blk, h !== null && h[0] === blk.channels && h[1] === blk.resolution, 'attn shape');
        break;
      case 'resample': {
        const src = blk.target === 'h' ? h : blk.target === 'inputPyramid' ? inPyr : pyr;
        at(blk, src !== null && src[0] === blk.inChannels && src[1] === blk.resolutionIn, 'resample input');
        const out: [number, number] = [blk.outChannels, blk.resolutionOut];
        if (blk.target === 'h') h = out;
        else if (blk.target === 'inputPyramid') inPyr = out;
        else pyr = out;
        break;
      }
      case 'combine':
        at(blk, inPyr !== null && h !== null && inPyr[1] === h[1] && blk.conv.inChannels === inPyr[0] && blk.conv.outChannels === h[0], 'combine');
        h = [blk.outChannels, blk.resolution];
        break;
      case 'inputPyramidAdd':
        at(blk, inPyr !== null && h !== null && inPyr[0] === h[0] && inPyr[1] === h[1], 'input pyramid add');
        inPyr = h;
        break;
      case 'pyramidHead':
        at(blk, h !== null && h[0] === blk.groupNorm.channels, 'pyramid head in');
        if (blk.mode === 'add') at(blk, pyr !== null && pyr[0] === blk.conv.outChannels && pyr[1] === blk.resolution, 'pyramid add');
        pyr = [blk.conv.outChannels, blk.resolution];
        break;
      case 'pyramidAdd':
        at(blk, pyr !== null && h !== null && pyr[0] === h[0] && pyr[1] === h[1], 'pyramid residual');
        h = pyr;
        break;
      case 'output': {
        const out = blk.head === null ? pyr : h;
        at(blk, out !== null, 'output source');
        const ch = blk.head === null ? (out as [number, number])[0] : blk.head.conv.outChannels;
        at(blk, ch === c.channels && (out as [number, number])[1] === c.imageSize, 'output shape');
        break;
      }
    }
  }
  expect(hs).toHaveLength(0);
}

/** Parameter names referenced by blocks (strings under weight/bias/W/b keys). */
function referencedNames(plan: NetworkPlan): Set<string> {
  const names = new Set<string>();
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (typeof x === 'string' && ['weight', 'bias', 'W', 'b'].includes(k)) names.add(x);
        else visit(x);
      }
    }
  };
  visit(plan.blocks);
  return names;
}

describe('parameter counts (SPEC §6b)', () => {
  it('cifar10-ddpmpp matches score_sde_pytorch: 61 804 419', () => {
    expect(countParams(loadPreset('cifar10-ddpmpp'))).toBe(61_804_419);
  });
  it('cifar10-sbgc matches the paper: 67 194 499', () => {
    expect(countParams(loadPreset('cifar10-sbgc'))).toBe(67_194_499);
  });
  it('small presets (documented in model/presets/README.md)', () => {
    const rows = (['tiny', 'mnist-small'] as const).map((n) => {
      const c = loadPreset(n);
      return { preset: n, params: countParams(c), gflopsPerImage: forwardFlops(c, 1) / 1e9, tensors: paramSpec(c).length };
    });
    console.table(rows);
    expect(rows[0].params).toBe(53_683);
    expect(rows[1].params).toBe(781_009);
    expect(forwardFlops(loadPreset('tiny'), 1)).toBe(2_433_728);
    expect(forwardFlops(loadPreset('mnist-small'), 1)).toBe(262_907_328);
  });
});

describe('score_sde state-dict names and shapes (cifar10 DDPM++)', () => {
  const cfg = loadPreset('cifar10-ddpmpp');
  const plan = networkPlan(cfg);

  it('module numbering', () => {
    expect(plan.numModules).toBe(55);
    expect(plan.buffers).toEqual([]);
    // Positional embedding has no parameters, so module 0 is the first time Dense.
    expect(shapeOf(cfg, 'all_modules.0.weight')).toEqual([512, 128]);
    expect(shapeOf(cfg, 'all_modules.1.weight')).toEqual([512, 512]);
    expect(shapeOf(cfg, 'all_modules.2.weight')).toEqual([128, 3, 3, 3]);
    expect(shapeOf(cfg, 'all_modules.3.Dense_0.weight')).toEqual([128, 512]);
    expect(shapeOf(cfg, 'all_modules.3.Conv_2.weight')).toBeUndefined(); // 128 → 128, no resampling
    expect(shapeOf(cfg, 'all_modules.7.Conv_2.weight')).toEqual([128, 128, 1, 1]); // BigGAN down block
    expect(shapeOf(cfg, 'all_modules.8.Conv_2.weight')).toEqual([256, 128, 1, 1]);
    expect(shapeOf(cfg, 'all_modules.9.NIN_0.W')).toEqual([256, 256]); // attention at 16×16
    expect(shapeOf(cfg, 'all_modules.27.NIN_3.b')).toEqual([256]); // middle attention
    expect(shapeOf(cfg, 'all_modules.29.GroupNorm_0.weight')).toEqual([512]); // up: 256 + skip 256
    expect(shapeOf(cfg, 'all_modules.46.GroupNorm_0.weight')).toEqual([256]); // up attention at 16
    expect(shapeOf(cfg, 'all_modules.52.Conv_0.weight')).toEqual([128, 256, 3, 3]); // 128 + conv_in skip 128
    expect(shapeOf(cfg, 'all_modules.53.weight')).toEqual([128]); // final GroupNorm
    expect(shapeOf(cfg, 'all_modules.54.weight')).toEqual([3, 128, 3, 3]);
    expect(paramSpec(cfg).some((p) => p.name.startsWith('all_modules.55.'))).toBe(false);
  });

  it('in-block order follows registration order', () => {
    const names = paramSpec(cfg).filter((p) => p.name.startsWith('all_modules.7.')).map((p) => p.name.slice(14));
    expect(names).toEqual([
      'GroupNorm_0.weight', 'GroupNorm_0.bias', 'Conv_0.weight', 'Conv_0.bias', 'Dense_0.weight', 'Dense_0.bias',
      'GroupNorm_1.weight', 'GroupNorm_1.bias', 'Conv_1.weight', 'Conv_1.bias', 'Conv_2.weight', 'Conv_2.bias',
    ]);
  });

  it('reference inits', () => {
    const spec = new Map(paramSpec(cfg).map((p) => [p.name, p.init]));
    expect(spec.get('all_modules.2.weight')).toMatchObject({ kind: 'varianceScaling', scale: 1, fanIn: 27, fanOut: 1152, limit: Math.sqrt(3 / 589.5) });
    expect(spec.get('all_modules.2.bias')).toEqual({ kind: 'zeros' });
    expect(spec.get('all_modules.3.GroupNorm_0.weight')).toEqual({ kind: 'ones' });
    expect(spec.get('all_modules.3.Conv_1.weight')).toMatchObject({ scale: 1e-10, requestedScale: 0 }); // init_scale 0
    expect(spec.get('all_modules.9.NIN_0.W')).toMatchObject({ scale: 0.1 });
    expect(spec.get('all_modules.9.NIN_3.W')).toMatchObject({ scale: 1e-10 });
    expect(spec.get('all_modules.54.weight')).toMatchObject({ scale: 1e-10 });
    expect(spec.get('all_modules.0.weight')).toMatchObject({ scale: 1, fanIn: 128, fanOut: 512 });
  });

  it('class conditioning adds only documented names, outside the all_modules numbering', () => {
    const sbgc = loadPreset('cifar10-sbgc');
    const base = paramSpec(cfg).map((p) => p.name);
    const withLabels = paramSpec(sbgc).map((p) => p.name);
    expect(withLabels.filter((n) => !n.includes('Dense_label') && !n.startsWith('label_embed.'))).toEqual(base);
    expect(shapeOf(sbgc, 'label_embed.Dense_0.weight')).toEqual([512, 10]);
    expect(shapeOf(sbgc, 'label_embed.Dense_1.weight')).toEqual([512, 512]);
    expect(shapeOf(sbgc, 'all_modules.3.Dense_label.weight')).toEqual([128, 512]);
    expect(withLabels.filter((n) => n.endsWith('Dense_label.weight'))).toHaveLength(44);
    expect(withLabels.slice(-4)).toEqual(['label_embed.Dense_0.weight', 'label_embed.Dense_0.bias', 'label_embed.Dense_1.weight', 'label_embed.Dense_1.bias']);
    const i = withLabels.indexOf('all_modules.3.Dense_0.bias');
    expect(withLabels[i + 1]).toBe('all_modules.3.Dense_label.weight');
    expect(networkPlan(sbgc).blocks[1].kind).toBe('labelEmbedding');
  });
});

describe('network plan', () => {
  const variants: Record<string, Partial<NcsnppConfig>> = {
    'ddpm resblocks': { resblockType: 'ddpm' },
    'ddpm, no resample conv': { resblockType: 'ddpm', resampWithConv: false },
    'fir': { fir: true },
    'ddpm + fir': { resblockType: 'ddpm', fir: true },
    'fourier': { embeddingType: 'fourier' },
    'not time-conditional': { conditional: false },
    'NCSN++ VE-style progressive': { fir: true, progressive: 'output_skip', progressiveInput: 'input_skip', embeddingType: 'fourier' },
    'progressive residual': { progressive: 'residual', progressiveInput: 'residual' },
    'input_skip cat': { progressiveInput: 'input_skip', progressiveCombine: 'cat' },
    'uncentred': { centered: false },
    'two res blocks': { numResBlocks: 2, attnResolutions: [8, 4] },
  };
  const presets = presetNames().map((n) => [n, loadPreset(n)] as const);
  const variantCfgs = Object.entries(variants).map(([n, v]) => [n, parseConfig({ ...loadPreset('tiny'), ...v }, n)] as const);

  it.each([...presets, ...variantCfgs])('%s: walkable, every parameter used once and named once', (_n, cfg) => {
    const plan = networkPlan(cfg);
    simulate(plan);
    const names = plan.params.map((p) => p.name);
    expect(new Set(names).size).toBe(names.length);
    const used = referencedNames(plan);
    const unused = names.filter((n) => !used.has(n));
    // Without time conditioning score_sde still creates every Dense_0, unused; nothing else may be unused.
    expect(unused.every((n) => !cfg.conditional && /\.Dense_0\.(weight|bias)$/.test(n))).toBe(true);
    expect([...used].every((n) => names.includes(n))).toBe(true);
  });

  it('variants pick score_sde module kinds', () => {
    const fir = networkPlan(variantCfgs.find(([n]) => n === 'ddpm + fir')![1]);
    const downs = fir.blocks.filter((b) => b.kind === 'resample');
    expect(downs.map((b) => (b.kind === 'resample' ? b.op.kind : ''))).toEqual(['firDownConv', 'firUpConv']);
    expect(fir.params.some((p) => p.name.endsWith('Conv2d_0.weight'))).toBe(true);
    const fourier = variantCfgs.find(([n]) => n === 'fourier')![1];
    expect(paramSpec(fourier)[0]).toMatchObject({ name: 'all_modules.0.W', shape: [8], trainable: false, init: { kind: 'normal', std: 16 } });
    expect(shapeOf(fourier, 'all_modules.1.weight')).toEqual([32, 16]);
    const ddpm = variantCfgs.find(([n]) => n === 'ddpm resblocks')![1];
    expect(paramSpec(ddpm).some((p) => p.name.endsWith('.Conv_2.weight'))).toBe(false);
    expect(networkPlan(ddpm).blocks.some((b) => b.kind === 'resnet' && b.shortcut.kind === 'nin')).toBe(true);
  });

  it('time label scale follows get_score_fn', () => {
    const tiny = loadPreset('tiny');
    const t = (cfg: NcsnppConfig) => networkPlan(cfg).blocks[0];
    expect(t(tiny)).toMatchObject({ kind: 'timeEmbedding', timeLabelScale: 999 });
    expect(t({ ...tiny, continuous: false, numScales: 500 })).toMatchObject({ timeLabelScale: 499 });
  });

  it('FLOPs scale with batch and match a hand count for conv_in', () => {
    const cfg = loadPreset('cifar10-ddpmpp');
    const one = forwardFlops(cfg, 1);
    expect(forwardFlops(cfg, 8)).toBe(8 * one);
    const convIn = 2 * 3 * 128 * 9 * 32 * 32;
    expect(one).toBeGreaterThan(convIn);
    console.log(`cifar10-ddpmpp forward: ${(one / 1e9).toFixed(2)} GFLOP/image; cifar10-sbgc: ${(forwardFlops(loadPreset('cifar10-sbgc'), 1) / 1e9).toFixed(2)}`);
    expect(one).toBe(21_693_071_360);
  });
});

describe('config parsing', () => {
  const tiny = loadPreset('tiny');
  const bad = (patch: Record<string, unknown>, field: string, pattern: RegExp): void => {
    let err: unknown;
    try {
      parseConfig({ ...tiny, ...patch }, 'bad.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).field).toBe(field);
    expect((err as ConfigError).message).toMatch(/^bad\.json: config field "/);
    expect((err as ConfigError).message).toMatch(pattern);
  };

  it('presets parse and round-trip through JSON text', () => {
    for (const n of presetNames()) {
      const c = loadPreset(n);
      expect(c.name).toBe(n);
      expect(parseConfig(JSON.stringify(c), n)).toEqual(c);
    }
    expect(presetNames()).toEqual(expect.arrayContaining(['cifar10-ddpmpp', 'cifar10-sbgc', 'mnist-small', 'tiny']));
  });

  it('defaults only for fields score_sde defaults', () => {
    const { groupNormEps: _e, numScales: _n, firKernel: _k, ...rest } = tiny;
    expect(parseConfig(rest, 'x')).toEqual(tiny);
  });

  it('errors name the field', () => {
    bad({ nf: 'wide' }, 'nf', /expected an integer >= 1, got "wide"/);
    bad({ chMult: [] }, 'chMult', /non-empty array/);
    bad({ resblockType: 'resnet' }, 'resblockType', /one of "biggan", "ddpm"/);
    bad({ nfs: 8 }, 'nfs', /unknown field/);
    bad({ dropout: 1.5 }, 'dropout', /<= 0.999/);
    bad({ centered: 1 }, 'centered', /true or false/);
    bad({ imageSize: 10, chMult: [1, 2, 2] }, 'imageSize', /multiple of/);
    bad({ attnResolutions: [16] }, 'attnResolutions', /among the levels \[8, 4\]/);
    bad({ nf: 9 }, 'nf', /GroupNorm/);
    bad({ betaMax: 0.05 }, 'betaMax', /> betaMin/);
    bad({ embeddingType: 'fourier', continuous: false }, 'embeddingType', /continuous/);
    expect(() => parseConfig({ ...tiny, nf: undefined }, 'm.json')).toThrow(/"nf": is required/);
    expect(() => parseConfig('{"nf": 8,', 'broken.json')).toThrow(/broken\.json: .*not valid JSON/);
    expect(() => parseConfig([1], 'arr.json')).toThrow(/expected a JSON object/);
    expect(() => loadPreset('cifar100')).toThrow(/unknown preset; known: cifar10-ddpmpp/);
  });
});
