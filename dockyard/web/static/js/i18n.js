// Translations: every visible string is a key in i18n/en.json and i18n/zh-CN.json (a test keeps
// the two in step and checks that every key the code uses exists).

export const LANGUAGES = { en: "English", "zh-CN": "简体中文" };
const LANG_KEY = "dockyard.language";
let current = "en";
let strings = {};
let fallback = {};

async function load(lang) {
  const resp = await fetch(`/ui/i18n/${lang}.json`);
  return resp.ok ? resp.json() : {};
}

export async function setLanguage(lang) {
  if (!LANGUAGES[lang]) lang = "en";
  if (!Object.keys(fallback).length) fallback = await load("en");
  strings = lang === "en" ? fallback : await load(lang);
  current = lang;
  localStorage.setItem(LANG_KEY, lang);
  document.documentElement.lang = lang;
}

export function language() { return current; }
export function savedLanguage() { return localStorage.getItem(LANG_KEY) || (navigator.language?.startsWith("zh") ? "zh-CN" : "en"); }

// the string of `key` with each {name} replaced by vars[name]
export function t(key, vars) {
  let s = strings[key] ?? fallback[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}
