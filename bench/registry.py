"""The image registry: throughput, pushes per second, and token latency — Dockyard's registry (the
quota-enforcing proxy in front of distribution, with Dockyard as its token service) against the
bare distribution registry, without auth, started by this benchmark in the same run.

1. Push and pull of a 50 MB image with the real `docker` CLI. Every round builds a new image (one
   50 MB layer of random bytes, so nothing is deduplicated or compressed away), pushes it to both
   registries and pulls it back from both, in alternating order; `docker` authenticates to Dockyard
   with a Dockyard user's password. Goal: Dockyard's throughput ≥ 0.9× the bare registry's.
2. Small-image pushes per second with 20 concurrent clients. A client pushes an image (a 1 KiB
   layer of its own, a config, a manifest) with the registry API as `docker push` does: a token for
   the repository (Dockyard only), HEAD/POST/PUT per blob, PUT manifest. The clients are 20 Python
   processes with plain http.client; the same clients push to the bare registry for the peer figure.
   Goal: ≥ 40 pushes/s.
3. Token issue latency: `GET /registry/token` with Basic credentials and a push+pull scope, one
   request after the other, for a user's password and for a robot's secret. Goal: p99 ≤ 20 ms.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    PASSWORD,
    PROJECT,
    TENANT,
    BenchError,
    Server,
    check,
    free_port,
    goal,
    log,
    machine_info,
    ms_summary,
    proc_cpu_seconds,
    ratio,
    wait_until,
    write_result,
)

NAME = "registry"
BIG = 50 * 1000 * 1000
CLIENTS = 20
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


class BareRegistry:
    """`docker-registry serve` on a free port, no auth, storage in a temp dir."""

    def __init__(self) -> None:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise BenchError("docker-registry is not installed (make install installs it)")
        self.tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-registry-"))
        self.host = f"127.0.0.1:{free_port()}"
        cfg = self.tmp / "config.yml"
        cfg.write_text(f"version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: "
                       f"{{rootdirectory: {self.tmp / 'storage'}}}\n  delete: {{enabled: true}}\n"
                       f"http:\n  addr: {self.host}\n")
        self.proc = subprocess.Popen([binary, "serve", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_until(lambda: _answers(f"http://{self.host}/v2/"), timeout=20, what="the bare registry")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code in (200, 401)
    except httpx.HTTPError:
        return False


class DockerCLI:
    """The docker CLI with a throw-away config dir (its logins never touch root's config)."""

    def __init__(self) -> None:
        self.config = Path(tempfile.mkdtemp(prefix="dockyard-bench-docker-"))

    def run(self, *args: str, stdin: str | None = None, timeout: float = 300) -> str:
        r = subprocess.run(["docker", "--config", str(self.config), *args], input=stdin, capture_output=True,
                           text=True, timeout=timeout)
        if r.returncode != 0:
            raise BenchError(f"docker {' '.join(args)} failed: {r.stderr.strip()[:500]}")
        return r.stdout

    def timed(self, *args: str) -> float:
        t0 = time.perf_counter()
        self.run(*args)
        return time.perf_counter() - t0

    def close(self) -> None:
        shutil.rmtree(self.config, ignore_errors=True)


def _big_image(cli: DockerCLI, tag: str, workdir: Path) -> None:
    ctx = workdir / "ctx"
    ctx.mkdir(exist_ok=True)
    with open(ctx / "blob", "wb") as f:
        f.write(os.urandom(BIG))
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY blob /blob\n")
    cli.run("build", "-q", "-t", tag, str(ctx))


def throughput(server: Server, bare: BareRegistry, cli: DockerCLI, rounds: int) -> dict[str, Any]:
    cli.run("login", "-u", "admin", "--password-stdin", server.registry or "", stdin=PASSWORD)
    work = Path(tempfile.mkdtemp(prefix="dockyard-bench-big-"))
    times: dict[str, list[float]] = {"dockyard_push": [], "bare_push": [], "dockyard_pull": [], "bare_pull": []}
    try:
        for i in range(rounds + 1):  # round 0 warms both up and is not counted
            ours = f"{server.registry}/{TENANT}/{PROJECT}/big{i}:1"
            theirs = f"{bare.host}/bench/big{i}:1"
            _big_image(cli, ours, work)
            cli.run("tag", ours, theirs)
            order = [("dockyard", ours), ("bare", theirs)]
            if i % 2:
                order.reverse()
            pushes = {who: cli.timed("push", "-q", ref) for who, ref in order}
            cli.run("rmi", ours, theirs)
            pulls = {}
            for who, ref in order:
                pulls[who] = cli.timed("pull", "-q", ref)
                cli.run("rmi", ref)
            if i:
                for who in ("dockyard", "bare"):
                    times[f"{who}_push"].append(pushes[who])
                    times[f"{who}_pull"].append(pulls[who])
            log(f"  round {i}: push dockyard {pushes['dockyard']:.2f} s, bare {pushes['bare']:.2f} s; "
                f"pull dockyard {pulls['dockyard']:.2f} s, bare {pulls['bare']:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    mbps = {k: BIG / 1e6 / v for k, v in med.items()}
    push_ratio, pull_ratio = ratio(mbps["dockyard_push"], mbps["bare_push"]), ratio(mbps["dockyard_pull"],
                                                                                   mbps["bare_pull"])
    log(f"  50 MB push: dockyard {mbps['dockyard_push']:.0f} MB/s, bare {mbps['bare_push']:.0f} MB/s "
        f"→ {push_ratio:.2f}x;  pull: dockyard {mbps['dockyard_pull']:.0f} MB/s, bare {mbps['bare_pull']:.0f} MB/s "
        f"→ {pull_ratio:.2f}x")
    return {"rounds": rounds, "seconds": times, "median_mb_per_s": {k: round(v, 1) for k, v in mbps.items()},
            "push_ratio": push_ratio, "pull_ratio": pull_ratio,
            "goal_push": goal("push throughput >= 0.9x the bare registry", push_ratio >= 0.9),
            "goal_pull": goal("pull throughput >= 0.9x the bare registry", pull_ratio >= 0.9)}


# --- small pushes with the registry API -------------------------------------------------------------

def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Pusher:
    """Pushes small images like `docker push` does, to one registry, with optional token auth. Plain
    http.client with one kept-alive connection per client: the client must cost little CPU, since it
    shares this machine's two cores with the registries it measures."""

    def __init__(self, host: str, auth: tuple[str, str] | None, token_url: str | None) -> None:
        self.host = host
        self.auth = auth
        self.token_url = token_url

    def _request(self, conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def _token(self, conn: http.client.HTTPConnection, repo: str) -> dict[str, str]:
        if self.token_url is None or self.auth is None:
            return {}
        basic = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
        path = f"{self.token_url}?service=dockyard-registry&scope=repository:{repo}:pull,push"
        status, _, body = self._request(conn, "GET", path, headers={"Authorization": f"Basic {basic}"})
        if status != 200:
            raise BenchError(f"registry token: HTTP {status}: {body[:300]!r}")
        return {"Authorization": f"Bearer {json.loads(body)['token']}"}

    def _blob(self, conn: http.client.HTTPConnection, repo: str, data: bytes, h: dict[str, str]) -> None:
        d = _digest(data)
        if self._request(conn, "HEAD", f"/v2/{repo}/blobs/{d}", headers=h)[0] == 200:
            return
        status, headers, body = self._request(conn, "POST", f"/v2/{repo}/blobs/uploads/", b"", h)
        if status != 202:
            raise BenchError(f"start upload: HTTP {status}: {body[:300]!r}")
        loc = headers["location"]
        loc = loc.split("://", 1)[1].split("/", 1)[1] if "://" in loc else loc.lstrip("/")
        sep = "&" if "?" in loc else "?"
        status, _, body = self._request(conn, "PUT", f"/{loc}{sep}digest={d}", data,
                                        {**h, "Content-Type": "application/octet-stream"})
        if status != 201:
            raise BenchError(f"upload blob: HTTP {status}: {body[:300]!r}")

    def push_many(self, repo: str, n: int) -> list[float]:
        """Push `n` images to `repo`, tags v0…; returns each push's seconds."""
        registry = http.client.HTTPConnection(self.host, timeout=60)
        api = http.client.HTTPConnection(self.token_url.split("/")[2], timeout=60) if self.token_url else None
        lat = []
        try:
            for j in range(n):
                t0 = time.perf_counter()
                self.push(registry, api, repo, f"v{j}")
                lat.append(time.perf_counter() - t0)
        finally:
            registry.close()
            if api is not None:
                api.close()
        return lat

    def push(self, conn: http.client.HTTPConnection, api: http.client.HTTPConnection | None, repo: str,
             tag: str) -> None:
        h = self._token(api, repo) if api is not None else {}
        layer = os.urandom(1024)
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]}}).encode()
        self._blob(conn, repo, layer, h)
        self._blob(conn, repo, config, h)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                               "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                          "size": len(config), "digest": _digest(config)},
                               "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar",
                                           "size": len(layer), "digest": _digest(layer)}]}).encode()
        status, _, body = self._request(conn, "PUT", f"/v2/{repo}/manifests/{tag}", manifest,
                                        {**h, "Content-Type": MANIFEST})
        if status != 201:
            raise BenchError(f"push manifest: HTTP {status}: {body[:300]!r}")


def _client_process(args: tuple[Pusher, str, int]) -> list[float]:
    pusher, repo, n = args
    return pusher.push_many(repo, n)


def pushes_per_second(pusher: Pusher, prefix: str, per_client: int) -> dict[str, Any]:
    """CLIENTS processes (not threads: one Python process would be the bottleneck) push at once."""
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(CLIENTS) as pool:
        pool.map(_client_process, [(pusher, f"{prefix}/warm{k}", 1) for k in range(CLIENTS)])
        t0 = time.perf_counter()
        parts = pool.map(_client_process, [(pusher, f"{prefix}/small{k}", per_client) for k in range(CLIENTS)])
        wall = time.perf_counter() - t0
    lats = [x for part in parts for x in part]
    return {"pushes": len(lats), "seconds": round(wall, 2), "per_second": round(len(lats) / wall, 1),
            "push_latency_ms": ms_summary(lats)}


# --- token latency --------------------------------------------------------------------------------------

def token_latency(server: Server, auth: tuple[str, str], n: int) -> dict[str, Any]:
    url = f"{server.url}/registry/token"
    params = {"service": "dockyard-registry", "scope": f"repository:{TENANT}/{PROJECT}/web:pull,push"}
    lat = []
    with httpx.Client(timeout=30) as c:
        for i in range(n + 20):
            t0 = time.perf_counter()
            r = c.get(url, params=params, auth=auth)
            dt = time.perf_counter() - t0
            check(r, 200, "registry token")
            if i >= 20:  # warm-up: the first password check is a full argon2 verification
                lat.append(dt)
    return ms_summary(lat)


def run(quick: bool = False) -> None:
    started = datetime.now(UTC)
    machine = machine_info()
    rounds, per_client, n_tokens = (1, 3, 200) if quick else (3, 15, 1000)
    result: dict[str, Any] = {}
    bare = BareRegistry()
    cli = DockerCLI()
    try:
        with Server(NAME, registry=True) as server:
            with server.client() as c:
                server.setup_project(c)
                r = c.post(f"/api/v1/tenants/{TENANT}/projects/{PROJECT}/robots",
                           json={"name": "ci", "access": "push", "expires": "1d"})
                check(r, 201, "create robot")
                robot = (r.json()["username"], r.json()["secret"])

            log("1. 50 MB image, docker push and pull (Dockyard with token auth vs the bare registry)")
            result["throughput_50mb"] = throughput(server, bare, cli, rounds)

            log(f"2. small-image pushes, {CLIENTS} concurrent clients")
            cpu0 = proc_cpu_seconds(server.pid)
            ours = pushes_per_second(Pusher(server.registry or "", robot, f"{server.url}/registry/token"),
                                     f"{TENANT}/{PROJECT}", per_client)
            ours["dockyard_cpu_ms_per_push"] = round((proc_cpu_seconds(server.pid) - cpu0) * 1000 / ours["pushes"], 2)
            theirs = pushes_per_second(Pusher(bare.host, None, None), "bench", per_client)
            rel = ratio(ours["per_second"], theirs["per_second"])
            log(f"  dockyard {ours['per_second']}/s, bare registry {theirs['per_second']}/s → {rel:.2f}x "
                f"(Dockyard's server process: {ours['dockyard_cpu_ms_per_push']} ms CPU per push, token and proxy)")
            result["small_pushes"] = {"clients": CLIENTS, "dockyard": ours, "bare": theirs, "ratio": rel,
                                      "goal": goal(">= 40 pushes/s through Dockyard", ours["per_second"] >= 40)}

            log("3. token issue latency")
            pw = token_latency(server, ("admin", PASSWORD), n_tokens)
            rb = token_latency(server, robot, n_tokens)
            log(f"  password: median {pw['median']:.1f} ms, p99 {pw['p99']:.1f} ms; "
                f"robot: median {rb['median']:.1f} ms, p99 {rb['p99']:.1f} ms")
            result["token_latency"] = {"requests": n_tokens, "password": pw, "robot": rb,
                                       "goal": goal("p99 <= 20 ms", max(pw["p99"], rb["p99"]) <= 20)}
            cli.run("logout", server.registry or "")
    finally:
        cli.close()
        bare.close()
    path = write_result(NAME, result, quick=quick, started=started, machine=machine)
    log(f"  results: {path}")
