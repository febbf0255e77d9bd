"""Reads a container's resource counters straight from the kernel: its cgroup files (v2, or the
v1 controllers of a hybrid or legacy host) and /proc/<pid>/net/dev. No engine involved, which is
what makes collection cheap: a handful of small file reads per container instead of a stats API
call (see docs/architecture.md, "Metrics", for the measured difference)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# v1 reports "no limit" as the largest page-aligned signed 64-bit number
_V1_UNLIMITED = 1 << 62


@dataclass
class Counters:
    """One reading of a container. Cumulative counters (cpu, net, block, oom) grow monotonically
    while the container keeps its cgroup; `memory_limit` is None without a limit."""

    cpu_usec: int
    memory: int
    memory_limit: int | None
    oom_kills: int
    block_read: int
    block_write: int
    net_rx: int
    net_tx: int


class ContainerGone(Exception):
    """The container's process or cgroup disappeared while it was read."""


@dataclass(frozen=True)
class CgroupPaths:
    pid: int
    v2: Path | None          # the container's directory in the unified hierarchy
    v1: dict[str, Path]      # controller → directory (cpuacct, memory, blkio) on v1 hosts

    def owns(self, container_id: str) -> bool:
        """Whether the cgroup still belongs to the container (a restarted container has a new pid)."""
        return any(container_id in str(p) for p in [self.v2, *self.v1.values()] if p is not None)


class CgroupReader:
    """Finds each container's cgroup directories from /proc/<pid>/cgroup and the host's cgroup
    mounts, and reads its counters. `proc` and the mount table can be pointed elsewhere in tests."""

    def __init__(self, proc: Path = Path("/proc"), mounts: list[tuple[str, str, str]] | None = None) -> None:
        self.proc = proc
        self.v2_mount: Path | None = None
        self.v1_mounts: dict[str, Path] = {}
        for fstype, mountpoint, options in mounts if mounts is not None else _mounts(proc):
            if fstype == "cgroup2" and self.v2_mount is None:
                self.v2_mount = Path(mountpoint)
            elif fstype == "cgroup":
                for opt in options.split(","):
                    if opt in ("cpuacct", "memory", "blkio"):
                        self.v1_mounts.setdefault(opt, Path(mountpoint))

    def paths(self, pid: int) -> CgroupPaths:
        """The cgroup directories of process `pid`; ContainerGone if it does not exist."""
        try:
            text = (self.proc / str(pid) / "cgroup").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            raise ContainerGone(f"process {pid} is gone") from None
        v2, v1 = None, {}
        for line in text.splitlines():
            hier, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            rel = path.lstrip("/")
            if hier == "0" and controllers == "" and self.v2_mount is not None:
                v2 = self.v2_mount / rel
            for c in controllers.split(","):
                if c in self.v1_mounts:
                    v1[c] = self.v1_mounts[c] / rel
        return CgroupPaths(pid, v2, v1)

    def read(self, paths: CgroupPaths) -> Counters:
        """Every counter of one container; ContainerGone when its files vanished meanwhile."""
        try:
            cpu = self._cpu(paths)
            memory, limit, oom = self._memory(paths)
            rd, wr = self._block(paths)
            rx, tx = _net_dev(self.proc / str(paths.pid) / "net" / "dev")
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError) as e:
            raise ContainerGone(str(e)) from None
        return Counters(cpu, memory, limit, oom, rd, wr, rx, tx)

    def _cpu(self, p: CgroupPaths) -> int:
        if p.v2 is not None and (p.v2 / "cpu.stat").exists() and "cpuacct" not in p.v1:
            return int(_flat(p.v2 / "cpu.stat").get("usage_usec", 0))
        if "cpuacct" in p.v1:
            return int((p.v1["cpuacct"] / "cpuacct.usage").read_text()) // 1000
        if p.v2 is not None:
            return int(_flat(p.v2 / "cpu.stat").get("usage_usec", 0))
        raise FileNotFoundError("no cpu accounting for this cgroup")

    def _memory(self, p: CgroupPaths) -> tuple[int, int | None, int]:
        """Used memory as `docker stats` counts it (usage minus inactive file cache), the limit,
        and OOM kills."""
        if p.v2 is not None and (p.v2 / "memory.current").exists():
            current = int((p.v2 / "memory.current").read_text())
            stat = _flat(p.v2 / "memory.stat")
            raw = (p.v2 / "memory.max").read_text().strip()
            limit = None if raw == "max" else int(raw)
            oom = int(_flat(p.v2 / "memory.events").get("oom_kill", 0))
            return max(0, current - int(stat.get("inactive_file", 0))), limit, oom
        d = p.v1["memory"]
        current = int((d / "memory.usage_in_bytes").read_text())
        stat = _flat(d / "memory.stat")
        raw_limit = int((d / "memory.limit_in_bytes").read_text())
        oom = int(_flat(d / "memory.oom_control").get("oom_kill", 0))
        return (max(0, current - int(stat.get("total_inactive_file", 0))),
                None if raw_limit >= _V1_UNLIMITED else raw_limit, oom)

    def _block(self, p: CgroupPaths) -> tuple[int, int]:
        if p.v2 is not None and (p.v2 / "io.stat").exists() and "blkio" not in p.v1:
            rd = wr = 0
            for line in (p.v2 / "io.stat").read_text().splitlines():
                for field in line.split()[1:]:
                    k, _, v = field.partition("=")
                    if k == "rbytes":
                        rd += int(v)
                    elif k == "wbytes":
                        wr += int(v)
            return rd, wr
        if "blkio" in p.v1:
            rd = wr = 0
            for line in (p.v1["blkio"] / "blkio.throttle.io_service_bytes").read_text().splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] == "Read":
                    rd += int(parts[2])
                elif len(parts) == 3 and parts[1] == "Write":
                    wr += int(parts[2])
            return rd, wr
        return 0, 0


def _flat(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        k, _, v = line.partition(" ")
        out[k] = v.strip()
    return out


def _net_dev(path: Path) -> tuple[int, int]:
    """Received and sent bytes of every interface but loopback, as the process's network
    namespace sees them."""
    rx = tx = 0
    for line in path.read_text().splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            continue
        f = rest.split()
        if len(f) >= 9:
            rx += int(f[0])
            tx += int(f[8])
    return rx, tx


def _mounts(proc: Path) -> list[tuple[str, str, str]]:
    """(fs type, mount point, super options) of the cgroup mounts this process sees."""
    out = []
    try:
        lines = (proc / "self" / "mountinfo").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        left, _, right = line.partition(" - ")
        lf, rf = left.split(), right.split()
        if len(rf) >= 3 and rf[0] in ("cgroup", "cgroup2"):
            out.append((rf[0], _unescape(lf[4]), rf[2]))
    return out


def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")

