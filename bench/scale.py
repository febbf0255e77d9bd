"""Scale-out: an App of 50 replicas until all 50 are Ready, against
`docker-compose up -d --scale web=50` of the same image.

Dockyard side: wall time from just before the POST of a 50-replica App until the watch stream
delivers it with readyReplicas == 50 and phase Ready. Peer: docker-compose (v1) with a one-service
Compose file, timed around the CLI until it returns (all containers started); its project name is
unique and `docker-compose down` follows each run (not timed). The runs alternate, compose first.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    IMAGE,
    PEER_LABEL,
    BenchError,
    Server,
    Watcher,
    app_manifest,
    check,
    containers,
    dockerd_pid,
    goal,
    is_ready,
    log,
    machine_info,
    parse_ts,
    proc_cpu_seconds,
    ratio,
    remove_containers,
    remove_networks,
    run_id,
    wait_until,
    write_result,
)

NAME = "scale"
APP = "web"
REPLICAS = 50

COMPOSE_FILE = """\
version: "2.4"
services:
  web:
    image: {image}
    labels:
      {label}: "{rid}"
"""


def _cpu(server: Server | None) -> tuple[float, float]:
    """CPU seconds so far of dockerd and (if given) the Dockyard server."""
    dpid = dockerd_pid()
    return (proc_cpu_seconds(dpid) if dpid else 0.0), (proc_cpu_seconds(server.pid) if server else 0.0)


def _dockyard_once(server: Server, c: Any, watcher: Watcher, replicas: int) -> dict[str, Any]:
    path = server.apps_path()
    watcher.drain()
    cpu0 = _cpu(server)
    t0 = time.perf_counter()
    r = c.post(path, json=app_manifest(APP, replicas))
    check(r, 201, "create app")
    uid = r.json()["metadata"]["uid"]
    milestones: dict[int, float] = {}

    def done(o: dict) -> bool:
        if (o.get("metadata") or {}).get("uid") != uid:
            return False
        ready = (o.get("status") or {}).get("readyReplicas") or 0
        for m in (1, replicas // 2, replicas):
            if ready >= m and m not in milestones:
                milestones[m] = time.perf_counter() - t0
        return is_ready(o, replicas)

    w0 = time.time() - (time.perf_counter() - t0)
    t_ready, _, obj = watcher.wait_for(done, timeout=600, what=f"{replicas} ready replicas")
    total = t_ready - t0
    cpu1 = _cpu(server)
    starts = sorted(s - w0 for s in (parse_ts(x.get("startedAt")) for x in obj["status"].get("containers") or [])
                    if s is not None)
    t_del = time.perf_counter()
    check(c.delete(f"{path}/{APP}"), 200, "delete app")
    labels = (f"dockyard.instance={server.instance}", f"dockyard.app={APP}")
    wait_until(lambda: not containers(*labels), timeout=300, interval=0.2, what="the app's containers to go")
    return {"total": total, "dockerd_cpu_s": round(cpu1[0] - cpu0[0], 2), "server_cpu_s": round(cpu1[1] - cpu0[1], 2),
            "first_container_started_s": round(starts[0], 3) if starts else None,
            "last_container_started_s": round(starts[-1], 3) if starts else None,
            "ready_milestones_s": {str(k): round(v, 3) for k, v in sorted(milestones.items())},
            "delete_until_gone_s": round(time.perf_counter() - t_del, 3)}


def _compose(workdir: Path, project: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(["docker-compose", "-p", project, "-f", str(workdir / "docker-compose.yml"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=workdir)


def _compose_once(workdir: Path, project: str, replicas: int) -> dict[str, Any]:
    try:
        cpu0 = _cpu(None)
        c0 = os.times()
        t0 = time.perf_counter()
        r = _compose(workdir, project, "up", "-d", "--scale", f"web={replicas}", timeout=600)
        total = time.perf_counter() - t0
        c1 = os.times()
        compose_cpu = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)
        cpu = {"dockerd_cpu_s": round(_cpu(None)[0] - cpu0[0], 2), "compose_cpu_s": round(compose_cpu, 2)}
        if r.returncode != 0:
            raise BenchError(f"docker-compose up failed ({r.returncode}): {r.stderr.strip()[-800:]}")
        running = containers(f"com.docker.compose.project={project}")
        if len(running) != replicas:
            raise BenchError(f"docker-compose up left {len(running)} containers, not {replicas}")
    finally:
        t_down = time.perf_counter()
        d = _compose(workdir, project, "down", "-t", "0", timeout=600)
        if d.returncode != 0:
            log(f"  warning: docker-compose down: {d.stderr.strip()[-300:]}")
        remove_containers(f"com.docker.compose.project={project}")
    return {"total": total, **cpu, "down_s": round(time.perf_counter() - t_down, 3)}


def run(quick: bool = False) -> dict[str, Any]:
    n = 1 if quick else 3
    replicas = REPLICAS
    started = datetime.now(UTC)
    machine = machine_info()
    rid = run_id()
    log(f"== scale: App of {replicas} replicas -> all Ready vs `docker-compose up -d --scale web={replicas}` "
        f"({n} run(s) each, alternating)")
    dy: list[dict[str, Any]] = []
    cp: list[dict[str, Any]] = []
    compose_startup: list[float] = []
    projects: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-compose-") as tmp:
        workdir = Path(tmp)
        (workdir / "docker-compose.yml").write_text(COMPOSE_FILE.format(image=IMAGE, label=PEER_LABEL, rid=rid))
        try:
            with Server(NAME) as server, server.client() as c:
                server.setup_project(c)
                watcher = Watcher(server, server.apps_path()).start()
                try:
                    for i in range(n):
                        project = f"dybench{rid.replace('-', '')}x{i}"
                        projects.append(project)
                        x = _compose_once(workdir, project, replicas)
                        cp.append(x)
                        d = _dockyard_once(server, c, watcher, replicas)
                        dy.append(d)
                        log(f"  run {i + 1}: docker-compose {x['total']:6.2f} s   Dockyard {d['total']:6.2f} s   "
                            f"(Dockyard: containers started {d['first_container_started_s']}.."
                            f"{d['last_container_started_s']} s; readyReplicas 1/half/all seen at "
                            f"{list(d['ready_milestones_s'].values())} s)")
                finally:
                    watcher.close()
                for _ in range(3):
                    t0 = time.perf_counter()
                    _compose(workdir, "dybenchversion", "version", "--short", timeout=60)
                    compose_startup.append(time.perf_counter() - t0)
        finally:
            for project in projects:
                remove_containers(f"com.docker.compose.project={project}")
                remove_networks(f"com.docker.compose.project={project}")
            remove_containers(f"{PEER_LABEL}={rid}")

    med_dy = statistics.median(d["total"] for d in dy)
    med_cp = statistics.median(x["total"] for x in cp)
    rat = ratio(med_dy, med_cp)
    log(f"  Dockyard {replicas} replicas -> Ready: median {med_dy:.2f} s  (runs {[round(d['total'], 2) for d in dy]})")
    log(f"  docker-compose up --scale:        median {med_cp:.2f} s  (runs {[round(x['total'], 2) for x in cp]})")
    log(f"  CPU seconds per run (medians): dockerd {statistics.median(d['dockerd_cpu_s'] for d in dy):.1f} "
        f"with Dockyard (+ Dockyard server {statistics.median(d['server_cpu_s'] for d in dy):.1f}) vs dockerd "
        f"{statistics.median(x['dockerd_cpu_s'] for x in cp):.1f} with compose "
        f"(+ docker-compose {statistics.median(x['compose_cpu_s'] for x in cp):.1f})")
    log(f"  ratio Dockyard / compose = {rat:.2f};  compose CLI start-up alone (`docker-compose version`) "
        f"median {statistics.median(compose_startup):.2f} s")
    goals = [goal(f"Dockyard <= 0.8x compose's time (is {rat:.2f}x)", rat <= 0.8)]
    data = {
        "runs": n, "replicas": replicas, "image": IMAGE, "dockyard_median_s": round(med_dy, 3),
        "compose_median_s": round(med_cp, 3), "ratio": rat,
        "dockyard_runs": [{**d, "total": round(d["total"], 3)} for d in dy],
        "compose_runs": [{**x, "total": round(x["total"], 3)} for x in cp],
        "compose_cli_startup_median_s": round(statistics.median(compose_startup), 3),
        "goals": goals,
    }
    write_result(NAME, data, quick=quick, started=started, machine=machine)
    return data
