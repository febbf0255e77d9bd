// App: replicas, live logs, events, rollout history with rollback, scale, restart, edit image
// and environment, the manifest as YAML, and the web terminal. The header follows the App's
// watch stream, so states change on screen without a reload.

import { api, seg, session, streamLines, watch } from "../api.js";
import { h, append, clear, age, latest, refresher } from "../dom.js";
import { t } from "../i18n.js";
import { navigate, toast } from "../app.js";
import { stateBadge, tabs, emptyRow, confirmAction, formErrors, errorBox, saveFile, copyButton } from "../widgets.js";
import { shortDigest } from "./images.js";
import { manifestEditor } from "./manifest.js";
import { terminalPanel } from "./terminal.js";
import { appMetricsTab } from "./metrics.js";
import { logSearch } from "./logs.js";
import { projectEventsTab } from "./events.js";

// model/app.py:app_state for an App from a watch event (a unit test keeps the two equal)
function stateOf(app) {
  const phase = app.status?.phase;
  if (phase === "Ready") return "ready";
  if (phase === "Degraded") return "degraded";
  if (phase === "Stalled" || phase === "Failed") return "failed";
  return "progressing";
}

function readyCondition(app) {
  return (app.status?.conditions || []).find((c) => c.type === "Ready");
}

export async function appPage(main, [tenant, project, name, tab = "replicas"], signal) {
  const path = seg`/projects/${tenant}/${project}/apps/${name}`;
  const base = `#${path}`;
  const [app, rights] = await Promise.all([
    api("GET", path, undefined, { signal }),
    api("GET", seg`/projects/${tenant}/${project}/rights`, undefined, { signal }),
  ]);
  const canWrite = rights.allowed["app.write"];
  const ctx = { tenant, project, name, path, app, rights, canWrite, signal };
  const head = h("div", { class: "app-head", id: "app-head" });
  main.append(h("p", { class: "crumbs" }, h("a", { href: `#/projects/${tenant}/${project}` }, `${tenant}/${project}`), " / ", name),
    head,
    tabs([["replicas", t("app.replicas"), base], ["metrics", t("app.metrics"), `${base}/metrics`],
      ["logs", t("app.logs"), `${base}/logs`], ["events", t("app.events"), `${base}/events`],
      ["history", t("app.history"), `${base}/history`], ["settings", t("app.settings"), `${base}/settings`],
      ["manifest", t("app.manifest"), `${base}/manifest`],
      rights.allowed["app.exec"] && ["terminal", t("app.terminal"), `${base}/terminal`]].filter(Boolean), tab));
  const body = h("div", { class: "tab-body" });
  main.append(body);
  const listeners = [];
  ctx.onChange = (fn) => listeners.push(fn);
  renderHead(head, ctx);

  const tabsByName = { replicas: replicasTab, metrics: appMetricsTab, logs: logsTab, events: eventsTab, history: historyTab,
    settings: settingsTab, manifest: manifestTab, terminal: terminalTab };
  await (tabsByName[tab] || replicasTab)(body, ctx);

  watch(path, { resourceVersion: app.metadata.resourceVersion, signal, onEvent: (ev) => {
    if (ev.type === "DELETED") { toast(t("app.deleted", { name })); navigate(`#/projects/${tenant}/${project}`); return; }
    ctx.app = ev.object;
    renderHead(head, ctx);
    for (const fn of listeners) fn(ctx.app);
  } });
}

function renderHead(head, ctx) {
  const { app, canWrite, path } = ctx;
  const st = app.status || {};
  const cond = readyCondition(app);
  if (!ctx.actions) {
    // built once: watch events redraw the title, not the form a user may be typing in
    const scale = h("form", { class: "inline-form", id: "scale-form", onsubmit: async (e) => {
      e.preventDefault();
      const replicas = Number(new FormData(scale).get("replicas"));
      scale.querySelector("#replicas").dataset.shown = String(replicas);
      try {
        await api("POST", `${path}/scale`, { replicas });
        toast(t("app.scaled", { n: replicas }));
      } catch (err) { toast(err.message, "error"); }
    } }, h("label", {}, t("app.replicasLabel"), h("input", { type: "number", name: "replicas", id: "replicas", min: 0, max: 1000, required: true,
      value: app.spec.replicas ?? 1, "data-shown": app.spec.replicas ?? 1 })), h("button", { type: "submit", id: "scale" }, t("app.scale")));
    ctx.actions = canWrite ? h("div", { class: "actions" }, scale,
      h("button", { type: "button", id: "restart", onclick: async () => {
        if (!confirmAction(t("app.confirmRestart", { name: ctx.name }))) return;
        try { await api("POST", `${path}/restart`); toast(t("app.restarting")); } catch (err) { toast(err.message, "error"); }
      } }, t("app.restart")),
      h("button", { type: "button", id: "delete-app", class: "danger", onclick: async () => {
        if (!confirmAction(t("app.confirmDelete", { name: ctx.name }))) return;
        try { await api("DELETE", path); toast(t("app.deleted", { name: ctx.name })); } catch (err) { toast(err.message, "error"); }
      } }, t("app.delete"))) : null;
    ctx.summary = h("div");
    append(head, [ctx.summary, ctx.actions]);
  }
  // the box follows the stored count unless the user has typed another number into it
  const input = ctx.actions?.querySelector("#replicas");
  if (input && document.activeElement !== input && input.value === input.dataset.shown) input.value = app.spec.replicas ?? 1;
  if (input) input.dataset.shown = String(app.spec.replicas ?? 1);
  clear(ctx.summary,
    h("div", { class: "title" }, h("h1", {}, app.metadata.name), stateBadge(stateOf(app)),
      h("span", { class: "ready-count", id: "ready-count" }, t("app.readyOf", { ready: st.readyReplicas ?? 0, desired: app.spec.replicas ?? 1 }))),
    h("p", { class: "mono" }, app.spec.image),
    cond && cond.status !== "True" && h("p", { class: "condition", id: "condition" }, cond.message || cond.reason));
}

async function replicasTab(body, ctx) {
  const tbody = h("tbody");
  const draw = (app) => clear(tbody, (app.status?.containers || []).length ? app.status.containers.map((c) => h("tr", { "data-slot": c.slot },
    h("td", {}, String(c.slot)), h("td", { class: "mono" }, c.name), h("td", {}, t(`container.${c.state}`) === `container.${c.state}` ? c.state : t(`container.${c.state}`)),
    h("td", {}, c.health ? t(`health.${c.health}`) : "—"), h("td", {}, c.ready ? t("app.yes") : t("app.no")),
    h("td", {}, String(c.restarts ?? 0)), h("td", { class: "mono" }, c.ip || ""), h("td", {}, String(c.revision ?? "")),
    h("td", {}, age(c.startedAt)),
    h("td", {}, ctx.rights.allowed["app.exec"] && c.state === "running" &&
      h("a", { href: `#${ctx.path}/terminal?replica=${c.slot}`, class: "button small" }, t("app.terminal")))))
    : emptyRow(10, t("app.noReplicas")));
  body.append(h("table", { class: "data", id: "replicas-table" }, h("thead", {}, h("tr", {},
    [t("col.slot"), t("col.container"), t("col.state"), t("col.health"), t("col.ready"), t("col.restarts"), t("col.ip"),
      t("col.revision"), t("col.age"), ""].map((x) => h("th", {}, x)))), tbody));
  draw(ctx.app);
  ctx.onChange(draw);
}

// the Logs tab: the live stream of every replica, or a search of the stored history
async function logsTab(body, ctx) {
  const search = new URLSearchParams(location.hash.split("?")[1] || "").get("mode") === "search";
  const mode = (id, on, href, label) => h("a", { href, id, class: on ? "chip active" : "chip", "aria-current": on ? "page" : null }, label);
  body.append(h("nav", { class: "filters spaced-below", "aria-label": t("logs.mode") },
    mode("logs-mode-live", !search, `#${ctx.path}/logs`, t("logs.modeLive")),
    mode("logs-mode-search", search, `#${ctx.path}/logs?mode=search`, t("logs.modeSearch"))));
  if (search) await logSearch(body, { tenant: ctx.tenant, project: ctx.project, app: ctx.name, signal: ctx.signal });
  else liveLogs(body, ctx);
}

function liveLogs(body, ctx) {
  const out = h("pre", { class: "logs", id: "logs", "aria-live": "off" });
  const search = h("input", { type: "search", id: "log-search", placeholder: t("logs.search"), "aria-label": t("logs.search") });
  const follow = h("input", { type: "checkbox", id: "log-follow", checked: true });
  const count = h("span", { class: "muted", id: "log-count" });
  const lines = []; // the last MAX lines received; the page shows those that match the search
  const MAX = 5000;
  let shown = 0;
  let streamAbort = null;

  const matches = (line) => !search.value || line.toLowerCase().includes(search.value.toLowerCase());
  const node = (line) => document.createTextNode(`${line}\n`);
  const counted = () => { count.textContent = t("logs.count", { shown, total: lines.length }); };
  function redraw() {
    const hits = lines.filter(matches);
    out.replaceChildren(...hits.map(node));
    shown = hits.length;
    counted();
    out.scrollTop = out.scrollHeight;
  }
  function add(line) {
    lines.push(line);
    if (lines.length > MAX) {
      const dropped = lines.shift();
      if (matches(dropped)) { out.firstChild?.remove(); shown -= 1; }
    }
    if (matches(line)) {
      out.append(node(line));
      shown += 1;
      out.scrollTop = out.scrollHeight;
    }
    counted();
  }
  async function start() {
    streamAbort?.abort();
    streamAbort = new AbortController();
    const mine = streamAbort;
    ctx.signal.addEventListener("abort", () => mine.abort());
    lines.length = 0;
    redraw();
    try {
      await streamLines(`${ctx.path}/logs`, add, { signal: mine.signal,
        query: { follow: follow.checked ? "true" : "false", tail: "500", timestamps: "true" } });
    } catch (e) {
      if (e.name !== "AbortError") body.append(errorBox(e));
    }
  }
  search.addEventListener("input", redraw);
  follow.addEventListener("change", start);
  const download = h("button", { type: "button", id: "log-download", onclick: async () => {
    try {
      const text = await api("GET", `${ctx.path}/logs`, undefined, { query: { timestamps: "true" } });
      saveFile(`${ctx.name}-logs.txt`, text);
    } catch (e) { toast(e.message, "error"); }
  } }, t("logs.download"));
  body.append(h("div", { class: "toolbar" }, search, h("label", { class: "check" }, follow, t("logs.follow")), download, count), out);
  start();
}

// the app's part of the project's events timeline, live
async function eventsTab(body, ctx) {
  await projectEventsTab({ ...ctx, body }, { app: ctx.name, since: ctx.app.metadata.createdAt });
}

async function historyTab(body, ctx) {
  const tbody = h("tbody");
  const load = latest(async (isCurrent) => {
    const data = await api("GET", `${ctx.path}/revisions`, undefined, { signal: ctx.signal });
    if (!isCurrent()) return;
    clear(tbody, data.items.slice().reverse().map((r) => h("tr", { "data-revision": r.revision, class: r.current ? "current" : "" },
      h("td", {}, String(r.revision), r.current ? h("span", { class: "badge state-ready" }, t("history.current")) : null),
      h("td", { class: "mono revision-image" }, revisionImage(r)), h("td", {}, r.changeCause || ""), h("td", { title: r.createdAt }, age(r.createdAt)),
      h("td", {}, ctx.canWrite && !r.current && h("button", { type: "button", class: "small", "data-rollback": r.revision, onclick: async () => {
        if (!confirmAction(t("history.confirm", { revision: r.revision }))) return;
        try {
          await api("POST", `${ctx.path}/rollback`, { revision: r.revision });
          toast(t("history.rolledBack", { revision: r.revision }));
        } catch (e) { toast(e.message, "error"); }
      } }, t("history.rollback"))))));
  });
  body.append(h("table", { class: "data", id: "history" }, h("thead", {}, h("tr", {},
    [t("col.revision"), t("col.image"), t("col.cause"), t("col.age"), ""].map((x) => h("th", {}, x)))), tbody));
  await load();
  ctx.onChange(refresher(() => load(), 1000));
}

// IMAGE@sha256:0123456789ab (as `dockyard rollout history` prints it) and a copy button for the
// whole digest: the revision ran that digest, whatever its tag names now
function revisionImage(r) {
  if (!r.imageDigest) return r.image;
  return [r.image, "@", h("span", { class: "digest", title: r.imageDigest }, shortDigest(r.imageDigest)), " ",
    copyButton(r.imageDigest, t("history.copyDigest", { revision: r.revision }))];
}

const envPairs = (env) => (Array.isArray(env) ? env.map((e) => [e.name, e.value ?? ""]) : Object.entries(env || {}));

async function settingsTab(body, ctx) {
  const { app } = ctx;
  // what the form shows; a save is refused only if someone changed these fields meanwhile
  // (a scale or a restart by anyone, you included, does not block it)
  const shown = JSON.stringify([app.spec.image, envPairs(app.spec.env)]);
  const env = envPairs(app.spec.env).map(([k, v]) => `${k}=${v}`).join("\n");
  const message = h("div");
  const conflict = () => errorBox(new Error(t("settings.conflict")));
  const form = h("form", { class: "stack", id: "settings-form", onsubmit: async (e) => {
    e.preventDefault();
    const errors = formErrors(form, message);
    errors.clear();
    const d = new FormData(form);
    const parsed = parseEnv(d.get("env"));
    if (parsed.error) { message.append(errorBox(new Error(parsed.error))); return; }
    const latest = ctx.app;
    if (JSON.stringify([latest.spec.image, envPairs(latest.spec.env)]) !== shown) {
      message.append(conflict(), reload());
      return;
    }
    const envList = Object.entries(parsed.env).map(([name, value]) => ({ name, value }));
    if (JSON.stringify([d.get("image"), envList.map((x) => [x.name, x.value])]) === shown) {
      toast(t("settings.unchanged"));
      return;
    }
    try {
      // a merge patch replaces a list whole: the box is the new environment
      await api("PATCH", ctx.path, { metadata: { resourceVersion: latest.metadata.resourceVersion },
        spec: { image: d.get("image"), env: envList } });
      toast(t("settings.saved"));
      body.replaceChildren();
      ctx.app = { ...ctx.app, spec: { ...ctx.app.spec, image: d.get("image"), env: envList } };
      await settingsTab(body, ctx); // the form now shows what was saved
    } catch (err) {
      if (err.status === 409) message.append(conflict(), reload());
      else errors.show(err);
    }
  } },
  h("label", {}, t("deploy.image"), h("input", { name: "image", id: "edit-image", value: app.spec.image, required: true,
    "data-field": "spec.image", disabled: !ctx.canWrite })),
  h("label", {}, t("deploy.env"), h("textarea", { name: "env", id: "edit-env", rows: 6, "data-field": "spec.env",
    disabled: !ctx.canWrite, placeholder: "KEY=value" }, env)),
  message,
  ctx.canWrite && h("button", { type: "submit", class: "primary", id: "save-settings" }, t("settings.save")));
  function reload() {
    return h("button", { type: "button", class: "link", id: "settings-reload", onclick: async () => {
      body.replaceChildren();
      await settingsTab(body, ctx);
    } }, t("settings.reload"));
  }
  body.append(h("section", { class: "card" }, h("h2", {}, t("settings.title")), form));
}

export function parseEnv(text) {
  const env = {};
  const lines = String(text || "").split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) return { error: t("deploy.envLine", { line: i + 1 }) };
    env[line.slice(0, eq).trim()] = line.slice(eq + 1).replace(/^[ \t]+/, ""); // "KEY = value" means "value"
  }
  return { env };
}

async function manifestTab(body, ctx) {
  await manifestEditor(body, ctx);
}

async function terminalTab(body, ctx) {
  if (!ctx.rights.allowed["app.exec"]) {
    body.append(errorBox(new Error(t("terminal.denied", { role: ctx.rights.role ? t(`role.${ctx.rights.role}`) : "—" }))));
    return;
  }
  const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("replica");
  terminalPanel(body, ctx, wanted, session.token);
}
