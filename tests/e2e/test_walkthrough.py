"""The README's first-app walkthrough, as a new user runs it: `make up`, then the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from dockyard_harness import engine_available, free_port, remove_instance_objects  # noqa: E402

pytestmark = pytest.mark.engine


@pytest.fixture
def made_up(tmp_path: Path):  # noqa: ANN201
    if not engine_available():
        pytest.skip("no Docker engine")
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    log = open(tmp_path / "make-up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(["make", "up", f"LISTEN=127.0.0.1:{port}", f"DATA_DIR={data}"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (tmp_path / "make-up.log").read_text()[-3000:]
        time.sleep(0.3)
    try:
        yield url, data, tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        # make may exit before the server it started: wait for the whole group, or the server's
        # controllers could still replace containers that the clean-up below removes
        for _ in range(200):
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        import sqlite3

        con = sqlite3.connect(data / "dockyard.db")
        instance = con.execute("select value from settings where key='instance'").fetchone()[0]
        con.close()
        remove_instance_objects(docker.APIClient(version="1.41"), instance)


def test_readme_walkthrough(made_up) -> None:  # noqa: ANN001
    url, data, tmp = made_up
    password = (data / "admin-password").read_text().strip()
    assert oct((data / "admin-password").stat().st_mode & 0o777) == "0o600"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env.update(DOCKYARD_CONFIG=str(tmp / "config.json"), PATH=f"{BIN}:{env.get('PATH', '')}")

    def dy(*args: str, input: str | None = None, ok: bool = True, timeout: float = 90) -> str:
        r = subprocess.run(["dockyard", *args], cwd=ROOT, env=env, input=input, capture_output=True, text=True,
                           timeout=timeout)
        if ok:
            assert r.returncode == 0, f"dockyard {' '.join(args)}: {r.stdout}{r.stderr}"
        return r.stdout + r.stderr

    assert "Logged in" in dy("login", url, "-u", "admin", "--password-stdin", input=password + "\n")
    assert oct((tmp / "config.json").stat().st_mode & 0o777) == "0o600"
    out = dy("apply", "-f", "examples/shop.yaml")
    assert "tenant/acme created" in out and "app/web created" in out and "app/api created" in out
    out = dy("apply", "-f", "examples/compose.yaml", "-p", "acme/shop")
    assert "app/cache created" in out and "app/worker created" in out and "warning:" in out
    table = dy("get", "apps", "-p", "acme/shop")
    assert table.splitlines()[0].split() == ["NAME", "IMAGE", "READY", "STATUS", "AGE"]
    assert {line.split()[0] for line in table.splitlines()[1:]} == {"api", "cache", "web", "worker"}
    assert "condition met" in dy("wait", "app", "web", "--for", "ready", "--timeout", "60s", "-p", "acme/shop")
    app = json.loads(dy("get", "app", "web", "-p", "acme/shop", "-o", "json"))
    assert app["status"]["readyReplicas"] == 3 and app["status"]["phase"] == "Ready"
    described = dy("describe", "app", "web", "-p", "acme/shop")
    assert "Conditions:" in described and "AllReplicasReady" in described
    assert "scaled to 5" in dy("scale", "app", "web", "--replicas", "5", "-p", "acme/shop")
    dy("wait", "app", "web", "--for", "ready", "--timeout", "60s", "-p", "acme/shop")
    assert json.loads(dy("get", "app", "web", "-p", "acme/shop", "-o", "json"))["status"]["readyReplicas"] == 5
    logs = dy("logs", "app", "web", "-p", "acme/shop", "--tail", "5")
    assert "[web-4] demo 1.0 starting" in logs
    # logs -f follows: a request made now shows up in the followed stream
    follow = subprocess.Popen(["dockyard", "logs", "app", "web", "-f", "-p", "acme/shop", "--tail", "0"], env=env,
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        ip = app["status"]["containers"][0]["ip"]
        httpx.get(f"http://{ip}:8080/followed-path", timeout=3)
        deadline = time.monotonic() + 10
        seen = ""
        while time.monotonic() < deadline and "response:404" not in seen:
            seen += follow.stdout.readline()
        # the request for a missing page, logged by the replica after `logs -f` started
        assert "response:404" in seen and seen.startswith("[web-")
    finally:
        follow.terminate()
        follow.wait(5)

    assert "app/web configured" in dy("apply", "-f", "examples/web-v2.yaml")
    dy("wait", "app", "web", "--for", "ready", "--timeout", "90s", "-p", "acme/shop")
    assert "dockyard/demo:2.0" in dy("get", "app", "web", "-p", "acme/shop")
    hist = dy("rollout", "history", "app", "web", "-p", "acme/shop").splitlines()[1:]
    current = [row for row in hist if row.split()[1] == "*"]
    assert len(current) == 1 and "dockyard/demo:2.0" in current[0], hist
    assert any("dockyard/demo:1.0" in row for row in hist if row not in current)
    assert "dockyard/demo:1.0" in dy("rollout", "undo", "app", "web", "-p", "acme/shop")
    dy("wait", "app", "web", "--for", "ready", "--timeout", "90s", "-p", "acme/shop")
    back = json.loads(dy("get", "app", "web", "-p", "acme/shop", "-o", "json"))
    assert back["spec"]["image"] == "dockyard/demo:1.0"
    assert {c["revision"] for c in back["status"]["containers"]} == {back["status"]["revision"]}
    assert "deleted" in dy("delete", "app", "web", "-p", "acme/shop")
    err = dy("get", "app", "web", "-p", "acme/shop", ok=False)
    assert err.startswith("error: ") and "not found" in err and len(err.strip().splitlines()) == 1


def test_bad_input_prints_one_clear_line(made_up) -> None:  # noqa: ANN001
    url, data, tmp = made_up
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env.update(DOCKYARD_CONFIG=str(tmp / "config.json"), PATH=f"{BIN}:{env.get('PATH', '')}")
    password = (data / "admin-password").read_text()
    subprocess.run(["dockyard", "login", url, "--password-stdin"], input=password, env=env, check=True, text=True,
                   capture_output=True)
    bad = tmp / "bad.yaml"
    bad.write_text("kind: Tenant\nmetadata: {name: acme}\n---\nkind: Project\nmetadata: {name: acme/shop}\n---\n"
                   "kind: App\nmetadata: {name: web, project: acme/shop}\n"
                   "spec: {image: 'Bad Image', replicas: -1, resources: {memory: 12XB}, colour: blue}\n")
    r = subprocess.run(["dockyard", "apply", "-f", str(bad)], env=env, capture_output=True, text=True)
    assert r.returncode == 1
    err_lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1
    for field in ("spec.image", "spec.replicas", "spec.resources.memory", "spec.colour"):
        assert field in err_lines[0]
    r = subprocess.run(["dockyard", "get", "apps", "-p", "acme/shop", "-o", "json"], env=env, capture_output=True,
                       text=True)
    assert json.loads(r.stdout) == {"items": []}, "nothing stored"
    r = subprocess.run(["dockyard", "apply", "-f", str(ROOT / "tests/unit/compose_samples/monitoring-refused.yaml"),
                        "-p", "acme/shop"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "privileged" in r.stderr
