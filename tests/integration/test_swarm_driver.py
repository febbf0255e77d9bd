"""The Swarm engine driver against a real test swarm (3 managers, 2 workers; tests/integration/swarm_cluster.py),
driven directly (no server): what it writes is read back with the docker CLI on the nodes.

Tests share one cluster and run in file order; the destructive ones (a manager killed, quorum lost) last.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from swarm_cluster import DEMO, SwarmCluster
from swarm_fixtures import module_swarm

from dockyard.engines.base import DesiredApp, EngineError, EngineUnavailable, MountedFile, ObservedApp, WorkloadKey
from dockyard.engines.endpoints import Endpoint
from dockyard.engines.swarm import SwarmDriver
from dockyard.model.app import AppSpec, template_hash, template_of

pytestmark = pytest.mark.engine

BROKEN = "dockyard/demo:broken"  # serves no /healthz: an HTTP health check on it never passes
KEY = WorkloadKey("acme", "shop", "web")
FILES = [MountedFile("db-pass", "/run/secrets/db-pass", b"s3cret-1", True),
         MountedFile("app-conf", "/etc/app.conf", b"mode=test\n", False)]
BASE = {"image": DEMO, "replicas": 4, "labels": {"team": "blue"},
        "resources": {"limits": {"cpu": "0.5", "memory": "64Mi"}, "requests": {"cpu": "0.1", "memory": "32Mi"}},
        "healthcheck": {"http": {"port": 8080, "path": "/healthz"}, "interval": "1s", "timeout": "1s", "retries": 2},
        "securityContext": {"capabilities": {"drop": ["NET_RAW"]}},
        "secrets": [{"name": "db-pass"}], "configs": [{"name": "app-conf", "target": "/etc/app.conf"}]}
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def swarm() -> Iterator[SwarmCluster]:
    with module_swarm(images=(DEMO, BROKEN)) as c:
        yield c
    print("\nswarm driver figures: " + json.dumps({k: round(v, 2) for k, v in FIGURES.items()}))


def tls_endpoint(c: SwarmCluster, node: str) -> Endpoint:
    assert c.tls_dir is not None
    d = Path(c.tls_dir)
    return Endpoint(c.tcp_url(node), tls=(str(d / "ca.pem"), str(d / "cert.pem"), str(d / "key.pem")))


@pytest.fixture(scope="module")
def driver(swarm: SwarmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwarmDriver]:
    """Endpoints: a socket nobody listens on first, then m2 and m3 over TLS, then m1's socket."""
    dead = tmp_path_factory.mktemp("dead") / "docker.sock"
    eps = [Endpoint(f"unix://{dead}"), tls_endpoint(swarm, "m2"), tls_endpoint(swarm, "m3"), Endpoint(swarm.sock("m1"))]
    d = SwarmDriver(eps, instance="t" + str(swarm.slot), name="testswarm")
    yield d
    d.close()


def desired(spec: dict, revision: int = 1, files: list[MountedFile] = FILES) -> DesiredApp:
    s = AppSpec.model_validate(spec)
    h = template_hash({"t": template_of(s), "f": [f.data.hex() for f in files]})
    return DesiredApp(KEY, s, h, revision, 1, files=files)


def converge(d: SwarmDriver, want: DesiredApp, timeout: float = 60) -> tuple[ObservedApp, list[str]]:
    """Reconcile until converged or stalled, as the controller would; the actions taken on the way."""
    actions: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        o = d.reconcile_app(want)
        actions += o.actions
        if o.converged or o.stalled_reason:
            return o, actions
        assert time.monotonic() < deadline, f"not converged: {o.message} {[(c.name, c.state) for c in o.containers]}"
        time.sleep(0.5)


def inspect(c: SwarmCluster, name: str) -> dict:
    return json.loads(c.docker("m1", "service", "inspect", name))[0]


def running_tasks(c: SwarmCluster, service: str) -> list[dict]:
    out = c.docker("m1", "service", "ps", service, "--filter", "desired-state=running", "--no-trunc",
                   "--format", "{{json .}}")
    return [t for t in map(json.loads, out.splitlines()) if t["CurrentState"].startswith("Running")]


def test_an_app_becomes_a_service_whose_tasks_run_and_spread(swarm: SwarmCluster, driver: SwarmDriver) -> None:
    t0 = time.monotonic()
    o, actions = converge(driver, desired(BASE))
    FIGURES["4 replicas running (s)"] = time.monotonic() - t0
    assert o.converged and o.updated_ready == 4 and actions[0].startswith("create service")
    # the dead socket was skipped: the second endpoint (m2 over TLS) serves
    assert driver.url == swarm.tcp_url("m2")
    name = "dy-" + driver.instance + "-acme-shop-web"
    tasks = running_tasks(swarm, name)
    assert len(tasks) == 4 and len({t["Node"] for t in tasks}) >= 3, tasks  # spread over the nodes
    assert {c.name.rsplit(".", 1)[0] for c in o.containers} == {f"{name}.{i}" for i in range(1, 5)}
    assert all(c.ip for c in o.containers)


def test_limits_labels_security_and_policy_show_in_the_service(swarm: SwarmCluster, driver: SwarmDriver) -> None:
    spec = inspect(swarm, "dy-" + driver.instance + "-acme-shop-web")["Spec"]
    labels = spec["Labels"]
    assert labels["dockyard.instance"] == driver.instance and labels["dockyard.app"] == "web"
    assert labels["team"] == "blue" and labels["dockyard.template-hash"] == desired(BASE).template_hash
    tt = spec["TaskTemplate"]
    assert tt["Resources"]["Limits"] == {"NanoCPUs": 500_000_000, "MemoryBytes": 64 << 20, "Pids": 1024}
    assert tt["Resources"]["Reservations"] == {"NanoCPUs": 100_000_000, "MemoryBytes": 32 << 20}
    cs = tt["ContainerSpec"]
    assert cs["CapabilityDrop"] == ["CAP_NET_RAW"] and cs["Labels"]["dockyard.tenant"] == "acme"
    assert "/healthz" in cs["Healthcheck"]["Test"][1]
    assert spec["EndpointSpec"]["Mode"] == "dnsrr"
    assert spec["UpdateConfig"]["Order"] == "start-first" and spec["UpdateConfig"]["FailureAction"] == "rollback"
    assert tt["Networks"][0]["Aliases"] == ["web"]
    assert driver.list_apps() == {KEY} and ("acme", "shop") in driver.list_projects()
    summary = driver.summary()  # what a resync compares: the same task names as observe_app
    assert set(summary) == {KEY} and sorted(summary[KEY]) == sorted((c.name, c.state) for c in driver.observe_app(KEY))


def test_secrets_and_configs_are_mounted_and_replaced_by_content(swarm: SwarmCluster, driver: SwarmDriver) -> None:
    name = "dy-" + driver.instance + "-acme-shop-web"
    task = running_tasks(swarm, name)[0]
    container = f"{task['Name']}.{task['ID']}"
    assert swarm.docker(task["Node"], "exec", container, "cat", "/run/secrets/db-pass") == "s3cret-1"
    assert swarm.docker(task["Node"], "exec", container, "cat", "/etc/app.conf") == "mode=test\n"
    before = set(swarm.docker("m1", "secret", "ls", "-q").split())
    files = [MountedFile("db-pass", "/run/secrets/db-pass", b"s3cret-2", True), FILES[1]]
    o, actions = converge(driver, desired(BASE, revision=2, files=files))
    assert o.converged and any(a.startswith("update service") for a in actions)
    task = running_tasks(swarm, name)[0]
    assert swarm.docker(task["Node"], "exec", f"{task['Name']}.{task['ID']}", "cat", "/run/secrets/db-pass") == "s3cret-2"
    after = set(swarm.docker("m1", "secret", "ls", "-q").split())
    assert len(after - before) == 1  # a new secret for the new content; the old one is kept for a rollback
    # the same App again: nothing is updated, no task restarts
    ids = {t["ID"] for t in running_tasks(swarm, name)}
    o = driver.reconcile_app(desired(BASE, revision=2, files=files))
    assert o.converged and not o.actions and {t["ID"] for t in running_tasks(swarm, name)} == ids


def test_scale_and_a_start_first_update(swarm: SwarmCluster, driver: SwarmDriver) -> None:
    files = [MountedFile("db-pass", "/run/secrets/db-pass", b"s3cret-2", True), FILES[1]]
    o, actions = converge(driver, desired({**BASE, "replicas": 6}, revision=2, files=files))
    assert o.converged and o.updated_ready == 6 and actions == [
        f"scale service dy-{driver.instance}-acme-shop-web from 4 to 6"]
    # an update: never fewer than 6 ready tasks on the way (start-first)
    changed = desired({**BASE, "replicas": 6, "env": {"COLOR": "green"}}, revision=3, files=files)
    low = 6
    deadline = time.monotonic() + 90
    while True:
        o = driver.reconcile_app(changed)
        low = min(low, o.ready)
        if o.converged:
            break
        assert time.monotonic() < deadline, o.message
        time.sleep(0.3)
    assert low >= 6 and all(c.revision == 3 for c in o.containers)


def test_a_failing_image_rolls_back_automatically(swarm: SwarmCluster, driver: SwarmDriver) -> None:
    files = [MountedFile("db-pass", "/run/secrets/db-pass", b"s3cret-2", True), FILES[1]]
    bad = desired({**BASE, "replicas": 6, "env": {"COLOR": "green"}, "image": BROKEN}, revision=4, files=files)
    t0 = time.monotonic()
    o, actions = converge(driver, bad, timeout=90)
    FIGURES["rollback detected (s)"] = time.monotonic() - t0
    assert o.stalled_reason and o.stalled_reason.startswith("rolled back automatically: "), o.stalled_reason
    assert o.stalled_reason.endswith("running revision 3")
    assert actions == [f"update service dy-{driver.instance}-acme-shop-web to revision 4"]
    # asked again, the failed template is not applied again
    version = inspect(swarm, f"dy-{driver.instance}-acme-shop-web")["Version"]["Index"]
    stalled = o.stalled_reason
    for _ in range(3):
        o = driver.reconcile_app(bad)
        assert not o.actions and o.stalled_reason == stalled
    spec = inspect(swarm, f"dy-{driver.instance}-acme-shop-web")
    assert spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == DEMO
    assert spec["Version"]["Index"] == version
    # scaling while rolled back scales the template Swarm rolled back to, and still never applies the failed one
    for replicas in (7, 6):
        bad.spec = bad.spec.model_copy(update={"replicas": replicas})
        o = driver.reconcile_app(bad)
        assert o.actions and "scale service" in o.actions[0] and o.stalled_reason == stalled, (o.actions, o.stalled_reason)
        swarm.wait_for(lambda n=replicas: len([c for c in driver.reconcile_app(bad).containers if c.ready]) == n, 60,
                       what=f"{replicas} tasks of the rolled-back template")
        spec = inspect(swarm, f"dy-{driver.instance}-acme-shop-web")
        assert spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == DEMO
        assert spec["Spec"]["Mode"]["Replicated"]["Replicas"] == replicas


def test_node_drain_activate_labels_and_join_tokens(swarm: SwarmCluster, driver: SwarmDriver) -> None:
    nodes = {n.name: n for n in driver.nodes()}
    assert set(nodes) == {"m1", "m2", "m3", "w1", "w2"}
    assert sorted(n.role for n in nodes.values()) == ["manager"] * 3 + ["worker"] * 2
    assert sum(n.manager_status == "leader" for n in nodes.values()) == 1
    assert all(n.status == "ready" and n.cpus > 0 and n.memory_total > 0 and n.address for n in nodes.values())
    assert sum(len(n.containers) for n in nodes.values()) == 6
    w1 = driver.update_node("w1", availability="drain", labels={"zone": "a", "disk": "ssd"})
    assert w1.availability == "drain" and ("zone", "a") in w1.labels
    swarm.wait_for(lambda: not [n for n in driver.nodes() if n.name == "w1"][0].containers, 60,
                   what="w1's tasks to move away")
    assert "Drain" in swarm.docker("m1", "node", "inspect", "w1", "--format", "{{.Spec.Availability}}").title()
    w1 = driver.update_node("w1", availability="active", labels={"disk": None})
    assert w1.availability == "active" and w1.labels == (("zone", "a"),)
    with pytest.raises(EngineError) as e:
        driver.update_node("nope", availability="drain")
    assert e.value.reason == "NodeNotFound"
    tokens = driver.join_tokens()
    assert tokens["worker"].startswith("SWMTKN-") and tokens["manager"].startswith("SWMTKN-")
    assert tokens["managerAddress"].endswith(":2377")
    h = driver.health()
    assert h.writable and h.phase == "Ready" and h.managers_reachable == 3 and h.nodes_ready == 5, h


def test_logs_and_events(swarm: SwarmCluster, driver: SwarmDriver) -> None:
    lines = list(driver.logs(KEY, tail=5))
    assert lines and any("demo" in ln.text or "GET" in ln.text or "response" in ln.text for ln in lines), lines[:5]
    assert all(ln.container.startswith(f"dy-{driver.instance}-acme-shop-web.") for ln in lines)
    stop = threading.Event()
    seen: list = []

    def watch() -> None:
        for ev in driver.events(stop):
            seen.append(ev)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    time.sleep(1.5)
    files = [MountedFile("db-pass", "/run/secrets/db-pass", b"s3cret-2", True), FILES[1]]
    driver.reconcile_app(desired({**BASE, "replicas": 7, "env": {"COLOR": "green"}}, revision=3, files=files))
    swarm.wait_for(lambda: any(e.key == KEY for e in seen), 15, what="a task event")
    stop.set()
    t.join(5)
    assert not t.is_alive()


def test_tasks_that_find_no_node_stall_after_the_deadline_and_an_app_is_removed(swarm: SwarmCluster,
                                                                             driver: SwarmDriver) -> None:
    key = WorkloadKey("acme", "shop", "nowhere")
    spec = AppSpec.model_validate({"image": DEMO, "placement": {"constraints": ["node.labels.zone==mars"]}})
    want = DesiredApp(key, spec, template_hash(template_of(spec)), 1, 1)
    assert driver.reconcile_app(want).actions
    late = DesiredApp(key, spec, want.template_hash, 1, 1, rollout_stalled=True)  # the controller's deadline
    o = swarm.wait_for(lambda: (r := driver.reconcile_app(late)).stalled_reason and
                       "no suitable node" in r.stalled_reason and r, 20, what="a stalled rollout")
    assert o.stalled_reason.startswith("the rollout did not complete within its progress deadline"), o.stalled_reason
    assert driver.remove_app(key) == 1
    assert key not in driver.list_apps()
    assert driver.remove_app(key) == 0


def test_removing_a_project_removes_its_services_network_and_files(swarm: SwarmCluster, driver: SwarmDriver) -> None:
    keys = [WorkloadKey("acme", "gone", "a"), WorkloadKey("acme", "gone", "b")]
    spec = AppSpec.model_validate({"image": DEMO, "secrets": [{"name": "db-pass"}]})
    for k in keys:
        driver.reconcile_app(DesiredApp(k, spec, template_hash(template_of(spec)), 1, 1, files=FILES[:1]))
    label = "label=dockyard.project=gone"
    assert len(swarm.docker("m1", "service", "ls", "-q", "--filter", label).split()) == 2
    driver.remove_project("acme", "gone")
    assert swarm.docker("m1", "service", "ls", "-q", "--filter", label) == ""
    assert swarm.docker("m1", "secret", "ls", "-q", "--filter", label) == ""
    swarm.wait_for(lambda: (driver.remove_project("acme", "gone"),
                            swarm.docker("m1", "network", "ls", "-q", "--filter", label) == "")[1], 30,
                   what="the project's network removed once its tasks are gone")
    assert KEY in driver.list_apps()  # the other project's app stays


def test_failover_when_the_active_manager_dies(swarm: SwarmCluster, driver: SwarmDriver) -> None:
    active = driver.url
    victim = next(m for m in swarm.managers if active == swarm.tcp_url(m))
    if swarm.leader() == victim:
        pytest.skip("the active endpoint's manager leads: killing it means an election, tested elsewhere")
    swarm.kill(victim)
    t0 = time.monotonic()
    assert KEY in driver.list_apps()
    FIGURES["call after the active manager died (s)"] = time.monotonic() - t0
    assert driver.url != active
    swarm.start(victim)


def test_no_quorum_fails_fast_and_says_why(swarm: SwarmCluster, driver: SwarmDriver) -> None:
    swarm.wait_ready()
    leader = swarm.leader()
    keep = next(m for m in swarm.managers if m != leader)
    for m in swarm.managers:
        if m != keep:
            swarm.kill(m)
    slowest = 0.0
    for _ in range(3):
        t0 = time.monotonic()
        with pytest.raises(EngineUnavailable) as e:
            driver.reconcile_app(desired({**BASE, "replicas": 2}, revision=9))
        slowest = max(slowest, time.monotonic() - t0)
        time.sleep(1)
    FIGURES["slowest write without quorum (s)"] = slowest
    assert "has no leader" in str(e.value) or "no manager endpoint answers" in str(e.value), e.value
    assert slowest <= 4.5
    # a cold look (a driver that knows nothing yet, as after a server restart) is fast too
    fresh = SwarmDriver(driver.endpoints.endpoints, instance=driver.instance, name="testswarm")
    for d, figure in ((driver, "health without quorum (s)"), (fresh, "cold health without quorum (s)")):
        t0 = time.monotonic()
        h = d.health()
        FIGURES[figure] = time.monotonic() - t0
        assert not h.writable and h.phase == "Unavailable" and ("leader" in h.message or "answers" in h.message), h
        assert FIGURES[figure] <= 4.5
    fresh.close()
