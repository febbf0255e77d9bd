// Admin → Clusters: every cluster with its live health (local first) and the nodes of the one
// selected (#/admin/clusters?cluster=NAME), both refreshed every 5 s; a swarm's nodes can be
// drained and activated here, and its join commands are fetched only when asked for: whoever
// holds them can add nodes to the swarm, so they are not on the page by default.

import { api, seg } from "../api.js";
import { h, clear, latest } from "../dom.js";
import { t } from "../i18n.js";
import { formatValue } from "../chart.js";
import { confirmAction, copyLine, emptyRow, errorBox, tableHead } from "../widgets.js";

const REFRESH_MS = 5_000;
const PHASES = { Ready: "state-ready", Degraded: "state-degraded", Unavailable: "state-failed", Unknown: "muted" };

// `value` in the user's language under `prefix` ("clusters.role" + "manager"); a value this
// dashboard has no words for is shown as the API gave it, a missing one as a dash
export function termOf(prefix, value) {
  if (value === null || value === undefined || value === "") return "—";
  const key = `${prefix}.${value}`;
  const text = t(key);
  return text === key ? String(value) : text;
}

export function labelText(labels) {
  return Object.entries(labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
}

function phaseBadge(phase) {
  const known = phase in PHASES ? phase : "Unknown";
  return h("span", { class: `badge ${PHASES[known]}`, "data-phase": phase || "Unknown" }, termOf("clusters.phase", phase || "Unknown"));
}

// clear(container, ...children), keeping the keyboard focus: the element with the same data-key
// as the focused one gets it back (else the first whose key shares the part before the last ":",
// say the Activate button of the node whose Drain button was pressed), so a refresh every 5 s
// does not throw a keyboard user back to the top of the page
function redraw(container, ...children) {
  const key = container.contains(document.activeElement) ? document.activeElement.dataset.key : undefined;
  clear(container, ...children);
  if (!key) return;
  const keyed = [...container.querySelectorAll("[data-key]")];
  const near = key.slice(0, key.lastIndexOf(":") + 1);
  (keyed.find((el) => el.dataset.key === key) || keyed.find((el) => near && el.dataset.key.startsWith(near)))?.focus();
}

function ratio(count, part) {
  return count && count.total ? `${count[part]}/${count.total}` : "—";
}

function endpointsCell(spec, status) {
  return h("td", {}, (spec.endpoints || []).map((e) => {
    const active = e.url === status.activeEndpoint;
    return h("div", { class: active ? "endpoint active" : "endpoint", "data-active": active ? "true" : "false" },
      h("span", { class: "mono" }, e.url), active && h("span", { class: "muted" }, ` (${t("clusters.active")})`));
  }));
}

// a node's address: cluster names are DNS labels (seg checks them); swarm node names are host
// names, which may hold dots, so they are escaped, and "." or ".." (which the browser would
// resolve away) are refused
function nodePath(cluster, node, action = "") {
  if (/^\.+$/.test(node)) throw new Error(t("error.badName", { value: node }));
  return `${seg`/clusters/${cluster}/nodes/`}${encodeURIComponent(node)}${action}`;
}

export async function clustersTab(body, signal) {
  const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("cluster");
  const clusterRows = h("tbody");
  const message = h("div");
  const nodesPart = h("div");
  let shown = null; // the cluster whose nodes are drawn below

  const load = latest(async (isCurrent) => {
    try {
      const data = await api("GET", "/clusters", undefined, { signal });
      if (!isCurrent()) return;
      message.replaceChildren();
      const items = data.items;
      // the cluster asked for, else the first swarm, else local
      const selected = items.find((c) => c.metadata.name === wanted)
        || items.find((c) => c.spec.driver === "swarm") || items[0];
      redraw(clusterRows, items.length ? items.map((c) => clusterRow(c, c === selected)) : emptyRow(8, t("clusters.none")));
      clusterRows.closest("table").dataset.loaded = "true";
      if (!selected) return;
      if (shown?.name !== selected.metadata.name) {
        shown = nodesSection(selected, signal);
        clear(nodesPart, shown.element);
      }
      await shown.load();
    } catch (e) {
      if (e.name !== "AbortError" && isCurrent()) clear(message, errorBox(e));
    }
  });
  body.append(message, h("table", { class: "data", id: "clusters" },
    tableHead([t("col.name"), t("clusters.driver"), t("clusters.endpoints"), t("clusters.phase"),
      t("clusters.managers"), t("clusters.nodes"), t("clusters.labels"), t("overview.description")]),
    clusterRows), nodesPart);
  await load();
  const timer = setInterval(() => load(), REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}

function clusterRow(c, selected) {
  const name = c.metadata.name;
  const status = c.status || {};
  return h("tr", { "data-cluster": name, "data-phase": status.phase || "Unknown", class: selected ? "current" : "" },
    h("td", {}, h("a", { href: `#/admin/clusters?cluster=${name}`, "aria-current": selected ? "true" : null,
      "data-key": `cluster:${name}` }, name)),
    h("td", {}, c.spec.driver),
    endpointsCell(c.spec, status),
    h("td", { class: "phase" }, phaseBadge(status.phase), " ", h("span", { class: "muted" }, status.message || "")),
    h("td", { class: "num", "data-count": "managers" }, ratio(status.managers, "reachable")),
    h("td", { class: "num", "data-count": "nodes" }, ratio(status.nodes, "ready")),
    h("td", { class: "mono" }, labelText(c.metadata.labels)),
    h("td", {}, c.spec.description || ""));
}

// the nodes of one cluster with, on a swarm, the drain/activate buttons and the join commands
function nodesSection(cluster, signal) {
  const name = cluster.metadata.name;
  const swarm = cluster.spec.driver === "swarm";
  const tbody = h("tbody");
  const listed = h("div", { id: "nodes-list-message" }); // why the nodes could not be read (the last rows stay)
  const message = h("div", { id: "node-action-message" }); // why a drain or activate failed
  const tokens = h("div", { id: "join-commands" });
  const load = latest(async (isCurrent) => {
    try {
      const data = await api("GET", "/nodes", undefined, { signal, query: { cluster: name } });
      if (!isCurrent()) return;
      listed.replaceChildren();
      redraw(tbody, data.items.length ? data.items.map((n) => nodeRow(name, swarm, n, change))
        : emptyRow(10, t("nodes.none")));
      tbody.closest("table").dataset.loaded = "true";
    } catch (e) {
      if (e.name !== "AbortError" && isCurrent()) clear(listed, errorBox(e));
    }
  });
  async function change(node, action) {
    if (action === "drain" && !confirmAction(t("clusters.confirmDrain", { node, cluster: name }))) return;
    message.replaceChildren();
    try {
      await api("POST", nodePath(name, node, `/${action}`));
      await load();
    } catch (e) {
      clear(message, errorBox(e));
    }
  }
  const reveal = h("button", { type: "button", id: "join-tokens", "aria-expanded": "false", "aria-controls": "join-commands",
    onclick: async () => {
      if (reveal.getAttribute("aria-expanded") === "true") {
        tokens.replaceChildren();
        tokens.classList.remove("secret-once");
        reveal.setAttribute("aria-expanded", "false");
        reveal.textContent = t("clusters.showJoin");
        return;
      }
      try {
        const data = await api("GET", seg`/clusters/${name}/join-tokens`, undefined, { signal });
        const commands = data.commands || {};
        clear(tokens, h("p", { class: "muted" }, t("clusters.joinSecret")),
          ["worker", "manager"].filter((role) => commands[role]).map((role) => [
            h("p", {}, t(`clusters.join.${role}`)),
            copyLine(commands[role], t(`clusters.copyJoin.${role}`), `join-${role}`)]));
        tokens.classList.add("secret-once");
        reveal.setAttribute("aria-expanded", "true");
        reveal.textContent = t("clusters.hideJoin");
      } catch (e) {
        clear(tokens, errorBox(e));
      }
    } }, t("clusters.showJoin"));
  const element = h("section", { class: "card spaced", id: "cluster-nodes", "data-cluster": name },
    h("div", { class: "page-head" }, h("h2", {}, t("clusters.nodesOf", { cluster: name })), swarm && reveal),
    tokens, listed, message,
    h("table", { class: "data", id: "cluster-node-table" },
      tableHead([t("col.name"), t("clusters.role"), t("clusters.managerStatus"), t("clusters.availability"),
        t("col.state"), t("nodes.engine"), t("nodes.cpus"), t("metrics.memory"), t("clusters.labels"), ""]),
      tbody));
  return { name, element, load };
}

function nodeRow(cluster, swarm, n, change) {
  const action = (what, cls) => h("button", { type: "button", class: `small ${cls}`, "data-action": what,
    "aria-label": t(`clusters.${what}Node`, { node: n.name }), "data-key": `node:${n.name}:${what}`, onclick: () => change(n.name, what) }, t(`clusters.${what}`));
  return h("tr", { "data-node": n.name, "data-availability": n.availability || "", "data-status": n.status },
    h("td", {}, n.name),
    h("td", {}, termOf("clusters.role", n.role)),
    h("td", {}, termOf("clusters.managerStatus", n.managerStatus)),
    h("td", { class: "availability" }, termOf("clusters.availability", n.availability)),
    h("td", {}, termOf("nodes.status", n.status)),
    h("td", { class: "mono" }, n.engineVersion || "—"),
    h("td", { class: "num" }, String(n.cpus ?? "—")),
    h("td", { class: "num" }, formatValue(n.memoryTotal, "bytes")),
    h("td", { class: "mono" }, labelText(n.labels)),
    h("td", { class: "actions-cell" }, swarm && [
      n.availability !== "drain" && action("drain", "danger"),
      n.availability !== "active" && action("activate", "")]));
}
