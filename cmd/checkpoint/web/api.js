// The JSON API of checkpoint serve. Same origin only; the token, when there
// is one, travels in an HttpOnly cookie the server set.

export class HTTPError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function get(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x));
    else if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const res = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  const body = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw new HTTPError(res.status, body.error || res.statusText);
  return body;
}

export const enc = encodeURIComponent;
