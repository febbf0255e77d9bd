"""Accessibility of the dashboard's main pages, checked by axe-core (WCAG 2 A and AA rules) in
Chromium, in the light and the dark theme: no serious or critical violation (labels, names of
buttons and links, colour contrast, landmarks, ARIA use)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import open_login
from playwright.sync_api import expect

pytestmark = pytest.mark.engine

AXE = Path(__file__).resolve().parents[2] / "dockyard" / "web" / "node_modules" / "axe-core" / "axe.min.js"
PAGES = ["#/login", "#/", "#/projects/acme/shop", "#/projects/acme/shop/usage", "#/projects/acme/shop/quota",
         "#/projects/acme/shop/members", "#/projects/acme/shop/apps/web", "#/projects/acme/shop/apps/web/metrics",
         "#/projects/acme/shop/apps/web/history", "#/projects/acme/shop/apps/web/settings",
         "#/projects/acme/shop/apps/web/manifest", "#/projects/acme/shop/deploy",
         "#/projects/acme/shop/deploy?mode=manifest", "#/admin/users", "#/admin/audit",
         "#/projects/acme/shop/logs", "#/projects/acme/shop/events", "#/projects/acme/shop/alerts",
         "#/projects/acme/shop/apps/web/logs?mode=search", "#/projects/acme/shop/apps/web/events", "#/admin/nodes",
         "#/admin/clusters",
         "#/projects/acme/shop/images", "#/projects/acme/shop/builds"]


def _violations(page) -> list[str]:  # noqa: ANN001
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`);
    }""")
    return result


def test_main_pages_have_no_serious_accessibility_violations(server, browser) -> None:  # noqa: ANN001
    if not AXE.exists():
        pytest.fail("axe-core is not installed: run `make install-test` (npm ci in dockyard/web)")
    with server.client() as c:
        c.post("/tenants", json={"kind": "Tenant", "metadata": {"name": "acme"}}).raise_for_status()
        c.post("/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": "acme"}}).raise_for_status()
        c.post("/projects/acme/shop/apps", json={"kind": "App", "metadata": {"name": "web"},
                                                 "spec": {"image": "dockyard/demo:1.0", "replicas": 0}}).raise_for_status()
    found: dict[str, list[str]] = {}
    for theme in ("light", "dark"):
        # axe is injected as a script: this context lets it past the page's CSP (the pages' own CSP is tested elsewhere)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        ctx.add_init_script(f"localStorage.setItem('dockyard.theme', '{theme}')")
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        open_login(page, server.url)  # loaded again if a container's network dropped its requests
        expect(page.locator("#login-form")).to_be_visible()
        found[f"{theme} #/login"] = _violations(page)
        page.fill("#username", "admin")
        page.fill("#password", "test-password-1")
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#who")
        for hash_ in PAGES[1:]:
            page.goto(f"{server.url}/{hash_}")
            page.wait_for_selector("main h1, main .tabs")
            page.wait_for_timeout(300)  # the page's data has arrived
            found[f"{theme} {hash_}"] = _violations(page)
        ctx.close()
    bad = {k: v for k, v in found.items() if v}
    assert not bad, "\n".join(f"{k}: {x}" for k, v in bad.items() for x in v)
