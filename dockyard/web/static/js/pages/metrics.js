// Metrics pages: an app's charts (CPU, memory against its limit, network, block I/O) over a
// chosen range, refreshed every collection interval, and a project's current usage per app.

import { api, seg } from "../api.js";
import { h, clear, latest } from "../dom.js";
import { t } from "../i18n.js";
import { formatValue, legend, lineChart } from "../chart.js";
import { emptyRow, errorBox } from "../widgets.js";

export const RANGES = ["15m", "1h", "6h", "24h", "7d"]; // the logs page offers the same
const REFRESH_MS = 10_000; // the collector's interval

function ranged(signal, draw) {
  const select = h("select", { id: "metrics-range", "aria-label": t("metrics.range") },
    RANGES.map((r) => h("option", { value: r, selected: r === "15m" }, t(`metrics.last.${r}`))));
  const run = latest(async (isCurrent) => {
    try {
      await draw(select.value, isCurrent);
    } catch (e) {
      if (e.name !== "AbortError" && isCurrent()) draw.fail?.(e);
    }
  });
  select.addEventListener("change", () => run());
  const timer = setInterval(() => run(), REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
  return { select, run };
}

export async function appMetricsTab(body, ctx) {
  const grid = h("div", { class: "charts", id: "app-charts" });
  const message = h("div");
  async function query(metric, range, agg = "sum") {
    return api("GET", `${ctx.path}/metrics`, undefined, { signal: ctx.signal, query: { metric, from: `-${range}`, agg } });
  }
  const draw = async (range, isCurrent) => {
    const [cpu, mem, limit, rx, tx, rd, wr] = await Promise.all(
      ["cpu", "memory", "memory_limit", "network_rx", "network_tx", "block_read", "block_write"].map((m) => query(m, range)));
    if (!isCurrent()) return;
    message.replaceChildren();
    const card = (id, title, series, unit, res) => h("section", { class: "card chart-card", id },
      h("h2", {}, title), lineChart({ series, unit, from: res.from, to: res.to, label: title }), legend(series));
    const replicas = (res) => res.replicas.map((r) => ({ name: t("metrics.replica", { n: r.replica }), points: r.points }));
    clear(grid,
      card("chart-cpu", t("metrics.cpu"), [...replicas(cpu), { name: t("metrics.total"), points: cpu.total.points, total: true }], "percent", cpu),
      card("chart-memory", t("metrics.memory"), [{ name: t("metrics.used"), points: mem.total.points, total: true },
        { name: t("metrics.limit"), points: limit.total.points, dashed: true }], "bytes", mem),
      card("chart-network", t("metrics.network"), [{ name: t("metrics.received"), points: rx.total.points },
        { name: t("metrics.sent"), points: tx.total.points }], "bytes/s", rx),
      card("chart-block", t("metrics.block"), [{ name: t("metrics.read"), points: rd.total.points },
        { name: t("metrics.written"), points: wr.total.points }], "bytes/s", rd));
    grid.dataset.loaded = "true";
  };
  draw.fail = (e) => clear(message, errorBox(e));
  const { select, run } = ranged(ctx.signal, draw);
  body.append(h("div", { class: "toolbar" }, select, h("span", { class: "muted" }, t("metrics.every10s"))), message, grid);
  await run();
}

export async function projectUsageTab({ tenant, project, signal, body }) {
  const tbody = h("tbody");
  const chart = h("div", { id: "project-cpu-chart", class: "charts spaced" });
  const message = h("div");
  const draw = async (range, isCurrent) => {
    const series = (metric) => api("GET", seg`/projects/${tenant}/${project}/metrics`, undefined,
      { signal, query: { metric, from: `-${range}` } });
    const [top, cpu, memory] = await Promise.all([
      api("GET", seg`/projects/${tenant}/${project}/top`, undefined, { signal }), series("cpu"), series("memory")]);
    if (!isCurrent()) return;
    message.replaceChildren();
    clear(tbody, top.items.length ? top.items.map((a) => h("tr", { "data-app": a.app },
      h("td", {}, h("a", { href: `#/projects/${tenant}/${project}/apps/${a.app}/metrics` }, a.app)),
      h("td", {}, String(a.replicas)), h("td", { class: "num" }, formatValue(a.cpu, "percent")),
      h("td", { class: "num" }, `${formatValue(a.memory, "bytes")} / ${a.memoryLimit ? formatValue(a.memoryLimit, "bytes") : "—"}`),
      h("td", { class: "num" }, `${formatValue(a.networkRx, "bytes/s")} / ${formatValue(a.networkTx, "bytes/s")}`),
      h("td", { class: "num" }, String(a.restarts)), h("td", { class: "num" }, String(a.oomKills))))
      : emptyRow(7, t("metrics.noData")));
    // one line per app, in the same colour on both charts (an app missing from one still has its slot)
    const names = [...new Set([...cpu.apps, ...memory.apps].map((a) => a.app))].sort();
    const byApp = (id, title, res, unit) => {
      const lines = names.map((name) => ({ name, points: res.apps.find((a) => a.app === name)?.points || [] }));
      return h("section", { class: "card chart-card", id }, h("h2", {}, title),
        lineChart({ series: lines, unit, from: res.from, to: res.to, label: title }), legend(lines));
    };
    clear(chart, byApp("chart-project-cpu", t("metrics.cpuByApp"), cpu, "percent"),
      byApp("chart-project-memory", t("metrics.memoryByApp"), memory, "bytes"));
    tbody.closest("table").dataset.loaded = "true";
  };
  draw.fail = (e) => clear(message, errorBox(e));
  const { select, run } = ranged(signal, draw);
  body.append(h("div", { class: "toolbar" }, select, h("span", { class: "muted" }, t("metrics.every10s"))), message,
    h("table", { class: "data", id: "usage" }, h("thead", {}, h("tr", {},
      [t("col.name"), t("app.replicas"), t("metrics.cpu"), t("metrics.memoryUsedLimit"), t("metrics.networkRxTx"),
        t("col.restarts"), t("metrics.oomKills")].map((x) => h("th", {}, x)))), tbody), chart);
  await run();
}
