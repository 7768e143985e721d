// Conditions on parameters and metrics: "model = gpt-4o", "accuracy > 0.9",
// several joined by "," or "and". A field is a column of the table (name,
// status, completed, failed, total, rate), a parameter or a metric.

const OPS = ['>=', '<=', '!=', '=', '>', '<', '~'];

export function parseConditions(text) {
  const conds = [];
  const errors = [];
  for (const part of text.split(/,|\band\b/i)) {
    const p = part.trim();
    if (!p) continue;
    let found = null;
    for (const op of OPS) {
      const i = p.indexOf(op);
      if (i > 0 && (found === null || i < found.i)) found = { op, i };
    }
    if (!found) { errors.push(`"${p}": expected a field, an operator (= != > >= < <= ~) and a value`); continue; }
    const field = p.slice(0, found.i).trim();
    let value = p.slice(found.i + found.op.length).trim();
    if (found.op === '=' && value.startsWith('=')) value = value.slice(1).trim(); // "=="
    if (!field || value === '') { errors.push(`"${p}": missing ${field ? 'value' : 'field'}`); continue; }
    conds.push({ field, op: found.op, value: value.replace(/^["']|["']$/g, '') });
  }
  return { conds, errors };
}

export function fieldOf(row, field) {
  if (row.params && field in row.params) return row.params[field];
  if (row.metrics && field in row.metrics) return row.metrics[field];
  if (field in row) return row[field];
  const f = field.replace(/^(params|metrics)\./, '');
  if (f !== field) return fieldOf(row, f);
  return undefined;
}

export function matches(row, cond) {
  const v = fieldOf(row, cond.field);
  if (v === undefined || v === null) return false;
  const num = Number(cond.value);
  const numeric = typeof v === 'number' && cond.value !== '' && !isNaN(num);
  const a = numeric ? v : (typeof v === 'string' ? v : JSON.stringify(v));
  const b = numeric ? num : cond.value;
  switch (cond.op) {
    case '=': return numeric ? a === b : String(a).toLowerCase() === String(b).toLowerCase();
    case '!=': return numeric ? a !== b : String(a).toLowerCase() !== String(b).toLowerCase();
    case '~': return String(a).toLowerCase().includes(String(b).toLowerCase());
    case '>': return a > b;
    case '>=': return a >= b;
    case '<': return a < b;
    case '<=': return a <= b;
  }
  return false;
}
