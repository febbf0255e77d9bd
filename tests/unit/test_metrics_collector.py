"""The collector over fake cgroup trees (v2 and v1) and a fake container source: counters,
rates, vanished containers, restarted containers, a failing engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.metrics.cgroups import CgroupReader, ContainerGone
from dockyard.metrics.collector import Collector, Target
from dockyard.metrics.tsdb import MetricsStore

CID = "c0ffee" * 10 + "abcd"
NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: {lo} 10 0 0 0 0 0 0 {lo} 10 0 0 0 0 0 0
  eth0: {rx} 10 0 0 0 0 0 0 {tx} 10 0 0 0 0 0 0
"""


class FakeHost:
    """A /proc and cgroup tree under tmp_path; `mode` is "v2" or "v1"."""

    def __init__(self, root: Path, mode: str) -> None:
        self.root, self.mode = root, mode
        self.proc = root / "proc"
        self.cg = root / "cgroup"
        if mode == "v2":
            self.mounts = [("cgroup2", str(self.cg), "rw")]
        else:
            self.mounts = [("cgroup2", str(self.cg / "unified"), "rw")] + [
                ("cgroup", str(self.cg / c), f"rw,{c}") for c in ("cpuacct", "memory", "blkio")]

    def container(self, pid: int, cid: str, *, cpu_usec: int, mem: int, limit: int | None, oom: int = 0,
                  rd: int = 0, wr: int = 0, rx: int = 0, tx: int = 0) -> None:
        rel = f"docker/{cid}"
        p = self.proc / str(pid)
        (p / "net").mkdir(parents=True, exist_ok=True)
        (p / "net" / "dev").write_text(NET_DEV.format(lo=999999, rx=rx, tx=tx))
        if self.mode == "v2":
            (p / "cgroup").write_text(f"0::/{rel}\n")
            d = self.cg / rel
            d.mkdir(parents=True, exist_ok=True)
            (d / "cpu.stat").write_text(f"usage_usec {cpu_usec}\nuser_usec 1\nsystem_usec 2\n")
            (d / "memory.current").write_text(f"{mem + 4096}\n")
            (d / "memory.stat").write_text("anon 1\ninactive_file 4096\n")
            (d / "memory.max").write_text("max\n" if limit is None else f"{limit}\n")
            (d / "memory.events").write_text(f"low 0\nhigh 0\nmax 3\noom 1\noom_kill {oom}\n")
            (d / "io.stat").write_text(f"8:0 rbytes={rd} wbytes={wr} rios=1 wios=1\n")
        else:
            (p / "cgroup").write_text(f"4:memory:/{rel}\n3:blkio:/{rel}\n2:cpu,cpuacct:/{rel}\n0::/{rel}\n")
            for c in ("cpuacct", "memory", "blkio"):
                (self.cg / c / rel).mkdir(parents=True, exist_ok=True)
            (self.cg / "unified" / rel).mkdir(parents=True, exist_ok=True)
            (self.cg / "unified" / rel / "cpu.stat").write_text("usage_usec 1\n")  # no controller: not used
            (self.cg / "cpuacct" / rel / "cpuacct.usage").write_text(f"{cpu_usec * 1000}\n")
            m = self.cg / "memory" / rel
            (m / "memory.usage_in_bytes").write_text(f"{mem + 8192}\n")
            (m / "memory.stat").write_text("cache 9\ntotal_inactive_file 8192\n")
            (m / "memory.limit_in_bytes").write_text(f"{limit if limit is not None else 9223372036854771712}\n")
            (m / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {oom}\n")
            (self.cg / "blkio" / rel / "blkio.throttle.io_service_bytes").write_text(
                f"8:0 Read {rd}\n8:0 Write {wr}\n8:0 Sync 5\n8:0 Total {rd + wr}\nTotal {rd + wr}\n")

    def reader(self) -> CgroupReader:
        return CgroupReader(self.proc, self.mounts)


@pytest.mark.parametrize("mode", ["v2", "v1"])
def test_reader_reads_every_counter(tmp_path: Path, mode: str) -> None:
    h = FakeHost(tmp_path, mode)
    h.container(100, CID, cpu_usec=5_000_000, mem=1_000_000, limit=64 * 2**20, oom=2, rd=10, wr=20, rx=300, tx=400)
    r = h.reader()
    paths = r.paths(100)
    assert paths.owns(CID) and not paths.owns("someone-else")
    c = r.read(paths)
    assert (c.cpu_usec, c.memory, c.memory_limit, c.oom_kills) == (5_000_000, 1_000_000, 64 * 2**20, 2)
    assert (c.block_read, c.block_write, c.net_rx, c.net_tx) == (10, 20, 300, 400)  # loopback not counted
    h.container(101, CID + "x", cpu_usec=1, mem=1, limit=None)
    assert r.read(r.paths(101)).memory_limit is None
    with pytest.raises(ContainerGone):
        r.paths(999)


class FakeSource:
    def __init__(self, targets: list[Target]) -> None:
        self.targets = targets
        self.fail: Exception | None = None
        self.refreshed: list[frozenset[str]] = []

    def running_containers(self, refresh: frozenset[str] = frozenset()) -> list[Target]:
        self.refreshed.append(refresh)
        if self.fail:
            raise self.fail
        return self.targets


def target(pid: int, cid: str = CID, slot: int = 0, restarts: int = 0) -> Target:
    return Target("acme", "shop", "web", slot, f"dyx_acme_shop_web_h_{slot}", cid, pid, restarts)


def test_collector_stores_rates_and_survives_trouble(tmp_path: Path) -> None:
    h = FakeHost(tmp_path, "v2")
    h.container(100, CID, cpu_usec=0, mem=5000, limit=2**20, rx=0, tx=0)
    store = MetricsStore(":memory:")
    src = FakeSource([target(100)])
    col = Collector(store, src, reader=h.reader())
    t0 = 1_789_999_980.0
    assert col.collect_once(t0) == 1
    # 10 s later: 7.5 s of CPU time (75 %), 10 kB received, 5 kB written
    h.container(100, CID, cpu_usec=7_500_000, mem=6000, limit=2**20, rx=10_000, tx=0, wr=5000)
    assert col.collect_once(t0 + 10) == 1
    lab = {"tenant": "acme", "project": "shop", "app": "web", "replica": "0", "container": "dyx_acme_shop_web_h_0"}
    assert store.samples("cpu", lab, t0, t0 + 100) == [(t0 + 10, 75.0)]
    assert store.samples("memory", lab, t0, t0 + 100) == [(t0, 5000.0), (t0 + 10, 6000.0)]
    assert store.samples("memory_limit", lab, t0, t0 + 100)[-1] == (t0 + 10, float(2**20))
    assert store.samples("network_rx", lab, t0, t0 + 100) == [(t0 + 10, 1000.0)]
    assert store.samples("block_write", lab, t0, t0 + 100) == [(t0 + 10, 500.0)]
    assert [r.cpu_percent for r in col.snapshot()] == [75.0]

    # the engine fails: no exception, no samples, counted
    src.fail = ConnectionError("engine down")
    assert col.collect_once(t0 + 20) == 0 and col.errors == 1 and "engine down" in (col.last_error or "")
    src.fail = None

    # a container that vanished (its process is gone) is skipped and looked up again next round
    src.targets = [target(100), target(555, cid="d" * 64, slot=1)]
    assert col.collect_once(t0 + 30) == 1
    assert src.refreshed[-1] == frozenset()
    col.collect_once(t0 + 40)
    assert src.refreshed[-1] == frozenset({"d" * 64})

    # a restarted container: its pid now belongs to another container's cgroup → refresh, no sample
    h.container(777, "e" * 64, cpu_usec=1, mem=1, limit=None)
    src.targets = [target(777)]
    assert col.collect_once(t0 + 50) == 0
    col.collect_once(t0 + 60)
    assert CID in src.refreshed[-1]
