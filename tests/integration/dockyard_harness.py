"""Test harness: a real `dockyard server` subprocess against a real Docker engine, and helpers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PASSWORD = "test-password-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_available(url: str = "unix:///var/run/docker.sock") -> bool:
    try:
        docker.APIClient(base_url=url, version="1.41", timeout=5).ping()
        return True
    except Exception:  # noqa: BLE001
        return False


# the registry address of every Server this test session made: its images are removed at the end
# (tests/conftest.py), and no other session's
REGISTRIES: set[str] = set()


class Server:
    """A `dockyard server` subprocess with its own data dir; can be killed and restarted."""

    def __init__(self, data_dir: Path, engine: str = "unix:///var/run/docker.sock",
                 database_url: str | None = None, resync: float = 3.0) -> None:
        self.data_dir = data_dir
        self.engine = engine
        self.database_url = database_url
        self.resync = resync
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.registry = f"127.0.0.1:{free_port()}"  # its image registry (the proxy's address)
        REGISTRIES.add(self.registry)
        self.proc: subprocess.Popen | None = None
        self.log = data_dir / "server.log"
        self.token: str | None = None

    def start(self) -> None:
        env = dict(os.environ, DOCKYARD_ADMIN_PASSWORD=PASSWORD, DOCKYARD_RESYNC_SECONDS=str(self.resync),
                   DOCKYARD_LOG_LEVEL="INFO")
        if self.database_url:
            env["DOCKYARD_DATABASE_URL"] = self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "dockyard"), "server", "--data-dir", str(self.data_dir),
                 "--listen", f"127.0.0.1:{self.port}", "--engine", self.engine, "--registry-listen", self.registry],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        r = httpx.post(self.url + "/api/v1/login", json={"username": "admin", "password": PASSWORD})
        r.raise_for_status()
        self.token = r.json()["token"]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM; a server that has not exited 10 s later is killed (so that nothing leaks) and the
        test fails: a slow stop is a bug."""
        try:
            self.kill(signal.SIGTERM)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            raise AssertionError(f"the server took more than 10 s to stop on SIGTERM; log: {self.log}") from None

    @property
    def instance(self) -> str:
        import sqlite3

        if self.database_url:
            raise NotImplementedError
        con = sqlite3.connect(self.data_dir / "dockyard.db")
        try:
            return con.execute("select value from settings where key='instance'").fetchone()[0]
        finally:
            con.close()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1", headers={"Authorization": f"Bearer {self.token}"},
                            timeout=30)

    def cli(self, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
        cfg = self.data_dir / "cli.json"
        if not cfg.exists():
            cfg.write_text(json.dumps({"url": self.url, "token": self.token}))
        env = dict(os.environ, DOCKYARD_CONFIG=str(cfg))
        res = subprocess.run([str(VENV_BIN / "dockyard"), *args], capture_output=True, text=True, input=input,
                             env=env, timeout=timeout, cwd=ROOT)
        if check and res.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def wait_for(self, predicate, timeout: float = 60, interval: float = 0.2, what: str = "condition"):  # noqa: ANN001, ANN201
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}\n"
                             f"server log tail:\n{self.log.read_text()[-3000:]}")


def remove_instance_objects(api: docker.APIClient, instance: str) -> None:
    label = f"dockyard.instance={instance}"
    for c in api.containers(all=True, filters={"label": label}):
        try:
            api.remove_container(c["Id"], force=True)
        except docker.errors.APIError:
            pass
    for n in api.networks(filters={"label": label}):
        try:
            api.remove_network(n["Id"])
        except docker.errors.APIError:
            pass
        # the server would have released its host isolation rule; it is stopped, so do it here
        rule = ["DOCKYARD-INPUT", "-i", f"br-{n['Id'][:12]}", "-m", "conntrack", "!", "--ctstate",
                "ESTABLISHED,RELATED", "-m", "comment", "--comment", f"dockyard isolation br-{n['Id'][:12]}",
                "-j", "DROP"]
        subprocess.run(["iptables", "-w", "5", "-D", *rule], capture_output=True)
    for v in (api.volumes(filters={"label": label}) or {}).get("Volumes") or []:
        try:
            api.remove_volume(v["Name"], force=True)
        except docker.errors.APIError:
            pass


def setup_project(s: Server, tenant: str = "acme", project: str = "shop") -> None:
    with s.client() as c:
        c.post("/tenants", json={"kind": "Tenant", "metadata": {"name": tenant}}).raise_for_status()
        c.post("/projects", json={"kind": "Project", "metadata": {"name": project, "tenant": tenant}}).raise_for_status()


def app_manifest(name: str, image: str = "dockyard/demo:1.0", replicas: int = 1, project: str = "acme/shop",
                 health: bool = True, **spec) -> dict:  # noqa: ANN003
    body = {"image": image, "replicas": replicas, "ports": [{"containerPort": 8080}], **spec}
    if health:
        body["healthcheck"] = {"http": {"path": "/healthz", "port": 8080}, "interval": "1s", "timeout": "1s",
                               "retries": 2}
    return {"apiVersion": "dockyard/v1", "kind": "App", "metadata": {"name": name, "project": project}, "spec": body}


def get_app(s: Server, name: str, project: str = "acme/shop") -> dict:
    with s.client() as c:
        r = c.get(f"/projects/{project}/apps/{name}")
        r.raise_for_status()
        return r.json()


def app_containers(api: docker.APIClient, instance: str, app: str, running_only: bool = False) -> list[dict]:
    return api.containers(all=not running_only, filters={"label": [f"dockyard.instance={instance}",
                                                                   f"dockyard.app={app}"]})
