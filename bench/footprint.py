"""Footprint: resident memory of an idle server.

Phase 1: a fresh server with 100 Apps of replicas 0 (no containers), all reconciled; then 30 s
without requests; VmRSS of the server process from /proc/PID/status (sampled every second, the
last sample is the figure). Phase 2: the same 100 Apps scaled to 1 replica each (100 containers),
all Ready, 30 s idle again. Peer for context: the RSS of dockerd itself at the same moments.
Last, for context on peaks (not a goal): the peak RSS (VmHWM) after 8 concurrent logins.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.common import (
    PASSWORD,
    BenchError,
    Server,
    app_manifest,
    check,
    dockerd_pid,
    goal,
    is_ready,
    log,
    machine_info,
    proc_cpu_seconds,
    proc_status,
    ratio,
    wait_until,
    write_result,
)

NAME = "footprint"
APPS = 100
GOAL_MB = 150
LOGIN_BURST = 8


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)


def _all_ready(server: Server, c: httpx.Client, replicas: int) -> bool:
    r = check(c.get(server.apps_path(), params={"limit": 1000}), 200, "list apps")
    items = r.json()["items"]
    return len(items) == APPS and all(is_ready(o, replicas) for o in items)


def _idle(server: Server, seconds: float) -> dict[str, Any]:
    """Sleep `seconds` without requests, sampling the server's RSS every second."""
    samples: list[int] = []
    cpu0 = proc_cpu_seconds(server.pid)
    end = time.monotonic() + seconds
    while True:
        samples.append(proc_status(server.pid)["VmRSS"])
        if time.monotonic() >= end:
            break
        time.sleep(min(1.0, max(end - time.monotonic(), 0.0)))
    st = proc_status(server.pid)
    dpid = dockerd_pid()
    dockerd = proc_status(dpid) if dpid else {}
    return {"idle_s": seconds, "rss_mb": _mb(st["VmRSS"]), "rss_anon_mb": _mb(st.get("RssAnon")),
            "rss_file_mb": _mb(st.get("RssFile")), "peak_rss_mb": _mb(st.get("VmHWM")), "threads": st.get("Threads"),
            "rss_min_max_during_idle_mb": [_mb(min(samples)), _mb(max(samples))],
            "server_cpu_cores_while_idle": round((proc_cpu_seconds(server.pid) - cpu0) / seconds, 3),
            "dockerd_rss_mb": _mb(dockerd.get("VmRSS"))}


def _show(label: str, r: dict[str, Any]) -> None:
    d = r["dockerd_rss_mb"]
    log(f"  {label}: server VmRSS {r['rss_mb']} MB (anon {r['rss_anon_mb']}, file {r['rss_file_mb']}; "
        f"peak {r['peak_rss_mb']} MB; {r['threads']} threads; CPU while idle {r['server_cpu_cores_while_idle']} cores)"
        f"  |  dockerd VmRSS {d} MB  ->  server/dockerd {ratio(r['rss_mb'], d) if d else 'n/a'}")


def _login_burst(server: Server, n: int = LOGIN_BURST) -> dict[str, Any]:
    """Context for peaks (after the idle figures): `n` concurrent logins, then VmHWM (peak RSS)."""
    before = proc_status(server.pid)

    def login(_: int) -> int:
        return httpx.post(server.url + "/api/v1/login", json={"username": "admin", "password": PASSWORD},
                          timeout=120).status_code

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as ex:
        codes = list(ex.map(login, range(n)))
    took = time.perf_counter() - t0
    after = proc_status(server.pid)
    out = {"logins": n, "statuses": sorted(set(codes)), "seconds": round(took, 2),
           "peak_rss_before_mb": _mb(before.get("VmHWM")), "peak_rss_after_mb": _mb(after.get("VmHWM")),
           "rss_after_mb": _mb(after["VmRSS"])}
    log(f"  context: {n} concurrent logins took {took:.2f} s (statuses {out['statuses']}); server peak RSS (VmHWM) "
        f"{out['peak_rss_before_mb']} -> {out['peak_rss_after_mb']} MB, VmRSS afterwards {out['rss_after_mb']} MB")
    return out


def run(quick: bool = False) -> dict[str, Any]:
    idle = 5.0 if quick else 30.0
    started = datetime.now(UTC)
    machine = machine_info()
    log(f"== footprint: idle server RSS with {APPS} apps ({idle:.0f} s idle), replicas 0 then 1; peer dockerd RSS")
    data: dict[str, Any] = {"apps": APPS, "idle_seconds": idle}
    with Server(NAME) as server, server.client(timeout=120) as c:
        fresh = proc_status(server.pid)
        data["fresh_server_rss_mb"] = _mb(fresh["VmRSS"])
        log(f"  fresh server (no objects, just logged in): VmRSS {_mb(fresh['VmRSS'])} MB")
        server.setup_project(c)
        for k in range(APPS):
            check(c.post(server.apps_path(), json=app_manifest(f"app-{k:03d}", 0)), 201, "create app")
        wait_until(lambda: _all_ready(server, c, 0), timeout=300, interval=0.5, what="100 apps reconciled")
        p1 = _idle(server, idle)
        _show(f"{APPS} apps x 0 replicas", p1)
        data["replicas_0"] = p1

        t0 = time.perf_counter()
        for k in range(APPS):
            check(c.post(f"{server.apps_path()}/app-{k:03d}/scale", json={"replicas": 1}), 200, "scale app")
        try:
            wait_until(lambda: _all_ready(server, c, 1), timeout=900, interval=1.0, what="100 apps x 1 replica Ready")
        except BenchError as e:
            log(f"  phase 2 skipped: {e}")
            p2 = None
        else:
            log(f"  scaled {APPS} apps to 1 replica: all Ready after {time.perf_counter() - t0:.1f} s")
            p2 = _idle(server, idle)
            _show(f"{APPS} apps x 1 replica", p2)
        data["replicas_1"] = p2
        data["replicas_1_scale_until_ready_s"] = round(time.perf_counter() - t0, 1) if p2 else None
        data["login_burst"] = _login_burst(server)

    goals = [goal(f"idle RSS with {APPS} apps x 0 replicas <= {GOAL_MB} MB (is {p1['rss_mb']} MB)",
                  p1["rss_mb"] <= GOAL_MB)]
    if p2:
        goals.append(goal(f"idle RSS with {APPS} apps x 1 replica <= {GOAL_MB} MB (is {p2['rss_mb']} MB)",
                          p2["rss_mb"] <= GOAL_MB))
    data["goals"] = goals
    data["ratio_server_to_dockerd"] = ratio(p1["rss_mb"], p1["dockerd_rss_mb"]) if p1["dockerd_rss_mb"] else None
    data["note"] = ("replicas_0: 100 Apps with 0 replicas (no containers); replicas_1: the same Apps scaled to 1 "
                    "replica each (100 containers). RSS is VmRSS of the `dockyard server` process.")
    write_result(NAME, data, quick=quick, started=started, machine=machine)
    return data
