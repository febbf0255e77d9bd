"""The dashboard's clusters and nodes in Debian's Chromium against a real server and a real test swarm
(1 manager reached over TLS, 1 worker): Admin → Clusters lists local first and the swarm Ready with its
nodes; a worker drained from the page is drained in the swarm itself and its row says so, then activated
again; the join commands appear only when asked for and are the swarm's own; the Nodes tab shows every
cluster's nodes; a project created from the overview is bound to the chosen cluster; the page passes axe
in both themes and fits a 420 px window; with the manager gone, a drain shows the API's problem detail
and the swarm turns Unavailable on the page."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from conftest import open_login, open_page
from dockyard_harness import PASSWORD, Server
from playwright.sync_api import expect
from swarm_cluster import SwarmCluster
from swarm_fixtures import module_swarm
from test_dashboard_a11y import AXE, _violations

pytestmark = pytest.mark.engine

LAB = "lab"


@pytest.fixture(scope="module")
def swarm() -> Iterator[SwarmCluster]:
    with module_swarm(managers=1, workers=1) as c:
        yield c


def _add_lab(server: Server, swarm: SwarmCluster) -> None:
    """The swarm as Cluster `lab`, reached over its manager's TLS endpoint; back once it is Ready."""
    ca, cert, key = swarm.client_tls
    with server.client() as c:
        c.post("/clusters", json={"apiVersion": "dockyard/v1", "kind": "Cluster",
                                  "metadata": {"name": LAB, "labels": {"region": "test"}},
                                  "spec": {"driver": "swarm", "description": "the test swarm", "endpoints": [
                                      {"url": swarm.tcp_url("m1"), "tls": {"ca": ca, "cert": cert, "key": key}}]}},
               ).raise_for_status()
        c.post("/tenants", json={"kind": "Tenant", "metadata": {"name": "acme"}}).raise_for_status()
    server.wait_for(lambda: server.client().get(f"/clusters/{LAB}").json()["status"].get("phase") == "Ready",
                    timeout=30, what="the cluster to be Ready")


def _availability(server: Server, swarm: SwarmCluster, node: str) -> tuple[str, str]:
    """The node's availability as the API reports it and as the swarm itself has it."""
    with server.client() as c:
        rows = c.get("/nodes", params={"cluster": LAB}).json()["items"]
    api = next(r["availability"] for r in rows if r["name"] == node)
    return api, swarm.docker("m1", "node", "inspect", node, "--format", "{{.Spec.Availability}}").strip()


def test_clusters_tab_drains_and_activates_a_node_and_shows_join_commands(server, browsing, browser, swarm) -> None:  # noqa: ANN001
    _add_lab(server, swarm)
    b = browsing(server.url)
    b.login("admin", PASSWORD)
    page = b.page
    b.go("#/admin/clusters")
    rows = page.locator("#clusters tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-cluster", "local")
    lab = page.locator(f"#clusters tr[data-cluster='{LAB}']")
    expect(lab.locator("[data-phase='Ready']")).to_have_text("Ready", timeout=15_000)
    expect(lab.locator("[data-count='managers']")).to_have_text("1/1")
    expect(lab.locator("[data-count='nodes']")).to_have_text("2/2")
    expect(lab.locator(".endpoint[data-active='true']")).to_contain_text(swarm.tcp_url("m1"))
    expect(lab).to_contain_text("region=test")

    # the swarm is selected (the first one): its nodes, with drain buttons
    nodes = page.locator(f"#cluster-nodes[data-cluster='{LAB}'] tbody tr")
    expect(nodes).to_have_count(2)
    w1 = page.locator("#cluster-nodes tr[data-node='w1']")
    expect(w1).to_contain_text("worker")
    expect(page.locator("#cluster-nodes tr[data-node='m1']")).to_contain_text("leader")

    # declining the confirmation changes nothing; accepting drains w1 in the swarm and the row says so
    page.once("dialog", lambda d: d.dismiss())
    w1.locator("[data-action='drain']").click()
    page.wait_for_timeout(300)
    assert _availability(server, swarm, "w1") == ("active", "active")
    page.once("dialog", lambda d: d.accept())
    w1.locator("[data-action='drain']").click()
    expect(w1).to_have_attribute("data-availability", "drain")
    expect(w1.locator("td.availability")).to_have_text("drain")
    assert _availability(server, swarm, "w1") == ("drain", "drain")
    w1.locator("[data-action='activate']").focus()  # by keyboard: the focus stays in the row when it is redrawn
    page.keyboard.press("Enter")
    expect(w1).to_have_attribute("data-availability", "active")
    expect(w1.locator("[data-action='drain']")).to_be_focused()
    assert _availability(server, swarm, "w1") == ("active", "active")

    # the join commands: not on the page until asked for, then the swarm's own tokens, hidden again
    expect(page.locator("#join-commands code")).to_have_count(0)
    page.click("#join-tokens")
    worker_token = swarm.docker("m1", "swarm", "join-token", "-q", "worker").strip()
    expect(page.locator("#join-worker code")).to_have_text(re.compile(rf"^docker swarm join --token {worker_token} "))
    expect(page.locator("#join-manager [data-copy]")).to_have_count(1)
    page.click("#join-tokens")
    expect(page.locator("#join-commands code")).to_have_count(0)
    b.shot("admin-clusters")

    # the Nodes tab lists every cluster's nodes with their cluster, role and availability
    b.go("#/admin/nodes")
    expect(page.locator(f"#nodes tr[data-cluster='{LAB}']")).to_have_count(2)
    expect(page.locator("#nodes tr[data-cluster='local']")).to_have_count(1)
    expect(page.locator(f"#nodes tr[data-cluster='{LAB}'][data-node='m1']")).to_contain_text("manager")

    # a project created from the overview goes to the chosen cluster, and its page says which
    b.go("#/")
    page.select_option("#new-project-cluster", LAB)
    page.fill("#new-project-name", "edge")
    page.click("#new-project button[type=submit]")
    expect(page.locator("#project-cluster")).to_have_text(f"cluster {LAB}")
    with server.client() as c:
        assert c.get("/projects/acme/edge").json()["spec"]["cluster"] == LAB

    # a 420 px window: the tables scroll inside their box, the page does not scroll sideways
    page.set_viewport_size({"width": 420, "height": 900})
    b.go("#/admin/clusters")
    expect(page.locator("#cluster-node-table[data-loaded='true']")).to_have_count(1)
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth"), "the page scrolls sideways at 420 px"
    b.shot("admin-clusters-narrow")

    # axe, light and dark, with the nodes drawn
    assert AXE.exists(), "axe-core is not installed: run `make install-test` (npm ci in dockyard/web)"
    found = []
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)  # axe is injected
    try:
        ax = ctx.new_page()
        ax.set_default_timeout(15_000)
        open_login(ax, server.url)
        ax.fill("#username", "admin")
        ax.fill("#password", PASSWORD)
        ax.click("#login-form button[type=submit]")
        ax.wait_for_selector("#who")
        for theme in ("light", "dark"):
            ax.evaluate(f"localStorage.setItem('dockyard.theme', '{theme}')")
            for hash_ in ("#/admin/clusters", "#/admin/nodes"):
                # a new document: the theme is read at start-up
                open_page(ax, f"{server.url}/{hash_}", "table[data-loaded='true']")
                found += [f"{theme} {hash_}: {v}" for v in _violations(ax)]
    finally:
        ctx.close()
    assert not found, "\n".join(found)

    # the manager gone: the drain fails and the page shows the API's problem detail
    b.go("#/admin/clusters")
    expect(w1).to_have_count(1)
    swarm.kill("m1")
    page.once("dialog", lambda d: d.accept())
    w1.locator("[data-action='drain']").click()
    expect(page.locator("#node-action-message .error")).to_contain_text(f"cluster {LAB} cannot do this now", timeout=20_000)
    # and the next refresh shows the swarm down
    expect(lab).to_have_attribute("data-phase", "Unavailable", timeout=20_000)
