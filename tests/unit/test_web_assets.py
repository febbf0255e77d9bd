"""The dashboard's translations and pinned assets, checked without a browser: every string the
code asks for exists in English and Chinese with the same placeholders, and every front-end
library is pinned to one exact version."""

from __future__ import annotations

import json
import re
from typing import Literal, get_args, get_origin

from dockyard.model.alerts import METRICS as ALERT_METRICS
from dockyard.model.alerts import AlertRuleSpec, NotifierSpec
from dockyard.model.app import app_state
from dockyard.model.build import PHASES as BUILD_PHASES
from dockyard.policy.permissions import ROLES
from dockyard.policy.quota import RESOURCES
from dockyard.web import STATIC, VENDOR

I18N = STATIC / "i18n"
JS = list((STATIC / "js").rglob("*.js"))


def _dict(lang: str) -> dict[str, str]:
    return json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))


def test_english_and_chinese_have_the_same_keys_and_placeholders() -> None:
    en, zh = _dict("en"), _dict("zh-CN")
    assert set(en) == set(zh), set(en) ^ set(zh)
    for key in en:
        assert en[key].strip() and zh[key].strip(), key
        assert set(re.findall(r"\{\w+\}", en[key])) == set(re.findall(r"\{\w+\}", zh[key])), key


def test_chinese_strings_are_translated() -> None:
    en, zh = _dict("en"), _dict("zh-CN")
    # only names that read the same in both languages may stay as they are
    same = {k for k in en if en[k] == zh[k]}
    assert same <= {"quota.cpu"}, same
    cjk = re.compile(r"[\u4e00-\u9fff]")
    untranslated = [k for k in zh if not cjk.search(zh[k]) and k not in same and not re.fullmatch(r"[{}\w\s/·:]+", zh[k])]
    assert not untranslated, untranslated


def test_every_key_the_code_uses_exists() -> None:
    en = _dict("en")
    used = set()
    for f in JS:
        used |= set(re.findall(r'\bt\("([^"]+)"', f.read_text(encoding="utf-8")))
    assert len(used) > 150, "the scan found the calls"
    assert sorted(used - set(en)) == []


def test_keys_built_at_run_time_exist() -> None:
    en = _dict("en")
    for role in ROLES:
        assert f"role.{role}" in en
    for resource in RESOURCES:
        assert f"quota.{resource}" in en
    for state in ("ready", "progressing", "degraded", "failed"):
        assert f"state.{state}" in en
    for health in ("healthy", "unhealthy", "starting"):
        assert f"health.{health}" in en
    for r in ("15m", "1h", "6h", "24h", "7d"):  # pages/metrics.js RANGES
        assert f"metrics.last.{r}" in en
    for phase in BUILD_PHASES:  # pages/builds.js phaseBadge
        assert f"builds.phase.{phase}" in en
    for key in ("access.pull", "access.push", "state.active", "state.disabled", "state.expired",
                "expiry.1d", "expiry.7d", "expiry.30d", "expiry.90d", "expiry.365d", "expiry.never"):  # pages/images.js
        assert f"robots.{key}" in en


def test_front_end_libraries_are_pinned_and_served_from_the_lock() -> None:
    pkg = json.loads((STATIC.parent / "package.json").read_text())
    lock = json.loads((STATIC.parent / "package-lock.json").read_text())
    for name, version in pkg["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} must be pinned exactly, not {version}"
        locked = lock["packages"][f"node_modules/{name}"]
        assert locked["version"] == version and locked["integrity"].startswith("sha512-"), name
    served = {rel.split("/")[0] if not rel.startswith("@") else "/".join(rel.split("/")[:2]) for rel in VENDOR.values()}
    assert served <= set(pkg["dependencies"]), served


def test_pages_load_no_script_from_elsewhere() -> None:
    html = (STATIC / "index.html").read_text()
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert src.startswith("/ui/") or src.startswith("data:"), src
    for f in JS:
        for imp in re.findall(r'from\s+"([^"]+)"', f.read_text()):
            assert imp.startswith("."), f"{f.name} imports {imp}"
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML", f.read_text()), f"{f.name}: build nodes with h()"


def test_the_app_page_derives_the_same_state_as_the_server() -> None:
    """pages/app.js:stateOf repeats model/app.py:app_state for watch events: they must agree."""
    src = (STATIC / "js" / "pages" / "app.js").read_text()
    body = src[src.index("function stateOf(app) {"):]
    body = body[:body.index("\n}\n")]
    rules: list[tuple[set[str], str]] = []
    for cond, state in re.findall(r"if \((.+?)\) return \"(\w+)\";", body):
        rules.append((set(re.findall(r'phase === "(\w+)"', cond)), state))
    default = re.findall(r'return "(\w+)";\s*$', body)[-1]
    assert len(rules) == 3, body

    def js_state(phase: str | None) -> str:
        return next((state for phases, state in rules if phase in phases), default)

    for phase in ("Ready", "Degraded", "Stalled", "Failed", "Pending", "Progressing", None):
        status = {"phase": phase} if phase else {}
        assert js_state(phase) == app_state(status), phase


def _literals(annotation: object) -> list[str]:
    """The values of a Literal, also inside `Literal[...] | None`."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [v for a in get_args(annotation) for v in _literals(a)]


def test_alerts_page_offers_what_the_model_takes_and_translates_it() -> None:
    js = (STATIC / "js" / "pages" / "alerts.js").read_text(encoding="utf-8")

    def js_names(const: str) -> list[str]:
        body = re.search(rf"const {const} = [\[{{]([^\]}}]*)[\]}}]", js)
        assert body, const
        return re.findall(r'"([^"]+)"', body.group(1))

    metrics, conditions, types = js_names("METRICS"), js_names("CONDITIONS"), js_names("NOTIFIER_TYPES")
    assert metrics == list(ALERT_METRICS)
    assert set(conditions) < set(_literals(AlertRuleSpec.model_fields["condition"].annotation))  # quota: YAML only
    assert sorted(types) == sorted(_literals(NotifierSpec.model_fields["type"].annotation))
    en = _dict("en")
    keys = [f"alerts.what.{m}" for m in metrics + conditions] + [f"alerts.type.{x}" for x in types]
    keys += [f"alerts.state.{s}" for s in js_names("ALERT_STATES")]
    keys += [f"alerts.duration.{d}" for d in re.findall(r'"(\w+)":', re.search(r"SILENCE_FOR = \{([^}]*)\}", js).group(1))]
    keys += [f"nodes.status.{s}" for s in ("ready", "down", "unknown")]  # engines/base.py NodeInfo.status
    assert [k for k in keys if k not in en] == []
