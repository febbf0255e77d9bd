// Alerts: the project's rules with the state of each app they watch (live), silences, notifiers
// with "send test", and forms and a YAML box (the deploy page's apply path) to create or change
// them. What a role may not do is not offered; the API checks every request anyway.

import { api, seg, session, watch } from "../api.js";
import { h, clear, age, latest, refresher } from "../dom.js";
import { language, t } from "../i18n.js";
import { toast } from "../app.js";
import { choice, confirmAction, createForm, emptyRow, errorBox, loadYaml, tableHead, when } from "../widgets.js";
import { editable } from "./manifest.js";
import { applyDocument, readManifests } from "./deploy.js";

const ALERT_STATES = ["firing", "pending", "resolved", "inactive"];
const SILENCE_FOR = { "30m": 1800, "1h": 3600, "4h": 14400, "24h": 86400, "7d": 604800 };
// model/alerts.py: a threshold on a metric, or a named condition (quota rules need YAML: a resource)
const METRICS = ["cpu", "memory", "memory_bytes", "restarts", "network_rx", "network_tx"];
const CONDITIONS = ["notReady", "oomKilled"];
const OPS = [">", ">=", "<", "<="];
const NOTIFIER_TYPES = ["webhook", "slack", "dingtalk", "wecom", "feishu", "email"];

// the state in words with a sign (colour is never the only clue)
export function alertBadge(state) {
  const s = ALERT_STATES.includes(state) ? state : "inactive";
  const sign = { firing: "▲ ", pending: "… ", resolved: "✓ ", inactive: "" }[s];
  return h("span", { class: `badge alert-${s}`, "data-state": s }, h("span", { "aria-hidden": "true" }, sign), t(`alerts.state.${s}`));
}

// "cpu > 80 for 5m", "notReady for 1m", "quota memory > 90"
function condition(spec) {
  const what = spec.condition ? [spec.condition, spec.resource] : [spec.metric];
  const parts = [...what, spec.threshold !== undefined && spec.threshold !== null ? `${spec.op || ">"} ${spec.threshold}` : null];
  const held = spec.for && spec.for !== "0s" ? ` ${t("alerts.forDuration", { d: spec.for })}` : "";
  return `${parts.filter(Boolean).join(" ")}${held}`;
}

// a name for a new silence: the rule's, then the time, within a DNS label
function silenceName(rule) {
  return `${rule.slice(0, 48)}-${Date.now().toString(36)}`.replace(/^-+|-+$/g, "");
}

export async function projectAlertsTab({ tenant, project, rights, signal, body }) {
  const base = seg`/projects/${tenant}/${project}`;
  const canWrite = !!rights.allowed["alerts.write"];
  const canNotify = !!rights.allowed["integrations.manage"];
  const apps = (await api("GET", `${base}/apps`, undefined, { signal })).items.map((a) => a.metadata.name);
  const rulesBody = h("tbody");
  const silencesBody = h("tbody");
  const notifiersBody = h("tbody");
  const message = h("div");
  const yamlBox = h("textarea", { id: "alerts-yaml", class: "code", rows: 12, spellcheck: "false", "aria-label": t("alerts.yaml"),
    placeholder: "kind: AlertRule\nmetadata: {name: hot-cpu}\nspec: {app: web, metric: cpu, op: \">\", threshold: 80, for: 5m}" });
  const results = h("ul", { class: "problems", id: "alerts-results", role: "status" });

  async function edit(obj) {
    const yaml = await loadYaml();
    yamlBox.value = yaml.dump(editable(obj), { lineWidth: 120, noRefs: true });
    yamlBox.focus();
    yamlBox.scrollIntoView({ block: "center" });
  }

  async function remove(kindPath, name, what) {
    if (!confirmAction(t("alerts.confirmDelete", { name: `${what}/${name}` }))) return;
    try {
      await api("DELETE", `${base}/${kindPath}/${seg`${name}`}`);
      toast(t("alerts.deleted", { name }));
      again();
    } catch (e) { toast(e.message, "error"); }
  }

  function silenceControl(rule, app) {
    const pick = h("select", { "aria-label": t("alerts.silenceFor", { name: rule }), class: "small" },
      Object.keys(SILENCE_FOR).map((d) => h("option", { value: d, selected: d === "1h" }, t(`alerts.duration.${d}`))));
    return h("span", { class: "silence-control" }, pick, h("button", { type: "button", class: "small", "data-silence": `${rule}/${app || ""}`,
      onclick: async () => {
        const endsAt = new Date(Date.now() + SILENCE_FOR[pick.value] * 1000).toISOString();
        const spec = { rule, endsAt, comment: t("alerts.silencedBy", { user: session.user?.name || "?" }) };
        if (app) spec.app = app;
        try {
          await api("POST", `${base}/silences`, { apiVersion: "dockyard/v1", kind: "Silence",
            metadata: { name: silenceName(rule), project: `${tenant}/${project}` }, spec });
          toast(t("alerts.silenced", { name: rule, until: when(endsAt, language()) }));
          again();
        } catch (e) { toast(e.message, "error"); }
      } }, t("alerts.silence")));
  }

  // one row per app the rule watches (its state, value, since), then the rule's problems if any
  function ruleRows(rule) {
    const name = rule.metadata.name;
    const alerts = rule.status?.alerts?.length ? rule.status.alerts : [{ app: rule.spec.app || "", state: "inactive" }];
    const since = (a) => (a.state === "resolved" ? a.resolvedAt : a.firingSince || a.activeSince);
    const rows = alerts.map((a, i) => h("tr", { "data-rule": name, "data-app": a.app || "", "data-state": a.state,
      class: a.state === "firing" ? "warn" : "" },
    h("td", {}, i === 0 ? name : ""), h("td", { class: "mono" }, i === 0 ? condition(rule.spec) : ""),
    h("td", {}, a.app || "—"),
    h("td", {}, alertBadge(a.state), a.silenced ? h("span", { class: "badge silenced" }, t("alerts.silencedBadge")) : null),
    h("td", { class: "num" }, a.value === undefined || a.value === null ? "—" : String(Math.round(a.value * 100) / 100)),
    h("td", { title: when(since(a), language()) }, age(since(a))),
    h("td", { class: "actions-cell" }, canWrite && !a.silenced && silenceControl(name, a.app),
      canWrite && i === 0 && h("button", { type: "button", class: "small", "data-edit": name, onclick: () => edit(rule) }, t("alerts.edit")),
      canWrite && i === 0 && h("button", { type: "button", class: "small danger", "data-delete": name,
        onclick: () => remove("alertrules", name, "alertrule") }, t("alerts.delete")))));
    const problems = [...(rule.status?.problems || []),
      ...alerts.flatMap((a) => Object.entries(a.notifierErrors || {}).map(([n, err]) => t("alerts.notifierError", { name: n, reason: err })))];
    if (problems.length) rows.push(h("tr", { class: "problems-row", "data-rule-problems": name }, h("td", {}),
      h("td", { colspan: 6 }, h("ul", { class: "problems" }, problems.map((p) => h("li", { class: "error" }, p))))));
    return rows;
  }

  const load = latest(async (isCurrent) => {
    const [rules, silences, notifiers] = await Promise.all([
      api("GET", `${base}/alertrules`, undefined, { signal }),
      api("GET", `${base}/silences`, undefined, { signal }),
      canNotify ? api("GET", `${base}/notifiers`, undefined, { signal }) : { items: [] },
    ]);
    if (!isCurrent()) return null;
    message.replaceChildren();
    clear(rulesBody, rules.items.length ? rules.items.flatMap(ruleRows) : emptyRow(7, t("alerts.noRules")));
    const now = Date.now();
    const active = silences.items.filter((s) => !s.spec.endsAt || Date.parse(s.spec.endsAt) > now);
    clear(silencesBody, active.length ? active.map((s) => h("tr", { "data-silence-name": s.metadata.name, "data-rule": s.spec.rule },
      h("td", {}, s.spec.rule), h("td", {}, s.spec.app || t("alerts.allApps")),
      h("td", { title: s.spec.endsAt }, when(s.spec.endsAt, language())), h("td", {}, s.spec.comment || ""),
      h("td", {}, canWrite && h("button", { type: "button", class: "small", "data-expire": s.metadata.name, onclick: async () => {
        try {
          await api("DELETE", `${base}/silences/${seg`${s.metadata.name}`}`);
          toast(t("alerts.expired", { name: s.spec.rule }));
          again();
        } catch (e) { toast(e.message, "error"); }
      } }, t("alerts.expire"))))) : emptyRow(5, t("alerts.noSilences")));
    clear(notifiersBody, notifiers.items.length ? notifiers.items.map((n) => h("tr", { "data-notifier": n.metadata.name },
      h("td", {}, n.metadata.name), h("td", {}, n.spec.type),
      h("td", { class: "mono" }, n.spec.url || (n.spec.to ? [].concat(n.spec.to).join(", ") : "")),
      h("td", { class: "actions-cell" },
        h("button", { type: "button", class: "small", "data-test": n.metadata.name, onclick: async () => {
          try {
            await api("POST", `${base}/notifiers/${seg`${n.metadata.name}`}/test`);
            toast(t("alerts.testSent", { name: n.metadata.name }));
          } catch (e) { toast(t("alerts.testFailed", { name: n.metadata.name, reason: e.message }), "error"); }
        } }, t("alerts.sendTest")),
        h("button", { type: "button", class: "small", "data-edit": n.metadata.name, onclick: () => edit(n) }, t("alerts.edit")),
        h("button", { type: "button", class: "small danger", "data-delete": n.metadata.name,
          onclick: () => remove("notifiers", n.metadata.name, "notifier") }, t("alerts.delete")))))
      : emptyRow(4, t("alerts.noNotifiers")));
    rulesBody.closest("table").dataset.loaded = "true";
    return { rules, silences };
  });
  const again = refresher(() => load().catch((e) => { if (e.name !== "AbortError") clear(message, errorBox(e)); }), 1000);

  async function applyYaml(dryRun) {
    clear(results);
    const docs = await readManifests(yamlBox.value, results);
    if (!docs) return;
    for (const doc of docs) results.append(await applyDocument(doc, `${tenant}/${project}`, dryRun));
    if (!dryRun) again();
  }

  const sections = [
    h("section", { class: "card" }, h("h2", {}, t("alerts.rules")), message,
      h("table", { class: "data", id: "alert-rules" },
        tableHead([t("col.name"), t("alerts.condition"), t("logs.app"), t("col.state"), t("alerts.value"), t("alerts.since"), ""]), rulesBody)),
    h("section", { class: "card" }, h("h2", {}, t("alerts.silences")),
      h("table", { class: "data", id: "silences" }, tableHead([t("alerts.rule"), t("logs.app"), t("alerts.ends"), t("alerts.comment"), ""]), silencesBody)),
    canNotify && h("section", { class: "card" }, h("h2", {}, t("alerts.notifiers")),
      h("table", { class: "data", id: "notifiers" }, tableHead([t("col.name"), t("col.type"), t("alerts.target"), ""]), notifiersBody)),
  ];
  body.append(...sections.filter(Boolean));
  if (canWrite) body.append(ruleForm());
  if (canNotify) body.append(notifierForm());
  if (canWrite || canNotify) {
    body.append(h("section", { class: "card stack", id: "alerts-yaml-card" }, h("h2", {}, t("alerts.yamlTitle")),
      h("p", { class: "muted" }, t("alerts.yamlHelp")), yamlBox, results,
      h("div", { class: "actions" },
        h("button", { type: "button", id: "alerts-dry-run", onclick: () => applyYaml(true) }, t("deploy.dryRunButton")),
        h("button", { type: "button", class: "primary", id: "alerts-apply", onclick: () => applyYaml(false) }, t("deploy.apply")))));
  }
  const first = await load();
  // a rule's state changes in its status: follow the rules (and the silences, which change it too)
  for (const [kind, list] of [["alertrules", first?.rules], ["silences", first?.silences]]) {
    watch(`${base}/${kind}`, { resourceVersion: list?.metadata?.resourceVersion, onEvent: again, onReset: again, signal });
  }

  function ruleForm() {
    return createForm("rule-form", [
      h("label", {}, t("col.name"), h("input", { name: "name", id: "rule-name", required: true, maxlength: 63, "data-field": "metadata.name" })),
      choice("rule-app", t("logs.app"), [["", t("alerts.allApps")], ...apps.map((a) => [a, a])], apps[0] || ""),
      choice("rule-metric", t("alerts.metric"), [...METRICS, ...CONDITIONS].map((m) => [m, t(`alerts.what.${m}`)]), "cpu"),
      choice("rule-op", t("alerts.op"), OPS.map((o) => [o, o]), ">"),
      h("label", {}, t("alerts.threshold"), h("input", { name: "threshold", id: "rule-threshold", type: "number", step: "any", value: 80,
        "data-field": "spec.threshold", class: "short" })),
      h("label", {}, t("alerts.for"), h("input", { name: "for", id: "rule-for", value: "1m", "data-field": "spec.for", class: "short" })),
      h("label", {}, t("alerts.notifyVia"), h("input", { name: "notifiers", id: "rule-notifiers", "data-field": "spec.notifiers",
        placeholder: t("alerts.notifiersHint") })),
    ], t("alerts.createRule"), async (d) => {
      const what = d.get("rule-metric");
      const spec = CONDITIONS.includes(what) ? { condition: what, for: d.get("for").trim() }
        : { metric: what, op: d.get("rule-op"), threshold: Number(d.get("threshold")), for: d.get("for").trim() };
      if (d.get("rule-app")) spec.app = d.get("rule-app");
      const via = String(d.get("notifiers") || "").split(",").map((x) => x.trim()).filter(Boolean);
      if (via.length) spec.notifiers = via;
      await api("POST", `${base}/alertrules`, { apiVersion: "dockyard/v1", kind: "AlertRule",
        metadata: { name: d.get("name").trim(), project: `${tenant}/${project}` }, spec });
      toast(t("alerts.created", { name: d.get("name") }));
      again();
    }, t("alerts.newRule"));
  }

  function notifierForm() {
    return createForm("notifier-form", [
      h("label", {}, t("col.name"), h("input", { name: "name", id: "notifier-name", required: true, maxlength: 63, "data-field": "metadata.name" })),
      choice("notifier-type", t("col.type"), NOTIFIER_TYPES.map((x) => [x, t(`alerts.type.${x}`)]), "webhook"),
      h("label", {}, t("alerts.url"), h("input", { name: "url", id: "notifier-url", type: "url", "data-field": "spec.url",
        placeholder: "https://hooks.example/dockyard" })),
    ], t("alerts.createNotifier"), async (d) => {
      const spec = { type: d.get("notifier-type") };
      if (d.get("url")) spec.url = d.get("url").trim();
      await api("POST", `${base}/notifiers`, { apiVersion: "dockyard/v1", kind: "Notifier",
        metadata: { name: d.get("name").trim(), project: `${tenant}/${project}` }, spec });
      toast(t("alerts.created", { name: d.get("name") }));
      again();
    }, t("alerts.newNotifier"));
  }
}
