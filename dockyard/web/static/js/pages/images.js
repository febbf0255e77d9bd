// Images tab: the project's repositories in Dockyard's registry and, for the one picked
// (`?repo=NAME`), its tags with digest, size and who pushed them; the docker pull/push lines for
// the registry's host, storage used against the quota, the retention rules, and robot accounts.
// Delete and the robots show only to roles that may use them (…/rights); the API checks anyway.

import { api, seg } from "../api.js";
import { h, clear } from "../dom.js";
import { language, t } from "../i18n.js";
import { navigate, toast } from "../app.js";
import { formatValue } from "../chart.js";
import { choice, confirmAction, copyButton, copyLine, createForm, emptyRow, errorBox, tableHead, usageBar, when } from "../widgets.js";

// a repository name in the project (the distribution grammar: components joined by "/"), and a
// tag: checked before they go into an API path, as `seg` does for names (no "..", no "?")
const COMPONENT = "[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*";
const REPOSITORY = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const ROBOT_EXPIRY = ["1d", "7d", "30d", "90d", "365d", "never"];

const bytes = (v) => formatValue(v === null || v === undefined ? null : Number(v), "bytes");

// "sha256:0123456789ab" — enough to tell digests apart on a page; the copy button gives the whole
export function shortDigest(digest) {
  return digest ? digest.slice(0, 19) : "";
}

export async function projectImagesTab(ctx) {
  const { tenant, project, signal, body } = ctx;
  const info = await api("GET", "/registry", undefined, { signal });
  if (!info.enabled) {
    body.append(h("p", { class: "card muted", id: "no-registry" }, t("images.noRegistry")));
    return;
  }
  const base = seg`/projects/${tenant}/${project}`;
  const wanted = repositoryName(new URLSearchParams(location.hash.split("?")[1] || "").get("repo"), info.host, tenant, project);
  const repo = wanted && REPOSITORY.test(wanted) ? wanted : null;
  const [registry, images] = await Promise.all([
    api("GET", `${base}/registry`, undefined, { signal }),
    api("GET", `${base}/images`, undefined, { signal }),
  ]);
  // the list holds every repository with a tag: one not in it is not asked for (a 404 otherwise)
  const known = repo && images.items.some((r) => r.name === repo);
  body.append(h("div", { class: "grid2" }, storageCard(registry, base, signal),
    commandsCard(info.host, registry.prefix, known ? repo : null, !!ctx.rights.allowed["images.push"])));
  body.append(repositoriesCard(ctx, images.items, repo));
  if (wanted && !repo) body.append(errorBox(new Error(t("images.badRepo", { name: wanted.slice(0, 80) }))));
  if (repo && !known) body.append(errorBox(new Error(t("images.noRepo", { name: repo, project: `${tenant}/${project}` }))));
  if (known) body.append(await tagsCard(ctx, repo));
  if (ctx.rights.allowed["robots.manage"]) body.append(...await robotsCards(ctx, info.host));
}

// `?repo=` as a name in the project: the full path the CLI prints ("acme/shop/web") and the image
// reference ("127.0.0.1:5000/acme/shop/web") lose their project prefix
export function repositoryName(wanted, host, tenant, project) {
  if (!wanted) return wanted;
  for (const prefix of [`${host}/${tenant}/${project}/`, `${tenant}/${project}/`]) {
    if (wanted.startsWith(prefix)) return wanted.slice(prefix.length);
  }
  return wanted;
}

function storageCard(registry, base, signal) {
  const u = registry.usage || {};
  const rules = registry.retention || [];
  const preview = h("div", { id: "retention-preview", role: "status" });
  // what the rules would delete now (a dry run: anyone who may pull may ask; nothing is deleted)
  async function dryRun() {
    try {
      const r = await api("POST", `${base}/registry/retention`, undefined, { signal, query: { dryRun: "1" } });
      const ref = (v) => `${v.repository.split("/").slice(2).join("/")}:${v.tag}`;
      clear(preview, r.wouldDelete.length
        ? h("ul", { class: "problems" }, r.wouldDelete.map((v) => h("li", { class: "warn", "data-would-delete": ref(v) },
          t("images.wouldDelete", { ref: ref(v), reason: v.reason }))))
        : h("p", { class: "muted" }, t("images.nothingToDelete")),
      r.protected.length > 0 && h("p", { class: "muted" }, t("images.protected", { refs: r.protected.map(ref).join(", ") })));
    } catch (e) { clear(preview, errorBox(e)); }
  }
  return h("section", { class: "card", id: "registry-usage" }, h("h2", {}, t("images.storage")),
    u.bytes === null || u.bytes === undefined ? h("p", { class: "muted" }, t("images.usageUnknown"))
      : usageBar(t("images.storageUsed"), u.bytes, u.quotaBytes ?? null, bytes),
    h("h3", {}, t("images.retention")),
    rules.length ? [h("ul", { id: "retention-rules" }, rules.map((r) => h("li", { class: "mono" }, retentionText(r)))),
      h("button", { type: "button", class: "small", id: "retention-dry-run", onclick: dryRun }, t("images.retentionDryRun")), preview]
      : h("p", { class: "muted", id: "retention-rules" }, t("images.noRetention")));
}

// "web · v* · keep last 5 · keep 30 days"
function retentionText(r) {
  return [t("images.ruleRepos", { glob: r.repositories || "*" }), t("images.ruleTags", { glob: r.tags || "*" }),
    r.keepLast !== undefined && r.keepLast !== null && t("images.keepLast", { n: r.keepLast }),
    r.keepDays !== undefined && r.keepDays !== null && t("images.keepDays", { n: r.keepDays })].filter(Boolean).join(" · ");
}

// the docker lines for this project; tag and push only to roles that may push (images.push)
function commandsCard(host, prefix, repo, canPush) {
  const image = `${prefix}${repo || "NAME"}`;
  return h("section", { class: "card stack", id: "registry-commands" }, h("h2", {}, t(canPush ? "images.commands" : "images.commandsPull")),
    h("p", { class: "muted" }, t(canPush ? "images.commandsHelp" : "images.commandsHelpPull", { host })),
    copyLine(`docker login ${host}`, t("images.copyLogin"), "cmd-login"),
    canPush && copyLine(`docker tag IMAGE ${image}:TAG`, t("images.copyTag"), "cmd-tag"),
    canPush && copyLine(`docker push ${image}:TAG`, t("images.copyPush"), "cmd-push"),
    copyLine(`docker pull ${image}:TAG`, t("images.copyPull"), "cmd-pull"));
}

function repositoriesCard({ tenant, project }, items, picked) {
  const link = (name) => `#/projects/${tenant}/${project}/images?repo=${encodeURIComponent(name)}`;
  return h("section", { class: "card" }, h("h2", {}, t("images.repositories")),
    h("table", { class: "data", id: "repositories", "data-loaded": "true" },
      tableHead([t("col.name"), t("images.tags"), t("images.size"), t("images.lastPush")]),
      h("tbody", {}, items.length ? items.map((r) => h("tr", { "data-repo": r.name, class: r.name === picked ? "current" : "" },
        h("td", {}, h("a", { href: link(r.name), "aria-current": r.name === picked ? "page" : null }, r.name)),
        h("td", { class: "num" }, String(r.tagCount)), h("td", { class: "num" }, bytes(r.size)),
        h("td", { class: "num", title: r.lastPush || "" }, r.lastPush ? when(r.lastPush, language()) : "—")))
        : emptyRow(4, t("images.noRepositories")))));
}

async function tagsCard({ tenant, project, rights, signal }, repo) {
  const path = `${seg`/projects/${tenant}/${project}`}/images/${repo}/tags`;
  const canDelete = !!rights.allowed["images.delete"];
  const tbody = h("tbody");
  const message = h("div");
  const section = h("section", { class: "card", id: "repository" });
  async function load() {
    let data;
    try {
      data = await api("GET", path, undefined, { signal });
    } catch (e) {
      if (e.status !== 404) throw e;
      data = { image: null, items: [] }; // its last tag went
    }
    clear(section, h("h2", {}, t("images.tagsOf", { name: repo })),
      data.image && copyLine(`docker pull ${data.image}:${data.items[0]?.tag || "TAG"}`, t("images.copyPull"), "repo-pull"),
      message, table);
    clear(tbody, data.items.length ? data.items.map((x) => h("tr", { "data-tag": x.tag },
      h("td", { class: "mono" }, x.tag),
      h("td", { class: "mono digest" }, h("span", { title: x.digest }, shortDigest(x.digest)), " ",
        copyButton(x.digest, t("images.copyDigest", { tag: x.tag }))),
      h("td", { class: "num" }, bytes(x.size)),
      h("td", { class: "num", title: x.pushedAt || "" }, x.pushedAt ? when(x.pushedAt, language()) : "—"),
      h("td", { class: "pushed-by" }, x.pushedBy || "—"),
      h("td", {}, (x.apps || []).join(", ")),
      h("td", { class: "actions-cell" }, canDelete && h("button", { type: "button", class: "small danger", "data-delete-tag": x.tag,
        onclick: () => remove(x.tag) }, t("images.deleteTag")))))
      : emptyRow(7, t("images.noTags")));
    table.dataset.loaded = "true";
  }
  async function remove(tag) {
    if (!TAG.test(tag) || !confirmAction(t("images.confirmDelete", { ref: `${repo}:${tag}` }))) return;
    message.replaceChildren();
    try {
      await api("DELETE", `${seg`/projects/${tenant}/${project}`}/images/${repo}/tags/${tag}`);
      toast(t("images.tagDeleted", { ref: `${repo}:${tag}` }));
      navigate(location.hash); // the whole tab again: the repository's tag count and size changed too
    } catch (e) { message.append(errorBox(e)); }
  }
  const table = h("table", { class: "data", id: "tags" },
    tableHead([t("images.tag"), t("images.digest"), t("images.size"), t("images.pushedAt"), t("images.pushedBy"), t("images.usedBy"), ""]),
    tbody);
  await load();
  return section;
}

// Robots: accounts that log in to the registry only; the secret is shown once, when made.
async function robotsCards({ tenant, project, signal }, host) {
  const path = seg`/tenants/${tenant}/projects/${project}/robots`;
  const tbody = h("tbody");
  const message = h("div");
  const secretBox = h("div", { id: "robot-secret", role: "status" });
  async function load() {
    const data = await api("GET", path, undefined, { signal });
    clear(tbody, data.items.length ? data.items.map((r) => h("tr", { "data-robot": r.name },
      h("td", {}, r.name), h("td", { class: "mono" }, r.username), h("td", {}, t(`robots.access.${r.access}`)),
      h("td", {}, h("span", { class: `badge robot-${robotState(r)}` }, t(`robots.state.${robotState(r)}`))),
      h("td", { class: "num", title: r.expiresAt || "" }, r.expiresAt ? when(r.expiresAt, language()) : t("robots.never")),
      h("td", { class: "num" }, r.lastUsedAt ? when(r.lastUsedAt, language()) : "—"),
      h("td", { class: "actions-cell" },
        h("button", { type: "button", class: "small", "data-toggle-robot": r.name, onclick: () => change(r.name, "PATCH", { disabled: !r.disabled }) },
          t(r.disabled ? "robots.enable" : "robots.disable")),
        h("button", { type: "button", class: "small danger", "data-delete-robot": r.name, onclick: () => {
          if (confirmAction(t("robots.confirmDelete", { name: r.username }))) change(r.name, "DELETE");
        } }, t("robots.delete")))))
      : emptyRow(7, t("robots.none")));
    tbody.closest("table").dataset.loaded = "true";
  }
  async function change(name, method, payload) {
    message.replaceChildren();
    try {
      await api(method, `${path}/${seg`${name}`}`, payload);
      await load();
    } catch (e) { message.append(errorBox(e)); }
  }
  const form = createForm("robot-form", [
    h("label", {}, t("col.name"), h("input", { name: "name", id: "robot-name", required: true, maxlength: 63, "data-field": "name" })),
    choice("robot-access", t("robots.accessLabel"), ["pull", "push"].map((a) => [a, t(`robots.access.${a}`)]), "pull"),
    choice("robot-expires", t("robots.expires"), ROBOT_EXPIRY.map((d) => [d, t(`robots.expiry.${d}`)]), "30d"),
  ], t("robots.create"), async (d) => {
    const expires = d.get("robot-expires");
    const made = await api("POST", path, { name: String(d.get("name")).trim(), access: d.get("robot-access"),
      expires: expires === "never" ? null : expires });
    showSecret(made);
    await load();
  }, t("robots.new"));
  function showSecret(made) {
    clear(secretBox, h("div", { class: "card secret-once" },
      h("h3", {}, t("robots.secretTitle", { name: made.username })),
      h("p", {}, h("strong", {}, t("robots.secretOnce"))),
      copyLine(made.secret, t("robots.copySecret"), "robot-secret-value"),
      copyLine(`docker login -u '${made.username}' --password-stdin ${host}`, t("images.copyLogin"), "robot-login"),
      h("button", { type: "button", class: "small", onclick: () => secretBox.replaceChildren() }, t("robots.hideSecret"))));
  }
  const list = h("section", { class: "card", id: "robots-card" }, h("h2", {}, t("robots.title")),
    h("p", { class: "muted" }, t("robots.help")), message, secretBox,
    h("table", { class: "data", id: "robots" }, tableHead([t("col.name"), t("robots.username"), t("robots.accessLabel"), t("col.state"),
      t("robots.expires"), t("robots.lastUsed"), ""]), tbody));
  await load();
  return [list, form];
}

function robotState(r) {
  return r.disabled ? "disabled" : r.expired ? "expired" : "active";
}
