"""The events timeline on the real engine: deploy, scale, rollback, a crashing replica, an OOM
kill, a quota refusal and a health change each reach `dockyard events -p T/P` with the right type;
a rollout's and a scale-down's stopped replicas are no Warning; `-w` prints a new event live; the
engine going down and up shows as node events (a private engine, killed and started again)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from dockyard_harness import VENV_BIN, app_manifest, setup_project

EVENTS = "/projects/acme/shop/events"


def _events(c, **params) -> list[dict]:  # noqa: ANN001, ANN003
    r = c.get(EVENTS, params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def _wait_event(s, c, reason: str, app: str | None = None, timeout: float = 60) -> dict:  # noqa: ANN001
    def found():  # noqa: ANN202
        return next((e for e in _events(c) if e["reason"] == reason and (app is None or e["name"] == app)), None)

    return s.wait_for(found, timeout=timeout, interval=0.5, what=f"a {reason} event" + (f" of {app}" if app else ""))


def _ready(s, c, name: str, replicas: int = 1, revision: int | None = None) -> None:  # noqa: ANN001
    def ok() -> bool:
        st = c.get(f"/projects/acme/shop/apps/{name}").json().get("status") or {}
        return st.get("phase") == "Ready" and st.get("readyReplicas") == replicas and (
            revision is None or st.get("revision") == revision)

    s.wait_for(ok, timeout=90, interval=0.5, what=f"{name} to be ready with {replicas} replica(s)")


@pytest.mark.timeout(600)
def test_what_happens_reaches_the_timeline_with_the_right_type(server_factory) -> None:  # noqa: ANN001
    s = server_factory()
    setup_project(s)
    with s.client() as c:
        # deploy, a new revision, scale up and down, roll back: all Normal, no exits reported as crashes
        c.post("/projects/acme/shop/apps", json=app_manifest("web", replicas=2)).raise_for_status()
        _ready(s, c, "web", 2)
        c.patch("/projects/acme/shop/apps/web", json={"spec": {"image": "dockyard/demo:2.0"}}).raise_for_status()
        _ready(s, c, "web", 2, revision=2)
        c.post("/projects/acme/shop/apps/web/scale", json={"replicas": 3}).raise_for_status()
        _ready(s, c, "web", 3)
        c.post("/projects/acme/shop/apps/web/scale", json={"replicas": 1}).raise_for_status()
        _ready(s, c, "web", 1)
        c.post("/projects/acme/shop/apps/web/rollback", json={}).raise_for_status()
        _ready(s, c, "web", 1, revision=3)

        # a replica that exits with code 3
        c.post("/projects/acme/shop/apps", json=app_manifest(
            "crash", health=False, command=["sh", "-c", "sleep 1; exit 3"])).raise_for_status()
        crashed = _wait_event(s, c, "Crashed", "crash")
        assert crashed["type"] == "Warning" and crashed["message"] == "replica 0 exited with code 3", crashed

        # a process of the replica outgrows 16Mi and is OOM killed (the container keeps running)
        hog = ["sh", "-c", "(x=a; while :; do x=$x$x; done); sleep 100000"]
        c.post("/projects/acme/shop/apps", json=app_manifest(
            "hog", health=False, command=hog, resources={"memory": "16Mi"})).raise_for_status()
        oom = _wait_event(s, c, "OOMKilled", "hog")
        assert oom["type"] == "Warning" and "replica 0" in oom["message"]

        # a quota refusal
        c.patch("/projects/acme/shop", json={"spec": {"quota": {"replicas": 6}}}).raise_for_status()
        refused = c.post("/projects/acme/shop/apps", json=app_manifest("big", replicas=5, health=False))
        assert refused.status_code == 403, refused.text
        quota = _wait_event(s, c, "QuotaExceeded", "big", timeout=5)
        assert quota["type"] == "Warning" and "replicas" in quota["message"] and "admin" in quota["message"]

        # healthy → unhealthy: the replica's health check starts failing after a few seconds; the
        # reconciler replaces it and the successor passes again
        flip = ["sh", "-c", "touch /ok; sleep 5; rm /ok; sleep 100000"]
        c.post("/projects/acme/shop/apps", json=app_manifest(
            "flip", health=False, command=flip,
            healthcheck={"exec": {"command": ["sh", "-c", "test -f /ok"]}, "interval": "1s", "timeout": "1s",
                         "retries": 1})).raise_for_status()
        unhealthy = _wait_event(s, c, "Unhealthy", "flip")
        assert unhealthy["type"] == "Warning"
        healthy = _wait_event(s, c, "Healthy", "flip", timeout=30)
        assert healthy["type"] == "Normal"
        c.delete("/projects/acme/shop/apps/flip").raise_for_status()

        web = _events(c, app="web")
        reasons = [e["reason"] for e in web]
        for want in ("Created", "Deployed", "Scaled", "RolledBack"):
            assert want in reasons, reasons
        # the rollouts and the scale-down stopped replicas: none of that is a Warning
        assert [e for e in web if e["type"] == "Warning"] == [], web
        assert any(e["reason"] == "ReplicaRemoved" for e in web), reasons
        scaled = [e["message"] for e in web if e["reason"] == "Scaled"]
        assert scaled == ["scaled from 2 to 3 replicas by admin", "scaled from 3 to 1 replicas by admin"], scaled
        assert next(e for e in web if e["reason"] == "Deployed")["message"].endswith("image dockyard/demo:2.0")
        assert "rolled back to revision 1" in next(e for e in web if e["reason"] == "RolledBack")["message"]

    out = s.cli("events", "-p", "acme/shop").stdout
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], out
    for typ, reason, obj in (("Normal", "Created", "app/web"), ("Normal", "Deployed", "app/web"),
                             ("Normal", "Scaled", "app/web"), ("Normal", "RolledBack", "app/web"),
                             ("Warning", "Crashed", "app/crash"), ("Warning", "OOMKilled", "app/hog"),
                             ("Warning", "QuotaExceeded", "app/big"), ("Warning", "Unhealthy", "app/flip"),
                             ("Normal", "Healthy", "app/flip")):
        assert any(line.split()[1:4] == [typ, reason, obj] for line in lines[1:]), (typ, reason, out)
    warnings = s.cli("events", "-p", "acme/shop", "--type", "Warning", "--since", "1h").stdout
    assert "Crashed" in warnings and "Deployed" not in warnings and "app/web" not in warnings, warnings
    only_crash = s.cli("events", "-p", "acme/shop", "--app", "crash").stdout
    assert {line.split()[3] for line in only_crash.splitlines()[1:]} == {"app/crash"}, only_crash


@pytest.mark.timeout(120)
def test_watch_prints_a_new_event_live(server_factory) -> None:  # noqa: ANN001
    s = server_factory()
    setup_project(s)
    s.cli("events", "-p", "acme/shop", check=False)  # writes the CLI's config for the follower below
    env = dict(os.environ, DOCKYARD_CONFIG=str(s.data_dir / "cli.json"))
    follower = subprocess.Popen([str(VENV_BIN / "dockyard"), "events", "-p", "acme/shop", "-w"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "LAST SEEN" in follower.stdout.readline()
        time.sleep(1.0)  # the follower is connected
        with s.client() as c:
            started = time.monotonic()
            c.post("/projects/acme/shop/apps", json=app_manifest("live", replicas=0, health=False)).raise_for_status()
            line = follower.stdout.readline()
            took = time.monotonic() - started
        assert "Created" in line and "app/live" in line and "Normal" in line, line
        assert took < 5, took
    finally:
        os.killpg(follower.pid, signal.SIGINT)
        follower.wait(10)
    assert follower.returncode == 0, follower.stderr.read()
