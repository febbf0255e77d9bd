// The nodes of every cluster (the server's own engine, each swarm's): cluster, role, availability,
// state and capacity, and (for admins, who see this page) the CPU and memory used by this
// installation's containers on each, refreshed every collection.

import { api } from "../api.js";
import { h, clear, latest } from "../dom.js";
import { t } from "../i18n.js";
import { formatValue } from "../chart.js";
import { emptyRow, errorBox, usageBar } from "../widgets.js";
import { termOf } from "./clusters.js";

const REFRESH_MS = 10_000; // the metrics collector's interval

export async function nodesTab(body, signal) {
  const tbody = h("tbody");
  const message = h("div");
  const load = latest(async (isCurrent) => {
    try {
      const data = await api("GET", "/nodes", undefined, { signal });
      if (!isCurrent()) return;
      message.replaceChildren();
      const bytes = (v) => formatValue(v, "bytes");
      // a non-admin sees capacity and state only: the usage of all tenants together is not theirs
      clear(tbody, data.items.length ? data.items.map((n) => h("tr", { "data-node": n.name, "data-status": n.status,
        "data-cluster": n.cluster },
        h("td", {}, n.cluster ? h("a", { href: `#/admin/clusters?cluster=${n.cluster}` }, n.cluster) : "—"),
        h("td", {}, n.name), h("td", {}, termOf("clusters.role", n.role)),
        h("td", {}, termOf("clusters.availability", n.availability)), h("td", {}, t(`nodes.status.${n.status}`)),
        h("td", { class: "num" }, String(n.cpus ?? "—")),
        h("td", { class: "num" }, n.cpu === undefined ? "—" : formatValue(n.cpu, "percent")),
        h("td", { class: "bar-cell" }, n.memory?.used === null || n.memory?.used === undefined
          ? bytes(n.memory?.total ?? n.memoryTotal) : usageBar(t("quota.memory"), n.memory.used, n.memory.total, bytes)),
        h("td", { class: "num" }, String(n.containers ?? "—")), h("td", { class: "mono" }, n.engineVersion || "—")))
        : emptyRow(10, t("nodes.none")));
      tbody.closest("table").dataset.loaded = "true";
    } catch (e) {
      if (e.name !== "AbortError" && isCurrent()) clear(message, errorBox(e));
    }
  });
  body.append(message, h("table", { class: "data", id: "nodes" }, h("thead", {}, h("tr", {},
    [t("clusters.cluster"), t("col.name"), t("clusters.role"), t("clusters.availability"), t("col.state"), t("nodes.cpus"),
      t("metrics.cpu"), t("metrics.memory"), t("nodes.containers"), t("nodes.engine")].map((x) => h("th", { scope: "col" }, x)))),
  tbody));
  await load();
  const timer = setInterval(() => load(), REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
