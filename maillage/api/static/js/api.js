// The API client: the session's token (sessionStorage: gone when the tab closes) and JSON calls.
const KEY = "maillage-token";

/** An error answer of the API, with its HTTP status. */
export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export const session = {
  token: sessionStorage.getItem(KEY) || "",
  set(token) { this.token = token; sessionStorage.setItem(KEY, token); },
  clear() { this.token = ""; sessionStorage.removeItem(KEY); },
};
localStorage.removeItem(KEY); // earlier versions kept the token there: never again

/** Headers carrying the bearer token. */
export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${session.token}`, ...extra };
}

/** GET (or `method`) a JSON resource; throws ApiError with the API's message. */
export async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: authHeaders({ Accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const doc = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const msg = (doc.error && doc.error.message) || doc.detail || `HTTP ${resp.status}`;
    throw new ApiError(resp.status, typeof msg === "string" ? msg : JSON.stringify(msg));
  }
  return doc;
}

export const $ = (id) => document.getElementById(id);

export function fmtTime(iso) { return iso ? new Date(iso).toLocaleString("fr-FR") : "—"; }

/** A new element with attributes and text (never HTML: data is shown as text). */
export function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "className") e.className = v; else e.setAttribute(k, v === true ? "" : v);
  }
  if (text !== undefined) e.textContent = text;
  return e;
}
