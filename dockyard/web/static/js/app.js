// The dashboard shell: session, language and theme, navigation, and the hash router that
// mounts one page at a time (each page gets an AbortSignal that ends its requests and watches).

import { NAME, api, describeUnreachable, session, whenConnectionChanges, whenUnauthorized } from "./api.js";
import { h, clear } from "./dom.js";
import { LANGUAGES, language, savedLanguage, setLanguage, t } from "./i18n.js";
import { errorBox } from "./widgets.js";
import { loginPage } from "./pages/login.js";
import { overviewPage } from "./pages/overview.js";
import { projectPage } from "./pages/project.js";
import { appPage } from "./pages/app.js";
import { buildPage } from "./pages/builds.js";
import { deployPage } from "./pages/deploy.js";
import { adminPage } from "./pages/admin.js";

const THEME_KEY = "dockyard.theme";
export const NEXT_KEY = "dockyard.next";
const routes = [
  [/^#\/login$/, () => loginPage],
  [/^#\/?$/, () => overviewPage],
  [/^#\/deploy(?:\?.*)?$/, () => deployPage],
  [/^#\/projects\/([^/]+)\/([^/]+)\/deploy(?:\?.*)?$/, () => deployPage],
  [/^#\/projects\/([^/]+)\/([^/]+)\/apps\/([^/]+)(?:\/([a-z]+))?(?:\?.*)?$/, () => appPage],
  [/^#\/projects\/([^/]+)\/([^/]+)\/builds\/([^/]+)(?:\?.*)?$/, () => buildPage],
  [/^#\/projects\/([^/]+)\/([^/]+)(?:\/([a-z]+))?(?:\?.*)?$/, () => projectPage],
  [/^#\/admin(?:\/([a-z]+))?(?:\?.*)?$/, () => adminPage],
];

let pageAbort = null;

export function navigate(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

export function applyTheme(theme) {
  const dark = theme === "dark" || (theme === "system" && matchMedia("(prefers-color-scheme: dark)").matches);
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  localStorage.setItem(THEME_KEY, theme);
}

function theme() { return localStorage.getItem(THEME_KEY) || "system"; }

async function savePreferences() {
  if (!session.token) return;
  try {
    await api("PUT", "/preferences", { language: language(), theme: theme() });
  } catch { /* preferences are a convenience; the local choice already applies */ }
}

export function toast(message, kind = "info") {
  // outside #root: a toast said just before a page change stays visible on the next page
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts", "aria-live": "polite" });
    document.body.append(box);
  }
  const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  box.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

function topbar() {
  const user = session.user;
  const langSelect = h("select", { id: "language", "aria-label": t("nav.language"),
    onchange: async (e) => { await setLanguage(e.target.value); await savePreferences(); render(); } },
    Object.entries(LANGUAGES).map(([code, name]) => h("option", { value: code, selected: code === language() }, name)));
  const themeButton = h("button", { id: "theme", class: "ghost", type: "button",
    title: t("nav.theme"), "aria-label": t("nav.theme"),
    onclick: async () => {
      const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
      applyTheme(next);
      await savePreferences();
    } }, t("nav.theme"));
  const nav = h("nav", { "aria-label": t("nav.main") },
    h("a", { href: "#/", class: "brand" }, "⚓ Dockyard"),
    user && h("a", { href: "#/" }, t("nav.overview")),
    user && h("a", { href: "#/deploy", id: "nav-deploy" }, t("nav.deploy")),
    user?.admin && h("a", { href: "#/admin/users", id: "nav-admin" }, t("nav.admin")));
  const right = h("div", { class: "right" }, langSelect, themeButton,
    user && h("span", { class: "who", id: "who" }, user.name),
    user && h("button", { id: "logout", class: "ghost", type: "button", onclick: logout }, t("nav.logout")));
  return h("header", { class: "topbar" }, nav, right);
}

async function logout() {
  try { await api("POST", "/logout"); } catch { /* the token may already be gone */ }
  session.clear();
  navigate("#/login");
}

export async function afterLogin(result) {
  session.save(result.token, result.user);
  try {
    const prefs = await api("GET", "/preferences");
    if (prefs.language && prefs.language !== language()) await setLanguage(prefs.language);
    if (prefs.theme) applyTheme(prefs.theme);
  } catch { /* keep the local choices */ }
}

async function render() {
  pageAbort?.abort();
  pageAbort = new AbortController();
  const hash = location.hash || "#/";
  if (!session.token && hash !== "#/login") {
    sessionStorage.setItem(NEXT_KEY, hash); // back here after logging in
    navigate("#/login");
    return;
  }
  let page = null;
  let params = [];
  for (const [pattern, get] of routes) {
    const m = hash.match(pattern);
    if (m) {
      try {
        params = m.slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
      } catch {
        break; // a broken %-escape: no such page
      }
      // every part of an address is a name or a tab; anything else ("..%2Fprod") names no page
      if (params.every((p) => p === undefined || NAME.test(p))) page = get();
      break;
    }
  }
  const main = h("main", { id: "main", tabindex: "-1" });
  clear(document.getElementById("root"), topbar(), main);
  if (!page) {
    main.append(h("section", { class: "card" }, h("h1", {}, t("error.notFoundPage")),
      h("p", {}, h("a", { href: "#/" }, t("nav.overview")))));
    return;
  }
  try {
    await page(main, params, pageAbort.signal);
  } catch (e) {
    if (e.name === "AbortError") return;
    main.append(errorBox(e));
  }
}


describeUnreachable(() => t("error.unreachable"));

// while the server cannot be reached, say so above the page (the watches keep retrying)
whenConnectionChanges((ok) => {
  document.getElementById("offline")?.remove();
  if (!ok) document.body.prepend(h("div", { id: "offline", class: "offline", role: "alert" }, t("error.offline")));
});

whenUnauthorized(() => {
  session.clear();
  if (location.hash !== "#/login") navigate("#/login");
});

(async () => {
  applyTheme(theme());
  await setLanguage(savedLanguage());
  window.addEventListener("hashchange", render);
  await render();
})();
