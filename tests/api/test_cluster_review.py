"""Hostile review of Kind Cluster (issue 6): what project members (non-admins) must not learn about
a cluster — its endpoints' addresses, in a 503's detail or in the cluster events every project's
timeline shows — and which tenants an admin lets bind projects to a cluster (spec.tenants)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from api_checks import V1, ok, problem
from test_clusters import APP, PW, FakeClusterOps, _login, _project, swarm

from dockyard.clusters.monitor import ClusterMonitor
from dockyard.engines.base import EngineUnavailable, NodeInfo
from dockyard.engines.endpoints import Endpoint, EndpointSet
from dockyard.model.cluster import ClusterHealth
from dockyard.store.repository import Store

ADDRESSES = re.compile(r"10\.98\.0\.2|/tmp/m2|tcp://|unix://")


@pytest.fixture
def ops(api: Any) -> FakeClusterOps:
    fake = FakeClusterOps()
    api.app.state.clusters = fake
    return fake


def _all_down_message() -> str:
    """What the real endpoint set says when no manager of eu-swarm answers."""
    def unreachable(ep: Endpoint, timeout: float) -> Any:
        raise requests.exceptions.ConnectionError(f"cannot connect to {ep.url}")

    endpoints = EndpointSet([Endpoint("tcp://10.98.0.2:2376"), Endpoint("unix:///tmp/m2/docker.sock")],
                            name="eu-swarm", opener=unreachable)
    with pytest.raises(EngineUnavailable) as e:
        endpoints.call(lambda client: client.info())
    assert ADDRESSES.search(str(e.value)), "the admin-facing message names the endpoints"
    return str(e.value)


def _member(api: Any, project: str, role: str = "owner") -> dict:
    r = api.post(f"{V1}/users", json={"name": "dev1", "password": PW})
    assert r.status_code in (201, 409), r.text
    ok(api.post(f"{V1}/projects/acme/{project}/members", json={"user": "dev1", "role": role}), 201)
    return _login(api, "dev1")


def test_a_503_does_not_tell_project_members_the_cluster_endpoints(api: Any, ops: FakeClusterOps) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    ok(_project(api, "eu", cluster="eu-swarm"), 201)
    h = _member(api, "eu")
    ops.health["eu-swarm"] = ClusterHealth("eu-swarm", "Unavailable", False, _all_down_message())
    err = problem(api.post(f"{V1}/projects/acme/eu/apps", json=APP, headers=h), 503)
    assert "cluster eu-swarm cannot apply changes now" in err["detail"]
    assert not ADDRESSES.search(err["detail"]), err["detail"]


class _Engines:
    """The router as the monitor sees it: a swarm none of whose endpoints answers."""

    def __init__(self, message: str) -> None:
        self.message = message

    def health(self, name: str) -> ClusterHealth:
        return ClusterHealth(name, "Unavailable", False, self.message)

    def cluster_nodes(self, name: str) -> list:
        return []


def test_cluster_events_do_not_tell_project_members_the_endpoints(api: Any, store: Store) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    ok(_project(api, "shop", cluster="eu-swarm"), 201)
    h = _member(api, "shop", "viewer")
    ClusterMonitor(store, _Engines(_all_down_message()), leading=lambda: True).probe("eu-swarm")  # type: ignore[arg-type]
    items = ok(api.get(f"{V1}/projects/acme/shop/events", headers=h))["items"]
    messages = [e["message"] for e in items if e.get("reason") == "ClusterUnavailable"]
    assert messages, items
    assert not any(ADDRESSES.search(m) for m in messages), messages


def test_an_admin_says_which_tenants_may_use_a_cluster(api: Any) -> None:
    for t in ("acme", "globex"):
        ok(api.post(f"{V1}/tenants", json={"kind": "Tenant", "metadata": {"name": t}}), 201)
    ok(api.post(f"{V1}/clusters", json=swarm(tenants=["globex"])), 201)
    ok(api.post(f"{V1}/clusters", json=swarm("shared")), 201)  # no tenants: every tenant
    err = problem(_project(api, "eu", cluster="eu-swarm"), 422)
    assert err["errors"][0]["field"] == "spec.cluster", err
    assert "tenant acme" in err["errors"][0]["message"], err
    problem(api.get(f"{V1}/projects/acme/eu"), 404)
    ok(_project(api, "shared", cluster="shared"), 201)
    ok(api.post(f"{V1}/projects", json={"kind": "Project", "metadata": {"name": "eu", "tenant": "globex"},
                                        "spec": {"cluster": "eu-swarm"}}), 201)
    # a tenant whose projects use the cluster cannot be taken off its list
    err = problem(api.patch(f"{V1}/clusters/shared", json={"spec": {"tenants": ["globex"]}}), 409)
    assert "acme/shared" in err["detail"], err
    ok(api.patch(f"{V1}/clusters/eu-swarm", json={"spec": {"tenants": ["globex", "acme"]}}))
    ok(_project(api, "eu", cluster="eu-swarm"), 201)
    err = problem(api.patch(f"{V1}/clusters/eu-swarm", json={"spec": {"tenants": ["Not A Name"]}}), 422)
    assert err["errors"][0]["field"].startswith("spec.tenants"), err


def test_join_tokens_are_not_kept_in_caches(api: Any, ops: FakeClusterOps) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    r = api.get(f"{V1}/clusters/eu-swarm/join-tokens")
    assert ok(r)["worker"] == "SWMTKN-1-worker"
    assert r.headers.get("Cache-Control") == "no-store", r.headers


def test_project_members_see_only_the_nodes_of_clusters_their_projects_use(api: Any) -> None:
    fake = FakeClusterOps(node_list=[
        NodeInfo("m1", "ready", "20.10.24", 2, 2**30, (), "manager", "active", "leader", (), "10.98.0.2", "i1",
                 "eu-swarm"),
        NodeInfo("g1", "ready", "20.10.24", 2, 2**30, (), "manager", "active", "leader", (), "10.99.0.2", "i2",
                 "globex-swarm"),
        NodeInfo("host", "ready", "20.10.24", 4, 2**32, (), cluster="local")])
    api.app.state.clusters = fake
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    ok(api.post(f"{V1}/clusters", json=swarm("globex-swarm")), 201)
    ok(_project(api, "eu", cluster="eu-swarm"), 201)
    ok(_project(api, "home"), 201)
    h = _member(api, "home", "viewer")
    assert {r["name"] for r in ok(api.get(f"{V1}/nodes", headers=h))["items"]} == {"host"}
    for name in ("globex-swarm", "eu-swarm", "nowhere"):
        assert "not found" in problem(api.get(f"{V1}/nodes", params={"cluster": name}, headers=h), 404)["detail"]
    ok(api.post(f"{V1}/projects/acme/eu/members", json={"user": "dev1", "role": "viewer"}), 201)
    assert {r["name"] for r in ok(api.get(f"{V1}/nodes", headers=h))["items"]} == {"host", "m1"}
    assert [r["name"] for r in ok(api.get(f"{V1}/nodes", params={"cluster": "eu-swarm"}, headers=h))["items"]] == ["m1"]
    # admins see every cluster's
    assert {r["name"] for r in ok(api.get(f"{V1}/nodes"))["items"]} == {"host", "m1", "g1"}


@pytest.mark.parametrize("tls", [
    {"ca": "KEY", "cert": "CERT", "key": "KEY"},         # the key where a certificate goes
    {"ca": "CERT", "cert": "CERT", "key": "KEY", "keyCiphertext": 5},
    {"ca": "CERT", "cert": "CERT", "key": ["KEY"]},       # a key of the wrong type
    {"ca": "CERT", "cert": "CERT", "key": "KEY", "secret": "KEY"},
])
def test_a_refused_cluster_never_echoes_its_key(api: Any, tls: dict) -> None:
    from test_clusters import CERT, KEY

    def fill(v: Any) -> Any:
        return KEY if v == "KEY" else CERT if v == "CERT" else [fill(x) for x in v] if isinstance(v, list) else v

    body = swarm()
    body["spec"]["endpoints"][0]["tls"] = {k: fill(v) for k, v in tls.items()}
    for r in (api.post(f"{V1}/clusters", json=body), api.post(f"{V1}/clusters", json=body, params={"dryRun": "true"})):
        assert r.status_code == 422, r.text
        assert "PRIVATE KEY" not in r.text and KEY.splitlines()[1] not in r.text, r.text


def test_an_admins_project_scoped_token_is_no_admin_for_clusters(api: Any, ops: FakeClusterOps) -> None:
    ops.node_list = [NodeInfo("m1", "ready", "20.10.24", 2, 2**30, (), "manager", "active", "leader", (),
                              "10.98.0.2", "i1", "eu-swarm"),
                     NodeInfo("host", "ready", "20.10.24", 4, 2**32, (), cluster="local")]
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    ok(api.post(f"{V1}/clusters", json=swarm("us-swarm")), 201)
    ok(_project(api, "home"), 201)
    token = ok(api.post(f"{V1}/tokens", json={"name": "ci", "project": "acme/home", "role": "owner"}), 201)["token"]
    h = {"Authorization": f"Bearer {token}"}
    for method, path, body in [
            ("GET", "/clusters", None), ("GET", "/clusters/eu-swarm", None), ("POST", "/clusters", swarm("mine")),
            ("PATCH", "/clusters/eu-swarm", {"spec": {"tenants": ["acme"]}}), ("DELETE", "/clusters/us-swarm", None),
            ("GET", "/clusters/eu-swarm/join-tokens", None), ("POST", "/clusters/eu-swarm/nodes/m1/drain", None)]:
        assert problem(api.request(method, V1 + path, json=body, headers=h), 403), (method, path)
    rows = ok(api.get(f"{V1}/nodes", headers=h))["items"]
    assert [r["name"] for r in rows] == ["host"] and "address" not in rows[0]
    assert ops.updates == []


class _Swarm(_Engines):
    """A swarm that is Ready, with one node that goes down between two probes."""

    def __init__(self) -> None:
        super().__init__("3/3 managers reachable")
        self.node_status = "ready"

    def health(self, name: str) -> ClusterHealth:
        return ClusterHealth(name, "Ready", True, self.message, nodes_total=1, nodes_ready=int(self.node_status == "ready"),
                             node_states=(("w1", self.node_status),))  # as the swarm's leader listed them

    def cluster_nodes(self, name: str) -> list:
        return [NodeInfo("w1", self.node_status, cluster=name)]


def test_a_clusters_events_show_only_in_the_projects_on_it(api: Any, store: Store) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    ok(_project(api, "eu", cluster="eu-swarm"), 201)
    ok(_project(api, "home"), 201)
    engines = _Swarm()
    monitor = ClusterMonitor(store, engines, leading=lambda: True)  # type: ignore[arg-type]
    monitor.probe("eu-swarm")
    engines.node_status = "down"
    monitor.probe("eu-swarm")
    on_it = ok(api.get(f"{V1}/projects/acme/eu/events"))["items"]
    assert {e["reason"] for e in on_it} >= {"ClusterReady", "NodeDown"}, on_it
    assert all(e["project"] is None for e in on_it if e["reason"] in ("ClusterReady", "NodeDown")), on_it
    other = ok(api.get(f"{V1}/projects/acme/home/events"))["items"]
    assert not [e for e in other if e["reason"] in ("ClusterReady", "NodeDown")], other


def test_an_election_reports_no_node_down_or_up(api: Any, store: Store) -> None:
    # during a leader election no manager can list the nodes: their states are unknown, not down
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    ok(_project(api, "eu", cluster="eu-swarm"), 201)
    engines = _Swarm()
    monitor = ClusterMonitor(store, engines, leading=lambda: True)  # type: ignore[arg-type]
    monitor.probe("eu-swarm")
    electing = ClusterHealth("eu-swarm", "Degraded", True, "electing a leader")
    engines.health = lambda name: electing  # type: ignore[method-assign]
    monitor.probe("eu-swarm")
    del engines.health
    monitor.probe("eu-swarm")
    reasons = [e["reason"] for e in ok(api.get(f"{V1}/projects/acme/eu/events"))["items"]]
    assert "NodeDown" not in reasons and "NodeUp" not in reasons, reasons
    assert reasons.count("ClusterDegraded") == 1, reasons
