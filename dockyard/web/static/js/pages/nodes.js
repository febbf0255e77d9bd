// The engine nodes: each one's CPU, memory and running containers, refreshed every collection.

import { api } from "../api.js";
import { h, clear, latest } from "../dom.js";
import { t } from "../i18n.js";
import { formatValue } from "../chart.js";
import { emptyRow, errorBox, usageBar } from "../widgets.js";

const REFRESH_MS = 10_000; // the metrics collector's interval

export async function nodesTab(body, signal) {
  const tbody = h("tbody");
  const message = h("div");
  const load = latest(async (isCurrent) => {
    try {
      const data = await api("GET", "/nodes", undefined, { signal });
      if (!isCurrent()) return;
      message.replaceChildren();
      clear(tbody, data.items.length ? data.items.map((n) => h("tr", { "data-node": n.name },
        h("td", {}, n.name), h("td", {}, n.status ? t(`nodes.status.${n.status}`) : "—"),
        h("td", { class: "num" }, formatValue(n.cpu, "percent")),
        h("td", { class: "bar-cell" }, usageBar(t("quota.memory"), formatValue(n.memory?.used, "bytes"), n.memory?.total
          ? formatValue(n.memory.total, "bytes") : null)),
        h("td", { class: "num" }, String(n.containers ?? "—")))) : emptyRow(5, t("nodes.none")));
      tbody.closest("table").dataset.loaded = "true";
    } catch (e) {
      if (e.name !== "AbortError" && isCurrent()) clear(message, errorBox(e));
    }
  });
  body.append(message, h("table", { class: "data", id: "nodes" }, h("thead", {}, h("tr", {},
    [t("col.name"), t("col.state"), t("metrics.cpu"), t("metrics.memory"), t("nodes.containers")].map((x) => h("th", { scope: "col" }, x)))),
  tbody));
  await load();
  const timer = setInterval(() => load(), REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
