"""Container metrics on the real engine: an app that burns CPU shows it through the API and
`dockyard top`, with its memory and memory limit; metrics survive a server restart."""

from __future__ import annotations

import sqlite3
import time

from dockyard_harness import app_manifest, setup_project

BURN = ["sh", "-c", "while :; do :; done"]
MEMORY = 48 * 2**20


def test_cpu_burner_shows_in_metrics_top_and_cli(server_factory) -> None:  # noqa: ANN001
    s = server_factory()
    setup_project(s)
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest(
            "burn", health=False, command=BURN, resources={"cpu": "1", "memory": "48Mi"})).raise_for_status()
        c.post("/projects/acme/shop/apps", json=app_manifest("idle", health=False)).raise_for_status()
        s.wait_for(lambda: c.get("/projects/acme/shop/apps/burn").json().get("status", {}).get("readyReplicas") == 1,
                   timeout=60, what="the burner to run")
        started = time.monotonic()

        def hot_replica():  # noqa: ANN202
            r = c.get("/projects/acme/shop/apps/burn/metrics", params={"metric": "cpu", "from": "-2m", "step": "10s"})
            assert r.status_code == 200, r.text
            reps = r.json()["replicas"]
            return r.json() if reps and reps[0]["replica"] == "0" and reps[0]["points"][-1][1] > 50 else None

        body = s.wait_for(hot_replica, timeout=30, interval=1, what="cpu > 50 % for replica 0")
        assert time.monotonic() - started <= 30
        assert body["resolution"] == "raw" and body["unit"] == "percent"
        assert body["total"]["points"][-1][1] > 50

        def top_row():  # noqa: ANN202
            items = c.get("/projects/acme/shop/top").json()["items"]
            burn = next((a for a in items if a["app"] == "burn"), None)
            return items if burn and burn["cpu"] and burn["containers"][0]["cpu"] else None

        items = s.wait_for(top_row, timeout=30, interval=1, what="top to list the burner")
        burn = next(a for a in items if a["app"] == "burn")
        replica = burn["containers"][0]
        assert replica["cpu"] > 50 and replica["replica"] == 0
        assert 0 < replica["memory"] < MEMORY and replica["memoryLimit"] == MEMORY
        assert burn["memoryLimit"] == MEMORY and burn["restarts"] == 0
        idle = next(a for a in items if a["app"] == "idle")
        assert idle["cpu"] is None or idle["cpu"] < 20

        mem = c.get("/projects/acme/shop/apps/burn/metrics", params={"metric": "memory_limit", "from": "-5m"}).json()
        assert mem["replicas"][0]["points"][-1][1] == MEMORY
        proj = c.get("/projects/acme/shop/metrics", params={"metric": "cpu", "from": "-5m"}).json()
        assert {a["app"] for a in proj["apps"]} >= {"burn"}

    out = s.cli("top", "-p", "acme/shop").stdout
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["APP", "REPLICAS", "CPU"], out
    burn_line = next(x for x in lines if x.startswith("burn"))
    assert float(burn_line.split()[2].rstrip("%")) > 50, out
    assert "/48.0Mi" in burn_line, out
    out = s.cli("top", "app", "burn", "-p", "acme/shop").stdout
    assert out.splitlines()[0].split()[:2] == ["APP", "REPLICA"] and "idle" not in out, out
    bad = s.cli("top", "app", "nope", "-p", "acme/shop", check=False)
    assert bad.returncode != 0 and "nope" in (bad.stdout + bad.stderr)

    # a clean stop flushes the heads: the samples are in metrics.db and served after a restart
    s.stop()
    con = sqlite3.connect(s.data_dir / "metrics.db")
    assert con.execute("SELECT COUNT(*) FROM chunks").fetchone()[0] > 0
    con.close()
    s.start()
    with s.client() as c:
        r = c.get("/projects/acme/shop/apps/burn/metrics", params={"metric": "cpu", "from": "-10m"}).json()
        assert max(p[1] for p in r["total"]["points"]) > 50


def test_an_oom_kill_is_counted(server_factory) -> None:  # noqa: ANN001
    """A process of the container (not its init, so the container keeps running) outgrows the
    memory limit and is killed: the replica's oom_kills goes to 1 in top and in the series."""
    s = server_factory()
    setup_project(s)
    hog = ["sh", "-c", "(x=a; while :; do x=$x$x; done); sleep 100000"]
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest(
            "hog", health=False, command=hog, resources={"memory": "16Mi"})).raise_for_status()

        def killed():  # noqa: ANN202
            items = c.get("/projects/acme/shop/top", params={"app": "hog"}).json()["items"]
            return items if items and items[0]["oomKills"] >= 1 else None

        items = s.wait_for(killed, timeout=60, interval=1, what="an OOM kill counted by top")
        assert items[0]["containers"][0]["memoryLimit"] == 16 * 2**20 and items[0]["restarts"] == 0
        series = c.get("/projects/acme/shop/apps/hog/metrics", params={"metric": "oom_kills", "from": "-5m"}).json()
        assert series["unit"] == "count" and series["total"]["points"][-1][1] >= 1


def test_restarts_follow_the_engine(server_factory) -> None:  # noqa: ANN001
    """A replica whose process exits every few seconds is restarted by the engine (same container,
    new pid): the collector notices the new process and reports the engine's restart count."""
    s = server_factory()
    setup_project(s)
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest(
            "flaky", health=False, command=["sh", "-c", "sleep 4; exit 1"])).raise_for_status()

        def restarted():  # noqa: ANN202
            items = c.get("/projects/acme/shop/top", params={"app": "flaky"}).json()["items"]
            return items if items and items[0]["restarts"] >= 1 else None

        items = s.wait_for(restarted, timeout=90, interval=1, what="top to report a restart")
        assert items[0]["containers"][0]["restarts"] >= 1
        series = c.get("/projects/acme/shop/apps/flaky/metrics", params={"metric": "restarts", "from": "-5m"}).json()
        assert series["total"]["points"][-1][1] >= 1
