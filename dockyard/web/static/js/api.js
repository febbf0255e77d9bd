// The dashboard's only way to the server: the REST API and its watch stream, with the same
// bearer token as the CLI. Problem responses become ApiError with the server's words.

import { t } from "./i18n.js";

const TOKEN_KEY = "dockyard.token";
const USER_KEY = "dockyard.user";

// every name in Dockyard (tenants, projects, apps, users) is a DNS label
export const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

// An API path whose interpolated values must be names: `seg\`/projects/${t}/${p}\``. A value
// that is not a name (say "../prod" from a crafted link) is refused before any request, since
// the server routes on the decoded path and the browser resolves "..": encoding is not enough.
export function seg(strings, ...values) {
  return strings.reduce((out, s, i) => {
    if (i >= values.length) return out + s;
    const v = String(values[i]);
    if (!NAME.test(v)) throw new ApiError(400, { detail: t("error.badName", { value: v.slice(0, 80) }) });
    return out + s + v;
  }, "");
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title || "";
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
  }
}

export const session = {
  get token() { return localStorage.getItem(TOKEN_KEY); },
  get user() {
    try { return JSON.parse(localStorage.getItem(USER_KEY) || "null"); } catch { return null; }
  },
  save(token, user) {
    localStorage.setItem(TOKEN_KEY, token);
    localStorage.setItem(USER_KEY, JSON.stringify(user));
  },
  clear() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(USER_KEY);
  },
};

let onUnauthorized = () => {};
// whether the last request reached the server; the shell shows a banner while it does not
let online = true;
let onConnection = () => {};
export function whenConnectionChanges(fn) { onConnection = fn; }
function reached(ok) {
  if (ok !== online) { online = ok; onConnection(ok); }
}
// a gateway in front answers 502-504 when the server behind it is gone; the server's own 502 or
// 503 (a notifier that could not deliver, metrics or log search off) is problem+json: it was reached
function fromServer(resp) {
  return resp.status < 502 || resp.status > 504 || (resp.headers.get("content-type") || "").startsWith("application/problem+json");
}
let unreachable = () => "the server cannot be reached";
export function describeUnreachable(fn) { unreachable = fn; }
export function whenUnauthorized(fn) { onUnauthorized = fn; }

async function problemOf(resp) {
  const text = await resp.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") return body;
  } catch { /* not JSON: fall through */ }
  return { detail: text.trim().slice(0, 300) || resp.statusText || `HTTP ${resp.status}` };
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  if (session.token) h.Authorization = `Bearer ${session.token}`;
  return h;
}

export async function api(method, path, body, { signal, query } = {}) {
  let url = `/api/v1${path}`;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const init = { method, signal, headers: headers(body !== undefined ? { "Content-Type": "application/json" } : {}) };
  if (body !== undefined) init.body = JSON.stringify(body);
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    reached(false);
    throw new ApiError(0, { detail: unreachable() });
  }
  reached(fromServer(resp));
  if (resp.status === 401 && path !== "/login") {
    const problem = await problemOf(resp);
    onUnauthorized(problem.detail);
    throw new ApiError(401, problem);
  }
  if (!resp.ok) throw new ApiError(resp.status, await problemOf(resp));
  if (resp.status === 204) return null;
  const type = resp.headers.get("content-type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

// Read a streaming response line by line until it ends or `signal` aborts.
export async function streamLines(path, onLine, { signal, query, expect } = {}) {
  const q = new URLSearchParams(query || {}).toString();
  let resp;
  try {
    resp = await fetch(`/api/v1${path}${q ? `?${q}` : ""}`, { headers: headers(), signal });
  } catch (e) {
    if (e.name !== "AbortError") reached(false);
    throw e;
  }
  reached(fromServer(resp));
  if (resp.status === 401) onUnauthorized();
  if (!resp.ok) throw new ApiError(resp.status, await problemOf(resp));
  if (expect && !(resp.headers.get("content-type") || "").startsWith(expect)) {
    throw new ApiError(400, { detail: `${path} answered ${resp.headers.get("content-type")}, not ${expect}` });
  }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
  if (buf) onLine(buf);
}

// Follow a watch (server-sent events over fetch, so the bearer token goes in a header) and call
// onEvent({type, object}) for each change. Reconnects from the last resourceVersion; calls
// onReset() when the server has compacted past it (HTTP 410) so the caller lists again.
export function watch(path, { resourceVersion, onEvent, onReset, signal }) {
  let rv = resourceVersion;
  let stopped = false;
  signal?.addEventListener("abort", () => { stopped = true; });
  (async () => {
    let delay = 500;
    while (!stopped) {
      let event = "message";
      let data = "";
      try {
        const query = { watch: "1" };
        if (rv) query.resourceVersion = rv;
        await streamLines(path, (line) => {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("id:")) rv = line.slice(3).trim() || rv;
          else if (line.startsWith("data:")) data += line.slice(5).trim();
          else if (line === "") {
            if (data) {
              const msg = JSON.parse(data);
              if (event === "ERROR") {
                if (msg.status === 410) { rv = undefined; onReset?.(); }
                else stopped = stopped || msg.status === 401 || msg.status === 403 || msg.status === 404;
              } else if (event === "BOOKMARK") {
                rv = msg.resourceVersion || rv;
              } else {
                onEvent(msg);
              }
            }
            event = "message";
            data = "";
          }
        }, { signal, query, expect: "text/event-stream" });
        delay = 500;
      } catch (e) {
        if (e.name === "AbortError" || stopped) return;
        if (e.status === 410) { rv = undefined; onReset?.(); }
        else if (e.status && e.status < 500) return;
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 5000);
    }
  })();
}
