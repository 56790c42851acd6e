import { describe, expect, it } from 'vitest';
import { pairedCounts, pairedMarkdown, reportFigure, reportMarkdown, reportRow, settingLabel, wilsonInterval, type ClassifyRunFile } from '../../eval/results-report.js';
import { checkXmlWellFormed } from '../../eval/xml-check.js';

function run(settings: Record<string, unknown>, step: string | null, outcomes: Array<[number, number, number]>): ClassifyRunFile {
  return {
    format: 'sbgc.classify/1',
    model: { source: 'mnist-small + w', ...(step ? { weights: { step, weights: 'raw' } } : {}) },
    input: { id: 'data:mnist:test', description: '' },
    settings,
    summary: {},
    timing: { seconds: 20, parts: 1 },
    images: outcomes.map(([index, label, predicted]) => ({ index, label, predicted, bitsPerDim: 1.5, nfe: 60, status: 'success' })),
  };
}

const ode = { estimator: undefined, rtol: 0.01, atol: 0.01, nProbes: 1, probes: 'rademacher', probesMode: 'shared-across-classes', epsT: 1e-5 };
const elbo = { estimator: 'elbo', k: 16, timeSampling: 'stratified uniform t, weight (T − ε)·g²/σ²', epsT: 1e-5 };

describe('classify result reports', () => {
  it('Wilson interval: known values, clamped, contains the estimate', () => {
    // 14/20 at z = 1.96: [0.481, 0.855] (standard tables).
    const [lo, hi] = wilsonInterval(14, 20);
    expect(lo).toBeCloseTo(0.4810, 3);
    expect(hi).toBeCloseTo(0.8545, 3);
    expect(wilsonInterval(0, 10)[0]).toBe(0);
    expect(wilsonInterval(10, 10)[1]).toBe(1);
    expect(wilsonInterval(0, 0)).toEqual([0, 1]);
  });

  it('labels the settings that distinguish runs', () => {
    expect(settingLabel(ode)).toBe('ODE rtol=atol 0.01, n 1 shared, ε 1e-5');
    expect(settingLabel({ ...ode, probesMode: 'independent', probes: 'gaussian', nProbes: 4, atol: 0.001 })).toBe('ODE rtol 0.01 atol 1e-3, n 4 gaussian independent, ε 1e-5');
    expect(settingLabel(elbo)).toBe('ELBO K 16, uniform t, ε 1e-5');
    expect(settingLabel({ ...ode, start: 'diffused', epsT: 0.1 })).toBe('ODE rtol=atol 0.01, n 1 shared, diffused start, ε 0.1');
    expect(settingLabel({ ...ode, start: 'clean' })).toBe(settingLabel(ode));
    expect(settingLabel({ ...elbo, timeSampling: 'stratified quantiles of the likelihood-importance proposal' })).toBe('ELBO K 16, importance t, ε 1e-5');
    expect(settingLabel({ ...elbo, timeSampling: 'half importance quantiles, half uniform strata' })).toBe('ELBO K 16, mixture t, ε 1e-5');
  });

  it('rows of EMA weights are told apart from the raw weights of the same step', () => {
    const raw = run(elbo, '3500', [[0, 0, 0]]);
    const ema = { ...raw, model: { source: 'mnist-small + w', weights: { step: '3500', weights: 'ema' } } };
    const debiased = { ...raw, model: { source: 'mnist-small + w', weights: { step: '3500', weights: 'ema-debiased' } } };
    expect(reportRow('r.json', raw).setting).toBe('ELBO K 16, uniform t, ε 1e-5');
    expect(reportRow('e.json', ema).setting).toBe('ELBO K 16, uniform t, ε 1e-5, EMA weights');
    expect(reportRow('d.json', debiased).setting).toBe('ELBO K 16, uniform t, ε 1e-5, debiased EMA weights');
  });

  it('rows made on a GPU adapter carry its device name and pair with the same settings on lavapipe', () => {
    const cpu = run(ode, '3500', [[0, 1, 1], [1, 2, 2]]);
    const gpu = { ...cpu, adapter: 'nvidia nvidia-h100-80gb-hbm3 — NVIDIA: 580.159.04 580.159.4.0 (vulkan)' };
    const lvp = { ...cpu, adapter: 'mesa software llvmpipe — llvmpipe: Mesa 25.0.7 (vulkan, CPU)' };
    expect(reportRow('g.json', gpu).setting).toBe('ODE rtol=atol 0.01, n 1 shared, ε 1e-5, GPU nvidia-h100-80gb-hbm3');
    expect(reportRow('l.json', lvp).setting).toBe(reportRow('c.json', cpu).setting);
    expect(pairedMarkdown([reportRow('c.json', cpu), reportRow('g.json', gpu)])).toContain('| 3500 | ODE rtol=atol 0.01, n 1 shared, ε 1e-5 | ODE rtol=atol 0.01, n 1 shared, ε 1e-5, GPU nvidia-h100-80gb-hbm3 | 2 | 0 | 0 |');
  });

  it('rows: accuracy, step from the weights metadata, paired counts on common images; table and well-formed SVG', () => {
    const a = reportRow('a.json', run(ode, '1360', [[0, 0, 0], [1, 7, 2], [2, 1, 1], [3, 4, 4]]));
    const b = reportRow('b.json', run(elbo, '1360', [[1, 7, 7], [2, 1, 1], [3, 4, 9], [5, 2, 2]]));
    const c = reportRow('c.json', run(elbo, '2000', [[0, 0, 0]]));
    expect(a).toMatchObject({ step: 1360, images: 4, correct: 3, accuracy: 0.75, meanNfe: 60, secondsPerImage: 5 });
    expect(reportRow('x', run(ode, null, [[0, 1, 1]])).step).toBeNull();
    // Common images 1, 2, 3: only a right on 3, only b right on 1.
    expect(pairedCounts(a, b)).toEqual({ onlyA: 1, onlyB: 1, common: 3 });
    const md = reportMarkdown([c, b, a]);
    expect(md.split('\n')).toHaveLength(5);
    expect(md.split('\n')[2]).toMatch(/^\| 1360 \| ELBO K 16, uniform t/); // sorted by step, then setting
    expect(md).toMatch(/75 % \(3\/4\)/);
    expect(pairedMarkdown([a, b, c])).toMatch(/\| 1360 \| ODE .* \| ELBO .* \| 3 \| 1 \| 1 \|/);
    expect(pairedMarkdown([a, c])).toBe('');
    expect(checkXmlWellFormed(reportFigure([a, b, c], 'accuracy'))[0]).toBe('svg');
    expect(reportFigure([a, b, c], 'accuracy')).not.toMatch(/vs the lower time limit/);
    // Three ε_t of one setting and step: a second panel; pairs only where one knob differs (or ODE vs ELBO at equal ε).
    const d = reportRow('d.json', run({ ...elbo, epsT: 0.1 }, '1360', [[1, 7, 7], [2, 1, 1], [3, 4, 4]]));
    const e = reportRow('e.json', run({ ...ode, epsT: 0.1, rtol: 1e-3, atol: 1e-3 }, '1360', [[1, 7, 7]]));
    expect(d.epsT).toBe(0.1);
    expect(reportFigure([a, b, d], 'accuracy')).not.toMatch(/vs the lower time limit/); // two values: no sweep
    const d2 = reportRow('d2.json', run({ ...elbo, epsT: 0.01 }, '1360', [[1, 7, 7]]));
    const svg = reportFigure([a, b, d, d2], 'accuracy');
    expect(checkXmlWellFormed(svg)[0]).toBe('svg');
    expect(svg).toMatch(/vs the lower time limit/);
    expect(svg).toMatch(/ELBO K 16, uniform t @ step 1360/);
    const pairs = pairedMarkdown([a, b, d, e]).split('\n').slice(2);
    expect(pairs).toHaveLength(3); // a–b (ODE vs ELBO, ε 1e-5), b–d (ε), d–e (ODE vs ELBO, ε 0.1); not a–d, a–e, b–e
    // Clean vs diffused start at equal settings: one knob.
    const f = reportRow('f.json', run({ ...ode, epsT: 0.1 }, '1360', [[1, 7, 7]]));
    const g = reportRow('g.json', run({ ...ode, epsT: 0.1, start: 'diffused' }, '1360', [[1, 7, 2]]));
    expect(pairedMarkdown([f, g])).toMatch(/\| 1360 \| ODE rtol=atol 0.01, n 1 shared, ε 0.1 \| ODE rtol=atol 0.01, n 1 shared, diffused start, ε 0.1 \| 1 \| 1 \| 0 \|/);
    expect(() => reportRow('bad.json', { ...run(ode, null, []), format: 'other' })).toThrow(/bad.json: not an sbgc classify result/);
  });
});
