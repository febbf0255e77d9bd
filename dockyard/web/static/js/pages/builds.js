// Builds: the project's BuildConfigs (with Start build and the push webhook's address) and its
// builds newest first, live from the Build watch; and one build's page, whose log follows the
// build's log stream while it runs (no reload) and stops when the build ends, with Cancel.

import { api, seg, streamLines, watch } from "../api.js";
import { h, clear, refresher } from "../dom.js";
import { language, t } from "../i18n.js";
import { navigate, toast } from "../app.js";
import { copyLine, emptyRow, errorBox, tableHead, when } from "../widgets.js";

// model/build.py PHASES; a sign beside the word, so colour is never the only clue
const SIGNS = { Pending: "… ", Running: "▶ ", Succeeded: "✓ ", Failed: "✗ ", Cancelled: "⊘ " };
const FINISHED = new Set(["Succeeded", "Failed", "Cancelled"]);

const phaseOf = (b) => (b.status && b.status.phase) || "Pending";
const startedOf = (b) => (b.status && b.status.startedAt) || b.metadata.createdAt || "";

export function phaseBadge(phase) {
  const p = SIGNS[phase] ? phase : "Pending";
  return h("span", { class: `badge phase-${p.toLowerCase()}`, "data-phase": p },
    h("span", { "aria-hidden": "true" }, SIGNS[p]), t(`builds.phase.${p}`));
}

// "42s", "3m 05s", "1h 02m"; a running build's time so far
export function duration(b) {
  const st = b.status || {};
  let s = st.durationSeconds;
  if ((s === null || s === undefined) && st.startedAt && !FINISHED.has(phaseOf(b))) s = (Date.now() - Date.parse(st.startedAt)) / 1000;
  if (s === null || s === undefined || Number.isNaN(s)) return "—";
  s = Math.round(s);
  const pad = (n) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
}

const shortCommit = (c) => (c ? c.slice(0, 12) : "—");

export async function projectBuildsTab({ tenant, project, rights, signal, body }) {
  const base = seg`/projects/${tenant}/${project}`;
  const canWrite = !!rights.allowed["builds.write"];
  const info = await api("GET", "/registry", undefined, { signal }).catch(() => ({}));
  const message = h("div");
  const configsBody = h("tbody");
  const buildsBody = h("tbody");
  const imageOf = (spec) => (info.host ? `${info.host}/${tenant}/${project}/${spec.image}` : spec.image);
  const hookOf = (name) => `${location.origin}/hooks/builds/${tenant}/${project}/${name}`;

  async function start(config) {
    message.replaceChildren();
    try {
      const b = await api("POST", `${base}/buildconfigs/${seg`${config}`}/start`);
      toast(t("builds.started", { name: b.metadata.name }));
      navigate(`#/projects/${tenant}/${project}/builds/${b.metadata.name}`);
    } catch (e) { message.append(errorBox(e)); }
  }

  async function load() {
    const [configs, builds] = await Promise.all([
      api("GET", `${base}/buildconfigs`, undefined, { signal }),
      api("GET", `${base}/builds`, undefined, { signal }),
    ]);
    clear(configsBody, configs.items.length ? configs.items.map((c) => h("tr", { "data-config": c.metadata.name },
      h("td", {}, c.metadata.name),
      h("td", { class: "mono" }, c.spec.source.git, c.spec.source.contextDir && c.spec.source.contextDir !== "." ? ` (${c.spec.source.contextDir})` : ""),
      h("td", { class: "mono" }, c.spec.source.ref || "main"),
      h("td", { class: "mono" }, imageOf(c.spec)),
      h("td", {}, c.spec.deployTo ? h("a", { href: `#/projects/${tenant}/${project}/apps/${c.spec.deployTo}` }, c.spec.deployTo) : "—"),
      h("td", {}, c.spec.triggers?.webhook ? copyLine(hookOf(c.metadata.name), t("builds.copyWebhook", { name: c.metadata.name })) : "—"),
      h("td", { class: "actions-cell" }, canWrite && h("button", { type: "button", class: "small primary", "data-start": c.metadata.name,
        onclick: () => start(c.metadata.name) }, t("builds.start")))))
      : emptyRow(7, t("builds.noConfigs")));
    const items = builds.items.slice().sort((a, b) => startedOf(b).localeCompare(startedOf(a)) || b.metadata.name.localeCompare(a.metadata.name));
    clear(buildsBody, items.length ? items.map((b) => h("tr", { "data-build": b.metadata.name, "data-phase": phaseOf(b) },
      h("td", {}, h("a", { href: `#/projects/${tenant}/${project}/builds/${b.metadata.name}` }, b.metadata.name)),
      h("td", {}, phaseBadge(phaseOf(b))),
      h("td", { class: "mono", title: b.status?.commit || "" }, shortCommit(b.status?.commit)),
      h("td", { class: "num" }, duration(b)),
      h("td", { class: "num", title: startedOf(b) }, when(startedOf(b), language())),
      // one line, cut with an ellipsis: the whole message in its title and on the build's page
      h("td", { class: "muted cut", title: b.status?.message || null }, b.status?.message || "")))
      : emptyRow(6, t("builds.none")));
    buildsBody.closest("table").dataset.loaded = "true";
    return builds;
  }

  body.append(message,
    h("section", { class: "card" }, h("h2", {}, t("builds.configs")),
      h("table", { class: "data one-line", id: "buildconfigs" }, tableHead([t("col.name"), t("builds.source"), t("builds.ref"), t("col.image"),
        t("builds.deployTo"), t("builds.webhook"), ""]), configsBody),
      h("p", { class: "muted" }, t("builds.configsHelp"))),
    h("section", { class: "card" }, h("h2", {}, t("builds.history")),
      h("table", { class: "data one-line", id: "builds" }, tableHead([t("col.name"), t("builds.phase"), t("builds.commit"), t("builds.duration"),
        t("builds.startedAt"), t("col.message")]), buildsBody)));
  const first = await load();
  const again = refresher(() => load().catch((e) => { if (e.name !== "AbortError") clear(message, errorBox(e)); }), 1000);
  watch(`${base}/builds`, { resourceVersion: first.metadata?.resourceVersion, onEvent: again, onReset: again, signal });
}

// One build: its status, kept current from the Build watch, and its log, streamed while it runs.
export async function buildPage(main, [tenant, project, name], signal) {
  const base = seg`/projects/${tenant}/${project}`;
  const path = `${base}/builds/${seg`${name}`}`;
  const [rights, first] = await Promise.all([
    api("GET", `${base}/rights`, undefined, { signal }),
    api("GET", path, undefined, { signal }),
  ]);
  let build = first;
  const badge = h("span");
  const facts = h("dl", { class: "facts", id: "build-facts" });
  const actions = h("div", { class: "actions" });
  const message = h("div");
  const status = h("p", { class: "muted", id: "build-log-status", role: "status" });
  const out = h("pre", { class: "logs", id: "build-log", "aria-live": "off", tabindex: "0", "aria-label": t("builds.log") });
  main.append(h("p", { class: "crumbs" }, h("a", { href: `#/projects/${tenant}/${project}/builds` }, `${tenant}/${project}`), " / ",
    t("project.builds")),
  h("div", { class: "page-head" }, h("div", { class: "title" }, h("h1", {}, name), badge), actions),
  message, h("section", { class: "card" }, facts), h("section", { class: "card" }, h("h2", {}, t("builds.log")), status, out));

  function draw() {
    const st = build.status || {};
    const phase = phaseOf(build);
    clear(badge, phaseBadge(phase));
    const fact = (label, value) => value && [h("dt", {}, label), h("dd", {}, value)];
    clear(facts,
      fact(t("builds.config"), st.buildConfig),
      fact(t("builds.source"), h("span", { class: "mono" }, `${build.spec.source.git} @ ${build.spec.source.ref || "main"}`)),
      fact(t("builds.commit"), st.commit && h("span", { class: "mono", id: "build-commit" }, st.commit)),
      fact(t("col.image"), st.image && h("span", { class: "mono" }, st.image)),
      fact(t("images.digest"), st.imageDigest && copyLine(st.imageDigest, t("builds.copyDigest"), "build-digest")),
      fact(t("builds.deployTo"), build.spec.deployTo),
      fact(t("builds.startedAt"), st.startedAt && when(st.startedAt, language())),
      fact(t("builds.finishedAt"), st.finishedAt && when(st.finishedAt, language())),
      fact(t("builds.duration"), h("span", { id: "build-duration" }, duration(build))),
      fact(t("builds.queuePosition"), st.queuePosition && String(st.queuePosition)),
      fact(t("col.message"), st.message && h("span", { id: "build-message" }, st.message)));
    clear(actions, rights.allowed["builds.write"] && !FINISHED.has(phase) && h("button", { type: "button", class: "danger", id: "cancel-build",
      onclick: async () => {
        message.replaceChildren();
        try {
          build = await api("POST", `${path}/cancel`);
          toast(t("builds.cancelAsked", { name }));
          draw();
        } catch (e) { message.append(errorBox(e)); }
      } }, t("builds.cancel")));
  }
  draw();
  // a running build's time so far, once a second (only that text: the buttons stay where they are)
  const ticker = setInterval(() => {
    const el = document.getElementById("build-duration");
    if (el && phaseOf(build) === "Running") el.textContent = duration(build);
  }, 1000);
  signal.addEventListener("abort", () => clearInterval(ticker));
  watch(`${base}/builds`, { resourceVersion: first.metadata.resourceVersion, signal, onEvent: (ev) => {
    const obj = ev.object;
    if (obj && obj.metadata?.name === name && obj.metadata.uid === first.metadata.uid) { build = obj; draw(); }
  } });
  followLog(out, status, path, FINISHED.has(phaseOf(first)), signal).then(async () => {
    try { build = await api("GET", path, undefined, { signal }); draw(); } catch { /* the watch has it */ }
  });
}

// The log from the start, then (unless the build has ended) what is appended until it ends: the
// server closes the stream then. Lines go to the end of `out`, which stays scrolled to the bottom
// while the reader has not scrolled up.
async function followLog(out, status, path, ended, signal) {
  clear(status, ended ? t("builds.logEnded") : t("builds.following"));
  let lines = 0;
  const add = (line) => {
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    out.append(document.createTextNode(`${line}\n`));
    lines += 1;
    if (atBottom) out.scrollTop = out.scrollHeight;
  };
  try {
    await streamLines(`${path}/logs`, add, { signal, query: { follow: ended ? "false" : "true" } });
    clear(status, lines ? t("builds.logEnded") : t("builds.logEmpty"));
    out.dataset.ended = "true";
  } catch (e) {
    if (e.name === "AbortError") return;
    status.replaceChildren();
    status.after(errorBox(e));
  }
}
