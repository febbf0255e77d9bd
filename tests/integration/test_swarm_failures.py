"""Failure behaviour on a real Docker Swarm (issue 6), end to end: one real `dockyard server`, a test swarm
of 3 managers and 2 workers (tests/integration/swarm_cluster.py) added as the Cluster `swarm` through the
API with the managers' TLS endpoints, a project bound to it and a project on the local engine.

The tests share the cluster and the server and run in file order, the destructive ones last: an
automatic rollback, the CLI's node operations, a worker killed, the leader killed, quorum lost, and the
whole swarm gone while the local project carries on. What the swarm runs is read from the swarm itself
(the docker CLI against a node), what Dockyard says from its API.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from dockyard_harness import Server, app_manifest, get_app
from swarm_cluster import DEMO, SwarmCluster
from swarm_fixtures import module_server, module_swarm

pytestmark = pytest.mark.engine

SWARM = "swarm"             # the Cluster's name in Dockyard
EDGE = "acme/edge"          # the project on the swarm
SHOP = "acme/shop"          # the project on the local engine
WEB = 4                     # replicas of the swarm app `web` (on the workers only)
FIGURES: dict[str, float] = {}  # measured times, printed at the end of the module (pytest -s)
MERGE = {"Content-Type": "application/merge-patch+json"}
# small reservations: a test node offers the host's 2 CPUs, and requests default to the limits
SMALL = {"cpu": "0.2", "memory": "64Mi", "requests": {"cpu": "20m", "memory": "16Mi"}}


# ---- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def swarm() -> Iterator[SwarmCluster]:
    with module_swarm(managers=3, workers=2, images=(DEMO, "dockyard/demo:broken")) as c:
        FIGURES["swarm up (s)"] = c.timings["total"]
        yield c
    print("\nswarm failure figures: " + json.dumps({k: round(v, 1) for k, v in FIGURES.items()}))


@pytest.fixture(scope="module")
def dy(swarm: SwarmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server, with the Cluster `swarm`, tenant acme, project edge on the swarm and shop on the local engine."""
    with module_server(tmp_path_factory) as s:
        ca, cert, key = swarm.client_tls
        endpoints = [{"url": swarm.tcp_url(m), "tls": {"ca": ca, "cert": cert, "key": key}} for m in swarm.managers]
        with s.client() as c:
            c.post("/clusters", json={"apiVersion": "dockyard/v1", "kind": "Cluster",
                                      "metadata": {"name": SWARM, "labels": {"region": "test", "provider": "onprem"}},
                                      "spec": {"driver": "swarm", "endpoints": endpoints}}).raise_for_status()
            c.post("/tenants", json={"kind": "Tenant", "metadata": {"name": "acme"}}).raise_for_status()
            c.post("/projects", json={"kind": "Project", "metadata": {"name": "edge", "tenant": "acme"},
                                      "spec": {"cluster": SWARM}}).raise_for_status()
            c.post("/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": "acme"}}
                   ).raise_for_status()
            s.wait_for(lambda: cluster_status(c).get("phase") == "Ready", timeout=60, interval=0.5,
                       what="the Cluster swarm to be Ready")
        yield s
        t0 = time.monotonic()  # the swarm is gone by now: the server must still stop within 10 s
    FIGURES["server stop and host clean-up with the swarm down (s)"] = time.monotonic() - t0


@pytest.fixture(scope="module")
def web(dy: Server, swarm: SwarmCluster) -> str:
    """The swarm app `web`: WEB replicas of demo 1.0 with an HTTP health check, on the workers only; its service name."""
    with dy.client() as c:
        c.post(f"/projects/{EDGE}/apps", json=app_manifest(
            "web", replicas=WEB, project=EDGE, resources=SMALL,
            placement={"constraints": ["node.role==worker"]})).raise_for_status()
    app_ready(dy, "web", WEB, timeout=90)
    return service_of(swarm, dy, "web")


# ---- helpers ---------------------------------------------------------------------------------------

def cluster_status(c: httpx.Client) -> dict:
    r = c.get(f"/clusters/{SWARM}")
    r.raise_for_status()
    return r.json().get("status") or {}


def app_ready(s: Server, name: str, n: int, project: str = EDGE, timeout: float = 60) -> dict:
    """The App's status once it is Ready with n replicas for its latest spec (observedGeneration current)."""
    def ready() -> dict | None:
        app = get_app(s, name, project)
        st = app.get("status") or {}
        return st if (st.get("phase") == "Ready" and st.get("readyReplicas") == n
                      and st.get("observedGeneration") == app["metadata"].get("generation")) else None
    return s.wait_for(ready, timeout=timeout, interval=0.5, what=f"{project}/{name} Ready with {n} replicas")


def service_of(swarm: SwarmCluster, s: Server, app: str) -> str:
    out = swarm.docker(swarm.manager_view(), "service", "ls", "--filter", f"label=dockyard.instance={s.instance}",
                       "--filter", f"label=dockyard.app={app}", "--format", "{{.Name}}")
    names = out.split()
    assert len(names) == 1, f"one service per App, found {names}"
    return names[0]


def tasks(swarm: SwarmCluster, service: str, via: str | None = None) -> list[dict]:
    """The service's tasks the swarm wants running: id, node, state (first word of CURRENT STATE), image."""
    out = swarm.docker(via or swarm.manager_view(), "service", "ps", service, "--filter", "desired-state=running",
                       "--no-trunc", "--format", "{{.ID}}|{{.Node}}|{{.CurrentState}}|{{.Image}}")
    rows = [line.split("|") for line in out.splitlines() if line]
    return [{"id": r[0], "node": r[1], "state": r[2].split()[0], "image": r[3]} for r in rows]


def running_on(swarm: SwarmCluster, service: str) -> dict[str, int]:
    """Running tasks per node, as the swarm reports them."""
    out: dict[str, int] = {}
    for t in tasks(swarm, service):
        if t["state"] == "Running":
            out[t["node"]] = out.get(t["node"], 0) + 1
    return out


def containers_everywhere(swarm: SwarmCluster, service: str) -> dict[str, list[str]]:
    """The service's running containers, asked of every live node's own engine: what really runs."""
    found = {}
    for name in swarm.nodes:
        if swarm.alive(name):
            out = swarm.docker(name, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}")
            found[name] = out.split()
    return found


def service_spec(swarm: SwarmCluster, service: str) -> dict:
    return json.loads(swarm.docker(swarm.manager_view(), "service", "inspect", service, "--format", "{{json .Spec}}"))


def until(swarm: SwarmCluster, predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.5,
          show: Callable[[], object] | None = None) -> object:
    """swarm.wait_for, failing the test with what show() says of the state at the timeout."""
    try:
        return swarm.wait_for(predicate, timeout, interval, what)
    except TimeoutError as e:
        raise AssertionError(f"{e}" + (f"; then: {show()}" if show else "")) from None


def restore(swarm: SwarmCluster) -> None:
    """Put the swarm back as the next test expects it: every node up, Ready and Active (also after a failure)."""
    for name in swarm.nodes:
        if not swarm.alive(name):
            swarm.start(name)
    swarm.wait_ready()
    for row in swarm.node_table():
        if row["availability"] != "Active":
            swarm.docker(swarm.manager_view(), "node", "update", "--availability", "active", row["hostname"])


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = call()
    return r, time.monotonic() - t0


def assert_unavailable(r: httpx.Response, elapsed: float) -> None:
    """The write was refused at once with a 503 problem naming the cluster, and nothing was changed."""
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert r.headers.get("retry-after") == "5", r.headers
    assert f"cluster {SWARM}" in r.json()["detail"] and "nothing was changed" in r.json()["detail"], r.json()
    assert elapsed < 5, f"the refusal took {elapsed:.1f} s"


def scale(c: httpx.Client, app: str, n: int, project: str = EDGE) -> httpx.Response:
    return c.post(f"/projects/{project}/apps/{app}/scale", json={"replicas": n})


# ---- tests, destructive ones last ------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_rollout_to_a_failing_image_rolls_back_automatically(dy: Server, swarm: SwarmCluster) -> None:
    with dy.client() as c:
        c.post(f"/projects/{EDGE}/apps", json=app_manifest("roll", replicas=2, project=EDGE, resources=SMALL)).raise_for_status()
        app_ready(dy, "roll", 2, timeout=90)
        service = service_of(swarm, dy, "roll")
        t0 = time.monotonic()
        c.patch(f"/projects/{EDGE}/apps/roll", json={"spec": {"image": "dockyard/demo:broken"}},
                headers=MERGE).raise_for_status()

        def rolled_back() -> dict | None:
            st = get_app(dy, "roll", EDGE).get("status") or {}
            return st if st.get("phase") == "Stalled" else None

        st = dy.wait_for(rolled_back, timeout=120, interval=0.5, what="the swarm to roll the update back")
        FIGURES["rollback: patch to Stalled/RolledBack (s)"] = time.monotonic() - t0
        ready = next(x for x in st["conditions"] if x["type"] == "Ready")
        assert ready["status"] == "False" and ready["reason"] == "RolledBack", ready
        assert ready["message"].startswith("rolled back automatically"), ready
        # the swarm runs the previous image's tasks only, as many as before
        until(swarm, lambda: [t["image"].split("@")[0] for t in tasks(swarm, service)
                       if t["state"] == "Running"] == [DEMO, DEMO]
              and len(tasks(swarm, service)) == 2, 60, "two running tasks of demo:1.0 only")
        assert service_spec(swarm, service)["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0] == DEMO
        st = dy.wait_for(lambda: (get_app(dy, "roll", EDGE)["status"].get("readyReplicas") == 2
                                  and get_app(dy, "roll", EDGE)["status"]), timeout=30, what="readyReplicas 2")
        assert st["phase"] == "Stalled", "the rolled-back spec is not applied again (it would loop)"
        # and it stays rolled back: Dockyard does not push the failing spec again
        time.sleep(8)
        assert [t["image"].split("@")[0] for t in tasks(swarm, service)] == [DEMO, DEMO]
        c.delete(f"/projects/{EDGE}/apps/roll").raise_for_status()
        until(swarm, lambda: not swarm.docker(swarm.manager_view(), "service", "ls", "-q", "--filter",
                                       f"name={service}").strip(), 60, "the service to be removed")


@pytest.mark.timeout(300)
def test_cli_lists_clusters_and_nodes_and_drains_a_worker(dy: Server, swarm: SwarmCluster, web: str) -> None:
    out = dy.cli("get", "clusters").stdout
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["NAME", "DRIVER", "ENDPOINTS", "STATUS"], out
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert list(rows)[0] == "local", "the local engine is listed first"
    assert rows[SWARM][1] == "swarm" and "Ready" in rows[SWARM], out

    out = dy.cli("get", "nodes", "--cluster", SWARM).stdout
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["CLUSTER", "NAME", "ROLE", "AVAILABILITY", "STATE", "MANAGER"], out
    nodes = {line.split()[1]: line.split() for line in lines[1:]}
    assert set(nodes) == set(swarm.nodes), out
    assert all(r[0] == SWARM for r in nodes.values()), out
    assert [nodes[n][2] for n in ("m1", "m2", "m3", "w1", "w2")] == ["manager"] * 3 + ["worker"] * 2, out
    assert all(nodes[n][3] == "active" and nodes[n][4] == "ready" for n in nodes), out
    assert sum(nodes[m][5] == "leader" for m in swarm.managers) == 1, out

    before = running_on(swarm, web)
    assert set(before) <= {"w1", "w2"} and sum(before.values()) == WEB, before
    try:
        t0 = time.monotonic()
        dy.cli("node", "drain", "w1", "--cluster", SWARM)
        until(swarm, lambda: running_on(swarm, web) == {"w2": WEB}, 60, "the tasks to leave the drained w1",
              show=lambda: tasks(swarm, web))
        FIGURES["drain w1: tasks moved (s)"] = time.monotonic() - t0
        assert not containers_everywhere(swarm, web)["w1"], "nothing of web runs on w1 any more"
        table = {r["hostname"]: r for r in swarm.node_table()}
        assert table["w1"]["availability"] == "Drain", table
        out = dy.cli("get", "nodes", "--cluster", SWARM).stdout
        assert next(line for line in out.splitlines() if line.split()[1] == "w1").split()[3] == "drain", out
        app_ready(dy, "web", WEB)

        dy.cli("node", "activate", "w1", "--cluster", SWARM)
        until(swarm, lambda: {r["hostname"]: r for r in swarm.node_table()}["w1"]["availability"] == "Active", 20,
              "w1 to be Active again")
        out = dy.cli("get", "nodes", "--cluster", SWARM).stdout
        assert next(line for line in out.splitlines() if line.split()[1] == "w1").split()[3] == "active", out
        # w1 takes tasks again: a restart (a rolling update) spreads web over both workers
        with dy.client() as c:
            c.post(f"/projects/{EDGE}/apps/web/restart").raise_for_status()
        until(swarm, lambda: set(running_on(swarm, web)) == {"w1", "w2"} and sum(running_on(swarm, web).values()) == WEB,
              60, "web on both workers after the restart", show=lambda: tasks(swarm, web))
        app_ready(dy, "web", WEB)
    finally:
        restore(swarm)


@pytest.mark.timeout(300)
def test_a_killed_worker_s_replicas_run_elsewhere_within_60s_and_no_duplicates_after_it_returns(
        dy: Server, swarm: SwarmCluster, web: str) -> None:
    on = running_on(swarm, web)
    victim = max(on, key=on.get)  # the worker with the most of web's tasks
    seen: list[tuple[str, int, str]] = []  # (phase, readyReplicas, the Available condition's status)

    def recovered() -> bool:
        st = get_app(dy, "web", EDGE).get("status") or {}
        available = next((x["status"] for x in st.get("conditions") or [] if x["type"] == "Available"), None)
        seen.append((st.get("phase"), st.get("readyReplicas"), available))
        return st.get("phase") == "Ready" and st.get("readyReplicas") == WEB and victim not in running_on(swarm, web) \
            and sum(running_on(swarm, web).values()) == WEB

    try:
        t0 = time.monotonic()
        swarm.kill(victim)
        until(swarm, recovered, 60, f"web Ready with {WEB} replicas away from the killed {victim}", interval=0.3,
              show=lambda: (seen[-3:], tasks(swarm, web)))
        failover = time.monotonic() - t0
        FIGURES["worker killed: to all replicas running elsewhere and App Ready (s)"] = failover
        assert failover < 60
        # the victim ran at least half of web's tasks: fewer than the strategy's minimum stay ready
        degraded = [p for p in seen if p[0] == "Degraded" and (p[1] or 0) < WEB and p[2] == "False"]
        assert degraded, f"the App never showed itself degraded while {victim} was down: {seen}"
        print(f"\nwhile {victim} was down the App showed (phase, readyReplicas, Available) "
              f"{sorted(set(degraded), key=str)}")

        swarm.start(victim)
        swarm.wait_ready()
        # the returned worker's old tasks must not come back beside their replacements: watch for a while
        end = time.monotonic() + 10
        while time.monotonic() < end:
            found = containers_everywhere(swarm, web)
            assert sum(len(ids) for ids in found.values()) <= WEB, f"duplicates after {victim} returned: {found}"
            running = [t for t in tasks(swarm, web) if t["state"] == "Running"]
            assert len(running) <= WEB, running
            time.sleep(1)
        until(swarm, lambda: sum(len(ids) for ids in containers_everywhere(swarm, web).values()) == WEB, 30,
              f"exactly {WEB} containers of web", show=lambda: containers_everywhere(swarm, web))
        assert len(tasks(swarm, web)) == WEB
        app_ready(dy, "web", WEB)
    finally:
        restore(swarm)


def _time_election(swarm: SwarmCluster, old: str, t0: float) -> None:
    """FIGURES gets how long the swarm itself took to have a leader other than `old` (for comparison)."""
    try:
        until(swarm, lambda: swarm.leader() not in (None, old), 60, "a new leader", interval=0.2)
        FIGURES["leader killed: the swarm's own election (s)"] = time.monotonic() - t0
    except AssertionError:
        pass


@pytest.mark.timeout(300)
def test_with_the_leader_killed_changes_are_applied_through_another_manager(
        dy: Server, swarm: SwarmCluster, web: str) -> None:
    leader = swarm.leader()
    assert leader in swarm.managers
    refusals: list[str] = []
    try:
        t0 = time.monotonic()
        swarm.kill(leader)
        elected = threading.Thread(target=_time_election, args=(swarm, leader, t0), daemon=True)
        elected.start()
        with dy.client() as c:
            # two of three managers still answer, so while the swarm elects a new leader the cluster is
            # Degraded but writable: a write is accepted (never held), and applied once there is a leader.
            # Write every 0.5 s from the kill until the swarm has its new leader: a single write would
            # pass on the router's health cached from before the kill
            accepted: list[float] = []
            while elected.is_alive() or not accepted:
                r, elapsed = timed(lambda: c.patch(f"/projects/{EDGE}/apps/web", headers=MERGE,
                                                   json={"spec": {"env": [{"name": "COLOUR", "value": "blue"}]}}))
                assert elapsed < 5, f"a write took {elapsed:.1f} s while the leader was down"
                if r.status_code == 503:
                    refusals.append(f"{time.monotonic() - t0:.1f}s {r.json()['detail']}")
                else:
                    r.raise_for_status()
                    accepted.append(time.monotonic() - t0)
                assert time.monotonic() - t0 < 75, f"no write accepted 75 s after the kill: {refusals[-3:]}"
                time.sleep(0.5)
            FIGURES["leader killed: to a write accepted (s)"] = accepted[0]
            print(f"\nleader {leader} killed: {len(accepted)} writes accepted, {len(refusals)} refused"
                  + (f", first: {refusals[0]}, last: {refusals[-1]}" if refusals else ""))
            app_ready(dy, "web", WEB, timeout=90)
        FIGURES["leader killed: to the change rolled out (s)"] = time.monotonic() - t0
        elected.join(60)
        env = service_spec(swarm, web)["TaskTemplate"]["ContainerSpec"].get("Env") or []
        assert "COLOUR=blue" in env, env
        running = [t for t in tasks(swarm, web) if t["state"] == "Running"]
        assert len(running) == WEB, running

        def envs() -> list[str]:
            return [swarm.docker(name, "inspect", cid, "--format", "{{json .Config.Env}}")
                    for name, ids in containers_everywhere(swarm, web).items() for cid in ids]
        # the App is Ready once WEB new tasks run; the last old container may still be stopping a moment
        until(swarm, lambda: len(e := envs()) == WEB and all("COLOUR=blue" in x for x in e), 15,
              "only containers with the change", show=envs)
        assert swarm.leader() not in (None, leader)
        with dy.client() as c:
            active = cluster_status(c).get("activeEndpoint")
        assert active and active != swarm.tcp_url(leader), f"Dockyard still names the dead {leader}: {active}"
        assert not refusals, (f"{len(refusals)} writes refused while the swarm elected a leader (2 of 3 managers "
                              f"up: it should stay writable); first: {refusals[0]}, last: {refusals[-1]}")
    finally:
        restore(swarm)


@pytest.mark.timeout(300)
def test_two_of_three_managers_down_writes_fail_fast_apps_keep_serving_and_it_recovers(
        dy: Server, swarm: SwarmCluster, web: str) -> None:
    leader = swarm.leader()
    down = [leader, next(m for m in swarm.managers if m != leader)]
    try:
        for m in down:
            swarm.kill(m)
        t0 = time.monotonic()
        with dy.client() as c:
            dy.wait_for(lambda: cluster_status(c).get("writable") is False, timeout=60, interval=0.5,
                        what="the cluster to say it cannot apply changes")
            FIGURES["quorum lost: to the cluster reported not writable (s)"] = time.monotonic() - t0
            st = cluster_status(c)
            assert st["phase"] == "Unavailable", st
            for attempt in (lambda: scale(c, "web", WEB + 1),
                            lambda: c.patch(f"/projects/{EDGE}/apps/web", headers=MERGE,
                                            json={"spec": {"env": [{"name": "COLOUR", "value": "red"}]}}),
                            lambda: c.post(f"/projects/{EDGE}/apps", json=app_manifest("more", project=EDGE))):
                r, elapsed = timed(attempt)
                assert_unavailable(r, elapsed)
                FIGURES["quorum lost: slowest refused write (s)"] = max(
                    elapsed, FIGURES.get("quorum lost: slowest refused write (s)", 0))
            app = get_app(dy, "web", EDGE)
            assert app["spec"]["replicas"] == WEB and {"name": "COLOUR", "value": "blue"} in app["spec"]["env"]
            assert c.get(f"/projects/{EDGE}/apps/more").status_code == 404

            # the workers' tasks keep serving without managers
            for w in swarm.workers:
                for cid in containers_everywhere(swarm, web)[w]:
                    body = swarm.docker(w, "exec", cid, "wget", "-qO-", "http://127.0.0.1:8080/")
                    assert body.startswith("demo 1.0"), body
            assert sum(len(v) for k, v in containers_everywhere(swarm, web).items() if k in swarm.workers) == WEB

            t1 = time.monotonic()
            swarm.start(down[0])
            dy.wait_for(lambda: cluster_status(c).get("writable") is True, timeout=90, interval=0.5,
                        what="the cluster to be writable again with 2 of 3 managers")
            FIGURES["one manager back: to the cluster writable (s)"] = time.monotonic() - t1
            assert cluster_status(c)["phase"] in ("Ready", "Degraded")
            scale(c, "web", WEB + 1).raise_for_status()
            app_ready(dy, "web", WEB + 1, timeout=90)
            FIGURES["one manager back: to a scale applied (s)"] = time.monotonic() - t1
        assert sum(running_on(swarm, web).values()) == WEB + 1
        assert FIGURES["quorum lost: to the cluster reported not writable (s)"] < 15
    finally:
        restore(swarm)


@pytest.mark.timeout(300)
def test_the_whole_swarm_down_does_not_disturb_the_local_project(dy: Server, swarm: SwarmCluster, web: str) -> None:
    with dy.client() as c:
        c.post(f"/projects/{SHOP}/apps", json=app_manifest("home", replicas=1, project=SHOP)).raise_for_status()
        app_ready(dy, "home", 1, project=SHOP)
        for name in swarm.nodes:
            swarm.kill(name)
        t0 = time.monotonic()
        dy.wait_for(lambda: cluster_status(c).get("phase") == "Unavailable", timeout=60, interval=0.5,
                    what="the Cluster swarm to be Unavailable")
        FIGURES["swarm gone: to the Cluster Unavailable (s)"] = time.monotonic() - t0

        t0 = time.monotonic()
        scale(c, "home", 2, project=SHOP).raise_for_status()
        app_ready(dy, "home", 2, project=SHOP, timeout=30)
        FIGURES["swarm gone: local scale 1→2 to Ready (s)"] = time.monotonic() - t0
        slowest = 0.0
        for _ in range(10):
            r, elapsed = timed(lambda: c.get(f"/projects/{SHOP}/apps"))
            r.raise_for_status()
            slowest = max(slowest, elapsed)
        FIGURES["swarm gone: slowest GET of the local project's apps (s)"] = slowest
        assert slowest < 1, f"listing the local project's apps took {slowest:.2f} s"
        assert [a["metadata"]["name"] for a in r.json()["items"]] == ["home"]
        r, elapsed = timed(lambda: scale(c, "web", 1))
        assert_unavailable(r, elapsed)
        for params in ({"cluster": "local"}, {}):
            r, elapsed = timed(lambda: c.get("/nodes", params=params))  # noqa: B023 — called at once
            assert r.status_code == 200 and elapsed < 3, (params, r.status_code, elapsed)
            assert any(n.get("cluster") == "local" and n["status"] == "ready" for n in r.json()["items"]), r.json()
        c.delete(f"/projects/{SHOP}/apps/home").raise_for_status()

