"""Deploy latency: apply of a one-replica App until it is Ready, against `docker run -d`.

Dockyard side: wall time from just before the POST until the collection watch stream delivers
the App with status.readyReplicas == 1, phase Ready (and observedGeneration == generation).
The watch is opened once, before the first iteration, so its set-up is not timed. Between
iterations the App is deleted and we wait until its container is gone.

Peer: `docker run -d` of the same image, timed around the CLI subprocess (it returns once the
container has started). For context also the engine API alone (docker SDK create + start, the
calls Dockyard itself makes), which leaves out the CLI's start-up, once plain and once with the
settings Dockyard gives a replica (its project network, restart policy, pids limit, log options).

The runs alternate (Dockyard, docker run, engine API, ...) so that drift of a busy machine hits
all three alike; one warm-up round is not counted.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import docker
from docker.types import LogConfig

from bench.common import (
    IMAGE,
    PEER_LABEL,
    BenchError,
    Server,
    Watcher,
    app_manifest,
    check,
    containers,
    goal,
    is_ready,
    log,
    machine_info,
    ms,
    ms_summary,
    parse_ts,
    ratio,
    remove_containers,
    run_id,
    wait_until,
    write_result,
)

NAME = "deploy"
APP = "web"


def _dockyard_once(server: Server, c: Any, watcher: Watcher | None) -> dict[str, float]:
    path = server.apps_path()
    if watcher is not None:
        watcher.drain()
    w0 = time.time()
    t0 = time.perf_counter()
    r = c.post(path, json=app_manifest(APP, 1))
    t_post = time.perf_counter()
    check(r, 201, "create app")
    uid = r.json()["metadata"]["uid"]
    if watcher is not None:
        t_ready, w_ready, obj = watcher.wait_for(
            lambda o: (o.get("metadata") or {}).get("uid") == uid and is_ready(o, 1), timeout=60,
            what="the app to be Ready")
    else:  # fallback: poll every 20 ms
        def poll() -> dict | None:
            o = c.get(f"{path}/{APP}").json()
            return o if is_ready(o, 1) else None

        obj = wait_until(poll, timeout=60, interval=0.02, what="the app to be Ready")
        t_ready, w_ready = time.perf_counter(), time.time()
    st = obj["status"]
    ready_ts = parse_ts(next((x.get("lastTransitionTime") for x in st.get("conditions") or []
                              if x.get("type") == "Ready"), None))
    started = parse_ts((st.get("containers") or [{}])[0].get("startedAt"))
    out = {"total": t_ready - t0, "post_response": t_post - t0}
    if started is not None:
        out["container_started"] = started - w0
    if ready_ts is not None:
        out["status_ready_stamped"] = ready_ts - w0
        out["watch_delivery"] = w_ready - ready_ts
    # delete and wait until the container is gone (not timed as part of the deploy)
    t_del = time.perf_counter()
    check(c.delete(f"{path}/{APP}"), 200, "delete app")
    labels = (f"dockyard.instance={server.instance}", f"dockyard.app={APP}")
    wait_until(lambda: not containers(*labels), timeout=60, interval=0.02, what="the app's container to go")
    out["delete_until_gone"] = time.perf_counter() - t_del
    return out


def _docker_run_once(rid: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(["docker", "run", "-d", "--label", f"{PEER_LABEL}={rid}", IMAGE],
                       capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise BenchError(f"docker run failed: {r.stderr.strip()[:300]}")
    subprocess.run(["docker", "rm", "-f", r.stdout.strip()], capture_output=True, timeout=120)
    return elapsed


def _engine_api_once(api: docker.APIClient, rid: str) -> float:
    t0 = time.perf_counter()
    cid = api.create_container(IMAGE, detach=True, labels={PEER_LABEL: rid},
                               host_config=api.create_host_config())["Id"]
    api.start(cid)
    elapsed = time.perf_counter() - t0
    api.remove_container(cid, force=True)
    return elapsed


def _engine_api_dockyard_like_once(api: docker.APIClient, rid: str, network: str) -> float:
    """Create + start with the settings Dockyard gives a replica (its project network with an alias,
    restart policy, no-new-privileges, pids limit, log rotation): the engine's share of a deploy."""
    t0 = time.perf_counter()
    host = api.create_host_config(restart_policy={"Name": "always"}, security_opt=["no-new-privileges"],
                                  pids_limit=1024,
                                  log_config=LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}))
    cid = api.create_container(IMAGE, detach=True, labels={PEER_LABEL: rid}, hostname="peer-0", host_config=host,
                               networking_config=api.create_networking_config(
                                   {network: api.create_endpoint_config(aliases=["peer"])}))["Id"]
    api.start(cid)
    elapsed = time.perf_counter() - t0
    api.remove_container(cid, force=True)
    return elapsed


def run(quick: bool = False) -> dict[str, Any]:
    n = 5 if quick else 20
    warmup = 1
    started = datetime.now(UTC)
    machine = machine_info()
    rid = run_id()
    log(f"== deploy: one-replica App apply -> Ready vs `docker run -d` ({n} runs each, {warmup} warm-up)")
    dy: list[dict[str, float]] = []
    runs: list[float] = []
    api_runs: list[float] = []
    like_runs: list[float] = []
    method = "watch"
    api = docker.APIClient(base_url="unix:///var/run/docker.sock", version="1.41", timeout=60)
    try:
        with Server(NAME) as server, server.client() as c:
            server.setup_project(c)
            tenant, project = server.projects[0]
            proj = check(c.get(f"/api/v1/projects/{tenant}/{project}"), 200, "get project").json()
            network = proj["status"]["network"]
            watcher: Watcher | None = None
            try:
                watcher = Watcher(server, server.apps_path()).start()
            except BenchError as e:
                log(f"  watch stream unavailable ({e}); polling GET every 20 ms instead")
                method = "poll-20ms"
            try:
                for i in range(warmup + n):
                    d = _dockyard_once(server, c, watcher)
                    r = _docker_run_once(rid)
                    a = _engine_api_once(api, rid)
                    like = _engine_api_dockyard_like_once(api, rid, network)
                    if i >= warmup:
                        dy.append(d)
                        runs.append(r)
                        api_runs.append(a)
                        like_runs.append(like)
                    tag = "warm-up" if i < warmup else f"run {i - warmup + 1:2d}"
                    log(f"  {tag}: dockyard {ms(d['total']):7.1f} ms   docker run {ms(r):7.1f} ms   "
                        f"engine API {ms(a):6.1f} ms   engine API, Dockyard's settings {ms(like):6.1f} ms")
            finally:
                if watcher is not None:
                    watcher.close()
    finally:
        api.close()
        remove_containers(f"{PEER_LABEL}={rid}")

    totals = [d["total"] for d in dy]
    med_dy, med_run, med_api = statistics.median(totals), statistics.median(runs), statistics.median(api_runs)
    med_like = statistics.median(like_runs)
    rat = ratio(med_dy, med_run)
    added = ms(med_dy - med_run)
    paired = statistics.median(a / b for a, b in zip(totals, runs, strict=True))
    phases = {k: ms(statistics.median(d[k] for d in dy)) for k in dy[0] if k != "total" and all(k in x for x in dy)}
    log(f"  Dockyard apply -> Ready ({method}): median {ms(med_dy):.1f} ms  (min {ms(min(totals)):.1f}, "
        f"max {ms(max(totals)):.1f}, n={len(totals)})")
    log(f"  docker run -d:                  median {ms(med_run):.1f} ms  (min {ms(min(runs)):.1f}, "
        f"max {ms(max(runs)):.1f}, n={len(runs)})")
    log(f"  ratio Dockyard / docker run = {rat:.2f}  (median of paired ratios {paired:.2f});  added {added:+.1f} ms")
    log(f"  context: engine API create+start (no CLI) median {ms(med_api):.1f} ms;  with Dockyard's container settings "
        f"(project network, restart policy, pids limit, log options) {ms(med_like):.1f} ms;  "
        f"Dockyard / that = {ratio(med_dy, med_like):.2f}")
    log("  where Dockyard's time goes (medians, ms after the POST was sent): "
        f"POST answered {phases.get('post_response')}, container StartedAt {phases.get('container_started')}, "
        f"status Ready stamped {phases.get('status_ready_stamped')}, watch delivered after the stamp "
        f"+{phases.get('watch_delivery')}")
    goals = [goal(f"ratio <= 1.25 (is {rat:.2f})", rat <= 1.25),
             goal(f"added <= 100 ms (is {added:.1f} ms)", added <= 100)]
    data = {
        "method": method, "runs": n, "warmup": warmup, "image": IMAGE,
        "dockyard_ms": ms_summary(totals), "docker_run_ms": ms_summary(runs), "engine_api_ms": ms_summary(api_runs),
        "engine_api_dockyard_settings_ms": ms_summary(like_runs),
        "ratio": rat, "added_ms": added, "median_paired_ratio": round(paired, 3),
        "dockyard_phase_medians_ms": phases, "delete_until_gone_ms": ms_summary([d["delete_until_gone"] for d in dy]),
        "dockyard_runs_ms": [{k: ms(v) for k, v in d.items()} for d in dy],
        "docker_run_runs_ms": [ms(x) for x in runs], "engine_api_runs_ms": [ms(x) for x in api_runs],
        "engine_api_dockyard_settings_runs_ms": [ms(x) for x in like_runs],
        "goals": goals,
    }
    write_result(NAME, data, quick=quick, started=started, machine=machine)
    return data
