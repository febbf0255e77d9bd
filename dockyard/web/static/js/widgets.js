// Small pieces several pages share: state badges, usage bars, tabs, field errors, confirm.

import { h } from "./dom.js";
import { t } from "./i18n.js";

export const STATES = ["ready", "progressing", "degraded", "failed"];

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}`, "data-state": state }, t(`state.${state}`));
}

// amounts like "500m", "1.5", "512Mi", "2Gi" → numbers comparable within one resource
export function amount(value) {
  if (value === null || value === undefined || value === "") return null;
  const m = String(value).match(/^([0-9.]+)\s*([a-zA-Z]*)$/);
  if (!m) return null;
  const n = parseFloat(m[1]);
  const units = { "": 1, m: 1e-3, k: 1e3, K: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4 };
  return m[2] in units ? n * units[m[2]] : null;
}

// `show` writes the amounts for people (bytes as "1.5 GiB", say); by default they are shown as given
export function usageBar(label, used, hard, show = (v) => v) {
  const u = amount(used) ?? 0;
  const cap = amount(hard);
  const share = cap ? Math.min(1, u / cap) : 0;
  const pct = Math.round(share * 100);
  return h("div", { class: "usage", "data-resource": label },
    h("div", { class: "usage-label" }, h("span", {}, label),
      h("span", {}, cap ? t("quota.usedOf", { used: show(used), hard: show(hard) }) : t("quota.usedNoLimit", { used: show(used) }))),
    h("div", { class: "bar", role: "progressbar", "aria-label": label, "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 },
      h("div", { class: `fill ${share > 0.9 ? "hot" : share > 0.7 ? "warm" : ""}`, style: `width:${pct}%` })));
}

// tabs as links, so each tab has its own address
export function tabs(items, active) {
  return h("div", { class: "tabs", role: "tablist" }, items.map(([id, label, href]) =>
    h("a", { href, role: "tab", id: `tab-${id}`, "aria-selected": id === active ? "true" : "false",
      class: id === active ? "active" : "" }, label)));
}

export function errorBox(e) {
  return h("div", { class: "error", role: "alert" }, h("strong", {}, t("error.title")), " ", e.message || String(e));
}

// A form's errors: `show(err)` puts each problem+json field error next to the input named after
// it (data-field="spec.image") and the rest in `box`; `clear()` removes both before a new attempt.
export function formErrors(form, box) {
  const clearFields = () => { for (const el of form.querySelectorAll(".field-error")) el.remove(); };
  return {
    clear() { clearFields(); box.replaceChildren(); },
    show(err) {
      this.clear();
      let shown = 0;
      for (const e of err.errors || []) {
        const input = [...form.querySelectorAll("[data-field]")].find((i) => e.field === i.dataset.field
          || e.field.startsWith(`${i.dataset.field}.`) || e.field.startsWith(`${i.dataset.field}[`));
        if (input) {
          input.closest("label")?.append(h("span", { class: "field-error", role: "alert" }, `${e.field}: ${e.message}`));
          shown += 1;
        }
      }
      // the message once: in the box only when no field shows it (or some error has no field)
      if (shown < Math.max(1, (err.errors || []).length)) box.append(errorBox(err));
    },
  };
}

export function confirmAction(message) {
  return window.confirm(message);
}

export function emptyRow(cols, text) {
  return h("tr", {}, h("td", { colspan: cols, class: "empty" }, text));
}

// js-yaml, loaded when a page first needs it: a missing vendored file breaks that page's YAML
// features with a message, not the whole dashboard
let yamlModule = null;
export async function loadYaml() {
  if (!yamlModule) {
    try {
      yamlModule = (await import("../vendor/js-yaml.mjs")).default;
    } catch {
      throw new Error(t("error.vendorMissing"));
    }
  }
  return yamlModule;
}

// `text` as nodes, each case-insensitive occurrence of `needle` in a <mark> (text nodes only:
// a log line can never become markup)
let marking = { needle: null, pattern: null }; // the last needle's pattern: a table marks one needle
export function highlight(text, needle) {
  const s = String(text ?? "");
  if (!needle) return [s];
  if (marking.needle !== needle) {
    marking = { needle, pattern: new RegExp(`(${needle.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")})`, "gi") };
  }
  // split with a capturing group alternates: text, match, text, match, …
  return s.split(marking.pattern).map((part, i) => (i % 2 ? h("mark", {}, part) : part)).filter((p) => p !== "");
}

// a labelled <select> of [value, text] pairs
export function choice(id, label, options, selected) {
  return h("label", {}, label, h("select", { id, name: id },
    options.map(([value, text]) => h("option", { value, selected: value === selected }, text))));
}

// hand `text` to the browser as a file download
export function saveFile(name, text, type = "text/plain") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// a time from the API (RFC 3339 text or unix seconds) in the user's language, as toLocaleString
// writes it; one formatter per language (making one per call costs more than the whole row)
const timeFormats = new Map();
export function when(value, lang) {
  if (value === null || value === undefined || value === "") return "";
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  if (!timeFormats.has(lang)) {
    timeFormats.set(lang, new Intl.DateTimeFormat(lang, { year: "numeric", month: "numeric", day: "numeric",
      hour: "numeric", minute: "numeric", second: "numeric" }));
  }
  return timeFormats.get(lang).format(d);
}

// A card with an inline form: `onSubmit(FormData)` runs on submit; its API errors are shown next
// to the fields (data-field) or in the card, and the form is cleared when it succeeds.
export function createForm(id, fields, submitLabel, onSubmit, title) {
  const message = h("div");
  const form = h("form", { class: "inline-form", id, onsubmit: async (e) => {
    e.preventDefault();
    const errors = formErrors(form, message);
    errors.clear();
    try {
      await onSubmit(new FormData(form));
      form.reset();
    } catch (err) {
      errors.show(err);
    }
  } }, fields, h("button", { type: "submit", class: "primary" }, submitLabel));
  return h("section", { class: "card" }, title && h("h2", {}, title), form, message);
}

// A button that puts `text` on the clipboard and says so on itself for a moment. The Clipboard
// API needs a secure context (https, or the loopback address a local server has); where it is
// missing the button says it could not, and the text stays selectable beside it.
export function copyButton(text, label) {
  const button = h("button", { type: "button", class: "small copy", "aria-label": label, title: label, "data-copy": text,
    onclick: async () => {
      let done = false;
      try {
        await navigator.clipboard.writeText(text);
        done = true;
      } catch { /* no clipboard here: said on the button */ }
      button.textContent = t(done ? "copy.done" : "copy.failed");
      setTimeout(() => { button.textContent = t("copy.button"); }, 2000);
    } }, t("copy.button"));
  return button;
}

// a table's header row: one column header per label
export function tableHead(labels) {
  return h("thead", {}, h("tr", {}, labels.map((x) => h("th", { scope: "col" }, x))));
}

// a command or address to copy: the text in a <code> and its copy button
export function copyLine(text, label, id) {
  return h("div", { class: "copy-line", id }, h("code", { class: "mono" }, text), copyButton(text, label));
}
