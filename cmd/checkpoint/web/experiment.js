// One experiment: its numbers, progress over time, metrics, runs, failures
// grouped by message, and its results page by page.
import { h, put, fmtInt, fmtNum, fmtRate, fmtDuration, fmtTime, fmtBytes, jsonText, statusText, progressBar } from './dom.js';
import { get, enc } from './api.js';
import { lineChart, perMinute } from './chart.js';

export function experimentView(main, ctx, name) {
  const base = `/api/experiments/${enc(name)}`;
  const summary = h('section', { class: 'summary', 'aria-label': 'Summary' });
  const charts = h('section', { class: 'charts', 'aria-labelledby': 'h-progress' });
  const metrics = h('section', { 'aria-labelledby': 'h-metrics' });
  const runs = h('section', { 'aria-labelledby': 'h-runs' });
  const steps = h('section', { 'aria-labelledby': 'h-steps', hidden: true });
  const failures = h('section', { 'aria-labelledby': 'h-failures' });
  const results = h('section', { 'aria-labelledby': 'h-results' });
  put(main, 
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Experiments'), ' › '),
    h('h1', { id: 'exp-title' }, name),
    summary, steps, charts, metrics, runs, failures, results);

  let lastSig = '';
  async function refresh() {
    const d = await get(base);
    renderSummary(summary, d);
    // Redraw charts only when the data moved, so focus and reading are not
    // disturbed once a second.
    const sig = JSON.stringify([d.progress.at(-1), d.progress.length, d.runs.length, Object.keys(d.metric_series)]);
    if (sig !== lastSig) {
      lastSig = sig;
      renderCharts(charts, d);
      renderMetrics(metrics, d);
      renderRuns(runs, d);
      renderSteps(steps, d);
    }
    return d.running;
  }
  ctx.poll(refresh, 1000);
  loadFailures(failures, base).catch((e) => ctx.error(e));
  resultsTable(results, base, ctx);
  // Flows and pipelines keep no results of their own: their steps do.
  get(base).then((d) => { if (d.kind !== 'checkpoint') { failures.hidden = true; results.hidden = true; } }).catch(() => {});
}

function renderSummary(el, d) {
  const items = [
    ['Status', h('span', { class: `badge ${d.status}` }, d.kind === 'checkpoint' ? statusText(d.status) : d.status)],
    ['Completed', fmtInt(d.completed) + (d.total ? ` of ${fmtInt(d.total)}` : '')],
    ['Failed', fmtInt(d.failed)],
    ['Rate (last minute)', d.running ? fmtRate(d.rate) || '0/s' : '—'],
    ['ETA', d.running ? fmtDuration(d.eta_seconds) || '—' : '—'],
    ['Started', fmtTime(d.started_at)],
    ['Last update', fmtTime(d.last_updated)],
    ['On disk', fmtBytes(d.size_bytes)],
  ];
  put(el, 
    h('dl', { class: 'facts' }, items.map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', { 'data-fact': k }, v)))),
    d.total ? progressBar(d.completed, d.failed, d.total, `Progress: ${fmtInt(d.completed)} completed and ${fmtInt(d.failed)} failed of ${fmtInt(d.total)}`) : null,
    d.side_files?.length ? h('p', { class: 'warn' }, `Side files left by repairs: ${d.side_files.join(', ')}`) : null,
    d.note ? h('p', { class: 'warn' }, d.note) : null,
  );
}

function renderCharts(el, d) {
  el.hidden = d.kind === 'flow'; // a flow has steps, not records
  if (el.hidden) return;
  const pts = d.progress.map((p) => ({ x: Date.parse(p.t), y: p.n }));
  put(el, 
    h('h2', { id: 'h-progress' }, 'Progress over time'),
    d.sampled ? h('p', { class: 'muted' }, 'Estimated from evenly spaced reads of the journals (they are large).') : null,
    h('div', { class: 'chart-row' },
      lineChart({ title: 'Records per minute', series: [{ name: 'records/min', points: perMinute(pts) }], yLabel: 'per min' }),
      lineChart({ title: 'Records saved', series: [{ name: 'records', points: pts }], yLabel: 'records' })),
  );
}

function renderMetrics(el, d) {
  const names = Object.keys(d.metric_series).sort();
  put(el, h('h2', { id: 'h-metrics' }, 'Metrics'));
  if (!names.length) {
    el.append(h('p', { class: 'muted' }, 'No metrics logged for this checkpoint.'));
    return;
  }
  el.append(h('div', { class: 'chart-row' }, names.map((n) => {
    const ser = d.metric_series[n];
    const byStep = ser.every((p) => p.step !== undefined && p.step !== null);
    return lineChart({ title: n, zero: false, time: !byStep, xLabel: byStep ? 'step' : '', series: [{ name: n, points: ser.map((p) => ({ x: byStep ? p.step : Date.parse(p.t), y: p.v })) }] });
  })));
}

function renderRuns(el, d) {
  put(el, h('h2', { id: 'h-runs' }, 'Run history'));
  if (!d.runs.length) {
    el.append(h('p', { class: 'muted' }, 'No run history recorded for this checkpoint.'));
    return;
  }
  const t = h('table', { class: 'grid-table', id: 'runs' },
    h('thead', {}, h('tr', {}, ['Run', 'Ended', 'Start', 'End', 'Completed', 'Failed', 'Rate', 'Parameters', 'Metrics'].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, d.runs.map((r) => h('tr', { class: r.ended === 'crashed' ? 'crashed' : '' },
      h('td', {}, r.id), h('td', {}, h('span', { class: `badge ${r.ended}` }, r.ended)),
      h('td', { class: 'time' }, fmtTime(r.start)), h('td', { class: 'time' }, fmtTime(r.end)),
      h('td', { class: 'num' }, fmtInt(r.completed)), h('td', { class: 'num' }, fmtInt(r.failed)),
      h('td', { class: 'num' }, fmtRate(r.rate)),
      h('td', {}, h('code', {}, r.params ? JSON.stringify(r.params) : '')),
      h('td', {}, h('code', {}, r.metrics ? Object.entries(r.metrics).map(([k, v]) => `${k}=${fmtNum(v)}`).join(' ') : ''))))));
  el.append(h('div', { class: 'table-wrap' }, t));
}

function renderSteps(el, d) {
  el.hidden = !d.steps?.length;
  if (el.hidden) return;
  const flow = d.kind === 'flow';
  const cols = flow ? ['Step', 'Status', 'Attempts', 'Duration', 'Error'] : ['Step', 'Status', 'Completed / total', 'Failed', 'Duration'];
  put(el, h('h2', { id: 'h-steps' }, flow ? 'Steps of the flow' : 'Steps of the pipeline'), h('table', { class: 'grid-table', id: 'steps' },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, d.steps.map((st) => h('tr', {},
      h('td', {}, flow ? st.name : h('a', { href: `#/exp/${encodeURIComponent(d.name + '.' + st.name)}` }, st.name)),
      h('td', {}, h('span', { class: `badge ${st.status}` }, flow ? st.status : statusText(st.status))),
      flow ? h('td', { class: 'num' }, fmtInt(st.attempts)) : h('td', { class: 'num' }, `${fmtInt(st.completed)}${st.total ? ' / ' + fmtInt(st.total) : ''}`),
      flow ? h('td', { class: 'num' }, fmtDuration(st.seconds)) : h('td', { class: 'num' }, fmtInt(st.failed)),
      flow ? h('td', {}, h('code', {}, st.error || '')) : h('td', { class: 'num' }, fmtDuration(st.seconds)))))));
}

async function loadFailures(el, base) {
  const groups = await get(`${base}/failures`);
  put(el, h('h2', { id: 'h-failures' }, `Failures grouped by message (${groups.reduce((a, g) => a + g.count, 0).toLocaleString('en-US')})`));
  if (!groups.length) {
    el.append(h('p', { class: 'muted' }, 'No failures.'));
    return;
  }
  const detail = h('div', { id: 'failure-detail', 'aria-live': 'polite' });
  const t = h('table', { class: 'grid-table', id: 'failure-groups' },
    h('thead', {}, h('tr', {}, ['Message', 'Keys', 'Sample keys', ''].map((c, i) => h('th', { scope: 'col', class: i === 1 ? 'num' : '' }, c || h('span', { class: 'sr-only' }, 'Details'))))),
    h('tbody', {}, groups.map((g) => h('tr', {},
      h('td', {}, h('code', { title: g.pattern }, g.example)),
      h('td', { class: 'num' }, fmtInt(g.count)),
      h('td', {}, g.sample_keys.map((k) => jsonText(k)).join(', ')),
      h('td', {}, h('button', { type: 'button', onclick: () => showGroup(detail, base, g) }, 'Show keys'))))));
  el.append(h('div', { class: 'table-wrap' }, t), detail);
}

async function showGroup(el, base, g) {
  const list = await get(`${base}/failures/list`, { pattern: g.pattern, limit: 500 });
  put(el, 
    h('h3', { tabindex: '-1', id: 'failure-detail-title' }, `${fmtInt(g.count)} keys failing with “${g.pattern}”` + (list.length < g.count ? ` (first ${list.length})` : '')),
    h('table', { class: 'grid-table' },
      h('thead', {}, h('tr', {}, ['Key', 'Attempts', 'Time', 'Message'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, list.map((f) => h('tr', {}, h('td', {}, jsonText(f.key)), h('td', { class: 'num' }, fmtInt(f.attempts)), h('td', { class: 'time' }, fmtTime(f.time)), h('td', {}, h('code', {}, f.error)))))));
  el.querySelector('h3').focus();
}

// resultsTable pages through the results by a cursor the server hands out
// (a byte offset in a folder's journal, a row number in a database): each
// page is a read at that cursor, never a scan from the start.
function resultsTable(el, base, ctx) {
  const search = h('input', { type: 'search', id: 'results-search', placeholder: 'text in the key or result', autocomplete: 'off' });
  const body = h('tbody');
  const info = h('p', { class: 'muted', role: 'status', id: 'results-info' });
  const first = h('button', { type: 'button', id: 'results-first' }, '« First');
  const prev = h('button', { type: 'button', id: 'results-prev' }, '‹ Previous');
  const next = h('button', { type: 'button', id: 'results-next' }, 'Next ›');
  const stack = []; // cursors of the pages before this one
  let cursor = 0, page = null;
  put(el, 
    h('h2', { id: 'h-results' }, 'Results'),
    h('form', { class: 'controls', role: 'search', onsubmit: (e) => { e.preventDefault(); stack.length = 0; load(0); } },
      h('div', { class: 'field wide' }, h('label', { for: 'results-search' }, 'Search results'), search),
      h('button', { type: 'submit' }, 'Search')),
    h('div', { class: 'table-wrap' }, h('table', { class: 'grid-table results', id: 'results' },
      h('caption', { class: 'sr-only' }, 'Saved results, in the order they were saved'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Result'), h('th', { scope: 'col' }, 'Saved'))),
      body)),
    h('div', { class: 'pager' }, first, prev, next, info));
  first.addEventListener('click', () => { stack.length = 0; load(0); });
  prev.addEventListener('click', () => { if (stack.length) load(stack.pop()); });
  next.addEventListener('click', () => { if (page && page.next >= 0) { stack.push(cursor); load(page.next); } });

  async function load(at) {
    cursor = at;
    try {
      page = await get(`${base}/results`, { cursor: at, limit: 25, q: search.value });
    } catch (e) {
      ctx.error(e);
      return;
    }
    put(body, ...page.items.map((it) => h('tr', {},
      h('td', { class: 'key' }, jsonText(it.key)),
      h('td', {}, h('pre', { class: 'json' }, resultText(it.result))),
      h('td', { class: 'time' }, fmtTime(it.time)))));
    if (!page.items.length) body.append(h('tr', {}, h('td', { colspan: 3, class: 'muted' }, search.value ? 'No match in this part of the file.' : 'No results.')));
    const pct = page.size ? Math.round(100 * page.scanned_to / page.size) : 100;
    // A folder's journal is paged by byte offset, a database by row.
    const unit = page.unit === 'results' ? 'result' : 'byte';
    info.textContent = `Page ${stack.length + 1} · ${page.items.length} results · read to ${unit} ${fmtInt(page.scanned_to)} of ${fmtInt(page.size)} (${pct}%)` +
      (search.value && page.next >= 0 && page.items.length < 25 ? ' · search stopped at its read budget: Next goes on' : '');
    prev.disabled = first.disabled = stack.length === 0;
    next.disabled = page.next < 0;
  }
  load(0);
}

// resultText is a result as pretty JSON, or on one line when it is short.
function resultText(v) {
  const one = JSON.stringify(v, null, 1)?.replace(/\n\s*/g, ' ') ?? String(v);
  return one.length <= 90 ? one : JSON.stringify(v, null, 2);
}
