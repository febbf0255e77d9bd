"""The web terminal and the restart on a real Docker engine: a command typed into a shell in a
real container, the refusals (nothing runs), the audit entry, a session whose client vanishes
(its processes end), the limits on message size and on open sessions, and `dockyard rollout
restart` replacing every replica without downtime."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from dockyard_harness import VENV_BIN, app_containers, app_manifest, free_port, get_app, setup_project
from websockets.exceptions import ConnectionClosed, ConnectionClosedError
from websockets.sync.client import connect

pytestmark = pytest.mark.engine
PW = "exec-password-1"


def _ready(s, name: str, n: int) -> dict | None:  # noqa: ANN001
    app = get_app(s, name)
    st = app.get("status") or {}
    return app if st.get("phase") == "Ready" and st.get("readyReplicas") == n else None


def _world(s) -> dict[str, str]:  # noqa: ANN001
    """acme/shop/web running; dev develops there, viewer views it, stranger owns tenant other."""
    setup_project(s)
    with s.client() as c:
        c.post("/tenants", json={"kind": "Tenant", "metadata": {"name": "other"}}).raise_for_status()
        c.post("/projects/acme/shop/apps", json=app_manifest("web", health=False)).raise_for_status()
        for user, scope, role in (("dev", "projects/acme/shop", "developer"), ("viewer", "projects/acme/shop", "viewer"),
                                  ("stranger", "tenants/other", "owner")):
            c.post("/users", json={"name": user, "password": PW}).raise_for_status()
            c.post(f"/{scope}/members", json={"user": user, "role": role}).raise_for_status()
    tokens = {}
    for user in ("dev", "viewer", "stranger"):
        r = httpx.post(s.url + "/api/v1/login", json={"username": user, "password": PW})
        r.raise_for_status()
        tokens[user] = r.json()["token"]
    s.wait_for(lambda: _ready(s, "web", 1), what="web to be ready")
    return tokens


def _url(s, query: str = "", app: str = "web") -> str:  # noqa: ANN001
    return f"ws://127.0.0.1:{s.port}/api/v1/projects/acme/shop/apps/{app}/exec{query}"


def _session(url: str, token: str, typed: list[str]) -> tuple[str, dict, int]:
    """Type `typed` into a session; return the output, the exit message and the close code."""
    out = b""
    with connect(url, open_timeout=10, close_timeout=5) as ws:
        ws.send(json.dumps({"token": token, "cols": 100, "rows": 30}))
        for text in typed:
            ws.send(json.dumps({"type": "input", "data": text}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            msg = ws.recv(timeout=deadline - time.monotonic())
            if isinstance(msg, bytes):
                out += msg
                continue
            end = json.loads(msg)
            assert end["type"] == "exit", end
            try:
                ws.recv(timeout=5)
            except ConnectionClosed:
                pass
            return out.decode("utf-8", "replace"), end, ws.close_code
    raise AssertionError(f"no exit within 30 s; output so far: {out!r}")


def _refused(url: str, token: str) -> tuple[dict, int]:
    with connect(url, open_timeout=10) as ws:
        ws.send(json.dumps({"token": token}))
        msg = json.loads(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        return msg, ws.close_code


def _execs(docker_api, cid: str) -> list[dict]:  # noqa: ANN001
    out = []
    for eid in docker_api.inspect_container(cid).get("ExecIDs") or []:
        try:
            out.append(docker_api.exec_inspect(eid))
        except Exception:  # noqa: BLE001 — removed meanwhile
            pass
    return out


def test_developer_runs_a_command_others_are_refused_and_it_is_audited(server, docker_api) -> None:  # noqa: ANN001
    tokens = _world(server)
    cid = app_containers(docker_api, server.instance, "web", running_only=True)[0]["Id"]

    output, end, close_code = _session(_url(server), tokens["dev"], ["echo dockyard-$((6*7))\n", "exit\n"])
    assert "dockyard-42" in output, output
    assert end == {"type": "exit", "code": 0} and close_code == 1000
    output, end, _ = _session(_url(server, "?command=" + quote("sh -c 'echo from-$0; exit 3'")), tokens["dev"], [])
    assert "from-sh" in output and end["code"] == 3

    execs_before = set(docker_api.inspect_container(cid).get("ExecIDs") or [])
    msg, code = _refused(_url(server), tokens["viewer"])
    assert code == 4403 and msg["type"] == "error" and msg["status"] == 403
    msg, code = _refused(_url(server), tokens["stranger"])
    assert code == 4404 and msg["status"] == 404
    msg, code = _refused(_url(server), "dy_not-a-real-token")
    assert code == 4401 and msg["status"] == 401
    msg, code = _refused(_url(server, "?replica=7"), tokens["dev"])
    assert code == 4404 and "no running replica 7" in msg["message"]
    # (the engine may forget old execs meanwhile, never add one by itself)
    assert not set(docker_api.inspect_container(cid).get("ExecIDs") or []) - execs_before, \
        "a refused session must not start anything in the container"

    with server.client() as c:
        entries = c.get("/audit", params={"action": "EXEC"}).json()["items"]
    started = [e for e in entries if e["outcome"] == 101]
    assert [e["user"] for e in started] == ["dev", "dev"]
    assert started[0]["tenant"] == "acme" and started[0]["project"] == "shop"
    assert started[0]["object"] == "/projects/acme/shop/apps/web/exec"
    name = docker_api.inspect_container(cid)["Name"].lstrip("/")
    assert started[0]["detail"] == f"container={name} command=sh"
    assert {(e["user"], e["outcome"]) for e in entries} >= {("viewer", 403), ("stranger", 404), ("dev", 200)}
    with server.client() as c:
        assert c.post("/audit/verify").json()["ok"] is True


def test_a_vanished_client_leaves_no_process_behind(server, docker_api) -> None:  # noqa: ANN001
    tokens = _world(server)
    cid = app_containers(docker_api, server.instance, "web", running_only=True)[0]["Id"]
    with connect(_url(server), open_timeout=10, close_timeout=1) as ws:
        ws.send(json.dumps({"token": tokens["dev"]}))
        # a shell that starts a long child of its own, then the network goes (no close handshake)
        ws.send(json.dumps({"type": "input", "data": "sleep 300 & sleep 301\n"}))
        server.wait_for(lambda: any("sleep 301" in " ".join(p) for p in docker_api.top(cid)["Processes"]),
                        timeout=10, what="the command to run")
        assert any(e["Running"] for e in _execs(docker_api, cid))
        ws.socket.shutdown(socket.SHUT_RDWR)
    server.wait_for(lambda: not any(e["Running"] for e in _execs(docker_api, cid)), timeout=15,
                    what="the session's process to end")
    server.wait_for(lambda: not any("sleep" in " ".join(p) for p in docker_api.top(cid)["Processes"]),
                    timeout=10, what="what the shell started to end too")
    with server.client() as c:
        server.wait_for(lambda: any(e["outcome"] == 200 and "client left" in (e["detail"] or "")
                                    for e in c.get("/audit", params={"action": "EXEC"}).json()["items"]),
                        timeout=10, what="the audit entry of the session's end")


def test_oversized_or_compressed_messages_are_refused_before_and_after_login(server, docker_api) -> None:  # noqa: ANN001
    tokens = _world(server)
    cid = app_containers(docker_api, server.instance, "web", running_only=True)[0]["Id"]
    # before any login: the server takes no WebSocket message over 256 KiB (uvicorn's default is 16 MiB),
    # and declines compression (a small frame would inflate past what TCP's backpressure bounds)
    with connect(_url(server), open_timeout=10, max_size=None) as ws:
        assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send(b"x" * (1024 * 1024))
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=10)
        assert ws.close_code == 1009
    # in a session: an input frame over 64 KiB ends it with 4400 and says why
    with connect(_url(server), open_timeout=10) as ws:
        ws.send(json.dumps({"token": tokens["dev"]}))
        ws.send(json.dumps({"type": "input", "data": "echo ready\n"}))
        out = b""
        while b"ready\r\n" not in out.replace(b"echo ready", b""):
            out += ws.recv(timeout=10)
        ws.send(b"y" * (64 * 1024 + 1))
        while isinstance(msg := ws.recv(timeout=10), bytes):
            pass
        assert json.loads(msg)["status"] == 400 and "input:" in json.loads(msg)["message"], msg
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 4400
    server.wait_for(lambda: not any(e["Running"] for e in _execs(docker_api, cid)), timeout=15,
                    what="the refused session's shell to end")


def test_a_user_has_at_most_eight_sessions_and_all_of_them_end(server, docker_api) -> None:  # noqa: ANN001
    tokens = _world(server)
    cid = app_containers(docker_api, server.instance, "web", running_only=True)[0]["Id"]
    with contextlib.ExitStack() as sockets:
        for _ in range(8):
            ws = sockets.enter_context(connect(_url(server), open_timeout=10, close_timeout=1))
            ws.send(json.dumps({"token": tokens["dev"]}))
            ws.send(json.dumps({"type": "input", "data": "sleep 300\n"}))
        server.wait_for(lambda: sum("sleep 300" in " ".join(p) for p in docker_api.top(cid)["Processes"]) == 8,
                        timeout=20, what="8 sessions to run their command")
        msg, code = _refused(_url(server), tokens["dev"])
        assert code == 4429 and msg["status"] == 429 and "8" in msg["message"], msg
        with server.client() as c:  # the API answers while they run ...
            t0 = time.monotonic()
            c.get("/projects/acme/shop/appsummaries").raise_for_status()
            assert time.monotonic() - t0 < 2
    with server.client() as c:  # ... and while they all close
        t0 = time.monotonic()
        c.get("/projects/acme/shop/appsummaries").raise_for_status()
        assert time.monotonic() - t0 < 2
    server.wait_for(lambda: not any("sleep" in " ".join(p) for p in docker_api.top(cid)["Processes"]),
                    timeout=30, what="every session's process to end")
    with server.client() as c:  # a session's place is given back, then its end recorded
        server.wait_for(lambda: sum(e["outcome"] == 200 for e in c.get("/audit", params={"action": "EXEC"}
                                                                         ).json()["items"]) == 8,
                        timeout=15, what="the 8 sessions' end entries")
    # their places are free again
    output, end, _ = _session(_url(server), tokens["dev"], ["echo again-$((2*4))\n", "exit\n"])
    assert "again-8" in output and end["code"] == 0


def test_closing_a_session_releases_its_socket_only_after_a_blocked_read_returned(docker_api) -> None:  # noqa: ANN001
    """Closing wakes a read blocked on the session's connection and closes the socket only once
    that read has returned. A descriptor closed under a blocked reader (or writer) is soon reused
    by the engine client's next connection, and the thread then waits on, reads from or writes
    terminal input into a connection to the engine API."""
    from dockyard.engines.base import WorkloadKey
    from dockyard.engines.docker import DockerDriver

    instance = "x" + secrets.token_hex(3)
    labels = {"dockyard.instance": instance, "dockyard.tenant": "acme", "dockyard.project": "shop",
              "dockyard.app": "web", "dockyard.slot": "0"}
    cid = docker_api.create_container("dockyard/demo:1.0", labels=labels, name=f"dy{instance}_fd_reuse")["Id"]
    docker_api.start(cid)
    driver = DockerDriver("unix:///var/run/docker.sock", instance=instance)
    try:
        for attempt in range(20):
            session = driver.exec(WorkloadKey("acme", "shop", "web"), slot=None, command=["sh"])
            assert session.read(), "the shell's banner"
            ended = threading.Event()

            def read_on(s: Any = session, done: threading.Event = ended) -> None:
                while s.read():
                    pass
                done.set()

            threading.Thread(target=read_on, daemon=True).start()
            time.sleep(0.05)  # blocked in recv
            session.close()  # ends the shell, with calls to the engine on new connections
            assert ended.wait(5), f"attempt {attempt}: the read blocked during close() did not return"
    finally:
        driver.close()
        docker_api.remove_container(cid, force=True)


@pytest.mark.parametrize("grep_z", [True, False], ids=["grep-z", "tr-loop"])
def test_the_clean_up_script_signals_the_tagged_processes_and_no_others(tmp_path, grep_z: bool) -> None:  # noqa: ANN001
    """The script the server runs in a container when a session ends, run here against this host's
    /proc: the session's process and what it started get the signal, another session's do not;
    with a grep that reads NUL-separated lines (one grep over every process) and without."""
    from dockyard.engines.docker import _END_EXEC, EXEC_TAG

    path = os.environ["PATH"]
    if not grep_z:
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "grep").write_text(f'#!/bin/sh\nfor a; do case "$a" in -*z*) exit 2;; esac; done\n'
                                   f'exec {shutil.which("grep")} "$@"\n')
        (fake / "grep").chmod(0o755)
        path = f"{fake}:{path}"
    mine, theirs = secrets.token_hex(8), secrets.token_hex(8)
    session = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 61"], env={"PATH": path, EXEC_TAG: mine})
    other = subprocess.Popen(["sleep", "62"], env={"PATH": path, EXEC_TAG: theirs})

    def tagged(value: str) -> list[str]:
        found = []
        for environ in Path("/proc").glob("[0-9]*/environ"):
            with contextlib.suppress(OSError):
                if f"{EXEC_TAG}={value}".encode() in environ.read_bytes().split(b"\0"):
                    found.append(environ.parent.name)
        return found

    try:
        deadline = time.monotonic() + 5
        while len(tagged(mine)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(tagged(mine)) >= 2, "the two sleeps (and sh, unless it ran the last one in its place)"
        subprocess.run(["sh", "-c", _END_EXEC, "sh", f"{EXEC_TAG}={mine}", "TERM"], env={"PATH": path},
                       check=True, timeout=30)
        assert session.wait(5) != 0
        deadline = time.monotonic() + 5
        while tagged(mine) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not tagged(mine), "the background sleep ended too"
        assert other.poll() is None, "another session's process is left alone"
    finally:
        for p in (session, other):
            p.kill()
            p.wait()


def test_a_bad_session_limit_stops_the_server_from_starting(tmp_path) -> None:  # noqa: ANN001
    env = dict(os.environ, DOCKYARD_EXEC_MAX_PER_USER="none")
    res = subprocess.run([str(VENV_BIN / "dockyard"), "server", "--data-dir", str(tmp_path / "data"),
                          "--listen", f"127.0.0.1:{free_port()}"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode != 0 and "DOCKYARD_EXEC_MAX_PER_USER: must be a whole number" in res.stderr, res.stderr


def test_rollout_restart_replaces_every_replica_without_downtime(server, docker_api) -> None:  # noqa: ANN001
    setup_project(server)
    with server.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest("web", replicas=2)).raise_for_status()
    server.wait_for(lambda: _ready(server, "web", 2), what="2 ready replicas")
    before = {c["Id"] for c in app_containers(docker_api, server.instance, "web")}
    stop = threading.Event()
    low: list[Any] = []

    def watch_ready() -> None:
        while not stop.is_set():
            st = get_app(server, "web")["status"]
            if st.get("readyReplicas", 0) < 2:
                low.append(st.get("readyReplicas"))
            time.sleep(0.05)

    t = threading.Thread(target=watch_ready)
    t.start()
    try:
        out = server.cli("rollout", "restart", "web", "-p", "acme/shop").stdout
        assert "app/web restarting" in out
        server.wait_for(lambda: _ready(server, "web", 2) and not before & {
            c["Id"] for c in app_containers(docker_api, server.instance, "web")}, timeout=90,
            what="both replicas to be replaced")
    finally:
        stop.set()
        t.join()
    assert not low, f"ready replicas dropped below 2 during the restart: {low[:5]}"
    app = get_app(server, "web")
    assert app["spec"]["restartedAt"] and app["spec"]["image"] == "dockyard/demo:1.0"
    hist = server.cli("rollout", "history", "app", "web", "-p", "acme/shop").stdout
    assert "restart" in hist.splitlines()[-1]
