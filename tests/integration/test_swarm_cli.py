"""The cluster commands of the CLI against a real `dockyard server` and a real test swarm (1 manager
reached over TLS and over its socket, 2 workers): `cluster add` with TLS files, `get clusters` (local
first, the swarm Ready with its nodes), the key never shown, `node label` honoured by an App's placement
constraint, join tokens (audited), `cluster remove` refused while a project uses the cluster, and writes
refused at once (503) while no manager answers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockyard_harness import Server
from swarm_cluster import DEMO, SwarmCluster
from swarm_fixtures import module_server, module_swarm

pytestmark = pytest.mark.engine

LAB = "lab"


@pytest.fixture(scope="module")
def swarm() -> Iterator[SwarmCluster]:
    with module_swarm(managers=1, workers=2) as c:
        yield c


@pytest.fixture(scope="module")
def dy(swarm: SwarmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with module_server(tmp_path_factory) as s:
        yield s


def _cluster(s: Server, name: str) -> dict:
    with s.client() as c:
        return c.get(f"/clusters/{name}").json()


def _service_nodes(swarm: SwarmCluster, app: str) -> list[str]:
    """The nodes the running tasks of the App's service are on, read from the swarm itself."""
    names = swarm.docker("m1", "service", "ls", "--filter", f"label=dockyard.app={app}",
                         "--format", "{{.Name}}").split()
    if len(names) != 1:
        return []
    out = swarm.docker("m1", "service", "ps", "--filter", "desired-state=running", "--format",
                       "{{.Node}} {{.CurrentState}}", names[0]).splitlines()
    return sorted(line.split()[0] for line in out if " Running" in line)


def test_cluster_add_get_and_the_sealed_key(dy: Server, swarm: SwarmCluster, tmp_path: Path) -> None:
    files = []
    for name, pem in zip(("ca.pem", "client.pem", "client-key.pem"), swarm.client_tls, strict=True):
        (tmp_path / name).write_text(pem)
        files.append(str(tmp_path / name))
    dy.cli("cluster", "add", LAB, "--driver", "swarm", "--endpoint", swarm.tcp_url("m1"),
           "--endpoint", swarm.sock("m1"), "--tls-ca", files[0], "--tls-cert", files[1],
           "--tls-key", files[2], "--label", "region=test", "--description", "the test swarm")
    started = time.monotonic()
    dy.wait_for(lambda: _cluster(dy, LAB)["status"].get("phase") == "Ready", timeout=30,
                what="the cluster to be Ready")
    ready_after = time.monotonic() - started
    lines = dy.cli("get", "clusters").stdout.splitlines()
    assert lines[0].split() == ["NAME", "DRIVER", "ENDPOINTS", "STATUS", "NODES", "LABELS", "AGE"]
    assert lines[1].split()[:2] == ["local", "docker"]
    row = lines[2].split()
    assert row[:6] == [LAB, "swarm", swarm.tcp_url("m1"), "(+1)", "Ready", "3/3"], lines[2]
    assert "region=test" in lines[2]
    shown = dy.cli("get", "cluster", LAB, "-o", "yaml").stdout
    assert "key: (sealed)" in shown and "PRIVATE KEY" not in shown and "CERTIFICATE" in shown
    status = _cluster(dy, LAB)["status"]
    assert status["managers"] == {"total": 1, "reachable": 1} and status["nodes"] == {"total": 3, "ready": 3}
    assert status["activeEndpoint"] == swarm.tcp_url("m1")
    nodes = [line.split() for line in dy.cli("get", "nodes", "--cluster", LAB).stdout.splitlines()[1:]]
    assert sorted((n[0], n[1], n[2], n[3], n[4]) for n in nodes) == [
        (LAB, "m1", "manager", "active", "ready"), (LAB, "w1", "worker", "active", "ready"),
        (LAB, "w2", "worker", "active", "ready")]
    took = []
    with dy.client() as c:
        for _ in range(20):
            t0 = time.monotonic()
            c.get("/clusters").raise_for_status()
            took.append(time.monotonic() - t0)
    took.sort()
    print(f"\ncluster Ready {ready_after:.1f} s after `cluster add`; GET /clusters (local + {LAB}) x20: "
          f"median {took[10] * 1000:.0f} ms, max {took[-1] * 1000:.0f} ms")
    assert took[10] < 0.5


def test_node_labels_steer_an_apps_placement(dy: Server, swarm: SwarmCluster, tmp_path: Path) -> None:
    out = dy.cli("node", "label", "w2", "zone=b", "disk=ssd").stdout  # no --cluster: only lab has a w2
    assert "zone=b" in out
    assert json.loads(swarm.docker("m1", "node", "inspect", "w2", "--format", "{{json .Spec.Labels}}")) == {
        "zone": "b", "disk": "ssd"}
    dy.cli("node", "label", "w2", "disk-")
    rows = json.loads(dy.cli("get", "nodes", "--cluster", LAB, "-o", "json").stdout)["items"]
    assert next(r for r in rows if r["name"] == "w2")["labels"] == {"zone": "b"}
    manifest = tmp_path / "lab.yaml"
    manifest.write_text(f"""
apiVersion: dockyard/v1
kind: Tenant
metadata: {{name: acme}}
---
apiVersion: dockyard/v1
kind: Project
metadata: {{name: lab, tenant: acme}}
spec: {{cluster: {LAB}}}
---
apiVersion: dockyard/v1
kind: App
metadata: {{name: web, project: acme/lab}}
spec:
  image: {DEMO}
  command: ["httpd", "-f", "-p", "8080"]
  replicas: 2
  placement: {{constraints: ["node.labels.zone==b"]}}
""")
    dy.cli("apply", "-f", str(manifest))
    dy.cli("wait", "app", "web", "-p", "acme/lab", "--timeout", "90s")
    assert _service_nodes(swarm, "web") == ["w2", "w2"]
    err = dy.cli("apply", "-f", "-", check=False, input="""
apiVersion: dockyard/v1
kind: Project
metadata: {name: lab, tenant: acme}
spec: {cluster: local}
""")
    assert err.returncode == 1 and "spec.cluster" in err.stderr and "cannot change" in err.stderr


def test_join_tokens_are_shown_to_admins_and_audited(dy: Server, swarm: SwarmCluster) -> None:
    out = dy.cli("cluster", "join-token", LAB).stdout
    worker = swarm.docker("m1", "swarm", "join-token", "-q", "worker").strip()
    assert f"docker swarm join --token {worker} {swarm.ip('m1')}:2377" in out
    audit = dy.cli("audit", "-o", "json").stdout
    assert "/clusters/{cluster}/join-tokens" in audit


def test_a_cluster_in_use_cannot_be_removed(dy: Server) -> None:
    res = dy.cli("cluster", "remove", LAB, check=False)
    assert res.returncode == 1 and "acme/lab" in res.stderr and "delete them first" in res.stderr


def test_with_no_manager_answering_writes_fail_fast(dy: Server, swarm: SwarmCluster) -> None:
    """The only manager crashed: writes to the swarm's project answer 503 at once; the local engine's
    projects, and removing the project and then the cluster, still work."""
    swarm.kill("m1")
    with dy.client() as c:
        dy.wait_for(lambda: c.get(f"/clusters/{LAB}").json()["status"]["writable"] is False, timeout=30,
                    what="the cluster to be seen unwritable")
        took = []
        for _ in range(10):
            t0 = time.monotonic()
            r = c.post("/projects/acme/lab/apps/web/scale", json={"replicas": 3})
            took.append(time.monotonic() - t0)
            assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
            assert r.json()["detail"].startswith(f"cluster {LAB} cannot apply changes now: ")
            assert r.json()["detail"].endswith("; nothing was changed")
        assert c.get("/projects/acme/lab/apps/web").json()["spec"]["replicas"] == 2
        home = c.post("/projects", json={"kind": "Project", "metadata": {"name": "home", "tenant": "acme"}})
        assert home.status_code == 201, home.text
        print(f"\n503 with the only manager down: max {max(took) * 1000:.0f} ms over 10 writes; "
              f"detail: {r.json()['detail']}")
        assert max(took) < 1.0
    dy.cli("delete", "project", "acme/lab")
    dy.cli("cluster", "remove", LAB)
    assert LAB not in dy.cli("get", "clusters").stdout
