// Log search over the stored history of a project (or one app) and live tail with the same
// filter: a results table with the matches marked, export as NDJSON.

import { api, seg, streamLines } from "../api.js";
import { h, clear } from "../dom.js";
import { language, t } from "../i18n.js";
import { toast } from "../app.js";
import { choice, emptyRow, errorBox, highlight, saveFile, when } from "../widgets.js";
import { RANGES } from "./metrics.js";

const LIMIT = 500; // rows a search shows; the export asks for more
const EXPORT_LIMIT = 100_000;
const TAIL_MAX = 2000; // live rows kept on the page
const POLL_MS = 2000; // "every app": how often the tail asks the store for new lines
const POLL_MARGIN_MS = 5000; // …and how far before the newest line shown it asks from

// one row from either API: the search's {ts, app, replica, stream, text} or an app stream's
// NDJSON {time, replica, container, line}
function normalise(rec, app) {
  return { ts: rec.ts ?? rec.time ?? "", app: rec.app ?? app, replica: rec.replica ?? "", stream: rec.stream ?? "",
    text: rec.text ?? rec.line ?? "" };
}

// The search form, results and tail for a project (`app` unset: an app picker) or one app.
export async function logSearch(body, { tenant, project, app, signal }) {
  const base = seg`/projects/${tenant}/${project}`;
  const apps = app ? [app] : (await api("GET", `${base}/apps`, undefined, { signal })).items.map((a) => a.metadata.name);
  const grep = h("input", { type: "search", id: "logs-grep", name: "grep", placeholder: t("logs.grepHint") });
  const appPick = app ? null : choice("logs-app", t("logs.app"), [["", t("logs.allApps")], ...apps.map((a) => [a, a])], "");
  const range = choice("logs-range", t("logs.range"), RANGES.map((r) => [r, t(`metrics.last.${r}`)]), "1h");
  const follow = h("input", { type: "checkbox", id: "logs-tail" });
  const status = h("p", { class: "muted", id: "logs-status", role: "status" });
  const message = h("div");
  const tbody = h("tbody");
  const table = h("table", { class: "data logs-table", id: "logs-results" }, h("thead", {}, h("tr", {},
    [t("col.when"), t("logs.app"), t("logs.replica"), t("logs.stream"), t("logs.text")].map((x) => h("th", { scope: "col" }, x)))),
  tbody);
  const chosenApp = () => app || appPick.querySelector("select").value;
  const filter = () => ({ app: chosenApp() || undefined, grep: grep.value.trim() || undefined,
    since: range.querySelector("select").value });
  let rows = 0;
  let shownNow = []; // the last search's rows
  let tailAbort = null;

  const row = (r, needle) => h("tr", { "data-app": r.app },
    h("td", { class: "num", title: String(r.ts) }, when(r.ts, language())), h("td", {}, r.app), h("td", {}, String(r.replica)),
    h("td", {}, r.stream), h("td", { class: "mono logline" }, highlight(r.text, needle)));

  async function search() {
    stopTail();
    message.replaceChildren();
    const q = filter();
    clear(status, t("logs.searching"));
    try {
      const data = await api("GET", `${base}/logs`, undefined, { signal, query: { ...q, limit: LIMIT, format: "json" } });
      const items = data.items.map((r) => normalise(r, chosenApp()));
      shownNow = items;
      clear(tbody, items.length ? items.map((r) => row(r, q.grep)) : emptyRow(5, t("logs.noMatch")));
      rows = items.length;
      clear(status, data.truncated ? t("logs.truncated", { n: rows }) : t("logs.found", { n: rows }));
      table.dataset.loaded = "true";
    } catch (e) {
      if (e.name === "AbortError") return;
      status.replaceChildren();
      message.append(errorBox(e));
    }
    if (follow.checked) startTail();
  }

  function stopTail() {
    tailAbort?.abort();
    tailAbort = null;
  }

  // a new line that passes the filter goes to the end (the oldest row goes when there are too many)
  function addRow(r, needle) {
    if (needle && !r.text.toLowerCase().includes(needle.toLowerCase())) return;
    tbody.append(row(r, needle));
    rows += 1;
    if (rows > TAIL_MAX) { tbody.firstChild?.remove(); rows -= 1; }
    table.parentElement.scrollTop = table.parentElement.scrollHeight;
  }

  // One app: its follow stream. Every app: the stored lines, asked for every 2 s — a stream per
  // app would hold one of the browser's six connections to the server each and stall the page.
  function startTail() {
    stopTail();
    tailAbort = new AbortController();
    const mine = tailAbort;
    signal.addEventListener("abort", () => mine.abort(), { signal: mine.signal }); // gone when this tail stops
    const needle = grep.value.trim();
    if (!rows) tbody.replaceChildren();
    const fail = (e) => { if (e.name !== "AbortError") clear(message, errorBox(e)); };
    if (chosenApp()) {
      streamLines(seg`/projects/${tenant}/${project}/apps/${chosenApp()}/logs`, (line) => {
        let rec;
        try { rec = JSON.parse(line); } catch { return; } // a blank or broken line: nothing to show
        addRow(normalise(rec, chosenApp()), needle);
      }, { signal: mine.signal, query: { follow: "true", tail: "0", timestamps: "true", format: "ndjson", ...(needle ? { grep: needle } : {}) } })
        .catch(fail);
      status.append(" ", t("logs.followingApp", { app: chosenApp() }));
    } else {
      pollStore(needle, mine.signal).catch(fail);
      status.append(" ", t("logs.followingAll"));
    }
  }

  // Ask for the lines stored since the newest one shown (less a margin: replicas' lines reach the
  // store up to a flush apart) and add those not shown yet.
  async function pollStore(needle, tailSignal) {
    const key = (r) => `${r.ts}|${r.app}|${r.replica}|${r.text}`;
    const shownAt = new Map(shownNow.map((r) => [key(r), Date.parse(r.ts)])); // key → ms, the recent rows
    let newest = Date.now() - POLL_MARGIN_MS;
    while (!tailSignal.aborted) {
      const data = await api("GET", `${base}/logs`, undefined, { signal: tailSignal,
        query: { grep: needle || undefined, since: new Date(newest - POLL_MARGIN_MS).toISOString(), limit: LIMIT, format: "json" } });
      for (const r of data.items.map((x) => normalise(x, ""))) {
        if (shownAt.has(key(r))) continue;
        shownAt.set(key(r), Date.parse(r.ts));
        newest = Math.max(newest, Date.parse(r.ts) || 0);
        addRow(r, needle);
      }
      for (const [k, at] of shownAt) if (at < newest - 2 * POLL_MARGIN_MS) shownAt.delete(k);
      await new Promise((done) => {
        const timer = setTimeout(done, POLL_MS);
        tailSignal.addEventListener("abort", () => { clearTimeout(timer); done(); }, { once: true });
      });
    }
  }

  async function exportNdjson() {
    const lines = [];
    try {
      await streamLines(`${base}/logs`, (line) => { if (line.trim()) lines.push(line); },
        { signal, query: { ...Object.fromEntries(Object.entries(filter()).filter(([, v]) => v)), limit: EXPORT_LIMIT, format: "ndjson" } });
      saveFile(`${tenant}-${project}${chosenApp() ? `-${chosenApp()}` : ""}-logs.ndjson`, lines.map((l) => `${l}\n`).join(""),
        "application/x-ndjson");
      toast(t("logs.exported", { n: lines.length }));
    } catch (e) {
      if (e.name !== "AbortError") toast(e.message, "error");
    }
  }

  const form = h("form", { class: "inline-form", id: "logs-form", role: "search", onsubmit: (e) => { e.preventDefault(); search(); } },
    h("label", {}, t("logs.grep"), grep), appPick, range,
    h("label", { class: "check" }, follow, t("logs.tail")),
    h("button", { type: "submit", class: "primary", id: "logs-search" }, t("logs.searchButton")),
    h("button", { type: "button", id: "logs-export", onclick: exportNdjson }, t("logs.export")));
  // ticking Live tail searches again first, so the table holds only what the current filter matches
  follow.addEventListener("change", () => (follow.checked ? search() : (stopTail(), clear(status, t("logs.stopped")))));
  body.append(h("section", { class: "card" }, form), status, message, h("div", { class: "logs-scroll" }, table));
  await search();
}

// the project's Logs tab
export async function projectLogsTab({ tenant, project, signal, body }) {
  await logSearch(body, { tenant, project, signal });
}
