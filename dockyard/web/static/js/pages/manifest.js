// The App as YAML: edit and save; the API's validation errors appear under the editor with
// the line each field is on.

import { api } from "../api.js";
import { h, clear } from "../dom.js";
import { t } from "../i18n.js";
import { toast } from "../app.js";
import { loadYaml } from "../widgets.js";

// the parts of a stored object a user edits (status and server-set metadata left out)
export function editable(obj) {
  const meta = { name: obj.metadata.name, project: obj.metadata.project, resourceVersion: obj.metadata.resourceVersion };
  if (obj.metadata.labels && Object.keys(obj.metadata.labels).length) meta.labels = obj.metadata.labels;
  if (obj.metadata.annotations && Object.keys(obj.metadata.annotations).length) meta.annotations = obj.metadata.annotations;
  return { apiVersion: obj.apiVersion, kind: obj.kind, metadata: meta, spec: obj.spec };
}

// the 1-based line of a field path like "spec.resources.memory" or "spec.ports[0].port" in YAML text
export function lineOf(text, field) {
  const parts = String(field).replace(/\[(\d+)\]/g, ".$1").split(".").filter(Boolean);
  const lines = text.split("\n");
  let from = 0;
  let indent = -1;
  let found = 0;
  for (const part of parts) {
    let hit = -1;
    let index = -1;
    for (let i = from; i < lines.length; i++) {
      const line = lines[i];
      if (!line.trim() || line.trim().startsWith("#")) continue;
      const ind = line.length - line.trimStart().length;
      if (i > from && ind <= indent && found) break;
      const body = line.trim().replace(/^- /, "");
      if (/^\d+$/.test(part)) {
        if (line.trimStart().startsWith("- ") && ind > indent) {
          index += 1;
          if (index === Number(part)) { hit = i; indent = ind; break; }
        }
      } else if (ind > indent && (body.startsWith(`${part}:`) || body.startsWith(`"${part}":`))) {
        hit = i;
        indent = ind + (line.trimStart().startsWith("- ") ? 2 : 0);
        break;
      }
    }
    if (hit < 0) break;
    found = hit + 1;
    from = hit;
  }
  return found || null;
}

export async function manifestEditor(body, ctx) {
  const yaml = await loadYaml();
  const text = yaml.dump(editable(ctx.app), { lineWidth: 120, noRefs: true });
  const editor = h("textarea", { id: "manifest", class: "code", rows: 28, spellcheck: "false", wrap: "off",
    "aria-label": t("app.manifest"), "aria-describedby": "manifest-errors", readonly: !ctx.canWrite }, text);
  // line numbers beside the text; lines with an error are marked there, with the message as title
  const gutter = h("pre", { class: "gutter", id: "manifest-gutter", "aria-hidden": "true" });
  const marks = new Map();
  function drawGutter() {
    const n = editor.value.split("\n").length;
    clear(gutter, Array.from({ length: n }, (_, i) => {
      const msg = marks.get(i + 1);
      return h("span", msg ? { class: "err", title: msg, "data-line": i + 1 } : {}, `${i + 1}\n`);
    }));
    gutter.scrollTop = editor.scrollTop;
  }
  editor.addEventListener("input", () => { marks.clear(); drawGutter(); });
  editor.addEventListener("scroll", () => { gutter.scrollTop = editor.scrollTop; });
  const problems = h("ul", { class: "problems", id: "manifest-errors", role: "alert" });
  async function save(dryRun) {
    clear(problems);
    marks.clear();
    let doc;
    try {
      doc = yaml.load(editor.value);
    } catch (e) {
      const line = (e.mark?.line ?? 0) + 1;
      marks.set(line, e.reason || e.message);
      drawGutter();
      problems.append(h("li", {}, t("manifest.yamlError", { line, message: e.reason || e.message })));
      return;
    }
    try {
      const saved = await api("PUT", ctx.path, doc, { query: dryRun ? { dryRun: "true" } : undefined });
      toast(dryRun ? t("manifest.valid") : t("manifest.saved"));
      if (!dryRun) editor.value = yaml.dump(editable(saved), { lineWidth: 120, noRefs: true });
    } catch (err) {
      if (err.status === 409) {
        problems.append(h("li", { class: "summary" }, t("manifest.conflict"), " ",
          h("button", { type: "button", class: "link", id: "manifest-reload", onclick: async () => {
            try {
              const fresh = await api("GET", ctx.path);
              editor.value = yaml.dump(editable(fresh), { lineWidth: 120, noRefs: true });
              clear(problems);
              marks.clear();
              drawGutter();
            } catch (e) { toast(e.message, "error"); }
          } }, t("manifest.reload"))));
        return;
      }
      if (!err.errors.length) problems.append(h("li", { class: "summary" }, err.message));
      for (const e of err.errors) {
        const line = lineOf(editor.value, e.field);
        if (line) marks.set(line, `${e.field}: ${e.message}`);
        problems.append(h("li", { "data-field": e.field }, line ? h("button", { type: "button", class: "link", onclick: () => goto(editor, line) },
          t("manifest.line", { line })) : null, ` ${e.field}: ${e.message}`));
      }
      if (err.errors.length && marks.size) goto(editor, Math.min(...marks.keys()));
    }
    drawGutter();
  }
  body.append(h("section", { class: "card" }, h("div", { class: "editor" }, gutter, editor), problems,
    ctx.canWrite && h("div", { class: "actions" },
      h("button", { type: "button", id: "manifest-validate", onclick: () => save(true) }, t("manifest.validate")),
      h("button", { type: "button", class: "primary", id: "manifest-save", onclick: () => save(false) }, t("manifest.save")))));
  drawGutter();
}

function goto(textarea, line) {
  const lines = textarea.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  textarea.focus();
  textarea.setSelectionRange(start, start + (lines[line - 1] || "").length);
  const lineHeight = parseFloat(getComputedStyle(textarea).lineHeight) || 18;
  textarea.scrollTop = Math.max(0, (line - 5) * lineHeight);
}
