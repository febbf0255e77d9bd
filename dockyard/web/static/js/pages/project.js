// Project: the apps table (server-side paging, sorting and filtering, live from the watch
// stream), quota usage, members and roles, secret and config names.

import { api, seg, watch } from "../api.js";
import { h, clear, age, debounce, latest, refresher } from "../dom.js";
import { t } from "../i18n.js";
import { navigate, toast } from "../app.js";
import { STATES, stateBadge, tabs, usageBar, emptyRow, confirmAction, errorBox } from "../widgets.js";
import { projectUsageTab } from "./metrics.js";
import { projectLogsTab } from "./logs.js";
import { projectEventsTab } from "./events.js";
import { projectAlertsTab } from "./alerts.js";
import { projectImagesTab } from "./images.js";
import { projectBuildsTab } from "./builds.js";

const PAGE_SIZE = 50;

export async function projectPage(main, [tenant, project, tab = "apps"], signal) {
  const base = `#/projects/${tenant}/${project}`;
  const [rights, tenantRights, spec] = await Promise.all([
    api("GET", seg`/projects/${tenant}/${project}/rights`, undefined, { signal }),
    api("GET", seg`/tenants/${tenant}/rights`, undefined, { signal }).catch(() => ({ allowed: {} })),
    api("GET", seg`/projects/${tenant}/${project}`, undefined, { signal }).then((p) => p.spec || {}).catch(() => null),
  ]);
  main.append(h("div", { class: "page-head" },
    h("div", { class: "title" }, h("h1", {}, h("span", { class: "muted" }, `${tenant} / `), project),
      // a project stored before clusters existed has no spec.cluster: it is on local; one not read is not said
      spec && h("span", { class: "badge muted", id: "project-cluster", title: t("project.clusterHint") },
        t("project.onCluster", { cluster: spec.cluster || "local" }))),
    h("div", { class: "actions" },
      rights.allowed["app.write"] && h("a", { class: "button primary", href: `${base}/deploy`, id: "deploy-here" }, t("project.deploy")),
      tenantRights.allowed["project.delete"] && h("button", { type: "button", class: "danger", id: "delete-project", onclick: async () => {
        if (!confirmAction(t("project.confirmDelete", { name: `${tenant}/${project}` }))) return;
        try {
          await api("DELETE", seg`/projects/${tenant}/${project}`);
          toast(t("project.deleted", { name: `${tenant}/${project}` }));
          navigate("#/");
        } catch (e) { toast(e.message, "error"); }
      } }, t("project.delete")))),
  tabs([["apps", t("project.apps"), base], ["usage", t("project.usage"), `${base}/usage`],
    rights.allowed["app.logs"] && ["logs", t("project.logs"), `${base}/logs`],
    rights.allowed["alerts.read"] && ["events", t("project.events"), `${base}/events`],
    rights.allowed["alerts.read"] && ["alerts", t("project.alerts"), `${base}/alerts`],
    rights.allowed["images.pull"] && ["images", t("project.images"), `${base}/images`],
    rights.allowed["builds.read"] && ["builds", t("project.builds"), `${base}/builds`],
    ["quota", t("project.quota"), `${base}/quota`],
    ["members", t("project.members"), `${base}/members`], ["secrets", t("project.secrets"), `${base}/secrets`]].filter(Boolean), tab));
  const body = h("div", { class: "tab-body" });
  main.append(body);
  const ctx = { tenant, project, rights, signal, body };
  if (tab === "usage") await projectUsageTab(ctx);
  else if (tab === "logs") await projectLogsTab(ctx);
  else if (tab === "events") await projectEventsTab(ctx);
  else if (tab === "alerts") await projectAlertsTab(ctx);
  else if (tab === "images") await projectImagesTab(ctx);
  else if (tab === "builds") await projectBuildsTab(ctx);
  else if (tab === "quota") await quotaTab(ctx);
  else if (tab === "members") await membersTab(ctx);
  else if (tab === "secrets") await secretsTab(ctx);
  else await appsTab(ctx);
}

async function appsTab({ tenant, project, signal, body }) {
  const query = { name: "", state: "", sort: "name", offset: 0 };
  const counts = h("div", { class: "filters", id: "state-filter", role: "group", "aria-label": t("project.filterState") });
  const search = h("input", { type: "search", id: "app-search", placeholder: t("project.searchApps"), "aria-label": t("project.searchApps") });
  const tbody = h("tbody", {});
  const pager = h("div", { class: "pager" });
  const columns = [["name", t("col.name")], [null, t("col.image")], ["ready", t("col.ready")], ["state", t("col.state")],
    ["age", t("col.age")], ["restarts", t("col.restarts")]];
  const head = h("tr", {});
  const table = h("table", { id: "apps-table", class: "data" }, h("thead", {}, head), tbody);
  body.append(h("div", { class: "toolbar" }, search, counts), table, pager);
  let rv = null;

  function header() {
    clear(head, columns.map(([key, label]) => {
      if (!key) return h("th", {}, label);
      const dir = query.sort === key ? "ascending" : query.sort === `-${key}` ? "descending" : "none";
      return h("th", { "aria-sort": dir },
        h("button", { class: "sort", type: "button", "data-sort": key, onclick: () => {
          query.sort = query.sort === key ? `-${key}` : key;
          query.offset = 0;
          load();
        } }, label, dir === "ascending" ? " ▲" : dir === "descending" ? " ▼" : ""));
    }));
  }

  const load = latest(async (isCurrent) => {
    header();
    const data = await api("GET", seg`/projects/${tenant}/${project}/appsummaries`, undefined,
      { signal, query: { ...query, limit: PAGE_SIZE } });
    if (!isCurrent()) return;
    rv = rv || data.resourceVersion;
    clear(counts, h("button", { type: "button", class: query.state === "" ? "chip active" : "chip", "data-state": "",
      onclick: () => { query.state = ""; query.offset = 0; load(); } }, t("project.allStates")),
    STATES.map((s) => h("button", { type: "button", class: query.state === s ? "chip active" : "chip", "data-state": s,
      "aria-pressed": query.state === s ? "true" : "false",
      onclick: () => { query.state = s; query.offset = 0; load(); } }, t(`state.${s}`), ` ${data.counts?.[s] ?? 0}`)));
    clear(tbody, data.items.length ? data.items.map((a) => h("tr", { "data-app": a.name },
      h("td", {}, h("a", { href: `#/projects/${tenant}/${project}/apps/${a.name}` }, a.name)),
      h("td", { class: "mono" }, a.image),
      h("td", { class: "ready" }, `${a.readyReplicas}/${a.replicas}`),
      h("td", { title: a.message || "" }, stateBadge(a.state)),
      h("td", { title: a.createdAt }, age(a.createdAt)),
      h("td", {}, String(a.restarts)))) : emptyRow(columns.length, query.name || query.state ? t("project.noMatch") : t("project.noApps")));
    const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
    const page = Math.floor(query.offset / PAGE_SIZE) + 1;
    clear(pager,
      h("button", { type: "button", id: "prev-page", disabled: page <= 1, onclick: () => { query.offset -= PAGE_SIZE; load(); } }, t("pager.prev")),
      h("span", { id: "page-info" }, t("pager.info", { page, pages, total: data.total })),
      h("button", { type: "button", id: "next-page", disabled: page >= pages, onclick: () => { query.offset += PAGE_SIZE; load(); } }, t("pager.next")));
    table.dataset.loaded = "true";
  });

  search.addEventListener("input", debounce(() => { query.name = search.value.trim(); query.offset = 0; load(); }, 250));
  await load();
  // live: changes to the project's apps refresh the visible page, at most once a second
  const again = refresher(() => load(), 1000);
  watch(seg`/projects/${tenant}/${project}/apps`, { resourceVersion: rv, onEvent: again, onReset: again, signal });
}

async function quotaTab({ tenant, project, signal, body }) {
  const q = await api("GET", seg`/projects/${tenant}/${project}/quota`, undefined, { signal });
  const section = (title, res) => h("section", { class: "card" }, h("h2", {}, title),
    Object.entries(res.resources).map(([name, r]) => usageBar(t(`quota.${name}`), r.used, r.hard)));
  body.append(h("div", { class: "grid2", id: "quota" }, section(t("quota.project", { name: q.project.name }), q.project),
    section(t("quota.tenant", { name: q.tenant.name }), q.tenant)),
  h("section", { class: "card" }, h("h2", {}, t("quota.defaults")),
    h("p", { class: "mono" }, Object.entries(q.defaults || {}).map(([k, v]) => `${k}=${v}`).join("  ") || t("quota.none"))));
}

async function membersTab({ tenant, project, rights, signal, body }) {
  const tbody = h("tbody");
  const message = h("div");
  const canManage = rights.allowed["members.manage"];
  async function load() {
    const data = await api("GET", seg`/projects/${tenant}/${project}/members`, undefined, { signal });
    clear(tbody, data.items.map((m) => h("tr", { "data-member": m.user },
      h("td", {}, m.user), h("td", {}, t(`role.${m.role}`)),
      h("td", {}, m.inherited ? t("members.fromTenant", { tenant }) : t("members.project")),
      h("td", {}, canManage && !m.inherited && h("button", { type: "button", class: "danger small", onclick: async () => {
        if (!confirmAction(t("members.confirmRevoke", { user: m.user }))) return;
        try {
          await api("DELETE", seg`/projects/${tenant}/${project}/members/${m.user}`);
          load();
        } catch (e) { toast(e.message, "error"); }
      } }, t("members.revoke"))))));
  }
  body.append(h("table", { class: "data", id: "members" }, h("thead", {}, h("tr", {}, h("th", {}, t("col.user")),
    h("th", {}, t("col.role")), h("th", {}, t("col.scope")), h("th", {}))), tbody));
  if (canManage) {
    const form = h("form", { class: "inline-form", id: "grant", onsubmit: async (e) => {
      e.preventDefault();
      message.replaceChildren();
      const d = new FormData(form);
      try {
        await api("POST", seg`/projects/${tenant}/${project}/members`, { user: d.get("user"), role: d.get("role") });
        form.reset();
        load();
      } catch (err) { message.append(errorBox(err)); }
    } },
    h("label", {}, t("col.user"), h("input", { name: "user", required: true })),
    h("label", {}, t("col.role"), h("select", { name: "role" }, ["viewer", "developer", "maintainer", "owner"].map((r) =>
      h("option", { value: r }, t(`role.${r}`))))),
    h("button", { type: "submit", class: "primary" }, t("members.grant")));
    body.append(h("section", { class: "card" }, h("h2", {}, t("members.grantTitle")), form, message));
  }
  await load();
}

async function secretsTab({ tenant, project, signal, body }) {
  const [secrets, configs] = await Promise.all([
    api("GET", seg`/projects/${tenant}/${project}/secrets`, undefined, { signal }),
    api("GET", seg`/projects/${tenant}/${project}/configs`, undefined, { signal }),
  ]);
  const list = (title, id, items) => h("section", { class: "card" }, h("h2", {}, title),
    h("table", { class: "data", id }, h("thead", {}, h("tr", {}, h("th", {}, t("col.name")), h("th", {}, t("col.created")))),
      h("tbody", {}, items.length ? items.map((o) => h("tr", {}, h("td", { class: "mono" }, o.metadata.name),
        h("td", {}, age(o.metadata.createdAt))))
        : emptyRow(2, t("secrets.none")))));
  body.append(h("p", { class: "muted" }, t("secrets.namesOnly")),
    h("div", { class: "grid2" }, list(t("project.secrets"), "secrets", secrets.items), list(t("secrets.configs"), "configs", configs.items)));
}
