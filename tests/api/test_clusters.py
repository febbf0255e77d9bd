"""Kind Cluster through the API: admin only, TLS keys sealed, `local` reserved and listed first with
live health, projects bound to an existing cluster for good, the 503 refusal of writes on a cluster
that cannot apply them, node operations and join tokens (audited). The server's ClusterOps (over the
cluster router) is replaced by a fake here; tests/integration drive the real one against a swarm."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from api_checks import V1, ok, problem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from test_api import next_event, sse_events

from dockyard.engines.base import NodeInfo
from dockyard.model.cluster import SEALED, ClusterError, ClusterHealth
from dockyard.store.repository import Store

PW = "viewer-password-1"


def _pem_pair(name: str) -> tuple[str, str]:
    """A self-signed certificate and its key, in PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


CERT, KEY = _pem_pair("client")
_, OTHER_KEY = _pem_pair("client-2")


def swarm(name: str = "eu-swarm", **spec: Any) -> dict:
    return {"kind": "Cluster", "metadata": {"name": name, "labels": {"region": "eu-west"}},
            "spec": {"driver": "swarm", "endpoints": [
                {"url": "tcp://10.98.0.2:2376", "tls": {"ca": CERT, "cert": CERT, "key": KEY}},
                {"url": "unix:///tmp/m2/docker.sock"}], **spec}}


@dataclass
class FakeClusterOps:
    """What the server's ClusterOperations answers, set by each test."""

    health: dict[str, ClusterHealth] = field(default_factory=dict)
    node_list: list[NodeInfo] = field(default_factory=list)
    updates: list[tuple] = field(default_factory=list)
    probes: int = 0

    def cluster_health(self, cluster: str) -> ClusterHealth:
        self.probes += 1
        if cluster not in self.health and cluster != "local":
            raise ClusterError(404, f"cluster {cluster} does not exist")
        return self.health.get(cluster) or ClusterHealth(cluster, "Ready", True, "the engine answers")

    def nodes(self, cluster: str | None = None) -> list[NodeInfo]:
        return [n for n in self.node_list if cluster is None or n.cluster == cluster]

    def update_node(self, cluster: str, node: str, *, availability: str | None = None,
                    labels: dict[str, str | None] | None = None) -> NodeInfo:
        self.updates.append((cluster, node, availability, labels))
        found = next((n for n in self.node_list if (n.cluster, n.name) == (cluster, node)), None)
        if found is None:
            raise ClusterError(404, f"cluster {cluster} has no node {node}")
        new = dict(found.labels)
        for k, v in (labels or {}).items():
            if v is None:
                new.pop(k, None)
            else:
                new[k] = v
        return NodeInfo(found.name, found.status, found.engine_version, found.cpus, found.memory_total, (),
                        found.role, availability or found.availability, found.manager_status,
                        tuple(sorted(new.items())), found.address, found.id, cluster)

    def join_tokens(self, cluster: str) -> dict[str, str]:
        return {"worker": "SWMTKN-1-worker", "manager": "SWMTKN-1-manager", "managerAddress": "10.98.0.2:2377"}


@pytest.fixture
def ops(api: Any) -> FakeClusterOps:
    fake = FakeClusterOps(node_list=[
        NodeInfo("m1", "ready", "20.10.24", 2, 2**30, (), "manager", "active", "leader", (("zone", "a"),),
                 "10.98.0.2", "id-m1", "eu-swarm"),
        NodeInfo("w1", "ready", "20.10.24", 2, 2**30, (), "worker", "active", "", (), "10.98.0.5", "id-w1",
                 "eu-swarm"),
        NodeInfo("host", "ready", "20.10.24", 4, 2**32, (), cluster="local")])
    api.app.state.clusters = fake
    return fake


def _login(api: Any, name: str) -> dict:
    r = api.post(f"{V1}/login", json={"username": name, "password": PW})
    return {"Authorization": f"Bearer {ok(r)['token']}"}


def _project(api: Any, name: str, cluster: str | None = None) -> dict:
    if api.get(f"{V1}/tenants/acme").status_code == 404:
        ok(api.post(f"{V1}/tenants", json={"kind": "Tenant", "metadata": {"name": "acme"}}), 201)
    spec = {"cluster": cluster} if cluster else {}
    return api.post(f"{V1}/projects", json={"kind": "Project", "metadata": {"name": name, "tenant": "acme"},
                                           "spec": spec})


def test_a_clusters_tls_key_is_sealed_and_never_shown(api: Any, store: Store) -> None:
    created = ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    tls = created["spec"]["endpoints"][0]["tls"]
    assert tls == {"ca": CERT, "cert": CERT, "key": SEALED}
    assert "PRIVATE KEY" not in api.get(f"{V1}/clusters/eu-swarm").text
    assert "PRIVATE KEY" not in api.get(f"{V1}/clusters").text
    stored = store.get("Cluster", "", "eu-swarm").spec["endpoints"][0]["tls"]
    assert store.keyring.decrypt(stored["keyCiphertext"]).decode() == KEY
    assert "key" not in stored
    rv = created["metadata"]["resourceVersion"]
    # applying the same manifest again (key in PEM) or what a read showed (key sealed) changes nothing
    same = ok(api.put(f"{V1}/clusters/eu-swarm", json=swarm()))
    assert same["metadata"]["resourceVersion"] == rv
    shown = ok(api.get(f"{V1}/clusters/eu-swarm"))
    shown["spec"]["description"] = "Frankfurt"
    changed = ok(api.put(f"{V1}/clusters/eu-swarm", json={k: shown[k] for k in ("kind", "metadata", "spec")}))
    assert changed["spec"]["description"] == "Frankfurt"
    assert store.get("Cluster", "", "eu-swarm").spec["endpoints"][0]["tls"]["keyCiphertext"] == stored["keyCiphertext"]
    # a merge patch carries the sealed key along; a new key is sealed anew
    ok(api.patch(f"{V1}/clusters/eu-swarm", json={"metadata": {"labels": {"provider": "onprem"}}}))
    new = swarm()
    new["spec"]["endpoints"][0]["tls"]["key"] = OTHER_KEY
    ok(api.put(f"{V1}/clusters/eu-swarm", json=new))
    again = store.get("Cluster", "", "eu-swarm").spec["endpoints"][0]["tls"]
    assert store.keyring.decrypt(again["keyCiphertext"]).decode() == OTHER_KEY


def test_a_sealed_key_with_nothing_stored_is_refused(api: Any) -> None:
    body = swarm()
    body["spec"]["endpoints"][0]["tls"]["key"] = SEALED
    err = problem(api.post(f"{V1}/clusters", json=body), 422)
    assert err["errors"][0]["field"] == "spec.endpoints[0].tls.key"


def test_cluster_input_errors_name_the_field(api: Any) -> None:
    err = problem(api.post(f"{V1}/clusters", json=swarm(name="local")), 422)
    assert err["errors"] == [{"field": "metadata.name", "message": err["errors"][0]["message"]}]
    assert "reserved" in err["detail"]
    body = swarm()
    body["spec"]["endpoints"][1]["tls"] = {"ca": CERT, "cert": CERT, "key": KEY}
    err = problem(api.post(f"{V1}/clusters", json=body), 422)
    assert err["errors"][0]["field"] == "spec.endpoints[1]" and "tcp://" in err["errors"][0]["message"]
    body = swarm(endpoints=[{"url": "http://10.0.0.1:2375"}])
    assert problem(api.post(f"{V1}/clusters", json=body), 422)["errors"][0]["field"] == "spec.endpoints[0].url"
    for method in ("put", "patch", "delete"):
        kwargs = {"json": swarm(name="local")} if method != "delete" else {}
        assert "own engine" in problem(api.request(method.upper(), f"{V1}/clusters/local", **kwargs), 409)["detail"]


def test_only_admins_see_or_touch_clusters(api: Any, ops: FakeClusterOps) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    ok(api.post(f"{V1}/users", json={"name": "viewer1", "password": PW}), 201)
    ok(_project(api, "shop"), 201)
    ok(api.post(f"{V1}/projects/acme/shop/members", json={"user": "viewer1", "role": "owner"}), 201)
    h = _login(api, "viewer1")
    for method, path, body in [
            ("GET", "/clusters", None), ("GET", "/clusters/eu-swarm", None), ("GET", "/clusters/local", None),
            ("POST", "/clusters", swarm("mine")), ("PUT", "/clusters/eu-swarm", swarm()),
            ("PATCH", "/clusters/eu-swarm", {"spec": {}}), ("DELETE", "/clusters/eu-swarm", None),
            ("GET", "/clusters/eu-swarm/join-tokens", None), ("POST", "/clusters/eu-swarm/nodes/w1/drain", None),
            ("POST", "/clusters/eu-swarm/nodes/w1/activate", None),
            ("PATCH", "/clusters/eu-swarm/nodes/w1", {"labels": {"zone": "b"}})]:
        r = api.request(method, V1 + path, json=body, headers=h)
        assert "admins" in problem(r, 403)["detail"], (method, path)
    assert ops.updates == []
    # a tenant admin binds a project to any existing cluster: clusters are shared infrastructure
    r = api.post(f"{V1}/projects", headers=h, json={"kind": "Project", "metadata": {"name": "eu", "tenant": "acme"},
                                                    "spec": {"cluster": "eu-swarm"}})
    assert problem(r, 403)  # creating projects needs the tenant owner role ...
    ok(api.post(f"{V1}/tenants/acme/members", json={"user": "viewer1", "role": "owner"}), 201)
    ok(api.post(f"{V1}/projects", headers=h, json={"kind": "Project", "metadata": {"name": "eu", "tenant": "acme"},
                                                   "spec": {"cluster": "eu-swarm"}}), 201)  # ... not clusters.manage
    # node rows: the swarm fields are for admins only
    rows = ok(api.get(f"{V1}/nodes", headers=h))["items"]
    assert {r["name"] for r in rows} == {"m1", "w1", "host"}
    assert all("labels" not in r and "address" not in r for r in rows)


def test_the_list_shows_local_first_with_live_health(api: Any, store: Store, ops: FakeClusterOps) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    ok(api.post(f"{V1}/clusters", json=swarm("us-swarm")), 201)
    store.update_status("Cluster", "", "us-swarm", {"phase": "Degraded", "message": "stored by the monitor",
                                                    "conditions": [{"type": "Ready", "status": "False"}]})
    ops.health["eu-swarm"] = ClusterHealth("eu-swarm", "Ready", True, "3/3 managers reachable, 5/5 nodes ready",
                                           "tcp://10.98.0.2:2376", 3, 3, 5, 5)
    ops.health["us-swarm"] = ClusterHealth("us-swarm", "Unavailable", False, "the swarm has no leader", None, 3, 1)
    items = ok(api.get(f"{V1}/clusters"))["items"]
    assert [c["metadata"]["name"] for c in items] == ["local", "eu-swarm", "us-swarm"]
    local, eu, us = items
    assert local["spec"]["driver"] == "docker" and local["status"]["phase"] == "Ready"
    assert eu["status"]["managers"] == {"total": 3, "reachable": 3} and eu["status"]["nodes"]["ready"] == 5
    assert eu["status"]["activeEndpoint"] == "tcp://10.98.0.2:2376" and eu["status"]["writable"] is True
    assert us["status"]["phase"] == "Unavailable" and us["status"]["message"] == "the swarm has no leader"
    assert us["status"]["conditions"] == [{"type": "Ready", "status": "False"}], "the stored status is the base"
    assert eu["status"]["lastProbe"]
    assert ok(api.get(f"{V1}/clusters/us-swarm"))["status"]["writable"] is False
    assert ok(api.get(f"{V1}/clusters/local"))["metadata"]["name"] == "local"
    problem(api.get(f"{V1}/clusters/nowhere"), 404)
    # a label selector (`dockyard get clusters -l`): local has no labels
    ok(api.patch(f"{V1}/clusters/us-swarm", json={"metadata": {"labels": {"region": "us-east"}}}))

    def selected(selector: str) -> list[str]:
        return [c["metadata"]["name"] for c in ok(api.get(f"{V1}/clusters", params={"labelSelector": selector}))["items"]]
    assert selected("region=us-east") == ["us-swarm"]
    assert selected("region!=us-east") == ["local", "eu-swarm"]
    assert "labelSelector" in problem(api.get(f"{V1}/clusters", params={"labelSelector": "region in"}), 400)["detail"]


@pytest.mark.timeout(30)
def test_clusters_can_be_watched(api: Any, store: Store) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    with api.stream("GET", f"{V1}/clusters", params={"watch": "1"}) as r:
        events = sse_events(r)
        event, data = next(events)
        assert (event, data["object"]["metadata"]["name"]) == ("ADDED", "eu-swarm")
        assert data["object"]["spec"]["endpoints"][0]["tls"]["key"] == SEALED
        assert next(events)[0] == "BOOKMARK"
        store.update_status("Cluster", "", "eu-swarm", {"phase": "Unavailable", "message": "no leader"})
        event, data = next_event(events)
        assert event == "MODIFIED" and data["object"]["status"]["phase"] == "Unavailable"


def test_without_cluster_support_the_list_still_answers(api: Any) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    items = ok(api.get(f"{V1}/clusters"))["items"]
    assert [c["metadata"]["name"] for c in items] == ["local", "eu-swarm"]
    r = api.get(f"{V1}/clusters/eu-swarm/join-tokens")
    assert "not available" in problem(r, 503)["detail"]
    assert ok(api.get(f"{V1}/nodes", params={"cluster": "local"}))["items"][0]["cluster"] == "local"
    problem(api.get(f"{V1}/nodes", params={"cluster": "eu-swarm"}), 404)


def test_a_project_is_bound_to_an_existing_cluster_for_good(api: Any, ops: FakeClusterOps) -> None:
    err = problem(_project(api, "eu", cluster="eu-swarm"), 422)
    assert err["errors"][0]["field"] == "spec.cluster" and "does not exist" in err["errors"][0]["message"]
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    created = ok(_project(api, "eu", cluster="eu-swarm"), 201)
    assert created["spec"]["cluster"] == "eu-swarm" and created["spec"]["network"] == {"encrypted": False}
    local = ok(_project(api, "home"), 201)
    assert local["spec"]["cluster"] == "local"
    err = problem(api.patch(f"{V1}/projects/acme/eu", json={"spec": {"cluster": "local"}}), 422)
    assert err["errors"][0]["field"] == "spec.cluster"
    assert "cannot change from 'eu-swarm' to 'local'" in err["detail"] and "keep cluster: eu-swarm" in err["detail"]
    problem(api.patch(f"{V1}/projects/acme/home", json={"spec": {"cluster": "eu-swarm"}}), 422)
    ok(api.patch(f"{V1}/projects/acme/eu", json={"spec": {"network": {"encrypted": True}, "description": "x"}}))
    err = problem(api.delete(f"{V1}/clusters/eu-swarm"), 409)
    assert "acme/eu" in err["detail"] and "acme/home" not in err["detail"]
    ok(api.delete(f"{V1}/projects/acme/eu"))
    ok(api.delete(f"{V1}/clusters/eu-swarm"))
    problem(api.get(f"{V1}/clusters/eu-swarm"), 404)


APP = {"kind": "App", "metadata": {"name": "web"}, "spec": {"image": "dockyard/demo:1.0", "replicas": 1}}


def test_writes_to_a_cluster_that_cannot_apply_them_are_refused_fast(api: Any, store: Store,
                                                                     ops: FakeClusterOps) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    ok(_project(api, "eu", cluster="eu-swarm"), 201)
    ok(_project(api, "home"), 201)
    eu, home = f"{V1}/projects/acme/eu", f"{V1}/projects/acme/home"
    ok(api.post(f"{eu}/apps", json=APP), 201)
    ok(api.post(f"{eu}/apps/web/scale", json={"replicas": 2}))
    ok(api.post(f"{eu}/configs", json={"kind": "Config", "metadata": {"name": "c"}, "spec": {"data": "x"}}), 201)
    ops.health["eu-swarm"] = ClusterHealth("eu-swarm", "Unavailable", False,
                                           "the swarm has no leader: 2 of 3 managers are unreachable")
    before = store.get("App", "acme/eu", "web").resource_version
    writes = [("POST", f"{eu}/apps", {**APP, "metadata": {"name": "api"}}),
              ("PUT", f"{eu}/apps/web", APP), ("PATCH", f"{eu}/apps/web", {"spec": {"replicas": 3}}),
              ("DELETE", f"{eu}/apps/web", None), ("POST", f"{eu}/apps/web/scale", {"replicas": 5}),
              ("POST", f"{eu}/apps/web/restart", None), ("POST", f"{eu}/apps/web/rollback", {}),
              ("POST", f"{eu}/secrets", {"kind": "Secret", "metadata": {"name": "s"}, "spec": {"value": "v"}}),
              ("PATCH", f"{eu}/configs/c", {"spec": {"data": "y"}}), ("DELETE", f"{eu}/configs/c", None)]
    for method, url, body in writes:
        started = time.monotonic()
        r = api.request(method, url, json=body)
        took = time.monotonic() - started
        err = problem(r, 503)
        assert r.headers["Retry-After"] == "5"
        assert err["detail"] == ("cluster eu-swarm cannot apply changes now: the swarm has no leader: 2 of 3 "
                                 "managers are unreachable; nothing was changed"), err["detail"]
        assert took < 0.5, f"{method} {url} took {took:.2f} s"
    # a route that has no dry run is not let through by asking for one
    problem(api.post(f"{eu}/apps/web/scale", json={"replicas": 5}, params={"dryRun": "true"}), 503)
    assert store.get("App", "acme/eu", "web").resource_version == before
    problem(api.get(f"{eu}/apps/api"), 404)
    # reads, dry runs, the project itself and projects on other clusters are not refused
    assert ok(api.get(f"{eu}/apps/web"))["spec"]["replicas"] == 2
    ok(api.put(f"{eu}/apps/web", json=APP, params={"dryRun": "true"}))
    ok(api.patch(eu, json={"spec": {"description": "down for now"}}))
    ok(api.post(f"{home}/apps", json=APP), 201)
    ok(api.post(f"{home}/apps/web/scale", json={"replicas": 3}))
    # the cluster back: writes go through again
    ops.health["eu-swarm"] = ClusterHealth("eu-swarm", "Degraded", True, "2/3 managers reachable")
    ok(api.post(f"{eu}/apps/web/scale", json={"replicas": 3}))


def test_the_local_engine_is_never_refused(api: Any, ops: FakeClusterOps) -> None:
    ok(_project(api, "home"), 201)
    ops.health["local"] = ClusterHealth("local", "Unavailable", False, "the engine does not answer")
    probes = ops.probes
    ok(api.post(f"{V1}/projects/acme/home/apps", json=APP), 201)
    assert ops.probes == probes, "a local project's write does not even ask"


def test_node_operations(api: Any, ops: FakeClusterOps) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    ok(api.post(f"{V1}/clusters", json={"kind": "Cluster", "metadata": {"name": "edge"},
                                        "spec": {"driver": "docker", "endpoints": [{"url": "ssh://ops@edge-1"}]}}), 201)
    rows = ok(api.get(f"{V1}/nodes", params={"cluster": "eu-swarm"}))["items"]
    assert [r["name"] for r in rows] == ["m1", "w1"]
    m1 = rows[0]
    assert (m1["cluster"], m1["role"], m1["availability"], m1["managerStatus"], m1["labels"], m1["address"]) == (
        "eu-swarm", "manager", "active", "leader", {"zone": "a"}, "10.98.0.2")
    assert len(ok(api.get(f"{V1}/nodes"))["items"]) == 3
    row = ok(api.post(f"{V1}/clusters/eu-swarm/nodes/w1/drain"))
    assert row["availability"] == "drain" and row["name"] == "w1"
    assert ok(api.post(f"{V1}/clusters/eu-swarm/nodes/w1/activate"))["availability"] == "active"
    row = ok(api.patch(f"{V1}/clusters/eu-swarm/nodes/m1", json={"labels": {"zone": None, "disk": "ssd"}}))
    assert row["labels"] == {"disk": "ssd"}
    assert ops.updates[-1] == ("eu-swarm", "m1", None, {"zone": None, "disk": "ssd"})
    err = problem(api.patch(f"{V1}/clusters/eu-swarm/nodes/m1", json={"labels": {"bad key!": "x"}}), 422)
    assert "bad key!" in err["detail"]
    assert "no node" in problem(api.post(f"{V1}/clusters/eu-swarm/nodes/nope/drain"), 404)["detail"]
    problem(api.post(f"{V1}/clusters/nowhere/nodes/w1/drain"), 404)
    err = problem(api.post(f"{V1}/clusters/local/nodes/host/drain"), 409)
    assert err["detail"] == "cluster local is a single engine: it has no nodes to drain"
    problem(api.post(f"{V1}/clusters/edge/nodes/edge-1/activate"), 409)
    problem(api.get(f"{V1}/clusters/edge/join-tokens"), 409)


def test_join_tokens_are_audited(api: Any, ops: FakeClusterOps) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    tokens = ok(api.get(f"{V1}/clusters/eu-swarm/join-tokens"))
    assert tokens["worker"] == "SWMTKN-1-worker" and tokens["managerAddress"] == "10.98.0.2:2377"
    assert tokens["commands"]["manager"] == "docker swarm join --token SWMTKN-1-manager 10.98.0.2:2377"
    entries = ok(api.get(f"{V1}/audit", params={"action": "join-tokens"}))["items"]
    assert [(e["user"], e["action"], e["outcome"]) for e in entries] == [
        ("admin", "GET /clusters/{cluster}/join-tokens", 200)]
    assert entries[0]["detail"] == "join tokens of cluster eu-swarm shown"
    assert ok(api.post(f"{V1}/audit/verify"))["ok"]


def test_key_rotation_reseals_cluster_keys(api: Any, store: Store) -> None:
    ok(api.post(f"{V1}/clusters", json=swarm()), 201)
    old = store.get("Cluster", "", "eu-swarm").spec["endpoints"][0]["tls"]
    res = ok(api.post(f"{V1}/admin/secret-key/rotate"))
    new = store.get("Cluster", "", "eu-swarm").spec["endpoints"][0]["tls"]
    assert res["reencrypted"] == 1 and new["keyId"] == res["activeKey"] != old["keyId"]
    assert store.keyring.decrypt(new["keyCiphertext"]).decode() == KEY
