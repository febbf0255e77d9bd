"""Shared helpers of the benchmarks: a Dockyard server subprocess, a watch-stream reader, docker
helpers, statistics, goals and result files. Standard library and httpx only."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import queue
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
VENV_BIN = ROOT / ".venv" / "bin"
IMAGE = "dockyard/demo:1.0"
PASSWORD = "pw"
TENANT = "bench"
PROJECT = "p1"
# every container a benchmark makes outside Dockyard carries this label, so that it can be removed
PEER_LABEL = "dockyard-bench.run"


class BenchError(Exception):
    """A real failure (the server did not start, a wait timed out, a request failed)."""


# --- small utilities ---------------------------------------------------------------------

def log(msg: str) -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred: Callable[[], Any], *, timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Call `pred` until it returns something truthy; BenchError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (httpx.HTTPError, OSError, subprocess.SubprocessError) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def percentile(values: Iterable[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method)."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    """min / median / p90 / p99 / max / mean of a sample (the unit is the caller's)."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "min": min(values), "median": statistics.median(values),
            "p90": percentile(values, 90), "p99": percentile(values, 99), "max": max(values),
            "mean": statistics.fmean(values)}


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


def ms_summary(values_s: list[float]) -> dict[str, float]:
    return {k: (v if k == "n" else ms(v)) for k, v in summary(values_s).items()}


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("inf")


def goal(text: str, ok: bool) -> dict[str, Any]:
    """Print a goal line; a missed goal is reported, never raised."""
    log(f"  goal {text}: {'met' if ok else 'MISSED'}")
    return {"goal": text, "met": bool(ok)}


def parse_ts(ts: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 time (docker's nanosecond times included)."""
    if not ts or ts.startswith("0001-"):
        return None
    s = ts.replace("Z", "+00:00")
    if "." in s:
        head, rest = s.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits):]
        s = f"{head}.{digits[:6].ljust(6, '0')}{zone}"
    return datetime.fromisoformat(s).timestamp()


# --- processes ---------------------------------------------------------------------------

def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM / Threads of a process from /proc/PID/status (kB for the Vm* fields)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[key] = int(val.split()[0])
    return out


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dockerd_pid() -> int | None:
    try:
        return int(Path("/var/run/docker.pid").read_text().strip())
    except (OSError, ValueError):
        pass
    r = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, timeout=10)
    return int(r.stdout.split()[0]) if r.stdout.split() else None


# --- docker --------------------------------------------------------------------------------

def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise BenchError(f"docker {' '.join(args[:3])}... failed ({r.returncode}): {r.stderr.strip()[:500]}")
    return r.stdout


def containers(*labels: str) -> list[str]:
    """Ids of all containers (running or not) carrying every one of `labels` (k=v)."""
    args = ["ps", "-aq", "--no-trunc"]
    for lb in labels:
        args += ["--filter", f"label={lb}"]
    return docker(*args, timeout=60).split()


def remove_containers(*labels: str) -> int:
    """docker rm -f every container carrying all `labels`; returns how many. Never raises."""
    if not labels:
        return 0  # never remove by no label at all
    try:
        ids = containers(*labels)
        if ids:
            docker("rm", "-f", *ids, timeout=300, check=False)
        return len(ids)
    except (BenchError, subprocess.SubprocessError, OSError) as e:
        log(f"  warning: cleanup of containers {labels} failed: {e}")
        return 0


def start_instance_containers(n: int, run_id: str, instance: str, *command: str,
                              entrypoint: str | None = None) -> list[str]:
    """`n` containers of IMAGE labelled as Dockyard installation `instance` (tenant bench, project p1,
    apps app-000…, slot 0) and as peers of run `run_id` (so cleanup finds them), started 8 at a time."""
    entry = ["--entrypoint", entrypoint] if entrypoint else []

    def one(k: int) -> str:
        return docker("run", "-d", "--pull", "never", "--network", "none", "--memory", "32m",
                      "--label", f"{PEER_LABEL}={run_id}", "--label", f"dockyard.instance={instance}",
                      "--label", "dockyard.tenant=bench", "--label", "dockyard.project=p1",
                      "--label", f"dockyard.app=app-{k:03d}", "--label", "dockyard.slot=0",
                      "--name", f"dybench{run_id}_{k:03d}", *entry, IMAGE, *command, timeout=120).strip()

    with ThreadPoolExecutor(8) as ex:
        return list(ex.map(one, range(n)))


@contextlib.contextmanager
def instance_containers(n: int, *command: str, entrypoint: str | None = None) -> Iterator[tuple[str, list[str], int]]:
    """`n` running containers labelled as a Dockyard installation of their own (see
    start_instance_containers); yields (instance, container ids, dockerd's pid) and removes them after."""
    run_id = secrets.token_hex(3)
    instance = f"b{run_id}"
    dpid = dockerd_pid()
    if dpid is None:
        raise BenchError("dockerd's pid is unknown (no /var/run/docker.pid, no pidof)")
    try:
        t0 = time.perf_counter()
        ids = start_instance_containers(n, run_id, instance, *command, entrypoint=entrypoint)
        wait_until(lambda: len(docker("ps", "-q", "--filter", f"label={PEER_LABEL}={run_id}").split()) == n,
                   timeout=300, interval=1, what=f"{n} containers running")
        log(f"  started {n} containers in {time.perf_counter() - t0:.1f} s")
        yield instance, ids, dpid
    finally:
        removed = remove_containers(f"{PEER_LABEL}={run_id}")
        log(f"  removed {removed} containers")


def children_cpu() -> float:
    """CPU seconds of the subprocesses this process has waited for (user + system)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def networks(*labels: str) -> list[str]:
    """Ids of the networks carrying every one of `labels` (k=v)."""
    args = ["network", "ls", "-q", "--no-trunc"]
    for lb in labels:
        args += ["--filter", f"label={lb}"]
    return docker(*args, timeout=60).split()


def remove_networks(*labels: str) -> int:
    """docker network rm every network carrying all `labels`; returns how many went. Never raises."""
    if not labels:
        return 0
    removed = 0
    try:
        for nid in networks(*labels):
            r = subprocess.run(["docker", "network", "rm", nid], capture_output=True, text=True, timeout=60)
            if r.returncode == 0:
                removed += 1
            else:
                log(f"  warning: cannot remove network {nid[:12]}: {r.stderr.strip()[:300]}")
    except (BenchError, subprocess.SubprocessError, OSError) as e:
        log(f"  warning: cleanup of networks {labels} failed: {e}")
    return removed


def image_present(image: str = IMAGE) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=30).returncode == 0


# --- machine information and result files -----------------------------------------------------

def _cmd(*args: str) -> str | None:
    try:
        r = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
        return (r.stdout or r.stderr).strip().splitlines()[0] if r.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def machine_info() -> dict[str, Any]:
    mem_kb = None
    cpu_model = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    from dockyard import __version__ as dockyard_version

    return {
        "nproc": os.cpu_count(), "nproc_usable": len(os.sched_getaffinity(0)), "cpu_model": cpu_model,
        "memory_total_mb": round(mem_kb / 1024) if mem_kb else None,
        "docker_server_version": _cmd("docker", "version", "--format", "{{.Server.Version}}"),
        "docker_api_version": _cmd("docker", "version", "--format", "{{.Server.APIVersion}}"),
        "docker_client_version": _cmd("docker", "version", "--format", "{{.Client.Version}}"),
        "docker_compose_version": _cmd("docker-compose", "version", "--short"),
        "python_version": platform.python_version(), "python_implementation": platform.python_implementation(),
        "kernel": platform.release(), "platform": platform.platform(),
        "dockyard_version": dockyard_version, "dockyard_source": source_fingerprint(),
        "loadavg_at_start": [round(x, 2) for x in load] if load else None,
        "containers_running_on_engine": _count_running(),
    }


def source_fingerprint() -> dict[str, Any]:
    """A hash of the product's Python sources as they are now (they change while people work)."""
    h = hashlib.sha256()
    files = sorted((ROOT / "dockyard").rglob("*.py"))
    newest = 0.0
    for f in files:
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes() + b"\0")
        newest = max(newest, f.stat().st_mtime)
    return {"sha256": h.hexdigest()[:16], "files": len(files),
            "newest_mtime": datetime.fromtimestamp(newest, UTC).isoformat(timespec="seconds") if files else None}


def _count_running() -> int | None:
    try:
        return len(docker("ps", "-q", timeout=30).split())
    except (BenchError, OSError, subprocess.SubprocessError):
        return None


def write_result(name: str, data: dict[str, Any], *, quick: bool, started: datetime,
                 machine: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if quick else ""
    path = RESULTS / f"{name}-{started.strftime('%Y-%m-%d')}{suffix}.json"
    doc = {"benchmark": name, "date": started.isoformat(timespec="seconds"),
           "finished": datetime.now(UTC).isoformat(timespec="seconds"), "quick": quick,
           "machine": machine, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()], **data}
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    log(f"  result file: {path.relative_to(ROOT)}")
    return path


# --- the Dockyard server ------------------------------------------------------------------------

class Server:
    """`dockyard server` as a subprocess with a throw-away data dir and a free port."""

    def __init__(self, name: str, *, workers: int | None = None, registry: bool = False) -> None:
        self.name = name
        # its image registry's address; benchmarks that do not use it run without one
        self.registry = f"127.0.0.1:{free_port()}" if registry else None
        self.projects: list[tuple[str, str]] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
        self.data_dir = self.tmp / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.log_path = self.tmp / "server.log"
        self.token = ""
        self._tokens: list[str] = []
        self.instance = ""

    # lifecycle

    def start(self, timeout: float = 60.0) -> Server:
        env = dict(os.environ, DOCKYARD_ADMIN_PASSWORD=PASSWORD, DOCKYARD_LOG_LEVEL="WARNING")
        for var in ("DOCKYARD_DATABASE_URL", "DOCKYARD_ENGINE", "DOCKER_HOST", "DOCKYARD_DATA_DIR"):
            env.pop(var, None)
        cmd = [str(VENV_BIN / "dockyard"), "server", "--data-dir", str(self.data_dir),
               "--listen", f"127.0.0.1:{self.port}", "--registry-listen", self.registry or "off"]
        if self.workers:
            cmd += ["--workers", str(self.workers)]
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=self.tmp,
                                         start_new_session=True)

        def healthy() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"dockyard server exited with {self.proc.returncode}: {self.log_tail()}")
            r = httpx.get(self.url + "/healthz", timeout=2)
            h = r.json() if r.status_code == 200 else {}
            return h.get("status") == "ok" and h.get("leader") is True and h.get("engine") == "ok"

        wait_until(healthy, timeout=timeout, interval=0.1, what="dockyard /healthz (leader, engine ok)")
        self.token = self.login()
        self.instance = self._read_instance()
        return self

    def login(self) -> str:
        """A new session token of admin."""
        r = httpx.post(self.url + "/api/v1/login", json={"username": "admin", "password": PASSWORD}, timeout=60)
        if r.status_code != 200:
            raise BenchError(f"login failed: {r.status_code} {r.text[:300]}")
        return r.json()["token"]

    def client_tokens(self, n: int) -> list[str]:
        """`n` tokens, one per load client (made once, reused): the server limits requests per token."""
        while len(self._tokens) < n:
            self._tokens.append(self.login())
        return self._tokens[:n]

    def _read_instance(self) -> str:
        """This installation's id: every container it creates carries dockyard.instance=<id>."""
        db = sqlite3.connect(f"file:{self.data_dir / 'dockyard.db'}?mode=ro", uri=True, timeout=30)
        try:
            row = db.execute("select value from settings where key = 'instance'").fetchone()
        finally:
            db.close()
        if not row:
            raise BenchError("cannot read the server's instance id from its database")
        return row[0]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def stop(self, failed: bool = False) -> None:
        """Stop the server we started (SIGTERM, then SIGKILL of its own process group); after a
        failure its log is kept in bench/results/."""
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # the group is this server's own session
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
        if failed and self.log_path.exists():
            RESULTS.mkdir(parents=True, exist_ok=True)
            kept = RESULTS / f"{self.name}-server-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.log"
            shutil.copyfile(self.log_path, kept)
            log(f"  server log kept in {kept.relative_to(ROOT)}; its end:\n{self.log_tail(1500)}")
        if not os.environ.get("BENCH_KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Server:
        try:
            return self.start()
        except BaseException:
            self.stop(failed=True)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            for tenant, project in reversed(self.projects):
                self.teardown_project(tenant, project)
        finally:
            self.stop(failed=exc_type is not None)

    # API helpers

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(), timeout=timeout)

    def apps_path(self, tenant: str = TENANT, project: str = PROJECT) -> str:
        return f"/api/v1/projects/{tenant}/{project}/apps"

    def setup_project(self, c: httpx.Client, tenant: str = TENANT, project: str = PROJECT) -> None:
        """Create the tenant (once) and the project; both are deleted on exit."""
        if not any(t == tenant for t, _ in self.projects):
            r = c.post("/api/v1/tenants", json={"apiVersion": "dockyard/v1", "kind": "Tenant",
                                                "metadata": {"name": tenant}})
            check(r, 201, "create tenant")
        r = c.post("/api/v1/projects", json={"apiVersion": "dockyard/v1", "kind": "Project",
                                             "metadata": {"name": project, "tenant": tenant}})
        check(r, 201, "create project")
        self.projects.append((tenant, project))

        def network_ready() -> bool:
            st = c.get(f"/api/v1/projects/{tenant}/{project}").json().get("status") or {}
            return any(x.get("type") == "Ready" and x.get("status") == "True" for x in st.get("conditions") or [])

        wait_until(network_ready, timeout=60, what="the project's network")

    def teardown_project(self, tenant: str = TENANT, project: str = PROJECT, timeout: float = 120.0) -> None:
        """Delete the project (the controller removes its containers), wait, then remove leftovers."""
        labels = (f"dockyard.instance={self.instance}", f"dockyard.tenant={tenant}",
                  f"dockyard.project={project}") if self.instance else ()
        try:
            if self.proc is not None and self.proc.poll() is None and self.token:
                with self.client() as c:
                    c.delete(f"/api/v1/projects/{tenant}/{project}")
                if labels:
                    wait_until(lambda: not containers(*labels), timeout=timeout, interval=0.5,
                               what="the project's containers to be removed by the controller")
                    wait_until(lambda: not networks(*labels), timeout=30, interval=0.5,
                               what="the project's network to be removed by the controller")
        except (BenchError, httpx.HTTPError) as e:
            log(f"  warning: project teardown: {e}")
        finally:
            if labels:
                n = remove_containers(*labels)
                if n:
                    log(f"  removed {n} leftover container(s) of {tenant}/{project} ourselves")
                n = remove_networks(*labels)
                if n:
                    log(f"  removed {n} leftover network(s) of {tenant}/{project} ourselves")


def app_manifest(name: str, replicas: int, *, project: str = PROJECT, tenant: str = TENANT,
                 labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "project": f"{tenant}/{project}"}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "dockyard/v1", "kind": "App", "metadata": meta,
            "spec": {"image": IMAGE, "replicas": replicas}}


def check(r: httpx.Response, status: int | tuple[int, ...], what: str) -> httpx.Response:
    ok = (status,) if isinstance(status, int) else status
    if r.status_code not in ok:
        raise BenchError(f"{what}: HTTP {r.status_code}: {r.text[:500]}")
    return r


def is_ready(obj: dict[str, Any], replicas: int) -> bool:
    st = obj.get("status") or {}
    return st.get("readyReplicas") == replicas and st.get("phase") == "Ready" and \
        st.get("observedGeneration") == (obj.get("metadata") or {}).get("generation")


# --- the watch stream ------------------------------------------------------------------------

class Watcher:
    """Reads the server-sent events of a collection watch in a thread; every event is queued with
    the perf_counter() and time.time() at which its data line arrived."""

    def __init__(self, server: Server, path: str) -> None:
        self.server = server
        self.path = path
        self.events: queue.Queue[tuple[float, float, dict[str, Any]]] = queue.Queue()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._resp: httpx.Response | None = None
        self._client = httpx.Client(base_url=server.url, headers=server.headers(),
                                    timeout=httpx.Timeout(10.0, read=None))
        self._thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)

    def start(self, timeout: float = 30.0) -> Watcher:
        self._thread.start()
        if not self.ready.wait(timeout):
            raise BenchError(f"the watch stream {self.path} did not start: {self.error}")
        if self.error:
            raise BenchError(f"the watch stream {self.path} failed: {self.error}")
        return self

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self.path, params={"watch": "1"}) as resp:
                self._resp = resp
                if resp.status_code != 200:
                    raise BenchError(f"watch: HTTP {resp.status_code}")
                for line in resp.iter_lines():
                    if self._stop.is_set():
                        return
                    if not line.startswith("data:"):
                        continue
                    t, w = time.perf_counter(), time.time()
                    ev = json.loads(line[5:].strip())
                    if ev.get("type") == "BOOKMARK":
                        self.ready.set()
                    self.events.put((t, w, ev))
        except Exception as e:  # noqa: BLE001 — handed to the waiting side
            self.error = e
        finally:
            self.ready.set()
            self.events.put((time.perf_counter(), time.time(), {"type": "_CLOSED"}))

    def drain(self) -> None:
        while True:
            try:
                self.events.get_nowait()
            except queue.Empty:
                return

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float,
                 what: str) -> tuple[float, float, dict[str, Any]]:
        """The first queued event whose object satisfies `pred` (older events are consumed)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"timed out after {timeout:.0f}s on the watch stream waiting for {what}")
            try:
                t, w, ev = self.events.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if ev.get("type") == "_CLOSED":
                raise BenchError(f"the watch stream closed while waiting for {what}: {self.error}")
            obj = ev.get("object")
            if isinstance(obj, dict) and pred(obj):
                return t, w, obj

    def close(self) -> None:
        self._stop.set()
        try:
            if self._resp is not None:
                self._resp.close()
        except Exception:  # noqa: BLE001 — closing a stream another thread reads may complain
            pass
        try:
            self._client.close()
        except Exception:  # noqa: BLE001
            pass
        self._thread.join(timeout=2)


def run_id() -> str:
    return f"{os.getpid()}-{int(time.time())}"


def python_exe() -> str:
    return sys.executable
