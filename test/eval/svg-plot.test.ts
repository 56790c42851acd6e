import { describe, expect, it } from 'vitest';
import { escapeXml, formatTick, niceTicks, plotSvg } from '../../eval/svg-plot.js';
import { checkXmlWellFormed } from '../../eval/xml-check.js';

describe('svg-plot', () => {
  it('nice ticks: 1-2-2.5-5 steps on linear axes, 1-2-5 decades on log axes', () => {
    expect(niceTicks(0.2, 0.7, false)).toEqual({ lo: 0.2, hi: 0.7, ticks: [0.2, 0.3, 0.4, 0.5, 0.6, 0.7] });
    expect(niceTicks(-0.03, 0.02, false).ticks).toEqual([-0.03, -0.02, -0.01, 0, 0.01, 0.02]);
    expect(niceTicks(0, 97, false).ticks).toEqual([0, 20, 40, 60, 80, 100]);
    expect(niceTicks(1, 16, true)).toEqual({ lo: 1, hi: 20, ticks: [1, 2, 5, 10, 20] });
    expect(niceTicks(0.01, 3400, true).ticks).toEqual([0.01, 0.1, 1, 10, 100, 1000, 10000]);
    expect(niceTicks(5, 5, false).ticks.length).toBeGreaterThan(1);
    expect(niceTicks(3, 3, true).ticks.length).toBeGreaterThan(1);
    expect(formatTick(10000)).toBe('1e4');
    expect(formatTick(0.30000000000000004)).toBe('0.3');
    expect(formatTick(-0)).toBe('0');
    expect(formatTick(0.0005)).toBe('5e-4');
  });

  it('writes well-formed XML with escaped names, a legend entry per series, and skips unusable points', () => {
    const svg = plotSvg({
      title: 'a <b> & "c"',
      panels: [
        {
          title: 'p1',
          xLabel: 'n',
          yLabel: 'var',
          xLog: true,
          yLog: true,
          series: [
            { name: 'x < y & z', points: [[1, 1], [4, 0.25], [16, 0]] },
            { name: "it's dashed", points: [[1, 2], [4, NaN], [16, 0.1]], dashed: true },
          ],
        },
        { title: 'p2', xLabel: 'n', yLabel: 'acc', series: [{ name: 'x < y & z', points: [[1, 0.5], [2, 0.7]] }], references: [{ name: 'ref', y: 0.9 }] },
        { title: 'empty', xLabel: 'n', yLabel: 'y', series: [] },
      ],
    });
    const elements = checkXmlWellFormed(svg);
    expect(elements[0]).toBe('svg');
    expect(svg).toContain(escapeXml('x < y & z'));
    expect(svg).toContain('it&apos;s dashed');
    expect(svg).toContain('a &lt;b&gt; &amp; &quot;c&quot;');
    // Series 1 keeps 2 of 3 points on log axes (y = 0 dropped), series 2 keeps 2 (NaN dropped), series 3 keeps 2.
    expect(elements.filter((e) => e === 'circle')).toHaveLength(6);
    // The legend lists each name once: 2 series names + the reference.
    const legend = svg.slice(svg.indexOf('<g class="legend">'));
    expect(legend.match(/<text /g)).toHaveLength(3);
  });

  it('the XML check rejects malformed documents', () => {
    expect(() => checkXmlWellFormed('<svg><g></svg>')).toThrow(/closes <g>/);
    expect(() => checkXmlWellFormed('<svg a="1" a="2"/>')).toThrow(/duplicate attribute/);
    expect(() => checkXmlWellFormed('<svg>a & b</svg>')).toThrow(/bad entity/);
    expect(() => checkXmlWellFormed('<svg x=1/>')).toThrow(/malformed attribute/);
    expect(() => checkXmlWellFormed('<svg/><svg/>')).toThrow(/second root/);
    expect(() => checkXmlWellFormed('<svg>')).toThrow(/unclosed <svg>/);
  });
});
