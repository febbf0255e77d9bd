// The project's events timeline: what happened (deploys, scaling, exits, OOM kills, health,
// refusals), newest first, filtered by type and app, live from the events stream.

import { api, seg, watch } from "../api.js";
import { h, clear, age, latest } from "../dom.js";
import { language, t } from "../i18n.js";
import { choice, emptyRow, errorBox, when } from "../widgets.js";

const LIMIT = 200;

const eventTime = (e) => e.lastSeen || e.at || e.firstSeen || "";
const eventKey = (e) => String(e.id); // an event keeps its id when it repeats (its count and cursor move on)
const newestFirst = (a, b) => Number(b.resourceVersion) - Number(a.resourceVersion);

// a Warning says so in words and with a sign, not by colour alone
export function eventType(e) {
  return e.type === "Warning"
    ? h("span", { class: "event-type warning" }, h("span", { "aria-hidden": "true" }, "⚠ "), t("events.warning"))
    : h("span", { class: "event-type" }, t("events.normal"));
}

// The timeline of a project, or (`app`) of one app since `since` — its creation, so that an app
// made again under an old name does not show its predecessor's events.
export async function projectEventsTab({ tenant, project, signal, body }, { app, since } = {}) {
  const path = seg`/projects/${tenant}/${project}/events`;
  const apps = app ? [] : (await api("GET", seg`/projects/${tenant}/${project}/apps`, undefined, { signal })).items.map((a) => a.metadata.name);
  const filter = { type: "", app: app || "" };
  const shown = new Map(); // key → event, the timeline on the page
  const tbody = h("tbody");
  const counts = h("p", { class: "muted", id: "events-counts", role: "status" });
  const message = h("div");
  const typeChips = h("div", { class: "filters", role: "group", "aria-label": t("events.filterType") });
  const appPick = app ? null : choice("events-app", t("logs.app"), [["", t("logs.allApps")], ...apps.map((a) => [a, a])], "");
  const live = h("span", { class: "badge live", id: "events-live" }, t("events.live"));

  // the stream is the whole project's: the filters the list asked the server for apply here too
  const passes = (e) => (!filter.type || e.type === filter.type) && (!filter.app || (e.kind === "App" && e.name === filter.app));

  function draw() {
    const items = [...shown.values()].filter(passes).sort(newestFirst);
    clear(tbody, items.length ? items.map((e) => h("tr", { class: e.type === "Warning" ? "warn" : "", "data-reason": e.reason,
      "data-type": e.type },
    h("td", { class: "num", title: when(eventTime(e), language()) }, age(eventTime(e))),
    h("td", {}, eventType(e)), h("td", {}, e.reason),
    h("td", { class: "mono" }, objectCell(e)),
    h("td", {}, e.message), h("td", { class: "num" }, String(e.count ?? 1)))) : emptyRow(6, t("events.none")));
    const warnings = items.filter((e) => e.type === "Warning").length;
    clear(counts, t("events.counts", { n: items.length, warnings }));
    tbody.closest("table").dataset.loaded = "true";
  }

  // "app/web", a link to the app's page (cluster-level events name a node: no link)
  function objectCell(e) {
    const label = e.kind ? `${e.kind.toLowerCase()}/${e.name}` : e.name || "";
    return e.kind === "App" && e.project === `${tenant}/${project}`
      ? h("a", { href: `#/projects/${tenant}/${project}/apps/${e.name}` }, label) : label;
  }

  function chips() {
    clear(typeChips, [["", t("events.allTypes")], ["Warning", t("events.warnings")], ["Normal", t("events.normals")]].map(([type, label]) =>
      h("button", { type: "button", class: filter.type === type ? "chip active" : "chip", "data-type": type || "all",
        "aria-pressed": filter.type === type ? "true" : "false", onclick: () => { filter.type = type; chips(); load(); } }, label)));
  }

  const load = latest(async (isCurrent) => {
    message.replaceChildren();
    try {
      const data = await api("GET", path, undefined,
        { signal, query: { type: filter.type || undefined, app: filter.app || undefined, since, limit: LIMIT } });
      if (!isCurrent()) return null;
      shown.clear();
      for (const e of data.items) shown.set(eventKey(e), e);
      draw();
      return data;
    } catch (e) {
      if (e.name !== "AbortError" && isCurrent()) message.append(errorBox(e));
      return null;
    }
  });

  appPick?.querySelector("select").addEventListener("change", (e) => { filter.app = e.target.value; load(); });
  chips();
  body.append(h("div", { class: "toolbar" }, typeChips, appPick, live), counts, message,
    h("table", { class: "data", id: "events" }, h("thead", {}, h("tr", {},
      [t("col.when"), t("col.type"), t("col.reason"), t("events.object"), t("col.message"), t("col.count")]
        .map((x) => h("th", { scope: "col" }, x)))), tbody));
  const first = await load();
  // live: each new or repeated event (same id, higher count) lands at the top without a reload
  watch(path, { resourceVersion: first?.resourceVersion, signal, onReset: () => load(), onEvent: (msg) => {
    const e = msg.object ?? msg;
    if (!e || typeof e !== "object" || !e.reason) return;
    shown.set(eventKey(e), e);
    if (shown.size > LIMIT) shown.delete(eventKey([...shown.values()].sort(newestFirst).pop()));
    draw();
  } });
}
