// DOM helpers. Every value from the server goes into the page as text
// (textContent, setAttribute), never as markup: a result that contains
// "<script>" shows as those characters.

const SVG = 'http://www.w3.org/2000/svg';

function fill(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k in el && !(el instanceof SVGElement)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h makes an HTML element: h('td', {class: 'num'}, 'text', child).
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

// s makes an SVG element.
export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function fmtInt(n) {
  return n === undefined || n === null ? '' : Number(n).toLocaleString('en-US');
}

export function fmtNum(v) {
  if (typeof v !== 'number') return v === undefined || v === null ? '' : String(v);
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  const a = Math.abs(v);
  return a !== 0 && (a < 0.001 || a >= 1e6) ? v.toExponential(3) : v.toFixed(a < 1 ? 4 : 2);
}

export function fmtRate(r) {
  if (!r) return '';
  return r >= 10 ? `${Math.round(r).toLocaleString('en-US')}/s` : `${r.toFixed(2)}/s`;
}

export function fmtDuration(sec) {
  if (!sec || !isFinite(sec)) return '';
  sec = Math.round(sec);
  const d = Math.floor(sec / 86400), hh = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60), ss = sec % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${m}m`;
  if (m) return `${m}m ${ss}s`;
  return `${ss}s`;
}

export function fmtTime(t) {
  if (!t) return '';
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  const ago = (Date.now() - d) / 1000;
  const when = d.toLocaleString('sv-SE').replace(' ', ' ');
  if (ago >= 0 && ago < 3600) return `${when} (${fmtDuration(ago) || '0s'} ago)`;
  return when;
}

export function fmtBytes(n) {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

// jsonText shows a JSON value compactly (keys) or pretty (results).
export function jsonText(v, pretty) {
  if (typeof v === 'string' && !pretty) return v;
  return JSON.stringify(v, null, pretty ? 2 : 0);
}

// put replaces el's children, skipping null, undefined and false (the
// native append would show them as text).
export function put(el, ...children) {
  clear(el);
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// statusText is what a status is called on screen.
export function statusText(s) {
  return { failed: 'failed items', stopped: 'stopped early', done: 'done', interrupted: 'interrupted (process died)' }[s] || s;
}

// progressBar shows completed (green) then failed (red) items out of total,
// so that a job with failures does not show a full green bar. It is an SVG
// with attributes, not inline styles, for the Content-Security-Policy.
export function progressBar(completed, failed, total, label) {
  const w = (n) => Math.max(0, Math.min(1000, 1000 * n / total));
  const done = w(completed), bad = Math.min(w(failed), 1000 - done);
  return s('svg', { class: 'bar', viewBox: '0 0 1000 10', preserveAspectRatio: 'none', role: 'img', 'aria-label': label },
    s('title', {}, label),
    s('rect', { class: 'bar-rest', width: 1000, height: 10 }),
    s('rect', { class: 'bar-done', width: done, height: 10 }),
    s('rect', { class: 'bar-failed', x: done, width: bad, height: 10 }));
}
