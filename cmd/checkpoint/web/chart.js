// Line charts drawn as SVG by hand: a few hundred points per series at most
// (the server thins them), so no chart library is needed, nothing has to be
// vendored, and the strict Content-Security-Policy holds (colours come from
// classes in app.css, not inline styles).
import { s, h, fmtNum } from './dom.js';

const W = 640, H = 230, M = { l: 56, r: 12, t: 22, b: 30 };

function ticks(lo, hi, n) {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= step0) || step0;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
  return out;
}

function timeLabel(ms, span) {
  const d = new Date(ms);
  const p = (x) => String(x).padStart(2, '0');
  if (span > 2 * 86400e3) return `${d.getMonth() + 1}/${d.getDate()} ${p(d.getHours())}h`;
  if (span > 120e3) return `${p(d.getHours())}:${p(d.getMinutes())}`;
  // Seconds with the hour: "17:16" alone reads as a time of day.
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

// lineChart draws series [{name, points: [{x, y}]}] where x is a time in
// milliseconds (time: true) or a number. It returns a <figure> with an
// accessible name and a legend.
export function lineChart({ title, series, time = true, yLabel = '', xLabel = '', zero = true }) {
  const all = series.flatMap((sr) => sr.points);
  const fig = h('figure', { class: 'chart' });
  fig.append(h('figcaption', {}, title));
  if (all.length === 0) {
    fig.append(h('p', { class: 'muted' }, 'No data yet.'));
    return fig;
  }
  let x0 = Math.min(...all.map((p) => p.x)), x1 = Math.max(...all.map((p) => p.x));
  let y0 = Math.min(...all.map((p) => p.y)), y1 = Math.max(...all.map((p) => p.y));
  if (zero) y0 = Math.min(0, y0);
  else { const pad = (y1 - y0) * 0.08 || Math.abs(y1) * 0.05 || 1; y0 -= pad; y1 += pad; }
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) y1 = y0 + 1;
  const px = (x) => M.l + (x - x0) / (x1 - x0) * (W - M.l - M.r);
  const py = (y) => H - M.b - (y - y0) / (y1 - y0) * (H - M.t - M.b);
  const label = `${title}: ${series.map((sr) => `${sr.name}, ${sr.points.length} points, last ${fmtNum(sr.points.at(-1)?.y)}`).join('; ')}`;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, class: 'chart-svg' });
  svg.append(s('title', {}, label));
  const grid = s('g', { class: 'grid' });
  for (const v of ticks(y0, y1, 4)) {
    grid.append(s('line', { x1: M.l, x2: W - M.r, y1: py(v), y2: py(v) }));
    grid.append(s('text', { x: M.l - 6, y: py(v) + 4, 'text-anchor': 'end' }, fmtNum(v)));
  }
  // A time axis shorter than its labels' resolution (a second or two
  // shown to the second) would repeat a label: each label is drawn once.
  let last = null;
  for (const v of ticks(x0, x1, 5)) {
    const text = time ? timeLabel(v, x1 - x0) : fmtNum(v);
    if (text === last) continue;
    last = text;
    grid.append(s('text', { x: px(v), y: H - M.b + 16, 'text-anchor': 'middle' }, text));
  }
  grid.append(s('line', { class: 'axis', x1: M.l, x2: W - M.r, y1: H - M.b, y2: H - M.b }));
  grid.append(s('line', { class: 'axis', x1: M.l, x2: M.l, y1: M.t, y2: H - M.b }));
  if (yLabel) grid.append(s("text", { x: 4, y: 12, class: "unit" }, yLabel)); // above the top tick
  if (xLabel) grid.append(s('text', { x: W - M.r, y: H - 2, 'text-anchor': 'end', class: 'unit' }, xLabel));
  svg.append(grid);
  series.forEach((sr, i) => {
    const pts = sr.points.map((p) => `${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(' ');
    const g = s('g', { class: `series s${i % 6}`, 'data-points': sr.points.length });
    g.append(s('polyline', { points: pts }));
    if (sr.points.length <= 60) sr.points.forEach((p) => g.append(s('circle', { cx: px(p.x), cy: py(p.y), r: 2.5 })));
    svg.append(g);
  });
  fig.append(svg);
  if (series.length > 1) {
    fig.append(h('ul', { class: 'legend' }, series.map((sr, i) => h('li', { class: `s${i % 6}` }, h('span', { class: 'swatch', 'aria-hidden': 'true' }), sr.name))));
  }
  return fig;
}

// perMinute turns a cumulative count over time into records per minute, in
// about 60 buckets of at least a second. Records come in bursts (a batch, a
// flush); a job of a few seconds cut into 60 buckets of a few milliseconds
// would show each burst as a spike and each gap as zero. A job shorter than
// two seconds gets two buckets.
export function perMinute(points) {
  if (points.length < 2) return points.map((p) => ({ x: p.x, y: 0 }));
  const t0 = points[0].x, t1 = points.at(-1).x;
  const span = Math.max(t1 - t0, 1);
  const bucket = Math.max(span / 60, Math.min(1000, span / 2)); // ms; the rate is still per minute
  let j = 0;
  const at = (t) => { // cumulative count at t, linear between points
    while (j < points.length - 1 && points[j + 1].x <= t) j++;
    const a = points[j], b = points[Math.min(j + 1, points.length - 1)];
    if (b.x === a.x || t <= a.x) return a.y;
    return a.y + (b.y - a.y) * Math.min(1, (t - a.x) / (b.x - a.x));
  };
  const out = [];
  let prev = at(t0);
  for (let t = t0 + bucket; t <= t1 + bucket / 2; t += bucket) {
    const n = at(Math.min(t, t1));
    out.push({ x: Math.min(t, t1), y: (n - prev) / (bucket / 60000) });
    prev = n;
  }
  return out;
}
