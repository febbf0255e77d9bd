// Deploy: a form for a single-image app, and a box (paste or upload) for manifests or a
// Compose file. Errors are the API's own messages, the same the CLI prints.

import { NAME, api, seg, session } from "../api.js";
import { h, clear } from "../dom.js";
import { t } from "../i18n.js";
import { navigate, toast } from "../app.js";
import { loadYaml, formErrors, tabs, errorBox } from "../widgets.js";
import { parseEnv } from "./app.js";

export async function deployPage(main, [tenant, project], signal) {
  const projects = (await api("GET", "/projects", undefined, { signal })).items.map((p) => `${p.metadata.tenant}/${p.metadata.name}`);
  const remembered = localStorage.getItem(LAST_PROJECT);
  const chosen = tenant ? `${tenant}/${project}` : projects.includes(remembered) ? remembered : projects[0];
  const mode = new URLSearchParams(location.hash.split("?")[1] || "").get("mode") === "manifest" ? "manifest" : "form";
  const here = tenant ? `#/projects/${tenant}/${project}/deploy` : "#/deploy";
  const picker = h("select", { id: "deploy-project", name: "project", "aria-label": t("deploy.project") },
    projects.map((p) => h("option", { value: p, selected: p === chosen }, p)));
  main.append(h("h1", {}, t("deploy.title")),
    projects.length ? h("label", { class: "project-pick" }, t("deploy.project"), picker)
      : h("p", { class: "empty" }, session.user?.admin ? t("deploy.noProjectsYet") : t("deploy.noProjects")),
    tabs([["form", t("deploy.fromImage"), here], ["manifest", t("deploy.fromManifest"), `${here}?mode=manifest`]], mode));
  if (!projects.length) return;
  const note = h("div");
  const body = h("div", { class: "tab-body" });
  main.append(note, body);
  if (mode === "manifest") manifestForm(body, picker);
  else imageForm(body, picker);
  // say up front when the chosen project does not let this user deploy (the API would refuse)
  async function checkRights() {
    localStorage.setItem(LAST_PROJECT, picker.value);
    clear(note);
    const [tn, pn] = picker.value.split("/");
    try {
      const rights = await api("GET", seg`/projects/${tn}/${pn}/rights`, undefined, { signal });
      // the buttons say it too (the API would refuse anyway)
      for (const b of body.querySelectorAll("#deploy-submit, #manifest-apply, #manifest-dry-run")) b.disabled = !rights.allowed["app.write"];
      if (!rights.allowed["app.write"]) {
        note.append(h("p", { class: "error", id: "deploy-denied", role: "alert" }, t("deploy.denied", {
          project: picker.value, role: rights.role ? t(`role.${rights.role}`) : "—" })));
      }
    } catch { /* the deploy itself will report */ }
  }
  picker.addEventListener("change", checkRights);
  await checkRights();
}

const LAST_PROJECT = "dockyard.deployProject";

function imageForm(body, picker) {
  const message = h("div");
  const form = h("form", { class: "stack card", id: "deploy-form", onsubmit: async (e) => {
    e.preventDefault();
    const errors = formErrors(form, message);
    errors.clear();
    const d = new FormData(form);
    const env = parseEnv(d.get("env"));
    if (env.error) { message.append(errorBox(new Error(env.error))); return; }
    const spec = { image: d.get("image").trim(), replicas: Number(d.get("replicas") || 1), env: env.env };
    if (d.get("port")) spec.ports = [{ containerPort: Number(d.get("port")) }];
    if (d.get("memory")) spec.resources = { memory: d.get("memory").trim() };
    const project = picker.value;
    const manifest = { apiVersion: "dockyard/v1", kind: "App", metadata: { name: d.get("name").trim(), project }, spec };
    const [tenantName, projectName] = project.split("/");
    if (!NAME.test(tenantName) || !NAME.test(projectName)) return;
    try {
      await api("POST", `/projects/${project}/apps`, manifest);
      toast(t("deploy.created", { name: manifest.metadata.name }));
      navigate(`#/projects/${project}/apps/${manifest.metadata.name}`);
    } catch (err) {
      // each field's error next to it; the box only for what no field shows
      errors.show(err);
    }
  } },
  h("label", {}, t("deploy.name"), h("input", { name: "name", id: "deploy-name", required: true, maxlength: 63, "data-field": "metadata.name",
    placeholder: "web" })),
  h("label", {}, t("deploy.image"), h("input", { name: "image", id: "deploy-image", required: true, "data-field": "spec.image",
    placeholder: "registry.example/team/web:1.0" })),
  h("div", { class: "row" },
    h("label", {}, t("deploy.replicas"), h("input", { name: "replicas", id: "deploy-replicas", type: "number", min: 0, max: 1000, value: 1,
      "data-field": "spec.replicas" })),
    h("label", {}, t("deploy.port"), h("input", { name: "port", id: "deploy-port", type: "number", min: 1, max: 65535, "data-field": "spec.ports" })),
    h("label", {}, t("deploy.memory"), h("input", { name: "memory", id: "deploy-memory", placeholder: "256Mi", "data-field": "spec.resources" }))),
  h("label", {}, t("deploy.env"), h("textarea", { name: "env", id: "deploy-env", rows: 4, placeholder: "KEY=value", "data-field": "spec.env" })),
  message,
  h("button", { type: "submit", class: "primary", id: "deploy-submit" }, t("deploy.submit")));
  body.append(form);
}

// the kinds a manifest may hold inside a project, by their collection's name
const PROJECT_KINDS = ["apps", "secrets", "configs", "alertrules", "notifiers", "silences", "buildconfigs"];

// [collection, item] API paths of a manifest. Path parts must be names: "../x" would change
// which path a request goes to. An invalid object name gives no item path: the manifest is then
// posted to the collection, and the server's validation message is shown, as the CLI shows it.
function kindPaths(obj, project) {
  const meta = obj.metadata || {};
  const item = (collection, name) => [collection, NAME.test(String(name)) ? `${collection}/${name}` : null];
  const part = (field, value) => {
    if (!NAME.test(String(value))) throw new Error(t("deploy.badName", { field, value: String(value).slice(0, 80) }));
    return value;
  };
  if (obj.kind === "Tenant") return item("/tenants", meta.name || "");
  if (obj.kind === "Project") {
    let tenant = meta.tenant || project.split("/")[0];
    let name = meta.name || "";
    if (String(name).includes("/")) [tenant, name] = String(name).split("/", 2);
    const [, path] = item(`/projects/${part("metadata.tenant", tenant)}`, name);
    return ["/projects", path];
  }
  const plural = `${String(obj.kind || "").toLowerCase()}s`;
  if (!PROJECT_KINDS.includes(plural)) throw new Error(t("deploy.badKind", { kind: String(obj.kind) }));
  const [t0, p0] = String(meta.project || project).split("/");
  return item(`/projects/${part("metadata.project", t0)}/${part("metadata.project", p0)}/${plural}`, meta.name || "");
}

// The documents of a YAML text (several separated by ---, or one YAML list), or null after
// adding to `results` a line that says why not: the YAML's broken line, or that there is nothing.
export async function readManifests(text, results) {
  const fail = (message) => { results.append(h("li", { class: "error" }, message)); return null; };
  let yaml;
  try {
    yaml = await loadYaml();
  } catch (e) {
    return fail(e.message);
  }
  let docs;
  try {
    docs = yaml.loadAll(text).filter((d) => d !== null && d !== undefined);
  } catch (e) {
    return fail(t("manifest.yamlError", { line: (e.mark?.line ?? 0) + 1, message: e.reason || e.message }));
  }
  if (docs.length === 1 && Array.isArray(docs[0])) docs = docs[0];
  return docs.length ? docs : fail(t("deploy.empty"));
}

// Create or replace one manifest (kubectl apply): a list item saying what happened, or why not.
export async function applyDocument(doc, project, dryRun) {
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) return h("li", { class: "error" }, t("deploy.notObject"));
  const label = `${String(doc.kind || "?").toLowerCase()}/${doc.metadata?.name || "?"}`;
  const query = dryRun ? { dryRun: "true" } : undefined;
  try {
    if (!doc.kind) throw new Error(t("deploy.noKind"));
    const [collection, item] = kindPaths(doc, project);
    let current = null;
    if (item) try { current = await api("GET", item); } catch (e) { if (e.status !== 404) throw e; }
    let verb;
    if (!current) {
      if (!["Tenant", "Project"].includes(doc.kind)) doc.metadata = { ...doc.metadata, project: doc.metadata?.project || project };
      await api("POST", collection, doc, { query });
      verb = t("deploy.verbCreated");
    } else {
      doc.metadata = { ...doc.metadata, resourceVersion: current.metadata.resourceVersion };
      const res = await api("PUT", item, doc, { query });
      // a dry run stores nothing, so its resourceVersion never moves: compare what would be stored
      const changed = res.metadata.resourceVersion !== current.metadata.resourceVersion || (dryRun &&
        (JSON.stringify(res.spec) !== JSON.stringify(current.spec) ||
         JSON.stringify(res.metadata.labels || {}) !== JSON.stringify(current.metadata.labels || {})));
      verb = changed ? t("deploy.verbConfigured") : t("deploy.verbUnchanged");
    }
    return h("li", { class: "ok" }, `${label} ${verb}${dryRun ? t("deploy.dryRun") : ""}`);
  } catch (err) {
    return h("li", { class: "error" }, `${label}: ${err.message}`);
  }
}

function manifestForm(body, picker) {
  const box = h("textarea", { id: "manifest-input", class: "code", rows: 20, spellcheck: "false", "aria-label": t("deploy.manifestBox"),
    placeholder: "apiVersion: dockyard/v1\nkind: App\nmetadata: {name: web}\nspec: {image: dockyard/demo:1.0}" });
  const upload = h("input", { type: "file", id: "manifest-file", accept: ".yml,.yaml,.json,text/yaml", onchange: async () => {
    const file = upload.files[0];
    if (file) box.value = await file.text();
  } });
  const results = h("ul", { class: "problems", id: "deploy-results", role: "status" });
  async function run(dryRun) {
    clear(results);
    const project = picker.value;
    let docs = await readManifests(box.value, results);
    if (!docs) return;
    if (docs.length === 1 && docs[0] && typeof docs[0] === "object" && docs[0].services) {
      try {
        const converted = await api("POST", "/compose/convert", { project, compose: docs[0] });
        for (const w of converted.warnings) results.append(h("li", { class: "warn" }, t("deploy.warning", { field: w.field, message: w.message })));
        docs = converted.items;
      } catch (err) {
        results.append(h("li", { class: "error" }, err.message));
        for (const e of err.errors) results.append(h("li", { class: "error" }, `${e.field}: ${e.message}`));
        return;
      }
    }
    const order = { Tenant: 0, Project: 1 };
    docs.sort((a, b) => (order[a?.kind] ?? 2) - (order[b?.kind] ?? 2));
    // every document gets a line: a bad one says why, and the others are still applied
    for (const doc of docs) results.append(await applyDocument(doc, project, dryRun));
  }
  body.append(h("section", { class: "card stack", id: "manifest-deploy" },
    h("p", { class: "muted" }, t("deploy.manifestHelp")), box,
    h("label", {}, t("deploy.upload"), upload), results,
    h("div", { class: "actions" },
      h("button", { type: "button", id: "manifest-dry-run", onclick: () => run(true) }, t("deploy.dryRunButton")),
      h("button", { type: "button", class: "primary", id: "manifest-apply", onclick: () => run(false) }, t("deploy.apply")))));
}
