// The Experiments view: every checkpoint in one table, one request a
// second while it is shown.
import { h, put, fmtInt, fmtNum, fmtRate, fmtDuration, fmtTime, statusText, progressBar } from './dom.js';
import { get } from './api.js';
import { parseConditions, matches, fieldOf } from './filter.js';

const BASE = [
  { key: 'name', label: 'Name' },
  { key: 'status', label: 'Status' },
  { key: 'completed', label: 'Completed / total', num: true },
  { key: 'failed', label: 'Failed', num: true },
  { key: 'rate', label: 'Rate', num: true },
  { key: 'eta_seconds', label: 'ETA', num: true },
  { key: 'last_updated', label: 'Last update' },
];

// state survives re-renders (and visits to other views) in this session.
const state = { sort: 'name', desc: false, text: '', cond: '', selected: new Set() };

export function experimentsView(main, ctx) {
  const text = h('input', { type: 'search', id: 'filter-text', value: state.text, placeholder: 'name, status, parameter…', autocomplete: 'off' });
  const cond = h('input', { type: 'text', id: 'filter-cond', value: state.cond, placeholder: 'model = gpt-4o, accuracy > 0.9', autocomplete: 'off', spellcheck: false, 'aria-describedby': 'cond-help' });
  const condMsg = h('p', { id: 'cond-help', class: 'help' }, 'Conditions on columns, parameters or metrics: = != > >= < <= ~ (contains), joined by commas.');
  const compareBtn = h('button', { type: 'button', id: 'compare-selected', disabled: true }, 'Compare selected');
  const count = h('p', { class: 'muted', id: 'exp-count', role: 'status' });
  const table = h('table', { class: 'grid-table', id: 'experiments' });
  const caption = h('caption', { class: 'sr-only' }, 'Checkpoints in this folder. Select a column header to sort.');
  const thead = h('thead');
  const tbody = h('tbody');
  table.append(caption, thead, tbody);
  put(main, 
    h('h1', {}, 'Experiments'),
    h('div', { class: 'controls' },
      h('div', { class: 'field' }, h('label', { for: 'filter-text' }, 'Filter'), text),
      h('div', { class: 'field wide' }, h('label', { for: 'filter-cond' }, 'Condition'), cond, condMsg),
      compareBtn),
    count,
    h('div', { class: 'table-wrap' }, table),
  );

  let rows = [];
  let columns = [];

  function allColumns() {
    const params = new Set(), metrics = new Set();
    for (const r of rows) {
      Object.keys(r.params || {}).forEach((k) => params.add(k));
      Object.keys(r.metrics || {}).forEach((k) => metrics.add(k));
    }
    return [
      ...BASE,
      ...[...params].sort().map((k) => ({ key: k, label: k, group: 'param' })),
      ...[...metrics].sort().map((k) => ({ key: k, label: k, group: 'metric', num: true })),
    ];
  }

  function renderHead() {
    const cols = allColumns();
    const sig = cols.map((c) => c.key).join('\u0000') + state.sort + state.desc;
    if (sig === thead.dataset.sig) return;
    thead.dataset.sig = sig;
    columns = cols;
    const tr = h('tr', {}, h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Select')));
    for (const c of cols) {
      const sorted = state.sort === c.key;
      const btn = h('button', { type: 'button', class: 'sort', onclick: () => {
        state.desc = state.sort === c.key ? !state.desc : false;
        state.sort = c.key;
        render();
        thead.querySelector(`[data-key="${CSS.escape(c.key)}"] button`)?.focus();
      } }, c.label, h('span', { class: 'arrow', 'aria-hidden': 'true' }, sorted ? (state.desc ? ' ▼' : ' ▲') : ''));
      tr.append(h('th', { scope: 'col', 'data-key': c.key, class: [c.num ? 'num' : '', c.group || ''].join(' ').trim(), 'aria-sort': sorted ? (state.desc ? 'descending' : 'ascending') : 'none', title: c.group ? `${c.group}` : null }, btn));
    }
    put(thead, tr);
  }

  function visible() {
    const { conds, errors } = parseConditions(state.cond);
    condMsg.textContent = errors.length ? errors.join('; ') : 'Conditions on columns, parameters or metrics: = != > >= < <= ~ (contains), joined by commas.';
    condMsg.classList.toggle('error', errors.length > 0);
    cond.setAttribute('aria-invalid', errors.length ? 'true' : 'false');
    const t = state.text.trim().toLowerCase();
    let out = rows.filter((r) => {
      if (t) {
        const hay = [r.name, r.status, r.kind, JSON.stringify(r.params || {}), JSON.stringify(r.metrics || {})].join(' ').toLowerCase();
        if (!hay.includes(t)) return false;
      }
      return conds.every((c) => matches(r, c));
    });
    const k = state.sort;
    out.sort((a, b) => {
      let x = fieldOf(a, k), y = fieldOf(b, k);
      let c;
      if (x === undefined || x === null) c = (y === undefined || y === null) ? 0 : 1;
      else if (y === undefined || y === null) c = -1;
      else if (typeof x === 'number' && typeof y === 'number') c = x - y;
      else c = String(x).localeCompare(String(y), undefined, { numeric: true });
      if (c === 0) c = a.name.localeCompare(b.name);
      return state.desc ? -c : c;
    });
    return out;
  }

  function cell(r, c) {
    const v = fieldOf(r, c.key);
    switch (c.key) {
      case 'name':
        return h('td', {}, h('a', { href: `#/exp/${encodeURIComponent(r.name)}` }, r.name),
          r.kind !== 'checkpoint' ? h('span', { class: 'kind' }, ` ${r.kind}`) : null,
          r.note ? h('span', { class: 'note', title: r.note }, ' ⚠') : null);
      case 'status':
        return h('td', {}, h('span', { class: `badge ${r.status}` }, r.kind === 'checkpoint' ? statusText(r.status) : r.status), r.side_files?.length ? h('span', { class: 'note', title: r.side_files.join(', ') }, ' side files') : null);
      case 'completed': {
        const label = r.total ? `${fmtInt(r.completed)} / ${fmtInt(r.total)}` : fmtInt(r.completed);
        return h('td', { class: 'num progress-cell' }, h('span', { class: 'count' }, label),
          r.total ? progressBar(r.completed, r.failed, r.total, `${r.name}: ${label}, ${fmtInt(r.failed)} failed`) : null);
      }
      case 'failed': return h('td', { class: 'num' + (r.failed ? ' bad' : '') }, fmtInt(r.failed));
      case 'rate': return h('td', { class: 'num' }, fmtRate(r.rate));
      case 'eta_seconds': return h('td', { class: 'num' }, fmtDuration(r.eta_seconds));
      case 'last_updated': return h('td', { class: 'time' }, fmtTime(r.last_updated));
    }
    return h('td', { class: c.num ? 'num' : '' }, typeof v === 'number' ? fmtNum(v) : (v === undefined ? '' : (typeof v === 'string' ? v : JSON.stringify(v))));
  }

  let lastSig = '';
  function render() {
    renderHead();
    const list = visible();
    // Redraw the rows only when something shown changed: a redraw replaces
    // the nodes under the pointer.
    const sig = JSON.stringify([list, [...state.selected], columns.map((c) => c.key)]) + (Math.floor(Date.now() / 10000));
    if (sig === lastSig) return;
    lastSig = sig;
    const keep = document.activeElement && tbody.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
    const frag = [];
    for (const r of list) {
      const box = h('input', { type: 'checkbox', checked: state.selected.has(r.name), 'aria-label': `Select ${r.name}`, 'data-focus': `sel:${r.name}`, onchange: (e) => {
        if (e.target.checked) state.selected.add(r.name); else state.selected.delete(r.name);
        updateCompare();
      } });
      frag.push(h('tr', { 'data-name': r.name, class: r.running ? 'is-running' : '' }, h('td', {}, box), columns.map((c) => cell(r, c))));
    }
    put(tbody, ...frag);
    if (list.length === 0) tbody.append(h('tr', {}, h('td', { colspan: columns.length + 1, class: 'muted' }, rows.length ? 'No checkpoint matches the filter.' : 'No checkpoints in this folder yet.')));
    if (keep) tbody.querySelector(`[data-focus="${CSS.escape(keep)}"]`)?.focus();
    count.textContent = `${list.length} of ${rows.length} checkpoints` + (rows.some((r) => r.running) ? `, ${rows.filter((r) => r.running).length} running` : '');
    updateCompare();
  }

  function updateCompare() {
    const names = [...state.selected].filter((n) => rows.some((r) => r.name === n));
    compareBtn.disabled = names.length < 2;
    compareBtn.textContent = names.length >= 2 ? `Compare ${names.length} selected` : 'Compare selected (pick 2 or more)';
  }

  compareBtn.addEventListener('click', () => {
    const names = [...state.selected].filter((n) => rows.some((r) => r.name === n));
    location.hash = `#/compare?${names.map((n) => 'name=' + encodeURIComponent(n)).join('&')}`;
  });
  text.addEventListener('input', () => { state.text = text.value; render(); });
  cond.addEventListener('input', () => { state.cond = cond.value; render(); });

  async function refresh() {
    rows = await get('/api/experiments');
    render();
    return rows.some((r) => r.running);
  }
  ctx.poll(refresh, 1000);
}
