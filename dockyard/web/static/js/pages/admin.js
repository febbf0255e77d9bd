// Admin: users, tenants and the audit log with filters (platform admins only; the API refuses
// everyone else whatever this page shows).

import { api, seg, session } from "../api.js";
import { h, append, clear, age, latest } from "../dom.js";
import { language, t } from "../i18n.js";
import { toast } from "../app.js";
import { tabs, emptyRow, confirmAction, errorBox, createForm, when } from "../widgets.js";
import { nodesTab } from "./nodes.js";
import { clustersTab } from "./clusters.js";

export async function adminPage(main, [tab = "users"], signal) {
  main.append(h("h1", {}, t("admin.title")),
    tabs([["users", t("admin.users"), "#/admin/users"], ["tenants", t("admin.tenants"), "#/admin/tenants"],
      ["audit", t("admin.audit"), "#/admin/audit"], ["nodes", t("admin.nodes"), "#/admin/nodes"],
      ["clusters", t("admin.clusters"), "#/admin/clusters"]], tab));
  const body = h("div", { class: "tab-body" });
  main.append(body);
  if (tab === "tenants") await tenantsTab(body, signal);
  else if (tab === "audit") await auditTab(body, signal);
  else if (tab === "nodes") await nodesTab(body, signal);
  else if (tab === "clusters") await clustersTab(body, signal);
  else await usersTab(body, signal);
}

async function usersTab(body, signal) {
  const tbody = h("tbody");
  async function load() {
    const data = await api("GET", "/users", undefined, { signal });
    clear(tbody, data.items.map((u) => h("tr", { "data-user": u.name }, h("td", {}, u.name),
      h("td", {}, u.admin ? t("app.yes") : t("app.no")), h("td", { title: u.createdAt }, age(u.createdAt)),
      h("td", {}, h("button", { type: "button", class: "danger small", onclick: async () => {
        if (!confirmAction(t("admin.confirmDeleteUser", { name: u.name }))) return;
        try { await api("DELETE", seg`/users/${u.name}`); load(); } catch (e) { toast(e.message, "error"); }
      } }, t("admin.delete"))))));
  }
  await load();
  body.append(createForm("new-user", [
    h("label", {}, t("login.username"), h("input", { name: "name", id: "new-user-name", required: true, "data-field": "name" })),
    h("label", {}, t("login.password"), h("input", { name: "password", id: "new-user-password", type: "password", required: true,
      autocomplete: "new-password", "data-field": "password" })),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "admin" }), t("admin.isAdmin")),
  ], t("admin.createUser"), async (d) => {
    await api("POST", "/users", { name: d.get("name"), password: d.get("password"), admin: d.get("admin") === "on" });
    toast(t("admin.userCreated", { name: d.get("name") }));
    load();
  }), h("table", { class: "data", id: "users" }, h("thead", {}, h("tr", {},
    [t("col.user"), t("admin.isAdmin"), t("col.age"), ""].map((x) => h("th", {}, x)))), tbody));
}

async function tenantsTab(body, signal) {
  const tbody = h("tbody");
  async function load() {
    const data = await api("GET", "/tenants", undefined, { signal });
    clear(tbody, data.items.length ? data.items.map((tn) => h("tr", { "data-tenant": tn.metadata.name },
      h("td", {}, tn.metadata.name), h("td", {}, tn.spec.displayName || ""), h("td", {}, age(tn.metadata.createdAt)),
      h("td", {}, session.user?.admin && h("button", { type: "button", class: "danger small", onclick: async () => {
        if (!confirmAction(t("admin.confirmDeleteTenant", { name: tn.metadata.name }))) return;
        try { await api("DELETE", seg`/tenants/${tn.metadata.name}`); load(); } catch (e) { toast(e.message, "error"); }
      } }, t("admin.delete"))))) : emptyRow(4, t("admin.noTenants")));
  }
  await load();
  append(body, [session.user?.admin && createForm("new-tenant", [
    h("label", {}, t("col.name"), h("input", { name: "name", id: "new-tenant-name", required: true, "data-field": "metadata.name" })),
    h("label", {}, t("admin.displayName"), h("input", { name: "displayName", "data-field": "spec.displayName" })),
  ], t("admin.createTenant"), async (d) => {
    await api("POST", "/tenants", { apiVersion: "dockyard/v1", kind: "Tenant", metadata: { name: d.get("name") },
      spec: { displayName: d.get("displayName") || undefined } });
    toast(t("admin.tenantCreated", { name: d.get("name") }));
    load();
  }), h("table", { class: "data", id: "tenants" }, h("thead", {}, h("tr", {},
    [t("col.name"), t("admin.displayName"), t("col.age"), ""].map((x) => h("th", {}, x)))), tbody)]);
}

async function auditTab(body, signal) {
  const tbody = h("tbody");
  const more = h("button", { type: "button", id: "audit-more" }, t("audit.more"));
  const message = h("div");
  const filters = h("form", { class: "inline-form", id: "audit-filters", onsubmit: (e) => {
    e.preventDefault();
    message.replaceChildren();
    load(false).catch((err) => message.append(errorBox(err)));
  } },
    h("label", {}, t("col.user"), h("input", { name: "user" })),
    h("label", {}, t("audit.tenant"), h("input", { name: "tenant" })),
    h("label", {}, t("audit.project"), h("input", { name: "project", placeholder: t("audit.projectHint") })),
    h("label", {}, t("audit.action"), h("input", { name: "action", placeholder: t("audit.actionHint") })),
    h("button", { type: "submit", class: "primary" }, t("audit.filter")));
  let before = null;
  // a new filter and "older entries" may overlap: only the newest request draws
  const load = latest(async (isCurrent, append) => {
    const d = new FormData(filters);
    const query = { limit: 100 };
    for (const k of ["user", "tenant", "project", "action"]) if (d.get(k)) query[k] = d.get(k).trim();
    if (append && before) query.before = before;
    const data = await api("GET", "/audit", undefined, { signal, query });
    if (!isCurrent()) return;
    // the API lists a page oldest first; the viewer shows the newest on top and appends older pages
    const rows = data.items.slice().reverse().map((e) => h("tr", { class: e.outcome >= 400 ? "warn" : "" },
      h("td", { title: e.at }, when(e.at, language())), h("td", {}, e.user), h("td", { class: "mono" }, e.source),
      h("td", { class: "mono" }, e.action), h("td", { class: "mono" }, e.object), h("td", {}, String(e.outcome)), h("td", {}, e.detail || "")));
    if (append) tbody.append(...rows);
    else clear(tbody, rows.length ? rows : emptyRow(7, t("audit.none")));
    before = data.nextBefore ?? null;
    more.disabled = !before;
  });
  more.addEventListener("click", () => load(true).catch((e) => toast(e.message, "error")));
  body.append(h("section", { class: "card" }, filters, message), h("table", { class: "data", id: "audit" }, h("thead", {}, h("tr", {},
    [t("col.when"), t("col.user"), t("audit.source"), t("audit.action"), t("audit.object"), t("audit.outcome"), t("audit.detail")]
      .map((x) => h("th", {}, x)))), tbody), more);
  await load(false);
}
