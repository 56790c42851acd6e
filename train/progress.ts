/**
 * Training feedback: a one-line progress bar on stderr (steps/s, ETA, loss) and a hand-written SVG loss curve
 * (a polyline of the per-step loss and a moving average; a picture, not a format codec).
 */

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export class ProgressBar {
  private lastLen = 0;
  constructor(
    private readonly total: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  /** Redraws the bar (a TTY) or prints a plain line (a log file / CI). */
  update(step: number, stepsPerSecond: number, loss: number | null): void {
    const width = 24;
    const frac = this.total > 0 ? Math.min(1, step / this.total) : 1;
    const filled = Math.round(frac * width);
    const eta = stepsPerSecond > 0 ? (this.total - step) / stepsPerSecond : NaN;
    const line =
      `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${step}/${this.total} ` +
      `${stepsPerSecond.toFixed(2)} steps/s ETA ${formatDuration(eta)}` +
      (loss === null ? '' : ` loss ${loss.toPrecision(5)}`);
    if (this.stream.isTTY) {
      this.stream.write(`\r${line}${' '.repeat(Math.max(0, this.lastLen - line.length))}`);
      this.lastLen = line.length;
    } else {
      this.stream.write(`${line}\n`);
    }
  }

  done(): void {
    if (this.stream.isTTY && this.lastLen > 0) this.stream.write('\n');
    this.lastLen = 0;
  }
}

/** SVG of loss vs step: light per-step polyline, dark moving average, log-scale y when the range is wide. */
export function lossCurveSvg(points: ReadonlyArray<{ step: number; loss: number }>, title = 'training loss'): string {
  const W = 640;
  const H = 360;
  const pad = { l: 64, r: 16, t: 28, b: 40 };
  const finite = points.filter((p) => Number.isFinite(p.loss));
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const head = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="18" text-anchor="middle">${esc(title)}</text>`;
  if (finite.length === 0) return `${head}\n<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no data yet</text>\n</svg>\n`;
  const steps = finite.map((p) => p.step);
  const losses = finite.map((p) => p.loss);
  const x0 = Math.min(...steps);
  const x1 = Math.max(x0 + 1, ...steps);
  const lo = Math.min(...losses);
  const hi = Math.max(...losses);
  const logScale = lo > 0 && hi / lo > 20;
  const f = (v: number) => (logScale ? Math.log10(v) : v);
  const y0 = f(lo);
  const y1 = f(hi) > y0 ? f(hi) : y0 + 1;
  const px = (s: number) => pad.l + ((s - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const py = (v: number) => H - pad.b - ((f(v) - y0) / (y1 - y0)) * (H - pad.t - pad.b);
  const poly = (pts: Array<[number, number]>) => pts.map(([s, v]) => `${px(s).toFixed(1)},${py(v).toFixed(1)}`).join(' ');
  // Moving average over ~2 % of the run (at least 1 point).
  const win = Math.max(1, Math.round(finite.length / 50));
  const avg: Array<[number, number]> = [];
  let acc = 0;
  finite.forEach((p, i) => {
    acc += logScale ? Math.log(p.loss) : p.loss;
    if (i >= win) acc -= logScale ? Math.log(finite[i - win].loss) : finite[i - win].loss;
    const n = Math.min(i + 1, win);
    avg.push([p.step, logScale ? Math.exp(acc / n) : acc / n]);
  });
  const ticks = (a: number, b: number, n: number) => Array.from({ length: n + 1 }, (_, i) => a + ((b - a) * i) / n);
  const yTicks = ticks(y0, y1, 4).map((v) => (logScale ? 10 ** v : v));
  const xTicks = ticks(x0, x1, 5).map(Math.round);
  const fmt = (v: number) => (Math.abs(v) >= 1000 || Math.abs(v) < 0.01 ? v.toExponential(1) : v.toPrecision(3));
  const axes = [
    `<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="black"/>`,
    `<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="black"/>`,
    ...yTicks.map((v) => `<text x="${pad.l - 6}" y="${(py(v) + 4).toFixed(1)}" text-anchor="end">${fmt(v)}</text>`),
    ...xTicks.map((s) => `<text x="${px(s).toFixed(1)}" y="${H - pad.b + 16}" text-anchor="middle">${s}</text>`),
    `<text x="${W / 2}" y="${H - 6}" text-anchor="middle">step</text>`,
    `<text x="14" y="${H / 2}" text-anchor="middle" transform="rotate(-90 14 ${H / 2})">loss${logScale ? ' (log)' : ''}</text>`,
  ];
  return `${head}
${axes.join('\n')}
<polyline fill="none" stroke="#9ecae1" stroke-width="1" points="${poly(finite.map((p) => [p.step, p.loss]))}"/>
<polyline fill="none" stroke="#08519c" stroke-width="2" points="${poly(avg)}"/>
</svg>
`;
}
