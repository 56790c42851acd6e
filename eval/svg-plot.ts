/**
 * Minimal SVG line/point plots for study outputs: side-by-side panels, linear or log axes with "nice" ticks,
 * series as polylines with point markers, optional horizontal reference lines, and one legend for the figure.
 * No dependencies; the output is standalone, well-formed XML.
 */

export interface PlotSeries {
  name: string;
  /** [x, y] points; non-finite ones (and non-positive ones on a log axis) are skipped. */
  points: ReadonlyArray<readonly [number, number]>;
  color?: string;
  /** Dashed line (e.g. a second family of series). */
  dashed?: boolean;
}

export interface ReferenceLine {
  name: string;
  y: number;
  color?: string;
}

export interface PlotPanel {
  title: string;
  xLabel: string;
  yLabel: string;
  xLog?: boolean;
  yLog?: boolean;
  series: PlotSeries[];
  /** Horizontal dotted lines across the panel. */
  references?: ReferenceLine[];
  /** Force the y range (else from the data). */
  yRange?: readonly [number, number];
}

export interface PlotOptions {
  title?: string;
  panels: PlotPanel[];
  /** Size of each panel's plotting area in px (default 300 × 220). */
  panelWidth?: number;
  panelHeight?: number;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** Tick positions and labels covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, log: boolean, target = 5): { lo: number; hi: number; ticks: number[] } {
  if (log) {
    // Candidate ticks 1, 2, 5 × 10^k (only powers of ten over many decades); the range snaps to the nearest ones.
    let a = Math.floor(Math.log10(lo));
    let b = Math.ceil(Math.log10(hi));
    if (a === b) {
      a -= 1;
      b += 1;
    }
    const mult = b - a <= 3 ? [1, 2, 5] : [1];
    const step = Math.max(1, Math.ceil((b - a) / 8));
    const all: number[] = [];
    for (let k = a; k <= b; k += step) for (const m of mult) all.push(m * 10 ** k);
    const first = [...all].reverse().find((v) => v <= lo * (1 + 1e-12)) ?? all[0];
    const last = all.find((v) => v >= hi * (1 - 1e-12)) ?? all[all.length - 1];
    const ticks = all.filter((v) => v >= first && v <= last);
    if (ticks.length < 2) return { lo: 10 ** a, hi: 10 ** b, ticks: [10 ** a, 10 ** b] };
    return { lo: first, hi: last, ticks };
  }
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  // Integer multiples of the step, rounded to 12 digits so 0.1-steps print as 0.3, not 0.30000000000000004.
  const clean = (k: number) => Number((k * step).toPrecision(12)) + 0;
  const ka = Math.floor(lo / step + 1e-9);
  const kb = Math.ceil(hi / step - 1e-9);
  const ticks: number[] = [];
  for (let k = ka; k <= kb; k++) ticks.push(clean(k));
  return { lo: clean(ka), hi: clean(kb), ticks };
}

export function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) {
    const [m, e] = v.toExponential(1).split('e');
    return `${m.replace(/\.0$/, '')}e${Number(e)}`;
  }
  return String(Number(v.toPrecision(3)));
}

function usable(p: readonly [number, number], xLog: boolean, yLog: boolean): boolean {
  const [x, y] = p;
  return Number.isFinite(x) && Number.isFinite(y) && (!xLog || x > 0) && (!yLog || y > 0);
}

function range(vals: number[], log: boolean): [number, number] {
  if (vals.length === 0) return log ? [1, 10] : [0, 1];
  return [Math.min(...vals), Math.max(...vals)];
}

function n(v: number): string {
  return (Math.round(v * 100) / 100).toString();
}

interface Legend {
  name: string;
  color: string;
  dashed: boolean;
  reference: boolean;
}

function drawPanel(p: PlotPanel, ox: number, oy: number, w: number, h: number, colorOf: (name: string) => string, out: string[]): void {
  const xLog = p.xLog === true;
  const yLog = p.yLog === true;
  const pts = p.series.flatMap((s) => s.points.filter((q) => usable(q, xLog, yLog)));
  const refs = (p.references ?? []).filter((r) => Number.isFinite(r.y) && (!yLog || r.y > 0));
  const [x0, x1] = range(pts.map((q) => q[0]), xLog);
  const [y0, y1] = p.yRange ? [p.yRange[0], p.yRange[1]] : range([...pts.map((q) => q[1]), ...refs.map((r) => r.y)], yLog);
  const xt = niceTicks(x0, x1, xLog);
  const yt = niceTicks(y0, y1, yLog);
  const tx = (v: number) => (xLog ? Math.log10(v / xt.lo) / Math.log10(xt.hi / xt.lo) : (v - xt.lo) / (xt.hi - xt.lo));
  const ty = (v: number) => (yLog ? Math.log10(v / yt.lo) / Math.log10(yt.hi / yt.lo) : (v - yt.lo) / (yt.hi - yt.lo));
  const X = (v: number) => ox + tx(v) * w;
  const Y = (v: number) => oy + h - ty(v) * h;

  out.push(`<g class="panel">`);
  out.push(`<text x="${n(ox + w / 2)}" y="${n(oy - 10)}" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(p.title)}</text>`);
  out.push(`<rect x="${n(ox)}" y="${n(oy)}" width="${n(w)}" height="${n(h)}" fill="none" stroke="#333"/>`);
  for (const v of xt.ticks) {
    const x = X(v);
    out.push(`<line x1="${n(x)}" y1="${n(oy)}" x2="${n(x)}" y2="${n(oy + h)}" stroke="#ddd"/>`);
    out.push(`<text x="${n(x)}" y="${n(oy + h + 14)}" text-anchor="middle" font-size="10">${escapeXml(formatTick(v))}</text>`);
  }
  for (const v of yt.ticks) {
    const y = Y(v);
    out.push(`<line x1="${n(ox)}" y1="${n(y)}" x2="${n(ox + w)}" y2="${n(y)}" stroke="#ddd"/>`);
    out.push(`<text x="${n(ox - 4)}" y="${n(y + 3)}" text-anchor="end" font-size="10">${escapeXml(formatTick(v))}</text>`);
  }
  out.push(`<text x="${n(ox + w / 2)}" y="${n(oy + h + 32)}" text-anchor="middle" font-size="11">${escapeXml(p.xLabel)}${xLog ? ' (log)' : ''}</text>`);
  out.push(
    `<text x="${n(ox - 44)}" y="${n(oy + h / 2)}" text-anchor="middle" font-size="11" transform="rotate(-90 ${n(ox - 44)} ${n(oy + h / 2)})">` +
      `${escapeXml(p.yLabel)}${yLog ? ' (log)' : ''}</text>`,
  );
  for (const r of refs) {
    const y = Y(r.y);
    out.push(`<line x1="${n(ox)}" y1="${n(y)}" x2="${n(ox + w)}" y2="${n(y)}" stroke="${escapeXml(r.color ?? colorOf(r.name))}" stroke-dasharray="2 3" stroke-width="1.5"><title>${escapeXml(r.name)}</title></line>`);
  }
  for (const s of p.series) {
    const q = s.points.filter((pt) => usable(pt, xLog, yLog));
    if (q.length === 0) continue;
    const color = escapeXml(s.color ?? colorOf(s.name));
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    out.push(`<g class="series"><title>${escapeXml(s.name)}</title>`);
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.8"${dash} points="${q.map(([x, y]) => `${n(X(x))},${n(Y(y))}`).join(' ')}"/>`);
    for (const [x, y] of q) out.push(`<circle cx="${n(X(x))}" cy="${n(Y(y))}" r="3" fill="${color}"/>`);
    out.push(`</g>`);
  }
  out.push(`</g>`);
}

/** The figure as an SVG document. */
export function plotSvg(o: PlotOptions): string {
  const w = o.panelWidth ?? 300;
  const h = o.panelHeight ?? 220;
  const left = 70;
  const gap = 80;
  const top = o.title ? 56 : 36;
  const legendItems: Legend[] = [];
  const colors = new Map<string, string>();
  const colorOf = (name: string): string => {
    if (!colors.has(name)) colors.set(name, PALETTE[colors.size % PALETTE.length]);
    return colors.get(name)!;
  };
  for (const p of o.panels) {
    for (const s of p.series) {
      if (s.color) colors.set(s.name, s.color);
      if (!legendItems.some((l) => l.name === s.name)) legendItems.push({ name: s.name, color: s.color ?? colorOf(s.name), dashed: s.dashed === true, reference: false });
    }
    for (const r of p.references ?? []) {
      if (r.color) colors.set(r.name, r.color);
      if (!legendItems.some((l) => l.name === r.name)) legendItems.push({ name: r.name, color: r.color ?? colorOf(r.name), dashed: false, reference: true });
    }
  }
  const width = left + o.panels.length * w + (o.panels.length - 1) * gap + 30;
  // Columns as wide as the longest label (~6.2 px per character at font size 11), so labels never overlap.
  const legendColWidth = Math.max(230, 36 + Math.ceil(6.2 * Math.max(0, ...legendItems.map((l) => l.name.length))));
  const legendCols = Math.max(1, Math.floor(width / legendColWidth));
  const legendRows = Math.ceil(legendItems.length / legendCols);
  const legendTop = top + h + 50;
  const height = legendTop + legendRows * 18 + 12;
  const out: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  if (o.title) out.push(`<text x="${n(width / 2)}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(o.title)}</text>`);
  o.panels.forEach((p, i) => drawPanel(p, left + i * (w + gap), top, w, h, colorOf, out));
  out.push(`<g class="legend">`);
  legendItems.forEach((l, i) => {
    const x = left + (i % legendCols) * legendColWidth;
    const y = legendTop + Math.floor(i / legendCols) * 18;
    const dash = l.reference ? ' stroke-dasharray="2 3"' : l.dashed ? ' stroke-dasharray="6 4"' : '';
    out.push(`<line x1="${x}" y1="${y}" x2="${x + 24}" y2="${y}" stroke="${escapeXml(l.color)}" stroke-width="2"${dash}/>`);
    out.push(`<text x="${x + 30}" y="${y + 4}" font-size="11">${escapeXml(l.name)}</text>`);
  });
  out.push(`</g>`, `</svg>`);
  return out.join('\n') + '\n';
}
