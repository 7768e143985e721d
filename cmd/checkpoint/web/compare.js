// Compare two or more experiments: parameters and metrics side by side,
// overlaid trends, and the key-level comparison of the first two.
import { h, put, fmtInt, fmtNum, jsonText, statusText } from './dom.js';
import { get } from './api.js';
import { lineChart } from './chart.js';

export async function compareView(main, ctx, names) {
  put(main, h('h1', {}, 'Compare'));
  if (names.length < 2) return picker(main);
  main.append(h('p', { class: 'muted' }, 'Base: ', h('strong', {}, names[0]), '. Deltas are against it.'));
  const c = await get('/api/compare', { name: names });
  const head = (first) => h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, first), c.names.map((n) => h('th', { scope: 'col' }, h('a', { href: `#/exp/${encodeURIComponent(n)}` }, n)))));

  main.append(h('section', { 'aria-labelledby': 'h-c-summary' }, h('h2', { id: 'h-c-summary' }, 'Summary'),
    h('table', { class: 'grid-table', id: 'compare-summary' }, head('Field'), h('tbody', {},
      [['Status', 'status'], ['Completed', 'completed'], ['Failed', 'failed'], ['Total', 'total']].map(([label, k]) =>
        h('tr', {}, h('th', { scope: 'row' }, label), c.rows.map((r) => h('td', { class: typeof r[k] === 'number' ? 'num' : '' }, typeof r[k] === 'number' ? fmtInt(r[k]) : statusText(r[k])))))))));

  main.append(h('section', { 'aria-labelledby': 'h-c-params' }, h('h2', { id: 'h-c-params' }, 'Parameters'),
    c.params.length ? h('table', { class: 'grid-table', id: 'compare-params' }, head('Parameter'), h('tbody', {}, c.params.map((p) =>
      h('tr', { class: p.differ ? 'differ' : '' }, h('th', { scope: 'row' }, p.name, p.differ ? h('span', { class: 'diff-mark' }, ' ≠ differs') : null),
        p.values.map((v) => h('td', {}, v === null ? '—' : jsonText(v))))))) : h('p', { class: 'muted' }, 'No parameters recorded.')));

  main.append(h('section', { 'aria-labelledby': 'h-c-metrics' }, h('h2', { id: 'h-c-metrics' }, 'Metrics (latest)'),
    c.metrics.length ? h('table', { class: 'grid-table', id: 'compare-metrics' }, head('Metric'), h('tbody', {}, c.metrics.map((m) =>
      h('tr', { class: m.differ ? 'differ' : '' }, h('th', { scope: 'row' }, m.name),
        m.values.map((v, i) => h('td', { class: 'num' }, v === null ? '—' : fmtNum(v),
          i > 0 && m.deltas?.[i] !== null && m.deltas?.[i] !== undefined ? h('span', { class: m.deltas[i] > 0 ? 'delta up' : m.deltas[i] < 0 ? 'delta down' : 'delta' }, ` (${m.deltas[i] > 0 ? '+' : ''}${fmtNum(m.deltas[i])})`) : null)))))) : h('p', { class: 'muted' }, 'No metrics recorded.')));

  // One overlaid chart per series name, against the time since each one's
  // first point, so runs made on different days line up.
  const seriesNames = [...new Set(c.series.flatMap((m) => Object.keys(m || {})))].sort();
  const spans = c.series.flatMap((m) => Object.values(m || {}).map((pts) => pts.length ? Date.parse(pts.at(-1).t) - Date.parse(pts[0].t) : 0));
  const span = Math.max(0, ...spans);
  const [unit, ms] = span < 120e3 ? ['seconds', 1e3] : span < 2 * 3600e3 ? ['minutes', 60e3] : ['hours', 3600e3];
  main.append(h('section', { 'aria-labelledby': 'h-c-trends' }, h('h2', { id: 'h-c-trends' }, 'Trends'),
    h('div', { class: 'chart-row' }, seriesNames.map((sn) => {
      const all = c.series.map((m) => (m || {})[sn] || []);
      const byStep = all.flat().length > 0 && all.flat().every((p) => p.step !== undefined && p.step !== null);
      return lineChart({
        title: sn === 'records' ? 'Records saved' : sn, zero: sn === 'records', time: false, xLabel: byStep ? 'step' : `${unit} since start`,
        series: c.names.map((n, i) => {
          const pts = all[i];
          const t0 = pts.length ? Date.parse(pts[0].t) : 0;
          return { name: n, points: pts.map((p) => ({ x: byStep ? p.step : (Date.parse(p.t) - t0) / ms, y: p.v })) };
        }),
      });
    }))));

  const keys = h('section', { 'aria-labelledby': 'h-c-keys' }, h('h2', { id: 'h-c-keys' }, `Keys: ${c.names[0]} vs ${c.names[1]}`));
  main.append(keys);
  if (!c.keys) {
    keys.append(h('p', { class: 'warn' }, c.note || 'No key-level comparison.'));
    return;
  }
  const k = c.keys;
  keys.append(h('table', { class: 'grid-table', id: 'compare-keys' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Category'), h('th', { scope: 'col', class: 'num' }, 'Keys'), h('th', { scope: 'col' }, 'Examples'))),
    h('tbody', {},
      row(`Only in ${c.names[0]}`, k.only_a, k.examples_only_a.map((x) => jsonText(x)).join(', ')),
      row(`Only in ${c.names[1]}`, k.only_b, k.examples_only_b.map((x) => jsonText(x)).join(', ')),
      row('In both', k.both, ''),
      row(`Completed in ${c.names[0]}, failed in ${c.names[1]}`, k.completed_a_failed_b, ''),
      row(`Failed in ${c.names[0]}, completed in ${c.names[1]}`, k.failed_a_completed_b, ''),
      row('Same result', k.equal, ''),
      row('Different result', k.different, ''))));
  if (k.fields.length) {
    keys.append(h('h3', {}, 'Fields that differ'), h('table', { class: 'grid-table', id: 'compare-fields' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Field'), h('th', { scope: 'col', class: 'num' }, 'Keys'), h('th', { scope: 'col' }, 'Examples'))),
      h('tbody', {}, k.fields.map((f) => h('tr', {}, h('th', { scope: 'row' }, f.field), h('td', { class: 'num' }, fmtInt(f.count)),
        h('td', {}, h('ul', { class: 'examples' }, f.examples.map((e) => h('li', {}, `key ${jsonText(e.key)}: `, h('code', {}, JSON.stringify(e.a)), ' → ', h('code', {}, JSON.stringify(e.b)))))))))));
  } else if (k.examples_differ.length) {
    keys.append(h('h3', {}, 'Results that differ'), h('ul', { class: 'examples' }, k.examples_differ.map((e) => h('li', {}, `key ${jsonText(e.key)}: `, h('code', {}, JSON.stringify(e.a)), ' → ', h('code', {}, JSON.stringify(e.b))))));
  }
}

function row(label, n, examples) {
  return h('tr', {}, h('th', { scope: 'row' }, label), h('td', { class: 'num' }, fmtInt(n)), h('td', {}, examples));
}

async function picker(main) {
  const rows = await get('/api/experiments');
  const boxes = rows.map((r) => h('input', { type: 'checkbox', value: r.name, id: `pick-${r.name}` }));
  const btn = h('button', { type: 'submit', id: 'compare-go' }, 'Compare');
  main.append(h('form', { class: 'picker', onsubmit: (e) => {
    e.preventDefault();
    const names = boxes.filter((b) => b.checked).map((b) => b.value);
    if (names.length >= 2) location.hash = `#/compare?${names.map((n) => 'name=' + encodeURIComponent(n)).join('&')}`;
  } }, h('fieldset', {}, h('legend', {}, 'Pick two or more experiments (the first is the base)'),
    rows.map((r, i) => h('div', { class: 'pick' }, boxes[i], h('label', { for: `pick-${r.name}` }, r.name)))), btn));
}
