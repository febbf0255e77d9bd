"""Swarm: 100 replicas over 4 nodes, Dockyard against `docker service create`, and a worker crash.

A throwaway Swarm of dockerd nodes (tests/integration/swarm_cluster.py: 3 managers + 2 workers, one
manager drained so that exactly 4 nodes take tasks) on this machine. Dockyard's side: a real
`dockyard server` with a Cluster added through the API for the three managers (tcp:// with TLS), a
project bound to it and an App of 1 ready replica; timed from just before the PATCH to replicas 100
until the watch stream shows readyReplicas 100, phase Ready (and the swarm then runs 100 tasks). Peer:
`docker service create --replicas 100 --endpoint-mode dnsrr` of the same image on an overlay network
of its own (Dockyard's services join the project's overlay network too), timed until `docker service
ls` counts 100 running tasks; the service is removed and its containers gone before the next run.
The runs alternate, the peer first in odd rounds. Then the App at 100 replicas loses a worker
(SIGKILL of its dockerd): the time until the swarm runs all 100 elsewhere, and until the App shows
100 ready replicas none of which is a task of the dead worker.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.common import (
    IMAGE,
    ROOT,
    TENANT,
    BenchError,
    Server,
    Watcher,
    app_manifest,
    check,
    goal,
    is_ready,
    log,
    machine_info,
    ratio,
    wait_until,
    write_result,
)

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from swarm_cluster import SwarmCluster  # noqa: E402 — the test harness is the benchmark's swarm too

NAME = "swarm"
CLUSTER = "bench-swarm"
PROJECT = "sw"
APP = "web"
PEER = "peer"
PEER_NET = "dybench-peer"
DRAINED = "m3"  # of m1 m2 m3 w1 w2: the other four run tasks
VICTIM = "w1"
MERGE = {"Content-Type": "application/merge-patch+json"}


# --- the swarm side, through the docker CLI on a manager ----------------------------------------

def running(cluster: SwarmCluster, service_filter: str) -> int:
    """Running tasks of the one service that `service_filter` (a `docker service ls` filter) selects."""
    lines = cluster.docker(cluster.manager_view(), "service", "ls", "--filter", service_filter,
                           "--format", "{{.Replicas}}").split()
    return int(lines[0].split("/")[0]) if lines else 0


def task_nodes(cluster: SwarmCluster, service_filter: str) -> list[tuple[str, str]]:
    """(task id, node) of the running tasks meant to run, of the service `service_filter` selects."""
    via = cluster.manager_view()
    names = cluster.docker(via, "service", "ls", "--filter", service_filter, "--format", "{{.Name}}").split()
    if not names:
        return []
    out = cluster.docker(via, "service", "ps", names[0], "--no-trunc", "--filter", "desired-state=running",
                         "--format", "{{.ID}}|{{.Node}}|{{.CurrentState}}")
    return [(tid, node) for tid, node, state in (line.split("|") for line in out.splitlines() if line)
            if state.startswith("Running")]


def containers_left(cluster: SwarmCluster, label: str) -> int:
    """Containers (any state) with `label` on the nodes that are up: a removed service's tasks are gone at 0."""
    return sum(len(cluster.docker(n, "ps", "-aq", "--filter", f"label={label}").split())
               for n in cluster.nodes if cluster.alive(n))


def peer_once(cluster: SwarmCluster, replicas: int) -> dict[str, Any]:
    via = cluster.manager_view()
    t0 = time.perf_counter()
    cluster.docker(via, "service", "create", "--detach", "--no-resolve-image", "--name", PEER,
                   "--endpoint-mode", "dnsrr", "--network", PEER_NET, "--replicas", str(replicas), IMAGE)
    created = time.perf_counter() - t0
    wait_until(lambda: running(cluster, f"name={PEER}") == replicas, timeout=600, interval=0.2,
               what=f"{replicas} running tasks of the peer service")
    total = time.perf_counter() - t0
    nodes = {n for _, n in task_nodes(cluster, f"name={PEER}")}
    t_rm = time.perf_counter()
    cluster.docker(via, "service", "rm", PEER)
    wait_until(lambda: containers_left(cluster, f"com.docker.swarm.service.name={PEER}") == 0, timeout=300,
               interval=0.5, what="the peer service's containers to go")
    return {"total": total, "cli_returned_s": round(created, 3), "nodes": sorted(nodes),
            "remove_until_gone_s": round(time.perf_counter() - t_rm, 3)}


# --- the Dockyard side ----------------------------------------------------------------------

def bench_app() -> dict[str, Any]:
    """The App: Swarm reserves an App's resource requests on a node (requests default to the limits),
    and 100 replicas of the default 0.5 CPU would not fit 4 nodes that report this machine's 2 CPUs
    each; the peer reserves nothing. Small requests (limits unchanged) keep the two comparable."""
    manifest = app_manifest(APP, 1, project=PROJECT)
    manifest["spec"]["resources"] = {"requests": {"cpu": "10m", "memory": "8Mi"}}
    return manifest


def add_cluster(c: httpx.Client, cluster: SwarmCluster) -> None:
    ca, cert, key = cluster.client_tls or ("", "", "")
    endpoints = [{"url": cluster.tcp_url(m), "tls": {"ca": ca, "cert": cert, "key": key}} for m in cluster.managers]
    check(c.post("/api/v1/clusters", json={"apiVersion": "dockyard/v1", "kind": "Cluster",
                                           "metadata": {"name": CLUSTER},
                                           "spec": {"driver": "swarm", "endpoints": endpoints}}), 201, "create cluster")
    wait_until(lambda: ((c.get(f"/api/v1/clusters/{CLUSTER}").json().get("status") or {}).get("phase") == "Ready"),
               timeout=60, interval=0.5, what=f"cluster {CLUSTER} to be Ready")


def setup_project(c: httpx.Client) -> None:
    check(c.post("/api/v1/tenants", json={"apiVersion": "dockyard/v1", "kind": "Tenant", "metadata": {"name": TENANT}}),
          201, "create tenant")
    check(c.post("/api/v1/projects", json={"apiVersion": "dockyard/v1", "kind": "Project",
                                           "metadata": {"name": PROJECT, "tenant": TENANT},
                                           "spec": {"cluster": CLUSTER}}),
          201, "create project")

    def network_ready() -> bool:
        st = c.get(f"/api/v1/projects/{TENANT}/{PROJECT}").json().get("status") or {}
        return any(x.get("type") == "Ready" and x.get("status") == "True" for x in st.get("conditions") or [])

    wait_until(network_ready, timeout=60, interval=0.2, what="the project's overlay network")


def scale(c: httpx.Client, server: Server, watcher: Watcher, replicas: int, timeout: float = 600) -> float:
    """PATCH the App's replicas; seconds until the watch shows it Ready with that many ready replicas."""
    watcher.drain()
    t0 = time.perf_counter()
    check(c.patch(f"{server.apps_path(TENANT, PROJECT)}/{APP}", json={"spec": {"replicas": replicas}}, headers=MERGE),
          200, f"scale to {replicas}")
    t, _, _ = watcher.wait_for(lambda o: o["metadata"]["name"] == APP and is_ready(o, replicas), timeout=timeout,
                               what=f"{replicas} ready replicas")
    return t - t0


def when_swarm_runs(cluster: SwarmCluster, service_filter: str, replicas: int) -> tuple[threading.Event, dict]:
    """Poll the swarm in a thread as the peer's timing does (same interval, same CLI), so both sides carry the
    same polling load; `seen["t"]` is the perf_counter() at which `replicas` tasks ran. Set the event to stop."""
    stop, seen = threading.Event(), {}

    def poll() -> None:
        while not stop.is_set():
            with contextlib.suppress(RuntimeError):
                if running(cluster, service_filter) >= replicas:
                    seen["t"] = time.perf_counter()
                    return
            time.sleep(0.2)

    threading.Thread(target=poll, name="bench-swarm-poll", daemon=True).start()
    return stop, seen


def dockyard_once(c: httpx.Client, server: Server, watcher: Watcher, cluster: SwarmCluster,
                  replicas: int) -> dict[str, Any]:
    stop, seen = when_swarm_runs(cluster, f"label=dockyard.app={APP}", replicas)
    t0 = time.perf_counter()
    try:
        total = scale(c, server, watcher, replicas)
        wait_until(lambda: "t" in seen, timeout=30, interval=0.1, what="the swarm poll to see the tasks running")
    finally:
        stop.set()
    swarm_running = running(cluster, f"label=dockyard.app={APP}")
    if swarm_running != replicas:
        raise BenchError(f"the App is Ready with {replicas} replicas but the swarm runs {swarm_running} tasks")
    nodes = {n for _, n in task_nodes(cluster, f"label=dockyard.app={APP}")}
    t_down = time.perf_counter()
    scale(c, server, watcher, 1)
    wait_until(lambda: containers_left(cluster, f"dockyard.app={APP}") == 1, timeout=300, interval=0.5,
               what="the App's other containers to go")
    return {"total": total, "swarm_running_seen_s": round(seen["t"] - t0, 3), "nodes": sorted(nodes),
            "scale_down_until_gone_s": round(time.perf_counter() - t_down, 3)}


def failover(c: httpx.Client, server: Server, watcher: Watcher, cluster: SwarmCluster, replicas: int) -> dict[str, Any]:
    """The App at `replicas` loses worker VICTIM: seconds until the swarm, then the App, has them all elsewhere."""
    scale(c, server, watcher, replicas)
    lost = {tid[:12] for tid, node in task_nodes(cluster, f"label=dockyard.app={APP}") if node == VICTIM}
    path = f"{server.apps_path(TENANT, PROJECT)}/{APP}"
    t0 = time.perf_counter()
    cluster.kill(VICTIM)
    marks: dict[str, float] = {}

    def settled() -> bool:
        if "swarm" not in marks:
            tasks = task_nodes(cluster, f"label=dockyard.app={APP}")
            if len(tasks) == replicas and all(n != VICTIM for _, n in tasks):
                marks["swarm"] = time.perf_counter() - t0
        st = c.get(path).json().get("status") or {}
        ready = [x for x in st.get("containers") or [] if x.get("ready")]
        if "app" not in marks and len(ready) == replicas and not any(x.get("id", "")[:12] in lost for x in ready):
            marks["app"] = time.perf_counter() - t0
        return len(marks) == 2

    wait_until(settled, timeout=300, interval=0.25, what=f"the {len(lost)} tasks of crashed {VICTIM} to run elsewhere")
    return {"replicas": replicas, "tasks_on_victim": len(lost),
            "swarm_all_running_elsewhere_s": round(marks["swarm"], 3), "app_all_ready_again_s": round(marks["app"], 3)}


def run(quick: bool = False) -> dict[str, Any]:
    rounds, replicas = (1, 30) if quick else (3, 100)
    started = datetime.now(UTC)
    machine = machine_info()
    log(f"== swarm: App 1 -> {replicas} replicas on a 4-node swarm vs `docker service create --replicas {replicas}` "
        f"({rounds} round(s), alternating), then a worker crash")
    dy: list[dict[str, Any]] = []
    peer: list[dict[str, Any]] = []
    with SwarmCluster(managers=3, workers=2) as cluster:
        log(f"  swarm of 5 nodes up in {cluster.timings['total']:.1f} s (slot {cluster.slot})")
        cluster.docker("m1", "node", "update", "--availability", "drain", DRAINED)
        cluster.docker("m1", "network", "create", "-d", "overlay", "--attachable", PEER_NET)
        with Server(NAME) as server, server.client() as c:
            add_cluster(c, cluster)
            setup_project(c)
            watcher = Watcher(server, server.apps_path(TENANT, PROJECT)).start()
            try:
                check(c.post(server.apps_path(TENANT, PROJECT), json=bench_app()), 201, "create app")
                watcher.wait_for(lambda o: o["metadata"]["name"] == APP and is_ready(o, 1), timeout=120,
                                 what="the App's first replica")
                for i in range(rounds):
                    order = ("peer", "dockyard") if i % 2 == 0 else ("dockyard", "peer")
                    for side in order:
                        if side == "peer":
                            peer.append(peer_once(cluster, replicas))
                        else:
                            dy.append(dockyard_once(c, server, watcher, cluster, replicas))
                    log(f"  round {i + 1} ({order[0]} first): docker service create {peer[-1]['total']:6.2f} s   "
                        f"Dockyard {dy[-1]['total']:6.2f} s   (its service's {replicas} tasks seen running by the "
                        f"same poll at {dy[-1]['swarm_running_seen_s']:.2f} s; nodes {dy[-1]['nodes']})")
                fail = failover(c, server, watcher, cluster, replicas)
                log(f"  {VICTIM} killed with {fail['tasks_on_victim']} of {replicas} tasks: swarm ran them elsewhere "
                    f"after {fail['swarm_all_running_elsewhere_s']:.1f} s, the App showed {replicas} ready again after "
                    f"{fail['app_all_ready_again_s']:.1f} s")
                c.delete(f"{server.apps_path(TENANT, PROJECT)}/{APP}")
            finally:
                watcher.close()
    med_dy = statistics.median(d["total"] for d in dy)
    med_peer = statistics.median(p["total"] for p in peer)
    rat = ratio(med_dy, med_peer)
    log(f"  Dockyard 1 -> {replicas} Ready: median {med_dy:.2f} s (runs {[round(d['total'], 2) for d in dy]})")
    log(f"  docker service create:        median {med_peer:.2f} s (runs {[round(p['total'], 2) for p in peer]})")
    log(f"  ratio Dockyard / swarm CLI = {rat:.2f}")
    goals = [goal(f"Dockyard <= 1.1x docker service create's time (is {rat:.2f}x)", rat <= 1.1)]
    data = {"rounds": rounds, "replicas": replicas, "image": IMAGE, "nodes_taking_tasks": 4,
            "swarm_startup_s": {k: round(v, 3) for k, v in cluster.timings.items()},
            "dockyard_median_s": round(med_dy, 3), "peer_median_s": round(med_peer, 3), "ratio": rat,
            "dockyard_runs": [{**d, "total": round(d["total"], 3)} for d in dy],
            "peer_runs": [{**p, "total": round(p["total"], 3)} for p in peer],
            "worker_failover": fail, "goals": goals}
    write_result(NAME, data, quick=quick, started=started, machine=machine)
    return data
