// Overview: the engine's health, the projects the user can see with their apps by state and
// their CPU and memory against quota, and a form to create a project.

import { api, seg, session, watch } from "../api.js";
import { h, clear, latest, refresher } from "../dom.js";
import { t } from "../i18n.js";
import { navigate, toast } from "../app.js";
import { STATES, stateBadge, usageBar, formErrors } from "../widgets.js";

export async function overviewPage(main, _params, signal) {
  const body = h("div", { id: "overview" });
  const creator = h("div"); // drawn once: live refreshes must not reset what the user is typing
  main.append(h("h1", {}, t("overview.title")), body, creator);

  const refresh = latest(async (isCurrent) => {
    const data = await api("GET", "/overview", undefined, { signal });
    if (!isCurrent()) return null;
    clear(body, engineCard(data), totalsCard(data.totals), projectsCard(data.projects));
    return data;
  });
  const first = await refresh();
  creator.append(await newProjectCard(signal) || "");
  // apps and projects of every visible scope change the counts: follow both streams from the
  // version the overview was read at (no initial burst of ADDED events)
  const again = refresher(() => refresh(), 2000);
  for (const path of ["/apps", "/projects"]) {
    watch(path, { resourceVersion: first?.resourceVersion, onEvent: again, onReset: again, signal });
  }
}

function engineCard(data) {
  const engine = data.engine || {};
  const ok = engine.status === "ok";
  return h("section", { class: "card", id: "engines" },
    h("h2", {}, t("overview.engines")),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, t("overview.engine")), h("th", {}, t("overview.endpoint")),
      h("th", {}, t("overview.health")), h("th", {}, t("overview.controller")))),
    h("tbody", {}, h("tr", {}, h("td", {}, t("overview.localEngine")), h("td", { class: "mono" }, engine.url || ""),
      h("td", {}, h("span", { class: `badge ${ok ? "state-ready" : "state-failed"}` }, ok ? t("overview.healthy") : t("overview.unavailable"))),
      h("td", {}, data.leader ? t("overview.leading") : t("overview.standby"))))));
}

function totalsCard(totals) {
  return h("section", { class: "card", id: "totals" }, h("h2", {}, t("overview.appsByState")),
    h("div", { class: "tiles" }, STATES.map((s) => h("div", { class: `tile state-${s}`, "data-state": s },
      h("div", { class: "count" }, String(totals?.[s] ?? 0)), stateBadge(s)))));
}

function projectsCard(projects) {
  const rows = projects.map((p) => h("tr", { "data-project": `${p.tenant}/${p.project}` },
    h("td", {}, h("a", { href: `#/projects/${p.tenant}/${p.project}` }, `${p.tenant}/${p.project}`)),
    h("td", {}, String(p.appCount)),
    h("td", { class: "states" }, STATES.filter((s) => p.apps?.[s]).map((s) => h("span", {}, stateBadge(s), ` ${p.apps[s]}`))),
    h("td", { class: "bar-cell" }, usageBar(t("quota.cpu"), p.cpu?.used, p.cpu?.hard)),
    h("td", { class: "bar-cell" }, usageBar(t("quota.memory"), p.memory?.used, p.memory?.hard))));
  return h("section", { class: "card", id: "projects" }, h("h2", {}, t("overview.projects")),
    projects.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, t("overview.project")), h("th", {}, t("overview.apps")),
      h("th", {}, t("overview.states")), h("th", {}, t("quota.cpu")), h("th", {}, t("quota.memory")))), h("tbody", {}, rows))
      : h("p", { class: "empty" }, t("overview.noProjects")));
}

// the tenants where the user may create projects (owners of a tenant, admins everywhere)
async function creatableTenants(signal) {
  const tenants = (await api("GET", "/tenants", undefined, { signal }).catch(() => ({ items: [] }))).items;
  if (session.user?.admin) return tenants.map((tn) => tn.metadata.name);
  const rights = await Promise.all(tenants.map((tn) => api("GET", seg`/tenants/${tn.metadata.name}/rights`, undefined, { signal })
    .catch(() => null)));
  return rights.filter((r) => r?.allowed["project.create"]).map((r) => r.tenant);
}

// the clusters a new project may be bound to: the list is for admins only (GET /clusters), so
// others get none and their projects go to the default, local
async function bindableClusters(signal) {
  if (!session.user?.admin) return [];
  const data = await api("GET", "/clusters", undefined, { signal }).catch(() => ({ items: [] }));
  return data.items.map((c) => c.metadata.name);
}

async function newProjectCard(signal) {
  const [tenants, clusters] = await Promise.all([creatableTenants(signal), bindableClusters(signal)]);
  if (!tenants.length) {
    return session.user?.admin ? h("section", { class: "card" }, h("h2", {}, t("overview.newProject")),
      h("p", {}, t("overview.noTenants"), " ", h("a", { href: "#/admin/tenants" }, t("nav.admin")))) : null;
  }
  const message = h("div");
  const form = h("form", { class: "inline-form", id: "new-project", onsubmit: async (e) => {
    e.preventDefault();
    const errors = formErrors(form, message);
    errors.clear();
    const data = new FormData(form);
    const tenant = data.get("tenant");
    const name = data.get("name");
    try {
      await api("POST", "/projects", { apiVersion: "dockyard/v1", kind: "Project", metadata: { name, tenant },
        spec: { description: data.get("description") || undefined, cluster: data.get("cluster") || undefined } });
      toast(t("overview.projectCreated", { name: `${tenant}/${name}` }));
      navigate(`#/projects/${tenant}/${name}`);
    } catch (err) {
      errors.show(err);
    }
  } },
  h("label", {}, t("overview.tenant"), h("select", { name: "tenant", id: "new-project-tenant", "data-field": "metadata.tenant" },
    tenants.map((name) => h("option", { value: name }, name)))),
  h("label", {}, t("overview.projectName"), h("input", { name: "name", id: "new-project-name", required: true, "data-field": "metadata.name",
    pattern: "[a-z0-9]([a-z0-9\\-]*[a-z0-9])?", maxlength: 63, title: t("overview.nameRule") })),
  h("label", {}, t("overview.description"), h("input", { name: "description", "data-field": "spec.description" })),
  clusters.length > 1 && h("label", {}, t("clusters.cluster"), h("select", { name: "cluster", id: "new-project-cluster",
    "data-field": "spec.cluster" }, clusters.map((name) => h("option", { value: name }, name)))),
  h("button", { type: "submit", class: "primary" }, t("overview.createProject")));
  return h("section", { class: "card" }, h("h2", {}, t("overview.newProject")), form, message);
}
