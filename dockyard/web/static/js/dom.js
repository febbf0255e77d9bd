// Building DOM nodes from elements and text nodes only (no HTML strings): every value from the API becomes a text node.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "value") el.value = value;
    else if (key === "checked") el.checked = !!value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// "3m", "2h", "5d" from an ISO time
export function age(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.floor(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  return wrapped;
}

// Wrap an async loader `fetch → draw` so that when calls overlap, only the newest one draws:
// `load = latest(async (isCurrent) => { const d = await api(...); if (!isCurrent()) return; draw(d); })`.
export function latest(loader) {
  let seq = 0;
  return (...args) => {
    const mine = ++seq;
    return loader(() => mine === seq, ...args);
  };
}

// For live refreshes: run the async `fn` at most once per `ms`, never two at once, and once
// more after the last request. Unlike a plain throttle it waits for a slow `fn` to finish, so a
// busy server with a steady stream of changes still gets every page drawn (no starvation).
export function refresher(fn, ms) {
  let running = false;
  let pending = false;
  let last = 0;
  let timer = null;
  const start = async () => {
    timer = null;
    running = true;
    pending = false;
    last = Date.now();
    try { await fn(); } catch { /* the next change tries again */ }
    running = false;
    if (pending) schedule();
  };
  const schedule = () => {
    if (running) { pending = true; return; }
    if (timer) return;
    timer = setTimeout(start, Math.max(0, last + ms - Date.now()));
  };
  return schedule;
}
