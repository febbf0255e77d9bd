"""The metrics collector: every interval, for every running container of this installation, read
its cgroup counters and store samples (CPU %, memory, network and block I/O rates, restarts,
OOM kills) in the time-series store; keep the newest reading of each container for `top` and
the Prometheus exposition.

It gets containers from an engine-neutral `ContainerSource` (the server adapts the engine driver)
and never raises into its caller: a failed listing or a container that vanished mid-read costs
that container one sample, nothing else."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dockyard.metrics.cgroups import CgroupPaths, CgroupReader, ContainerGone, Counters
from dockyard.metrics.tsdb import MetricsStore

log = logging.getLogger(__name__)

INTERVAL = 10.0
FLUSH_EVERY = 60.0     # heads become (partial) chunks this often: what a crash can lose
COMPACT_EVERY = 600.0  # downsampling, merging, retention

# what the collector stores for each container, and the unit of each (the API reports it)
METRICS = {"cpu": "percent", "memory": "bytes", "memory_limit": "bytes", "network_rx": "bytes/s",
           "network_tx": "bytes/s", "block_read": "bytes/s", "block_write": "bytes/s", "restarts": "count",
           "oom_kills": "count"}


@dataclass(frozen=True)
class Target:
    """A running container to collect from."""

    tenant: str
    project: str
    app: str
    slot: int
    name: str
    id: str
    pid: int
    restarts: int


class ContainerSource(Protocol):
    def running_containers(self, refresh: frozenset[str] = frozenset()) -> Sequence[Target]:
        """Every running container of this installation; ids in `refresh` are looked up afresh."""
        ...


@dataclass
class Reading:
    """The newest state of one container: cumulative counters and the rates since the reading
    before (None until there are two readings)."""

    target: Target
    t: float
    counters: Counters
    cpu_percent: float | None = None
    rates: dict[str, float] = field(default_factory=dict)  # network_rx, network_tx, block_read, block_write


class Collector:
    """Collects into `store` every `interval` seconds on a thread of its own (`start`/`stop`), or
    one round at a time with `collect_once` (tests, benchmarks)."""

    def __init__(self, store: MetricsStore, source: ContainerSource, *, reader: CgroupReader | None = None,
                 interval: float = INTERVAL) -> None:
        self.store = store
        self.source = source
        self.reader = reader or CgroupReader()
        self.interval = interval
        self.readings: dict[str, Reading] = {}  # container id → newest reading
        self._paths: dict[str, CgroupPaths] = {}
        self._refresh: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0
        self.last_error: str | None = None

    # --- one round ---

    def collect_once(self, t: float | None = None) -> int:
        """Read every running container once and store the samples at time `t` (default now);
        returns how many containers were read. Never raises for engine or file trouble."""
        t = time.time() if t is None else t
        try:
            targets = list(self.source.running_containers(frozenset(self._refresh)))
        except Exception as e:  # noqa: BLE001 — the engine may be down; try again next round
            self.errors += 1
            self.last_error = f"listing containers: {e}"
            log.debug("metrics: %s", self.last_error)
            return 0
        self._refresh.clear()
        samples: list[tuple[str, dict[str, str], float, float]] = []
        fresh: dict[str, Reading] = {}
        for target in targets:
            reading = self._read(target, t)
            if reading is None:
                continue
            fresh[target.id] = reading
            samples.extend(_samples(reading, t))
        with self._lock:
            self.readings = fresh
        for gone in set(self._paths) - set(fresh):
            self._paths.pop(gone, None)
        try:
            self.store.append_many(samples)
        except Exception as e:  # noqa: BLE001 — a full disk must not stop the server
            self.errors += 1
            self.last_error = f"storing samples: {e}"
            log.warning("metrics: %s", self.last_error)
        return len(fresh)

    def _read(self, target: Target, t: float) -> Reading | None:
        if target.pid <= 0:
            return None
        try:
            paths = self._paths.get(target.id)
            if paths is None or paths.pid != target.pid:
                paths = self.reader.paths(target.pid)
                if not paths.owns(target.id):
                    # the pid belongs to someone else now: the container restarted since it was listed
                    self._refresh.add(target.id)
                    return None
                self._paths[target.id] = paths
            counters = self.reader.read(paths)
        except ContainerGone:
            self._paths.pop(target.id, None)
            self._refresh.add(target.id)
            return None
        except (OSError, ValueError) as e:
            self.errors += 1
            self.last_error = f"reading {target.name}: {e}"
            return None
        reading = Reading(target, t, counters)
        prev = self.readings.get(target.id)
        if prev is not None and t > prev.t and prev.target.pid == target.pid:
            dt = t - prev.t
            c, p = counters, prev.counters
            if c.cpu_usec >= p.cpu_usec:
                reading.cpu_percent = round((c.cpu_usec - p.cpu_usec) / (dt * 1e6) * 100, 2)
            for name, now_v, before in (("network_rx", c.net_rx, p.net_rx), ("network_tx", c.net_tx, p.net_tx),
                                        ("block_read", c.block_read, p.block_read),
                                        ("block_write", c.block_write, p.block_write)):
                if now_v >= before:
                    reading.rates[name] = round((now_v - before) / dt, 1)
        return reading

    def snapshot(self) -> list[Reading]:
        """The newest reading of every container read in the last round."""
        with self._lock:
            return list(self.readings.values())

    # --- the thread ---

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="metrics-collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and flush the heads (a clean shutdown loses nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.store.flush()
        except Exception as e:  # noqa: BLE001
            log.warning("metrics: final flush failed: %s", e)

    def _run(self) -> None:
        last_flush = last_compact = time.monotonic()
        while not self._stop.is_set():
            # samples carry the tick's time (a multiple of the interval), so that timestamps are
            # evenly spaced and cost about one bit each in the store
            tick = math.floor(time.time() / self.interval) * self.interval
            try:
                self.collect_once(tick)
                now = time.monotonic()
                if now - last_flush >= FLUSH_EVERY:
                    self.store.flush()
                    last_flush = now
                if now - last_compact >= COMPACT_EVERY:
                    self.store.compact()
                    last_compact = now
            except Exception:  # noqa: BLE001 — never let the thread die
                self.errors += 1
                log.exception("metrics collection failed")
            next_tick = tick + self.interval
            self._stop.wait(max(0.05, next_tick - time.time()))


def _samples(r: Reading, t: float) -> list[tuple[str, dict[str, str], float, float]]:
    tg = r.target
    labels = {"tenant": tg.tenant, "project": tg.project, "app": tg.app, "replica": str(tg.slot),
              "container": tg.name}
    out = [("memory", labels, t, float(r.counters.memory)),
           ("restarts", labels, t, float(tg.restarts)),
           ("oom_kills", labels, t, float(r.counters.oom_kills))]
    if r.counters.memory_limit is not None:
        out.append(("memory_limit", labels, t, float(r.counters.memory_limit)))
    if r.cpu_percent is not None:
        out.append(("cpu", labels, t, r.cpu_percent))
    out.extend((name, labels, t, v) for name, v in r.rates.items())
    return out
