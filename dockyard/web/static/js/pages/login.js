import { api, session } from "../api.js";
import { h } from "../dom.js";
import { t } from "../i18n.js";
import { NEXT_KEY, afterLogin, navigate } from "../app.js";
import { errorBox } from "../widgets.js";

export async function loginPage(main) {
  if (session.token) { navigate("#/"); return; }
  const message = h("div", { id: "login-message" });
  const form = h("form", { class: "card narrow", id: "login-form", onsubmit: async (e) => {
    e.preventDefault();
    message.replaceChildren();
    const data = new FormData(form);
    try {
      const result = await api("POST", "/login", { username: data.get("username"), password: data.get("password") });
      await afterLogin(result);
      const next = sessionStorage.getItem(NEXT_KEY);
      sessionStorage.removeItem(NEXT_KEY);
      navigate(next && next.startsWith("#/") && next !== "#/login" ? next : "#/");
    } catch (err) {
      message.append(errorBox(err));
    }
  } },
  h("h1", {}, t("login.title")),
  h("label", {}, t("login.username"), h("input", { name: "username", id: "username", autocomplete: "username", required: true })),
  h("label", {}, t("login.password"), h("input", { name: "password", id: "password", type: "password",
    autocomplete: "current-password", required: true })),
  message,
  h("button", { type: "submit", class: "primary" }, t("login.submit")));
  main.append(form);
  form.querySelector("input").focus();
}
