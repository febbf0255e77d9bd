"""The dashboard as new users meet it, in Debian's Chromium against a real server and engine:
an owner logs in, creates a project, deploys from the form, watches the app become ready
without reloading, scales it, follows its logs, runs a command in the web terminal, changes
the image and rolls back, fixes a manifest from inline errors, switches to Chinese; a viewer
sees no edit buttons and gets the API's refusal in words; an admin manages users and reads
the audit log. Screenshots of the main pages go to tests/e2e/artifacts/."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.engine

PW = "dash-password-1"
LONG = 90_000  # ms: containers start on a 2-core machine that may be busy


def _setup(server) -> None:  # noqa: ANN001
    with server.client() as c:
        c.post("/tenants", json={"kind": "Tenant", "metadata": {"name": "acme"}}).raise_for_status()
        for user in ("olivia", "vera"):
            c.post("/users", json={"name": user, "password": PW}).raise_for_status()
        c.post("/tenants/acme/members", json={"user": "olivia", "role": "owner"}).raise_for_status()


def test_owner_deploys_scales_logs_terminal_rollback_and_chinese(server, browsing) -> None:  # noqa: ANN001
    _setup(server)
    b = browsing(server.url)
    page = b.page
    b.login("olivia", PW)
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("#engines")).to_contain_text("healthy")
    b.shot("overview")

    # create a project from the overview
    page.fill("#new-project-name", "shop")
    page.click("#new-project button[type=submit]")
    expect(page.locator("h1")).to_contain_text("shop")
    expect(page.locator("#toasts")).to_contain_text("Project acme/shop created")  # survives the page change
    expect(page.locator("#apps-table")).to_contain_text("No apps yet")

    # a bad name is refused with the field named, next to the field
    page.click("#deploy-here")
    page.fill("#deploy-name", "Bad_Name")
    page.fill("#deploy-image", "dockyard/demo:1.0")
    page.click("#deploy-submit")
    expect(page.locator("#deploy-form .field-error")).to_contain_text("metadata.name")  # next to the field

    # deploy from the form; the app page turns ready by itself (no reload: the marker survives)
    page.fill("#deploy-name", "web")
    page.fill("#deploy-port", "8080")
    page.fill("#deploy-env", "GREETING=hello")
    page.click("#deploy-submit")
    page.wait_for_url("**/apps/web")
    page.evaluate("window.__sameDocument = 'yes'")
    expect(page.locator("#ready-count")).to_have_text("1/1 ready", timeout=LONG)
    expect(page.locator("#app-head .badge")).to_have_text("ready")
    b.shot("app-replicas")

    # scale to 2 with the form; both replicas appear in the table without a reload
    page.fill("#replicas", "2")
    page.click("#scale")
    expect(page.locator("#ready-count")).to_have_text("2/2 ready", timeout=LONG)
    expect(page.locator("#replicas-table tbody tr")).to_have_count(2)
    assert page.evaluate("window.__sameDocument") == "yes"

    # logs follow live: a request made after the stream opened shows up in the page
    page.click("#tab-logs")
    expect(page.locator("#log-follow")).to_be_checked()
    page.wait_for_timeout(1500)  # the follow stream is open
    app = server.client().get("/projects/acme/shop/apps/web").json()
    ip = app["status"]["containers"][0]["ip"]
    assert "response:404" not in page.inner_text("#logs")
    httpx.get(f"http://{ip}:8080/dashboard-was-here", timeout=5)  # the demo server logs "response:404"
    expect(page.locator("#logs")).to_contain_text("response:404", timeout=15_000)
    page.fill("#log-search", "RESPONSE:404")  # search ignores case
    expect(page.locator("#log-count")).to_contain_text("1 of")
    expect(page.locator("#logs")).not_to_contain_text("starting on")
    b.shot("app-logs")

    # the web terminal runs a command in the container
    page.click("#tab-terminal")
    expect(page.locator("#terminal-status")).to_have_text("Connected", timeout=20_000)
    page.locator("#terminal").click()
    page.keyboard.type("echo dockyard-$((6*7))\n")
    expect(page.locator("#terminal")).to_contain_text("dockyard-42", timeout=15_000)
    b.shot("app-terminal")
    audit = server.client().get("/audit", params={"user": "olivia", "action": "EXEC"}).json()["items"]
    assert audit and audit[0]["outcome"] == 101 and "container=" in audit[0]["detail"], audit

    # change the image from the settings tab, then roll back from the history with one click
    page.click("#tab-settings")
    # a change to other fields meanwhile (here the rollout strategy) does not block this form's save
    server.client().patch("/projects/acme/shop/apps/web", json={"spec": {"strategy": {"maxSurge": 2}}}).raise_for_status()
    page.fill("#edit-image", "dockyard/demo:2.0")
    page.click("#save-settings")
    expect(page.locator("#app-head")).to_contain_text("dockyard/demo:2.0")
    expect(page.locator("#ready-count")).to_have_text("2/2 ready", timeout=LONG)
    page.click("#tab-history")
    expect(page.locator("#history tbody tr")).to_have_count(2)
    page.once("dialog", lambda d: d.accept())
    page.click("[data-rollback='1']")
    expect(page.locator("#app-head")).to_contain_text("dockyard/demo:1.0", timeout=20_000)
    expect(page.locator("#history tr.current")).to_contain_text("dockyard/demo:1.0", timeout=LONG)
    expect(page.locator("#ready-count")).to_have_text("2/2 ready", timeout=LONG)
    expect(page.locator("#app-head .badge")).to_have_text("ready", timeout=LONG)  # old replicas gone too
    b.shot("app-history")
    stored = server.client().get("/projects/acme/shop/apps/web").json()
    assert stored["spec"]["image"] == "dockyard/demo:1.0" and stored["spec"]["env"] == [{"name": "GREETING", "value": "hello"}]

    # the manifest editor shows the API's validation errors inline, with the line
    page.click("#tab-manifest")
    text = page.input_value("#manifest")
    assert "image: dockyard/demo:1.0" in text and "status" not in text
    page.fill("#manifest", text.replace("replicas: 2", "replicas: -3"))
    page.click("#manifest-save")
    err = page.locator("#manifest-errors li[data-field='spec.replicas']")
    expect(err).to_contain_text("line")
    line = int(err.inner_text().split("line ")[1].split()[0])
    assert page.input_value("#manifest").splitlines()[line - 1].strip() == "replicas: -3"
    expect(page.locator(f"#manifest-gutter span.err[data-line='{line}']")).to_have_count(1)  # marked beside the text
    assert server.client().get("/projects/acme/shop/apps/web").json()["spec"]["replicas"] == 2
    b.shot("app-manifest-error")

    # Chinese: the same page translated, and the choice remembered for this user on the server
    page.click("#tab-replicas")
    page.select_option("#language", "zh-CN")
    expect(page.locator("#tab-history")).to_have_text("发布历史")
    expect(page.locator("#tab-replicas")).to_have_text("副本")
    expect(page.locator("#app-head .badge")).to_have_text("就绪")
    expect(page.locator("nav")).to_contain_text("概览")
    b.shot("app-replicas-zh")
    page.click("#logout")
    expect(page.locator("#login-form h1")).to_have_text("登录 Dockyard")
    fresh = browsing(server.url)  # a new browser profile: only the server remembers
    fresh.login("olivia", PW)
    expect(fresh.page.locator("h1")).to_have_text("概览")

    # dark theme
    fresh.page.click("#theme")
    assert fresh.page.evaluate("document.documentElement.dataset.theme") in ("dark", "light")
    theme = fresh.page.evaluate("document.documentElement.dataset.theme")
    fresh.go("#/projects/acme/shop")
    expect(fresh.page.locator("#apps-table tbody tr")).to_have_count(1)
    fresh.shot(f"project-zh-{theme}")

    # the tenant owner deletes the project from its page; its containers go with it
    fresh.page.select_option("#language", "en")
    fresh.page.once("dialog", lambda d: d.accept())
    fresh.page.click("#delete-project")
    expect(fresh.page.locator("h1")).to_have_text("Overview")
    assert server.client().get("/projects/acme/shop").status_code == 404


def test_viewer_sees_no_edit_buttons_and_gets_clear_refusals(server, browsing) -> None:  # noqa: ANN001
    _setup(server)
    with server.client() as c:
        c.post("/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": "acme"}}).raise_for_status()
        c.post("/projects/acme/shop/apps", json={"kind": "App", "metadata": {"name": "web"},
                                                 "spec": {"image": "dockyard/demo:1.0", "replicas": 0}}).raise_for_status()
        c.post("/projects/acme/shop/members", json={"user": "vera", "role": "viewer"}).raise_for_status()
    b = browsing(server.url)
    page = b.page
    b.login("vera", PW)
    b.go("#/projects/acme/shop/apps/web")
    expect(page.locator("#app-head h1")).to_have_text("web")
    for sel in ("#scale-form", "#restart", "#delete-app", "#tab-terminal"):
        expect(page.locator(sel)).to_have_count(0)
    page.click("#tab-history")
    expect(page.locator("#history tbody tr")).to_have_count(1)
    expect(page.locator("[data-rollback]")).to_have_count(0)
    page.click("#tab-settings")
    expect(page.locator("#edit-image")).to_be_disabled()
    expect(page.locator("#save-settings")).to_have_count(0)
    b.go("#/projects/acme/shop")
    expect(page.locator("#apps-table tbody tr")).to_have_count(1)
    expect(page.locator("#deploy-here")).to_have_count(0)
    expect(page.locator("#delete-project")).to_have_count(0)
    b.shot("project-viewer")

    # calling the API anyway: the server refuses and says why, in the page too
    status, body = page.evaluate("""async () => {
        const r = await fetch('/api/v1/projects/acme/shop/apps/web/scale', {method: 'POST',
            headers: {'Authorization': 'Bearer ' + localStorage.getItem('dockyard.token'), 'Content-Type': 'application/json'},
            body: JSON.stringify({replicas: 3})});
        return [r.status, await r.text()];
    }""")
    assert status == 403
    assert "needs the developer role; your role there is viewer" in json.loads(body)["detail"]
    b.go("#/projects/acme/shop/deploy")
    expect(page.locator("#deploy-denied")).to_contain_text("needs the developer role")  # said up front
    expect(page.locator("#deploy-submit")).to_be_disabled()
    page.fill("#deploy-name", "sneaky")
    page.fill("#deploy-image", "dockyard/demo:1.0")
    page.evaluate("document.getElementById('deploy-form').requestSubmit()")  # submitted anyway
    expect(page.locator("#deploy-form .error")).to_contain_text("needs the developer role; your role there is viewer")
    assert server.client().get("/projects/acme/shop/apps/web").json()["spec"]["replicas"] == 0
    assert server.client().get("/projects/acme/shop/apps/sneaky").status_code == 404
    # a page the viewer cannot reach says so instead of going blank
    b.go("#/projects/acme/secret-project")
    expect(page.locator(".error")).to_contain_text("not found")
    b.go("#/admin/users")
    expect(page.locator(".error")).to_contain_text("only platform admins")
    expect(page.locator("#new-user")).to_have_count(0)
    b.go("#/projects/acme/shop/apps/web/terminal")
    expect(page.locator(".error")).to_contain_text("needs the developer role")
    expect(page.locator("#terminal-connect")).to_have_count(0)
    b.go("#/")
    expect(page.locator("#projects [data-project='acme/shop']")).to_have_count(1)
    expect(page.locator("#new-project")).to_have_count(0)  # a viewer cannot create projects
    # a crafted link cannot point the app page (and its Delete button) at another object
    for crafted in ("#/projects/acme/shop/apps/..%2F..%2Fshop", "#/projects/acme/shop/apps/%E0%A4%A"):
        b.go(crafted)
        expect(page.locator("main h1")).to_have_text("There is no such page.")
        expect(page.locator("#delete-app")).to_have_count(0)


def test_project_table_pages_sorts_filters_and_updates_live(server, browsing) -> None:  # noqa: ANN001
    setup = server.client()
    setup.post("/tenants", json={"kind": "Tenant", "metadata": {"name": "big"}}).raise_for_status()
    setup.post("/projects", json={"kind": "Project", "metadata": {"name": "many", "tenant": "big"}}).raise_for_status()
    for i in range(120):  # replicas 0: rows without containers, quick to make
        setup.post("/projects/big/many/apps", json={"kind": "App", "metadata": {"name": f"svc-{i:03d}"},
                                                   "spec": {"image": "dockyard/demo:1.0", "replicas": 0}}).raise_for_status()
    b = browsing(server.url)
    page = b.page
    b.login("admin", "test-password-1")
    b.go("#/projects/big/many")
    rows = page.locator("#apps-table tbody tr")
    expect(rows).to_have_count(50)
    expect(page.locator("#page-info")).to_have_text("Page 1 of 3 · 120 apps")
    expect(rows.first).to_have_attribute("data-app", "svc-000")
    page.click("#next-page")
    expect(rows.first).to_have_attribute("data-app", "svc-050")
    page.click("[data-sort='name']")  # name ascending → descending, back to page 1
    expect(rows.first).to_have_attribute("data-app", "svc-119")
    page.fill("#app-search", "svc-11")
    expect(rows).to_have_count(10)
    expect(page.locator("#page-info")).to_have_text("Page 1 of 1 · 10 apps")
    b.shot("project-table")
    page.click("#state-filter [data-state='failed']")
    expect(page.locator("#apps-table td.empty")).to_have_text("No app matches.")
    page.click("#state-filter [data-state='']")
    expect(rows).to_have_count(10)
    # another user's change arrives through the watch stream
    setup.post("/projects/big/many/apps", json={"kind": "App", "metadata": {"name": "svc-11x"},
                                               "spec": {"image": "dockyard/demo:2.0", "replicas": 0}}).raise_for_status()
    expect(rows).to_have_count(11, timeout=10_000)
    expect(page.locator("#page-info")).to_have_text("Page 1 of 1 · 11 apps")
    setup.delete("/projects/big/many/apps/svc-110").raise_for_status()
    expect(page.locator("[data-app='svc-110']")).to_have_count(0, timeout=10_000)

    # the overview follows the all-projects watch too
    page.click("nav >> text=Overview")
    count = page.locator("#projects [data-project='big/many'] td:nth-child(2)")
    expect(count).to_have_text("120")
    setup.post("/projects/big/many/apps", json={"kind": "App", "metadata": {"name": "late"},
                                               "spec": {"image": "dockyard/demo:1.0", "replicas": 0}}).raise_for_status()
    expect(count).to_have_text("121", timeout=10_000)


def test_admin_manages_users_tenants_and_reads_the_audit_log(server, browsing) -> None:  # noqa: ANN001
    b = browsing(server.url)
    page = b.page
    b.login("admin", "test-password-1")
    page.click("#nav-admin")
    page.fill("#new-user-name", "nora")
    page.fill("#new-user-password", "short")
    page.click("#new-user button[type=submit]")
    expect(page.locator("#new-user .field-error")).to_contain_text("password")
    page.fill("#new-user-password", "nora-password-1")
    page.click("#new-user button[type=submit]")
    expect(page.locator("#users [data-user='nora']")).to_have_count(1)
    b.shot("admin-users")
    page.click("#tab-tenants")
    page.fill("#new-tenant-name", "globex")
    page.click("#new-tenant button[type=submit]")
    expect(page.locator("#tenants [data-tenant='globex']")).to_have_count(1)
    page.click("#tab-audit")
    expect(page.locator("#audit tbody tr").first).to_be_visible()
    page.fill("#audit-filters input[name=action]", "POST /tenants")
    page.click("#audit-filters button[type=submit]")
    expect(page.locator("#audit tbody tr")).to_have_count(1)
    expect(page.locator("#audit tbody")).to_contain_text("/tenants")
    b.shot("admin-audit")
    # the API reference renders from the server's own copy of Swagger UI (no network needed)
    page.goto(server.url + "/api/v1/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Dockyard")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()


def test_deploy_a_compose_file_from_the_paste_box(server, browsing) -> None:  # noqa: ANN001
    with server.client() as c:
        c.post("/tenants", json={"kind": "Tenant", "metadata": {"name": "acme"}}).raise_for_status()
        c.post("/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": "acme"}}).raise_for_status()
    b = browsing(server.url)
    page = b.page
    b.login("admin", "test-password-1")
    b.go("#/projects/acme/shop/deploy?mode=manifest")
    page.fill("#manifest-input", "services:\n  api:\n    image: dockyard/demo:1.0\n    privileged: true\n")
    page.click("#manifest-apply")
    expect(page.locator("#deploy-results")).to_contain_text("privileged")
    page.fill("#manifest-input", "services:\n  api:\n    image: dockyard/demo:1.0\n    deploy: {replicas: 0}\n"
                                 "  cache:\n    image: dockyard/demo:2.0\n    deploy: {replicas: 0}\n")
    page.click("#manifest-dry-run")
    expect(page.locator("#deploy-results li.ok")).to_have_count(2)
    assert server.client().get("/projects/acme/shop/apps/api").status_code == 404
    page.click("#manifest-apply")
    expect(page.locator("#deploy-results")).to_contain_text("app/api created")
    expect(page.locator("#deploy-results")).to_contain_text("app/cache created")
    page.click("#manifest-apply")
    expect(page.locator("#deploy-results")).to_contain_text("app/api unchanged")
    assert server.client().get("/projects/acme/shop/apps/cache").json()["spec"]["image"] == "dockyard/demo:2.0"
    # each document gets its own line; a bad one does not stop the others
    page.fill("#manifest-input", "kind: App\nmetadata: {name: one}\nspec: {image: dockyard/demo:1.0, replicas: 0}\n---\n"
                                 "kind: Deployment\nmetadata: {name: legacy}\n---\n"
                                 "kind: App\nmetadata: {name: three}\nspec: {image: dockyard/demo:1.0, replicas: 0}\n")
    page.click("#manifest-apply")
    expect(page.locator("#deploy-results li")).to_have_count(3)
    expect(page.locator("#deploy-results li.error")).to_contain_text('unknown kind "Deployment"')
    expect(page.locator("#deploy-results li.ok")).to_have_count(2)
    assert server.client().get("/projects/acme/shop/apps/three").status_code == 200
    page.fill("#manifest-input", "kind: App\nmetadata: {name: x\n")
    page.click("#manifest-apply")
    expect(page.locator("#deploy-results")).to_contain_text("YAML error on line")
    b.shot("deploy-manifest")


def test_app_metrics_and_project_usage_show_a_busy_app(server, browsing) -> None:  # noqa: ANN001
    with server.client() as c:
        c.post("/tenants", json={"kind": "Tenant", "metadata": {"name": "acme"}}).raise_for_status()
        c.post("/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": "acme"}}).raise_for_status()
        c.post("/projects/acme/shop/apps", json={"kind": "App", "metadata": {"name": "burner"}, "spec": {
            "image": "dockyard/demo:1.0", "command": ["sh", "-c", "while :; do :; done"], "replicas": 1,
            "resources": {"cpu": "1", "memory": "64Mi"}}}).raise_for_status()
    b = browsing(server.url)
    page = b.page
    b.login("admin", "test-password-1")
    b.go("#/projects/acme/shop/apps/burner/metrics")
    expect(page.locator("#app-charts[data-loaded='true']")).to_have_count(1)
    cpu = page.locator("#chart-cpu svg")

    def cpu_total() -> float:
        label = cpu.get_attribute("aria-label") or ""
        part = label.split("total: ")[-1].split(" %")[0]
        return float(part) if part.replace(".", "").isdigit() else 0.0

    # the collector samples every 10 s and CPU % needs two samples: the page refreshes by itself
    deadline = 60
    while cpu_total() < 50 and deadline > 0:
        page.wait_for_timeout(2000)
        deadline -= 2
    assert cpu_total() > 50, cpu.get_attribute("aria-label")
    expect(page.locator("#chart-memory svg")).to_have_attribute("aria-label", re.compile(r"limit: 64 MiB"))
    b.shot("app-metrics")
    b.go("#/projects/acme/shop/usage")
    row = page.locator("#usage tr[data-app='burner']")
    expect(row).to_contain_text("/ 64 MiB")
    assert float(row.locator("td").nth(2).inner_text().split(" %")[0]) > 50
    b.shot("project-usage")
