"""The dashboard's observability pages in Debian's Chromium against a real server and engine: a
line a replica wrote is found by the log search and marked; the live tail shows a new line
without a reload; the events timeline shows a scale as it happens; an alert rule made in the page
shows its state and can be silenced; a viewer is offered no create or silence buttons; the
project's CPU and memory charts have a line per app. Screenshots go to tests/e2e/artifacts/."""

from __future__ import annotations

import re

import httpx
import pytest
from conftest import open_login
from loopback_peers import Receiver
from playwright.sync_api import expect
from test_dashboard_a11y import _violations

pytestmark = pytest.mark.engine

PW = "observe-password-1"
LONG = 90_000  # ms: containers start on a 2-core machine that may be busy
NEEDLE = "needle-7f3a"  # the app's VERSION: its first log line is "demo needle-7f3a starting on :8080"


def _setup(server, replicas: int = 1) -> None:  # noqa: ANN001
    with server.client() as c:
        c.post("/tenants", json={"kind": "Tenant", "metadata": {"name": "acme"}}).raise_for_status()
        c.post("/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": "acme"}}).raise_for_status()
        for user in ("olivia", "vera"):
            c.post("/users", json={"name": user, "password": PW}).raise_for_status()
        c.post("/projects/acme/shop/members", json={"user": "olivia", "role": "owner"}).raise_for_status()
        c.post("/projects/acme/shop/members", json={"user": "vera", "role": "viewer"}).raise_for_status()
        c.post("/projects/acme/shop/apps", json={"kind": "App", "metadata": {"name": "web"}, "spec": {
            "image": "dockyard/demo:1.0", "replicas": replicas, "ports": [{"containerPort": 8080}],
            "env": [{"name": "VERSION", "value": NEEDLE}], "resources": {"memory": "64Mi"}}}).raise_for_status()
    server.wait_for(lambda: (server.client().get("/projects/acme/shop/apps/web").json().get("status") or {})
                    .get("readyReplicas") == replicas, timeout=90, what="web ready")


def _axe(browser, url: str, pages: dict) -> list[str]:  # noqa: ANN001
    """Serious or critical axe findings on each page (hash → a selector to wait for, or a function
    that brings the page into the state to check), as olivia, in the light and the dark theme."""
    found = []
    for theme in ("light", "dark"):
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)  # axe is injected
        ctx.add_init_script(f"localStorage.setItem('dockyard.theme', '{theme}')")
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        open_login(page, url)  # loaded again if a container's network dropped its requests
        page.fill("#username", "olivia")
        page.fill("#password", PW)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#who")
        for hash_, ready in pages.items():
            page.goto(f"{url}/{hash_}")
            page.wait_for_selector(ready) if isinstance(ready, str) else ready(page)
            found += [f"{theme} {hash_}: {v}" for v in _violations(page)]
        ctx.close()
    return found


def _owner(server, browsing):  # noqa: ANN001, ANN202
    """The project set up, and its owner logged in: (Browsing, page)."""
    _setup(server)
    b = browsing(server.url)
    b.login("olivia", PW)
    return b, b.page


def test_log_search_marks_a_replica_line_and_the_tail_follows(server, browsing) -> None:  # noqa: ANN001
    b, page = _owner(server, browsing)
    b.go("#/projects/acme/shop/logs")
    expect(page.locator("#logs-results[data-loaded='true']")).to_have_count(1)
    page.fill("#logs-grep", NEEDLE.upper())  # the search ignores case; the mark keeps the line's own case
    # the collector stores a line within seconds: search again until it is there (the issue asks ≤ 5 s)
    found = page.locator("#logs-results tbody tr[data-app='web'] mark")
    for _ in range(10):
        page.click("#logs-search")
        page.wait_for_timeout(1000)
        if found.count():
            break
    expect(found.first).to_have_text(NEEDLE)
    row = page.locator("#logs-results tbody tr[data-app='web']").first
    expect(row).to_contain_text(f"demo {NEEDLE} starting on :8080")
    expect(page.locator("#logs-status")).to_contain_text("Lines found: 1.")
    b.shot("project-logs-search")

    # live tail with a filter: a request made after the stream opened shows as a new row, no reload
    page.evaluate("window.__sameDocument = 'yes'")
    page.fill("#logs-grep", "response:404")
    page.check("#logs-tail")
    expect(page.locator("#logs-status")).to_contain_text("Following every app")  # it asks the store every 2 s
    ip = server.client().get("/projects/acme/shop/apps/web").json()["status"]["containers"][0]["ip"]
    httpx.get(f"http://{ip}:8080/tail-was-here", timeout=5)  # the demo server logs "response:404"
    tailed = page.locator("#logs-results tbody tr mark", has_text="response:404")
    expect(tailed.last).to_be_visible(timeout=15_000)
    page.wait_for_timeout(2500)  # another round of asking: the line is not added twice
    expect(tailed).to_have_count(1)
    assert page.evaluate("window.__sameDocument") == "yes"
    assert NEEDLE not in page.inner_text("#logs-results tbody"), "the tail keeps to its filter"
    b.shot("project-logs-tail")

    # export: the same search as NDJSON, one JSON object per line
    page.uncheck("#logs-tail")
    expect(page.locator("#logs-status")).to_have_text("Live tail stopped.")
    page.fill("#logs-grep", NEEDLE)
    with page.expect_download() as dl:
        page.click("#logs-export")
    lines = [x for x in open(dl.value.path(), encoding="utf-8").read().splitlines() if x]
    assert lines and all(NEEDLE in x and x.startswith("{") for x in lines), lines

    # the app page's logs tab has the same search for that app alone; its tail is the app's stream
    b.go("#/projects/acme/shop/apps/web/logs?mode=search")
    expect(page.locator("#logs-mode-search")).to_have_attribute("aria-current", "page")
    expect(page.locator("#logs-app")).to_have_count(0)
    page.fill("#logs-grep", "starting")
    page.click("#logs-search")
    expect(page.locator("#logs-results tbody mark").first).to_have_text("starting")
    page.fill("#logs-grep", "RESPONSE:")
    page.check("#logs-tail")
    expect(page.locator("#logs-status")).to_contain_text("Following web live")
    before = page.locator("#logs-results tbody tr mark").count()
    page.wait_for_timeout(1500)  # the follow stream is open
    httpx.get(f"http://{ip}:8080/streamed", timeout=5)
    expect(page.locator("#logs-results tbody tr mark")).to_have_count(before + 1, timeout=15_000)
    # the server notices a follow stream's client has gone only at the stream's next line (until
    # then it holds a thread that delays its own shutdown): give it one
    page.uncheck("#logs-tail")
    page.wait_for_timeout(500)
    httpx.get(f"http://{ip}:8080/after-the-stream", timeout=5)


def test_events_alerts_and_charts_for_an_owner(server, browsing, browser) -> None:  # noqa: ANN001
    b, page = _owner(server, browsing)

    # the events timeline follows the project: a scale made elsewhere appears without a reload
    b.go("#/projects/acme/shop/events")
    expect(page.locator("#events[data-loaded='true']")).to_have_count(1)
    page.evaluate("window.__sameDocument = 'yes'")
    scaled = page.locator("#events tbody tr[data-reason='Scaled']")
    before = scaled.count()
    server.client().post("/projects/acme/shop/apps/web/scale", json={"replicas": 2}).raise_for_status()
    expect(scaled).to_have_count(before + 1, timeout=30_000)
    expect(scaled.first).to_contain_text("app/web")
    assert page.evaluate("window.__sameDocument") == "yes"
    # a warning (an image that is not there) stands out in words and a sign, not by colour alone
    server.client().post("/projects/acme/shop/apps", json={"kind": "App", "metadata": {"name": "ghost"}, "spec": {
        "image": "dockyard/missing:0", "replicas": 1}}).raise_for_status()
    warning = page.locator("#events tbody tr.warn[data-type='Warning']", has_text="app/ghost")
    expect(warning.first).to_contain_text("⚠ Warning", timeout=30_000)
    expect(page.locator("#events-counts")).to_contain_text("warnings")
    b.shot("project-events")
    page.click("button[data-type='Warning']")
    expect(page.locator("button[data-type='Warning']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#events tbody tr[data-reason='Scaled']")).to_have_count(0)
    expect(page.locator("#events tbody tr[data-type='Warning']").first).to_be_visible()
    page.select_option("#events-app", "web")
    expect(page.locator("#events tbody tr", has_text="app/ghost")).to_have_count(0)
    # the app page's Events tab is the same timeline for that app alone
    b.go("#/projects/acme/shop/apps/web/events")
    expect(page.locator("#events tbody tr[data-reason='Scaled']")).to_have_count(1)
    expect(page.locator("#events-app")).to_have_count(0)
    expect(page.locator("#events tbody tr", has_text="app/ghost")).to_have_count(0)

    # an alert rule made from the form: it watches web, and its state shows (cpu ≥ 0 fires at once)
    b.go("#/projects/acme/shop/alerts")
    expect(page.locator("#alert-rules[data-loaded='true']")).to_have_count(1)
    page.fill("#rule-name", "busy")
    page.select_option("#rule-app", "web")
    page.select_option("#rule-metric", "cpu")
    page.select_option("#rule-op", ">=")
    page.fill("#rule-threshold", "0")
    page.fill("#rule-for", "0s")
    page.click("#rule-form button[type=submit]")
    rule = page.locator("#alert-rules tr[data-rule='busy'][data-app='web']")
    expect(rule).to_have_count(1)
    # the evaluator runs every 10 s; the page follows the rule's status by itself
    expect(rule).to_have_attribute("data-state", "firing", timeout=60_000)
    expect(rule.locator(".badge.alert-firing")).to_have_text("▲ firing")
    b.shot("project-alerts-firing")

    # silence it for an hour: a Silence appears, the rule's row says silenced
    rule.locator("select").select_option("1h")
    rule.locator("button[data-silence]").click()
    expect(page.locator("#silences tr[data-rule='busy']")).to_have_count(1)
    silences = server.client().get("/projects/acme/shop/silences").json()["items"]
    assert [s["spec"]["rule"] for s in silences] == ["busy"] and silences[0]["spec"]["app"] == "web"
    page.click("#silences tr[data-rule='busy'] button[data-expire]")
    expect(page.locator("#silences tr[data-rule='busy']")).to_have_count(0)

    # "Send test" through a notifier (one on loopback needs an admin to make it): the receiver has it
    receiver = Receiver()
    try:
        server.client().post("/projects/acme/shop/notifiers", json={"kind": "Notifier", "metadata": {"name": "hook"},
                             "spec": {"type": "webhook", "url": receiver.url}}).raise_for_status()
        page.reload()
        page.click("#notifiers button[data-test='hook']")
        expect(page.locator("#toasts")).to_contain_text("Test notification sent through hook")
        assert [b["rule"] for b in receiver.bodies()] == ["dockyard-test"], receiver.received
    finally:
        receiver.close()
    # with the receiver gone the server answers 502 itself: a failed send, not a server out of reach
    page.click("#notifiers button[data-test='hook']")
    expect(page.locator("#toasts .toast.error")).to_contain_text("Test of hook failed", timeout=30_000)
    expect(page.locator("#offline")).to_have_count(0)

    # Edit puts the rule into the YAML box; a change applied from there is stored
    page.click("#alert-rules button[data-edit='busy']")
    # the box is filled once js-yaml is loaded (a module fetched on first use, again after the reload above)
    expect(page.locator("#alerts-yaml")).to_have_value(re.compile(r"name: busy"))
    text = page.input_value("#alerts-yaml")
    assert "name: busy" in text and "status" not in text, text
    page.fill("#alerts-yaml", text.replace("spec:\n", "spec:\n  summary: web is busy\n", 1))
    page.click("#alerts-apply")
    expect(page.locator("#alerts-results li.ok")).to_have_text("alertrule/busy configured")
    assert server.client().get("/projects/acme/shop/alertrules/busy").json()["spec"]["summary"] == "web is busy"

    # a bad rule from YAML: the API's words, naming the field
    page.fill("#alerts-yaml", "kind: AlertRule\nmetadata: {name: broken}\nspec: {app: web, metric: cpu}\n")
    page.click("#alerts-apply")
    expect(page.locator("#alerts-results li.error")).to_contain_text("spec.threshold")

    # the project's charts: CPU and memory, one line per app
    b.go("#/projects/acme/shop/usage")
    expect(page.locator("#chart-project-memory svg")).to_have_count(1)
    expect(page.locator("#chart-project-cpu .legend")).to_contain_text("web")
    expect(page.locator("#chart-project-memory path[data-series='web']")).to_have_count(1, timeout=40_000)
    b.shot("project-usage-charts")

    # an admin sees the engine's node: ready, with this installation's containers on it
    admin = browsing(server.url)
    admin.login("admin", "test-password-1")
    admin.go("#/admin/nodes")
    node = admin.page.locator("#nodes tbody tr[data-status='ready']")
    expect(node).to_have_count(1)
    expect(node).to_contain_text("ready")
    assert int(node.locator("td").nth(8).inner_text()) >= 2  # containers: web's two replicas at least
    admin.shot("admin-nodes")

    # with data on them (a firing badge, a warning, marked matches) the pages pass axe in both themes
    def search_logs(p) -> None:  # noqa: ANN001
        p.fill("#logs-grep", "starting")
        p.click("#logs-search")
        p.wait_for_selector("#logs-results tbody mark")

    bad = _axe(browser, server.url, {"#/projects/acme/shop/alerts": "#alert-rules [data-state='firing']",
                                     "#/projects/acme/shop/events": "#events tr.warn",
                                     "#/projects/acme/shop/logs": search_logs})
    assert not bad, "\n".join(bad)


def test_viewer_sees_no_create_or_silence_buttons_developer_no_notifiers(server, browsing) -> None:  # noqa: ANN001
    _setup(server, replicas=0)
    with server.client() as c:
        c.post("/projects/acme/shop/alertrules", json={"kind": "AlertRule", "metadata": {"name": "down"},
                                                       "spec": {"app": "web", "condition": "notReady"}}).raise_for_status()
    b = browsing(server.url)
    page = b.page
    b.login("vera", PW)
    b.go("#/projects/acme/shop/alerts")
    expect(page.locator("#alert-rules tr[data-rule='down']")).to_have_count(1)
    for gone in ("#rule-form", "#notifier-form", "#alerts-yaml", "#notifiers", "button[data-silence]",
                 "button[data-delete]", "button[data-edit]"):
        expect(page.locator(gone)).to_have_count(0)
    b.go("#/projects/acme/shop/events")
    expect(page.locator("#events[data-loaded='true']")).to_have_count(1)
    b.go("#/projects/acme/shop/logs")
    expect(page.locator("#logs-results[data-loaded='true']")).to_have_count(1)
    # in Chinese, the same pages translated
    page.select_option("#language", "zh-CN")
    expect(page.locator("#tab-alerts")).to_have_text("告警")
    expect(page.locator("#tab-events")).to_have_text("事件")
    expect(page.locator("#logs-search")).to_have_text("搜索")
    b.shot("project-logs-zh")
    # a developer may write rules and silences, not notifiers (maintainers and owners only)
    with server.client() as c:
        c.post("/users", json={"name": "dev", "password": PW}).raise_for_status()
        c.post("/projects/acme/shop/members", json={"user": "dev", "role": "developer"}).raise_for_status()
    d = browsing(server.url)
    d.login("dev", PW)
    d.go("#/projects/acme/shop/alerts")
    expect(d.page.locator("#alert-rules tr[data-rule='down'] button[data-silence]")).to_have_count(1)
    expect(d.page.locator("#rule-form")).to_have_count(1)
    for gone in ("#notifier-form", "#notifiers"):
        expect(d.page.locator(gone)).to_have_count(0)
    # the API refuses a viewer's silence whatever the page shows
    r = server.client().post("/login", json={"username": "vera", "password": PW})
    token = r.json()["token"]
    silence = {"kind": "Silence", "metadata": {"name": "x"}, "spec": {"rule": "down", "endsAt": "2099-01-01T00:00:00Z"}}
    refused = httpx.post(f"{server.url}/api/v1/projects/acme/shop/silences", json=silence,
                         headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 403, refused.text
