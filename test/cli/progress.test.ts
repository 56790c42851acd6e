import { describe, expect, it } from 'vitest';
import { formatDuration, Progress, type ProgressOptions, type TextOut } from '../../cli/progress.js';

class Sink implements TextOut {
  text = '';
  constructor(readonly isTTY: boolean) {}
  write(s: string): void {
    this.text += s;
  }
}

/** A Progress writing into a Sink, on a clock the test sets (`clock.ms`). */
function progressOn(isTTY: boolean, options: Omit<ProgressOptions, 'now'>) {
  const clock = { ms: 0 };
  const out = new Sink(isTTY);
  return { clock, out, p: new Progress(out, { ...options, now: () => clock.ms }) };
}

const step = (nfev: number, t: number) => ({ step: nfev / 6, nfev, t, h: 0.01, running: 40 });

describe('progress display', () => {
  it('without a TTY: one plain line per interval with NFE, t, h, images and ETA', () => {
    const { clock, out, p } = progressOn(false, { label: 'classify', totalImages: 10, intervalMs: 5000 });
    p.chunkStarted(5, 1e-5, 1);
    clock.ms = 1000;
    p.solve(step(10, 0.1));
    expect(out.text).toBe(''); // first line only after one interval
    clock.ms = 5000;
    p.solve(step(20, 0.5));
    clock.ms = 6000;
    p.solve(step(30, 0.6)); // throttled
    expect(out.text.trim().split('\n')).toHaveLength(1);
    // The first chunk by log t: ln(0.5/1e-5)/ln(1/1e-5) = 0.940 of 5 images in 5 s → 5.6 s to go.
    expect(out.text).toBe('classify 0/10 images | NFE 20 | t 0.5000 | h 1.0e-2 | rows 40 | 00:05 elapsed | ETA 00:06\n');
    clock.ms = 10000;
    p.chunkDone(5, 60);
    p.log('#0 a line');
    expect(out.text).toMatch(/#0 a line\n$/);
    // After a chunk, the current one is measured in NFE against the mean NFE per chunk: 30/60 of 5 images.
    p.chunkStarted(5, 1e-5, 1);
    clock.ms = 15000;
    p.solve(step(30, 0.9));
    expect(out.text).toMatch(/classify 5\/10 images \| NFE 30 \| .* 00:15 elapsed \| ETA 00:05\n$/);
    p.finish();
  });

  it('no ETA from the first steps at ε_t (under 5 % of the first chunk by log t)', () => {
    const { clock, out, p } = progressOn(false, { label: 'study', totalImages: 4, intervalMs: 1000 });
    p.chunkStarted(1, 1e-3, 1);
    clock.ms = 115000;
    p.solve(step(8, 1.1e-3)); // ln(1.1)/ln(1000) = 1.4 %
    expect(out.text).toMatch(/ETA --:--\n$/);
    clock.ms = 200000;
    p.solve(step(20, 0.01)); // 33 %
    expect(out.text).toMatch(/ETA \d\d:\d\d\n$/);
  });

  it('on a TTY: redraws one bar line in place and clears it around log lines', () => {
    const { clock, out, p } = progressOn(true, { label: 'x', totalImages: 4, doneImages: 2 });
    p.chunkStarted(2, 0, 1);
    clock.ms = 500;
    p.solve(step(12, 0.5));
    expect(out.text).toMatch(/^\r\x1b\[2K\[#{15}-{5}\] x 2\/4 images \| NFE 12/);
    p.log('line');
    expect(out.text).toMatch(/\r\x1b\[2Kline\n\r\x1b\[2K\[/);
    p.finish();
    expect(out.text.endsWith('\r\x1b[2K')).toBe(true);
  });

  it('disabled: nothing but log lines', () => {
    const out = new Sink(true);
    const p = new Progress(out, { label: 'x', totalImages: 1, enabled: false });
    p.solve(step(1, 0.1));
    p.log('kept');
    p.finish();
    expect(out.text).toBe('kept\n');
  });

  it('formats durations', () => {
    expect(formatDuration(59.4)).toBe('00:59');
    expect(formatDuration(3723)).toBe('1:02:03');
    expect(formatDuration(NaN)).toBe('--:--');
  });
});
