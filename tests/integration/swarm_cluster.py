"""A throwaway Docker Swarm for tests and benchmarks: N dockerd "nodes" on one machine.

Each node is a dockerd in its own network namespace (a veth on a bridge private to this cluster, no
default route, so nothing can leave the machine) and in its own UTS, PID and mount namespaces
(hostname = node name; SIGKILL of its dockerd, PID 1 there, takes containerd, shims and containers down
with it, as a crash of the machine would). Every cluster takes a free slot k (a lock file), which names
its bridge `dys<k>br`, its netns `dys<k>-<node>`, its subnet 10.98.k.0/24 and its root dir
/tmp/dockyard-nodes-<k>, so two test sessions can run side by side; a slot left behind by a killed run is
swept before it is used again.

Managers also listen on tcp://10.98.k.i:2376 with --tlsverify (a throwaway CA); `client_tls` holds the
client's PEMs and `tls_dir` the same as files. Images come from the host engine (`docker save` once,
loaded into every node in parallel) and nodes run with DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1: a swarm
never pulls an image it has.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from private_engine import dockerd_pid, stop_dockerd
from swarm_tls import TestCA, write_pem_files

DEMO = "dockyard/demo:1.0"
SLOTS = range(1, 200)
LOCKS = Path("/tmp")  # /tmp/dockyard-nodes-<k>.lock, beside the slot's root dir
TLS_PORT = 2376


def run(args: list[str], *, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:  # noqa: ANN003
    """Run a command, text output captured; a failure (or timeout) raises with its stderr in the message,
    unless check=False: then a timeout is returncode 124."""
    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        p = subprocess.CompletedProcess(args, 124, "", f"timed out after {timeout:.0f} s")
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}")
    return p


def _quiet(*args: str) -> None:
    subprocess.run(list(args), capture_output=True)


def _mounts_under(root: Path) -> list[str]:
    prefix = f"{root}/"
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(prefix) or line.split()[1] == str(root)]


def processes_under(root: Path) -> list[int]:
    """PIDs whose command line names a path under root: the nodes' dockerd, containerd and their wrappers."""
    needle = f"{root}/".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@dataclass
class Node:
    name: str
    index: int  # last octet of its address
    manager: bool
    dir: Path
    netns: str
    veth: str
    ip: str
    proc: subprocess.Popen | None = None
    args: list[str] = field(default_factory=list)

    @property
    def sock(self) -> str:
        return f"unix://{self.dir}/docker.sock"

    def dockerd_pid(self) -> int | None:
        return dockerd_pid(self.proc)


class SwarmCluster:
    """`with SwarmCluster() as c:` — m1..mM managers and w1..wW workers, formed into one swarm.

    Raft timing is Docker's: the daemon rejects `swarm-raft-*-tick` in daemon.json and the swarm spec's
    Raft.ElectionTick, though stored, did not shorten elections here (a killed leader is replaced in
    about 10-20 s either way). The dispatcher heartbeat is short (2 s) so a dead worker is noticed fast.
    """

    leader_timeout = 5.0  # `docker node ls` blocks while the swarm has no leader
    dispatcher_heartbeat = "2s"

    def __init__(self, managers: int = 3, workers: int = 2, images: Iterable[str] = (DEMO,)) -> None:
        if not 1 <= managers <= 7 or not 0 <= workers <= 20:
            raise ValueError("1..7 managers and 0..20 workers")
        self.images = tuple(images)
        self._planned = [(f"m{i}", True) for i in range(1, managers + 1)] + [(f"w{i}", False) for i in range(1, workers + 1)]
        self.nodes: dict[str, Node] = {}
        self.slot: int | None = None
        self._lock: int | None = None
        self.timings: dict[str, float] = {}
        self.client_tls: tuple[str, str, str] | None = None
        self.tls_dir: Path | None = None

    # ---- naming -------------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return Path(f"/tmp/dockyard-nodes-{self.slot}")

    @property
    def bridge(self) -> str:
        return f"dys{self.slot}br"

    @property
    def managers(self) -> list[str]:
        return [n for n, m in self._planned if m]

    @property
    def workers(self) -> list[str]:
        return [n for n, m in self._planned if not m]

    def ip(self, name: str) -> str:
        return self.nodes[name].ip

    def sock(self, name: str) -> str:
        return self.nodes[name].sock

    def tcp_url(self, name: str) -> str:
        if not self.nodes[name].manager:
            raise ValueError(f"{name} is a worker: only managers listen on tcp")
        return f"tcp://{self.ip(name)}:{TLS_PORT}"

    # ---- life cycle ---------------------------------------------------------------------------------

    def __enter__(self) -> SwarmCluster:
        try:
            self.up()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def up(self) -> None:
        """Take a slot, start every node in parallel, form the swarm, load the images; timings in `timings`."""
        t0 = time.monotonic()
        self._take_slot()
        self._sweep()
        self.root.mkdir(mode=0o755)
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"10.98.{self.slot}.1/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        # the host engine's FORWARD policy is DROP: let the nodes talk to each other across the bridge
        run(["iptables", "-I", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"])
        for i, (name, manager) in enumerate(self._planned, start=2):
            self.nodes[name] = Node(name, i, manager, self.root / name, f"dys{self.slot}-{name}",
                                    f"dys{self.slot}-{name}", f"10.98.{self.slot}.{i}")
        self._make_tls()
        with ThreadPoolExecutor(len(self.nodes) + 1) as pool:
            saved = pool.submit(self._save_images)
            list(pool.map(self._create_node, self.nodes.values()))
            self.timings["nodes"] = time.monotonic() - t0
            first = self.managers[0]
            self.docker(first, "swarm", "init", "--advertise-addr", self.ip(first), "--listen-addr",
                        f"{self.ip(first)}:2377", "--dispatcher-heartbeat", self.dispatcher_heartbeat,
                        "--task-history-limit", "2")
            self.timings["init"] = time.monotonic() - t0
            tokens = {role: self.docker(first, "swarm", "join-token", "-q", role).strip() for role in ("manager", "worker")}
            saved.result()
            loads = [pool.submit(self._load_images, n) for n in self.nodes]
            joins = [pool.submit(self._join, n, tokens["manager" if self.nodes[n].manager else "worker"], first)
                     for n in self.nodes if n != first]
            for f in joins:
                f.result()
            self.wait_ready()
            self.timings["swarm"] = time.monotonic() - t0
            for f in loads:
                f.result()
        self.timings["total"] = time.monotonic() - t0

    def _take_slot(self) -> None:
        """The first free slot: its lock file is ours (flock) and no other bridge routes its subnet."""
        routes = run(["ip", "-4", "route", "show"]).stdout
        for k in SLOTS:
            path = LOCKS / f"dockyard-nodes-{k}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            # the file may have been unlinked by its last owner between our open and flock: then it is not the lock
            same = os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino
            used = any(f"10.98.{k}.0/24 " in line and f"dev dys{k}br " not in line for line in routes.splitlines())
            if same and not used:
                self.slot, self._lock = k, fd
                return
            os.close(fd)
        raise RuntimeError("no free slot for a test swarm (10.98.1-199.0/24 all taken)")

    def _release_slot(self) -> None:
        if self._lock is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(LOCKS / f"dockyard-nodes-{self.slot}.lock")
        os.close(self._lock)
        self._lock = None

    def _make_tls(self) -> None:
        ca = TestCA(f"dockyard-nodes-{self.slot}")
        client = ca.client("dockyard-test-client")
        self.client_tls = (ca.ca_pem, client.cert_pem, client.key_pem)
        self.tls_dir = self.root / "tls"
        write_pem_files(self.tls_dir, ca.ca_pem, client)
        for node in self.nodes.values():
            if node.manager:
                write_pem_files(node.dir / "tls", ca.ca_pem, ca.server(node.name, node.ip, "127.0.0.1"),
                                "server-cert.pem", "server-key.pem")

    def _dockerd_args(self, node: Node) -> list[str]:
        config = node.dir / "daemon.json"  # own config file: the host's /etc/docker/daemon.json must not apply
        config.write_text("{}\n")
        args = ["dockerd", "--config-file", str(config), "--data-root", f"{node.dir}/data",
                "--exec-root", f"{node.dir}/exec", "--pidfile", f"{node.dir}/exec/dockerd.pid",
                "-H", node.sock, "--containerd-namespace", node.netns, "--containerd-plugins-namespace", f"{node.netns}-p",
                "--bip", f"172.31.{node.index}.1/24", "--cgroup-parent", f"/dockyard-nodes-{self.slot}/{node.name}",
                # Swarm's API 1.41 has no per-service no-new-privileges: the node sets it for every container,
                # as docs/clusters.md tells operators to
                "--no-new-privileges"]
        if node.manager:
            tls = node.dir / "tls"
            args += ["-H", f"tcp://{node.ip}:{TLS_PORT}", "--tlsverify", "--tlscacert", f"{tls}/ca.pem",
                     "--tlscert", f"{tls}/server-cert.pem", "--tlskey", f"{tls}/server-key.pem"]
        return args

    def _create_node(self, node: Node) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        run(["ip", "netns", "add", node.netns])
        run(["ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns])
        run(["ip", "link", "set", node.veth, "master", self.bridge, "up"])
        run(["ip", "-n", node.netns, "addr", "add", f"{node.ip}/24", "dev", "eth0"])
        run(["ip", "-n", node.netns, "link", "set", "eth0", "up"])
        run(["ip", "-n", node.netns, "link", "set", "lo", "up"])
        # no default route: only the bridge's subnet is reachable, so nothing a node does can leave the machine
        node.args = self._dockerd_args(node)
        self.start(node.name)

    def start(self, name: str, timeout: float = 60) -> None:
        """Start (or restart after kill) the node's dockerd with the same data-root: a manager or worker
        that was in the swarm rejoins it by itself."""
        node = self.nodes[name]
        if node.dockerd_pid():
            raise RuntimeError(f"node {name} is running")
        (node.dir / "exec" / "dockerd.pid").unlink(missing_ok=True)
        # the killed containerd's pid file too: in the node's new PID namespace that small number is
        # often one of dockerd's own threads, so dockerd takes containerd for running and times out on it
        (node.dir / "exec" / "containerd" / "containerd.pid").unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_SERVICE_PREFER_OFFLINE_IMAGE"] = "1"  # the swarm executor skips its pull when the image is here
        with open(node.dir / "log", "ab") as log:
            node.proc = subprocess.Popen(
                ["nsenter", f"--net=/var/run/netns/{node.netns}", "unshare", "--uts", "--pid", "--mount", "--fork",
                 "--mount-proc", "sh", "-c", f'hostname {name} && exec "$@"', "sh", *node.args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.proc.poll() is not None:
                break
            if run(["docker", "-H", node.sock, "version", "--format", "{{.Server.Version}}"], check=False,
                   timeout=10).returncode == 0:
                pid = node.dockerd_pid()
                (node.dir / "pid").write_text(f"{pid}\n")
                return
            time.sleep(0.2)
        raise RuntimeError(f"node {name} did not start: {self.log_tail(name)}")

    def log_tail(self, name: str, chars: int = 1500) -> str:
        try:
            return (self.nodes[name].dir / "log").read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def kill(self, name: str, timeout: float = 30) -> None:
        """SIGKILL the node's dockerd: its whole PID namespace (containerd, shims, containers) dies with it,
        the node drops off the network as a crashed machine would."""
        node = self.nodes[name]
        stop_dockerd(node.proc, signal.SIGKILL, timeout)
        node.proc = None

    def alive(self, name: str) -> bool:
        return self.nodes[name].dockerd_pid() is not None

    def _join(self, name: str, token: str, via: str) -> None:
        """Join the swarm; managers joining at once may race on the Raft membership change, so retry."""
        deadline = time.monotonic() + 60
        while True:
            p = self.docker(name, "swarm", "join", "--token", token, "--advertise-addr", self.ip(name),
                            "--listen-addr", f"{self.ip(name)}:2377", f"{self.ip(via)}:2377", check=False)
            if p.returncode == 0 or "already part of a swarm" in p.stderr:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} could not join the swarm: {p.stderr.strip()}")
            time.sleep(1)

    def _save_images(self) -> None:
        if self.images:
            run(["docker", "save", "-o", str(self.root / "images.tar"), *self.images], timeout=300)

    def _load_images(self, name: str) -> None:
        if self.images:
            run(["docker", "-H", self.sock(name), "load", "-q", "-i", str(self.root / "images.tar")], timeout=300)

    # ---- the docker CLI against a node ------------------------------------------------------------

    def docker(self, name: str, *args: str, check: bool = True, timeout: float = 120):  # noqa: ANN201
        """Run the docker CLI against node `name`'s socket: stdout text (check=True) or the CompletedProcess."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        p = run(["docker", "-H", self.sock(name), *args], check=check, timeout=timeout, env=env)
        return p.stdout if check else p

    def manager_view(self) -> str:
        """A live manager to ask about the swarm: the first one (m1, m2, ...) that can list the nodes."""
        for name in self.managers:
            if self.alive(name) and self.docker(name, "node", "ls", "-q", check=False, timeout=15).returncode == 0:
                return name
        raise RuntimeError("no manager answers (the swarm has no leader?)")

    def node_table(self, via: str | None = None) -> list[dict[str, str]]:
        """`docker node ls` as dicts: hostname, status, availability, manager (Leader|Reachable|Unreachable|''), id."""
        out = self.docker(via or self.manager_view(), "node", "ls", "--format",
                          "{{.Hostname}}|{{.Status}}|{{.Availability}}|{{.ManagerStatus}}|{{.ID}}")
        rows = [line.split("|") for line in out.splitlines() if line]
        return [dict(zip(("hostname", "status", "availability", "manager", "id"), r, strict=True)) for r in rows]

    def leader(self) -> str | None:
        """The leader manager's name, or None when no live manager knows one."""
        for name in self.managers:
            if not self.alive(name):
                continue
            p = self.docker(name, "node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}", check=False,
                            timeout=self.leader_timeout)
            for line in p.stdout.splitlines():
                host, _, status = line.partition(" ")
                if status == "Leader":
                    return host
        return None

    def wait_for(self, predicate: Callable[[], object], timeout: float = 60, interval: float = 0.5,
                 what: str = "condition") -> object:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)

    def wait_ready(self, timeout: float = 90) -> None:
        """Until every node is Ready and every manager Reachable or Leader."""
        def ready() -> bool:
            try:
                rows = self.node_table()
            except RuntimeError:
                return False
            want = {n: m for n, m in self._planned}
            ok = {r["hostname"] for r in rows if r["status"] == "Ready"
                  and (r["manager"] in ("Leader", "Reachable")) == want.get(r["hostname"], False)}
            return ok == set(want)
        self.wait_for(ready, timeout, what="every node Ready with its role")

    # ---- tear down ------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every node and remove all it made: netns, veths, bridge, FORWARD rule, mounts, cgroups, dir."""
        if self.slot is None:
            return
        for name in list(self.nodes):
            self.kill(name)
        self._sweep()
        self._release_slot()
        self.slot = None

    def _sweep(self) -> None:
        """Remove what a run on this slot left: also after a killed pytest (stale processes, netns, bridge)."""
        k, root = self.slot, self.root
        for _ in range(50):
            pids = processes_under(root)
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        prefix = f"dys{k}-"
        for ns in run(["ip", "netns", "list"], check=False).stdout.split("\n"):
            if ns.split(" ")[0].startswith(prefix):
                _quiet("ip", "netns", "del", ns.split(" ")[0])
        for line in run(["ip", "-o", "link", "show"], check=False).stdout.splitlines():
            dev = line.split(":")[1].strip().split("@")[0]
            if dev.startswith(prefix):
                _quiet("ip", "link", "del", dev)
        _quiet("ip", "link", "del", self.bridge)
        while subprocess.run(["iptables", "-D", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"],
                             capture_output=True).returncode == 0:
            pass
        for m in sorted(_mounts_under(root), reverse=True):
            _quiet("umount", "-l", m)
        _remove_cgroups(f"dockyard-nodes-{k}")
        shutil.rmtree(root, ignore_errors=True)


def _remove_cgroups(parent: str) -> None:
    """Remove the nodes' container cgroups (--cgroup-parent) from every hierarchy, deepest first: their
    processes died with the node, the empty directories would stay."""
    base = Path("/sys/fs/cgroup")
    tops = [base / parent] + [d / parent for d in base.iterdir() if d.is_dir()]
    for top in tops:
        if not top.is_dir():
            continue
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def leftovers(slot: int) -> list[str]:
    """What of slot `slot` still exists on the machine: empty when a cluster closed cleanly."""
    root, prefix, bridge = Path(f"/tmp/dockyard-nodes-{slot}"), f"dys{slot}-", f"dys{slot}br"
    found = [f"netns {ns}" for ns in run(["ip", "netns", "list"]).stdout.split("\n") if ns.startswith(prefix)]
    for line in run(["ip", "-o", "link", "show"]).stdout.splitlines():
        dev = line.split(":")[1].strip().split("@")[0]
        if dev.startswith(prefix) or dev == bridge:
            found.append(f"link {dev}")
    if f"-i {bridge} " in run(["iptables", "-S", "FORWARD"]).stdout:
        found.append(f"FORWARD rule for {bridge}")
    found += [f"mount {m}" for m in _mounts_under(root)]
    found += [f"process {pid}" for pid in processes_under(root)]
    found += [f"cgroup {d}" for d in Path("/sys/fs/cgroup").glob(f"*/dockyard-nodes-{slot}")]
    if root.exists():
        found.append(f"dir {root}")
    return found
