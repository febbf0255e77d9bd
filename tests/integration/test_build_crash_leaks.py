"""A server killed while a build fetches its source must not leave the fetch behind: git talks to
a user's server, and one that trickles (or never answers) would keep an orphaned git, which the
dead server no longer watches for time or size, running and writing for ever."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

from dockyard_harness import setup_project

P = "/projects/acme/shop"


def git_processes(port: int) -> list[int]:
    """Pids of processes whose command line names 127.0.0.1:`port` (the build's git)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if f"127.0.0.1:{port}".encode() in cmd and b"git" in cmd:
                found.append(int(d.name))
    return found


def test_a_killed_server_leaves_no_git_behind(server_factory) -> None:  # noqa: ANN001
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)
    port = hole.getsockname()[1]
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(hole.accept()[0]), daemon=True).start()  # accept, never answer
    s = server_factory()
    try:
        with s.client() as c:
            setup_project(s)
            spec = {"source": {"git": f"git://127.0.0.1:{port}/never.git"}, "image": "never"}
            r = c.post(f"{P}/builds", json={"kind": "Build", "metadata": {"name": "hang", "project": "acme/shop"},
                                            "spec": spec})
            assert r.status_code == 201, r.text
        s.wait_for(lambda: git_processes(port), timeout=30, what="the build's git to connect")
        s.kill(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and git_processes(port):
            time.sleep(0.1)
        assert not git_processes(port), "git outlived the killed server"
        s.start()
        with s.client() as c:
            b = s.wait_for(lambda: c.get(f"{P}/builds/hang").json()["status"].get("phase") == "Failed"
                           and c.get(f"{P}/builds/hang").json(), timeout=30, what="the build to be marked Failed")
            assert "interrupted" in b["status"]["message"]
        assert not list((s.data_dir / "builds" / "work").iterdir())
    finally:
        for pid in git_processes(port):  # only ours: they name the black hole's port
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for conn in held:
            conn.close()
        hole.close()


def test_a_killed_server_leaves_no_build_context_in_tmp(
        server_factory, tmp_path, monkeypatch, docker_api, gitserver) -> None:  # noqa: ANN001
    """The build context travels to the engine as a tar in a temporary file: one with a name
    outlives a SIGKILLed server (up to the 512 MiB the checkout may hold, per build)."""
    tmp = tmp_path / "server-tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    git = gitserver
    s = server_factory()
    try:
        setup_project(s)
        git.commit("slow", {"Dockerfile": "FROM dockyard/demo:1.0\nRUN sleep 171\n", "payload": "x" * 100_000})
        with s.client() as c:
            spec = {"source": {"git": git.url("slow")}, "image": "slow"}
            r = c.post(f"{P}/builds", json={"kind": "Build", "metadata": {"name": "slow", "project": "acme/shop"},
                                            "spec": spec})
            assert r.status_code == 201, r.text
            s.wait_for(lambda: "RUN sleep 171" in c.get(f"{P}/builds/slow/logs").text, timeout=60,
                       what="the build to reach its sleep")
        s.kill(signal.SIGKILL)
        assert [p.name for p in tmp.iterdir()] == []
    finally:
        s.wait_for(lambda: not [x for x in docker_api.containers(all=True) if "sleep 171" in x.get("Command", "")],
                   timeout=30, what="the build's container to go")
