"""Metrics: the embedded time-series store and the collector.

1. Ingestion: realistic samples of C containers × 9 metrics at 10 s for H hours, appended per
   tick as the collector does (heads flushed every minute). Figure: samples per CPU second of this
   process (one core). Peer: the same samples as rows of a plain SQLite table
   (series, t, value; WITHOUT ROWID), committed every minute.
2. Storage: after a compaction pass (partial chunks merged, minutes downsampled) and VACUUM, the
   metrics.db file size divided by the points it holds (raw samples and the 1m avg/max points),
   and the raw chunks' bytes per sample. Peer: the plain table's file size per sample.
3. Collector: N running containers (dockyard/demo:1.0, labelled as a Dockyard installation of
   its own); R collection rounds 10 s apart through the docker driver's listing and the cgroup
   files. Figure: CPU of the collecting thread plus dockerd's CPU during the round, as a share
   of one core at one round per 10 s. Peer: `docker stats --no-stream` for the same containers
   (CPU of the docker CLI plus dockerd's during the call, and its wall time).
"""

from __future__ import annotations

import math
import os
import random
import sqlite3
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard.metrics.collector import METRICS

from bench.common import (
    BenchError,
    children_cpu,
    goal,
    instance_containers,
    log,
    machine_info,
    proc_cpu_seconds,
    ratio,
    write_result,
)

NAME = "metrics"
T0 = 1_789_999_980.0
GOAL_INGEST = 10_000
GOAL_BYTES = 2.0
GOAL_COLLECTOR_PCT = 5.0


class Workload:
    """Per tick, what the collector stores for each container (busy ones near 100 % CPU; memory in
    whole pages, changing now and then; mostly idle network and disk with bursts)."""

    def __init__(self, containers: int, seed: int = 7) -> None:
        self.rnd = random.Random(seed)
        self.labels = [{"tenant": "bench", "project": "p1", "app": f"app-{c // 2:03d}", "replica": str(c % 2),
                        "container": f"dybench_bench_p1_app-{c // 2:03d}_h_{c % 2}"} for c in range(containers)]
        self.busy = [c % 4 == 0 for c in range(containers)]
        self.memory = [self.rnd.randint(2_000, 50_000) * 4096 for _ in range(containers)]

    def tick(self, t: float) -> list[tuple[str, dict[str, str], float, float]]:
        rnd = self.rnd
        out = []
        for c, lab in enumerate(self.labels):
            if rnd.random() < 0.1:
                self.memory[c] += rnd.randint(-20, 20) * 4096
            cpu = round(rnd.uniform(99.3, 100.2), 2) if self.busy[c] else round(max(0.0, rnd.gauss(0.05, 0.04)), 2)
            out += [("cpu", lab, t, cpu), ("memory", lab, t, float(self.memory[c])),
                    ("memory_limit", lab, t, 268435456.0),
                    ("network_rx", lab, t, round(rnd.uniform(0, 5000), 1) if rnd.random() < 0.2 else 0.0),
                    ("network_tx", lab, t, round(rnd.uniform(0, 5000), 1) if rnd.random() < 0.2 else 0.0),
                    ("block_read", lab, t, round(rnd.uniform(0, 5000), 1) if rnd.random() < 0.02 else 0.0),
                    ("block_write", lab, t, round(rnd.uniform(0, 5000), 1) if rnd.random() < 0.05 else 0.0),
                    ("restarts", lab, t, 0.0), ("oom_kills", lab, t, 0.0)]
        return out


def _file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def ingest_and_store(containers: int, hours: float, tmp: Path) -> dict[str, Any]:
    from dockyard.metrics.tsdb import MetricsStore

    ticks = int(hours * 360)
    store = MetricsStore(tmp / "metrics.db")
    peer = sqlite3.connect(tmp / "plain.db", isolation_level=None)
    peer.execute("PRAGMA journal_mode=WAL")
    peer.execute("PRAGMA synchronous=NORMAL")
    peer.execute("CREATE TABLE series (id INTEGER PRIMARY KEY, key TEXT UNIQUE)")
    peer.execute("CREATE TABLE samples (series_id INTEGER, t INTEGER, v REAL, PRIMARY KEY (series_id, t)) "
                 "WITHOUT ROWID")
    ids: dict[str, int] = {}
    work = Workload(containers)
    ours = theirs = 0.0
    samples = 0
    peer.execute("BEGIN")
    for i in range(ticks):
        batch = work.tick(T0 + i * 10)
        c0 = time.process_time()
        samples += store.append_many(batch)
        if i % 6 == 5:
            store.flush()
        c1 = time.process_time()
        rows = []
        for metric, lab, t, v in batch:
            key = metric + "|" + lab["container"]
            sid = ids.get(key)
            if sid is None:
                sid = ids[key] = peer.execute("INSERT INTO series (key) VALUES (?)", (key,)).lastrowid
            rows.append((sid, int(t * 1000), v))
        peer.executemany("INSERT INTO samples VALUES (?, ?, ?)", rows)
        if i % 6 == 5:
            peer.execute("COMMIT")
            peer.execute("BEGIN")
        c2 = time.process_time()
        ours += c1 - c0
        theirs += c2 - c1
    store.flush()
    peer.execute("COMMIT")
    c0 = time.process_time()
    stats_compact = store.compact(now=T0 + ticks * 10 + 300)
    compact_cpu = time.process_time() - c0
    store.vacuum()
    st = store.stats()
    # query latency, for context: one app's cpu over the whole range at 1 minute, and the last hour at 10 s
    q0 = time.perf_counter()
    store.range("cpu", {"app": "app-000"}, T0, T0 + ticks * 10, 60, now=T0 + ticks * 10)
    q1 = time.perf_counter()
    store.range("cpu", {"app": "app-000"}, T0 + ticks * 10 - 3600, T0 + ticks * 10, 10, now=T0 + ticks * 10)
    q2 = time.perf_counter()
    store.close()
    peer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    peer.execute("VACUUM")
    peer.close()
    size = _file_size(tmp / "metrics.db")
    peer_size = _file_size(tmp / "plain.db")
    points = st["raw_samples"] + st.get("1m-avg_samples", 0) + st.get("1m-max_samples", 0)
    return {"containers": containers, "hours": hours, "samples": samples, "series": st["series"],
            "ingest_cpu_s": round(ours, 3), "ingest_samples_per_s": round(samples / ours),
            "peer_plain_sqlite_cpu_s": round(theirs, 3), "peer_samples_per_s": round(samples / theirs),
            "compact_cpu_s": round(compact_cpu, 3), "compaction": stats_compact,
            "file_bytes": size, "points_all_tiers": points, "bytes_per_point": round(size / points, 3),
            "bytes_per_ingested_sample_file": round(size / samples, 3),
            "raw_chunk_bytes_per_sample": round(st["raw_bytes"] / st["raw_samples"], 3),
            "peer_file_bytes": peer_size, "peer_bytes_per_sample": round(peer_size / samples, 3),
            "query_ms_full_range_1m": round((q1 - q0) * 1000, 1), "query_ms_last_hour_10s": round((q2 - q1) * 1000, 1)}


def collector_cost(n: int, rounds: int, interval: float) -> dict[str, Any]:
    from dockyard.engines import open_engine
    from dockyard.metrics.collector import Collector
    from dockyard.metrics.tsdb import MetricsStore
    from dockyard.server import EngineContainers

    with instance_containers(n) as (instance, ids, dpid):
        engine = open_engine("unix:///var/run/docker.sock", instance=instance)
        with tempfile.TemporaryDirectory(prefix="dockyard-bench-metrics-") as d:
            col = Collector(MetricsStore(Path(d) / "metrics.db"), EngineContainers(engine))
            c0, d0 = time.thread_time(), proc_cpu_seconds(dpid)
            first = col.collect_once()
            first_cpu, first_dockerd = time.thread_time() - c0, proc_cpu_seconds(dpid) - d0
            if first != n:
                raise BenchError(f"the collector read {first} of {n} containers")
            ours, dockerd_ours, walls = [], [], []
            theirs, dockerd_theirs, walls_theirs = [], [], []
            for _ in range(rounds):
                next_at = time.monotonic() + interval
                c0, d0, w0 = time.thread_time(), proc_cpu_seconds(dpid), time.perf_counter()
                got = col.collect_once()
                ours.append(time.thread_time() - c0)
                walls.append(time.perf_counter() - w0)
                dockerd_ours.append(proc_cpu_seconds(dpid) - d0)
                if got != n:
                    raise BenchError(f"the collector read {got} of {n} containers")
                k0, d0, w0 = children_cpu(), proc_cpu_seconds(dpid), time.perf_counter()
                subprocess.run(["docker", "stats", "--no-stream", "--format", "{{json .}}", *ids],
                               capture_output=True, check=True, timeout=120)
                walls_theirs.append(time.perf_counter() - w0)
                theirs.append(children_cpu() - k0)
                dockerd_theirs.append(proc_cpu_seconds(dpid) - d0)
                time.sleep(max(0.0, next_at - time.monotonic()))
            engine.close()

    def avg(x: list[float]) -> float:
        return sum(x) / len(x)

    ours_pct = (avg(ours) + avg(dockerd_ours)) / interval * 100
    theirs_pct = (avg(theirs) + avg(dockerd_theirs)) / interval * 100
    return {"containers": n, "rounds": rounds, "interval_s": interval,
            "collector_cpu_ms_per_round": round(avg(ours) * 1000, 1),
            "dockerd_cpu_ms_per_collector_round": round(avg(dockerd_ours) * 1000, 1),
            "collector_wall_ms_per_round": round(avg(walls) * 1000, 1),
            "collector_pct_of_one_core": round(ours_pct, 2),
            "collector_cpu_us_per_container": round(avg(ours) / n * 1e6),
            "first_round_cpu_ms": round(first_cpu * 1000, 1),
            "first_round_dockerd_cpu_ms": round(first_dockerd * 1000, 1),
            "peer_docker_stats_cli_cpu_ms": round(avg(theirs) * 1000, 1),
            "peer_dockerd_cpu_ms": round(avg(dockerd_theirs) * 1000, 1),
            "peer_wall_ms": round(avg(walls_theirs) * 1000, 1),
            "peer_pct_of_one_core_every_interval": round(theirs_pct, 2),
            "ratio_cpu_collector_to_docker_stats": ratio(ours_pct, theirs_pct),
            "ratio_wall_collector_to_docker_stats": ratio(avg(walls), avg(walls_theirs))}


def run(quick: bool = False) -> dict[str, Any]:
    started = datetime.now(UTC)
    machine = machine_info()
    containers, hours = (20, 1.0) if quick else (100, 6.0)
    n, rounds = (20, 2) if quick else (100, 6)
    log(f"== metrics: ingestion and storage ({containers} containers x {len(METRICS)} metrics, {hours:g} h at 10 s; "
        f"peer: plain SQLite rows), collector with {n} containers ({rounds} rounds; peer: docker stats --no-stream)")
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-tsdb-") as d:
        s = ingest_and_store(containers, hours, Path(d))
    data["store"] = s
    r_ingest = ratio(s["ingest_samples_per_s"], s["peer_samples_per_s"])
    log(f"  ingestion: {s['samples']:,} samples in {s['ingest_cpu_s']} CPU s = {s['ingest_samples_per_s']:,}/s on one "
        f"core; plain SQLite {s['peer_samples_per_s']:,}/s (ratio {r_ingest})")
    log(f"  storage: {s['bytes_per_point']} bytes/point over all tiers ({s['points_all_tiers']:,} points, "
        f"{s['file_bytes']:,} bytes); raw chunks {s['raw_chunk_bytes_per_sample']} bytes/sample; plain SQLite "
        f"{s['peer_bytes_per_sample']} bytes/sample (ratio {ratio(s['bytes_per_point'], s['peer_bytes_per_sample'])})")
    log(f"  compaction {s['compact_cpu_s']} CPU s; queries: {s['query_ms_full_range_1m']} ms ({hours:g} h at 1m), "
        f"{s['query_ms_last_hour_10s']} ms (1 h at 10 s)")
    c = collector_cost(n, rounds, 10.0)
    data["collector"] = c
    log(f"  collector: {c['collector_cpu_ms_per_round']} ms CPU + dockerd {c['dockerd_cpu_ms_per_collector_round']} ms "
        f"per round of {n} containers = {c['collector_pct_of_one_core']} % of one core at 10 s "
        f"({c['collector_cpu_us_per_container']} µs per container; first round with inspects "
        f"{c['first_round_cpu_ms']} + {c['first_round_dockerd_cpu_ms']} ms)")
    log(f"  docker stats --no-stream: CLI {c['peer_docker_stats_cli_cpu_ms']} ms + dockerd {c['peer_dockerd_cpu_ms']} "
        f"ms CPU, {c['peer_wall_ms']} ms wall = {c['peer_pct_of_one_core_every_interval']} % of one core if run every "
        f"10 s "
        f"(ratio ours/theirs: CPU {c['ratio_cpu_collector_to_docker_stats']}, wall "
        f"{c['ratio_wall_collector_to_docker_stats']})")
    goals = [goal(f"ingestion >= {GOAL_INGEST:,} samples/s on one core (is {s['ingest_samples_per_s']:,})",
                  s["ingest_samples_per_s"] >= GOAL_INGEST),
             goal(f"storage <= {GOAL_BYTES} bytes per stored point after compaction (is {s['bytes_per_point']})",
                  s["bytes_per_point"] <= GOAL_BYTES)]
    label = (f"collector <= {GOAL_COLLECTOR_PCT} % of one core with {n} containers "
             f"(is {c['collector_pct_of_one_core']} %)")
    goals.append(goal(label + ("" if n >= 100 else " [quick: fewer containers than the goal's 100]"),
                      c["collector_pct_of_one_core"] <= GOAL_COLLECTOR_PCT))
    data["goals"] = goals
    data["note"] = ("store: samples appended per 10 s tick, heads flushed every minute; bytes_per_point = metrics.db "
                    "size after compaction and VACUUM / (raw samples + 1m avg + 1m max points). collector: CPU of the "
                    "collecting thread + dockerd CPU during the round, over a 10 s interval.")
    if not math.isfinite(s["bytes_per_point"]):
        raise BenchError("no samples were stored")
    write_result(NAME, data, quick=quick, started=started, machine=machine)
    os.sync()
    return data
