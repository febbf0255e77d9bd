// Line charts as SVG built node by node (no chart library, no HTML strings), and the unit
// formatting the metrics pages share.

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#0b57d0", "#b3261e", "#116329", "#6f4a00", "#7e3fb2", "#00758f", "#953800", "#5d6b7a"];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const BYTES = ["B", "KiB", "MiB", "GiB", "TiB"];

export function formatValue(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (unit === "percent") return `${value.toFixed(value < 10 ? 1 : 0)} %`;
  if (unit === "bytes" || unit === "bytes/s") {
    let v = value;
    let i = 0;
    while (Math.abs(v) >= 1024 && i < BYTES.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(v < 10 && i > 0 ? 1 : 0)} ${BYTES[i]}${unit === "bytes/s" ? "/s" : ""}`;
  }
  return String(Math.round(value * 100) / 100);
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// series: [{name, points: [[unixSeconds, value], ...], dashed?}]; from/to in unix seconds
// the least top of the y axis per unit: an idle app's chart reads "0 … 1 KiB/s", not "0 … 1 B/s"
const FLOOR = { percent: 10, bytes: 1024 * 1024, "bytes/s": 1024 };

export function lineChart({ series, unit, from, to, label, width = 640, height = 200, floorMax = FLOOR[unit] ?? 1 }) {
  const pad = { l: 64, r: 12, t: 10, b: 24 };
  const w = width - pad.l - pad.r;
  const hgt = height - pad.t - pad.b;
  const values = series.flatMap((x) => x.points.map((p) => p[1])).filter((v) => v !== null && Number.isFinite(v));
  const max = niceMax(Math.max(floorMax, ...values, 0));
  const x = (t) => pad.l + ((t - from) / Math.max(1, to - from)) * w;
  const y = (v) => pad.t + hgt - (v / max) * hgt;
  const latest = series.map((ser) => {
    const last = [...ser.points].reverse().find((p) => p[1] !== null);
    return `${ser.name}: ${last ? formatValue(last[1], unit) : "—"}`;
  }).join(", ");
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": `${label}. ${latest}` });
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s("line", { x1: pad.l, x2: pad.l + w, y1: y(v), y2: y(v), class: "grid" }),
      s("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, formatValue(v, unit)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = from + ((to - from) * i) / 4;
    const d = new Date(t * 1000);
    const text = to - from > 2 * 86400 ? d.toLocaleDateString() : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    svg.append(s("text", { x: x(t), y: height - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", class: "tick" }, text));
  }
  series.forEach((ser, i) => {
    // a gap in the data (null or a jump of more than 3 steps) breaks the line
    let d = "";
    let prev = null;
    let run = []; // the points of the current unbroken stretch: a lone point is drawn as a dot
    const steps = ser.points.length > 1 ? (ser.points[ser.points.length - 1][0] - ser.points[0][0]) / (ser.points.length - 1) : 0;
    const color = COLORS[i % COLORS.length];
    const dots = [];
    const endRun = () => { if (run.length === 1) dots.push(run[0]); run = []; };
    for (const [t, v] of ser.points) {
      if (v === null || !Number.isFinite(v)) { prev = null; endRun(); continue; }
      const breaks = prev === null || (steps && t - prev > 3 * steps);
      if (breaks) endRun();
      d += `${breaks ? "M" : "L"}${x(t).toFixed(1)},${y(v).toFixed(1)} `;
      run.push([t, v]);
      prev = t;
    }
    endRun();
    for (const [t, v] of dots) svg.append(s("circle", { cx: x(t).toFixed(1), cy: y(v).toFixed(1), r: 2.5, fill: color }));
    if (d) svg.append(s("path", { d, fill: "none", stroke: color, "stroke-width": ser.total ? 2.5 : 1.5,
      "stroke-dasharray": ser.dashed ? "5 4" : null, "data-series": ser.name }));
  });
  return svg;
}

export function legend(series) {
  const box = document.createElement("div");
  box.className = "legend";
  series.forEach((ser, i) => {
    const item = document.createElement("span");
    const mark = document.createElement("span");
    mark.className = "swatch";
    mark.style.background = COLORS[i % COLORS.length];
    item.append(mark, document.createTextNode(ser.name));
    box.append(item);
  });
  return box;
}
