"""Logs: the embedded log store and the log collector.

1. Ingestion: L realistic access-log lines (~120 bytes) from C containers, written as the collector
   writes them: per flush, each container's new lines cut by `truncate_line` and stored with the
   read positions in one transaction (chatty containers: full 64-line chunks). Figure: MB of line
   text per CPU second of this process (one core). Peer: the same bytes appended to a plain file
   (what a log file costs at least), and as Docker's json-file driver writes them (one JSON object
   per line: log, stream, time).
2. Search over the L stored lines: a rare literal (a few lines of the whole store: a full scan), a
   rare literal in the wrong case, a common literal (stops at the newest 1,000), a rare literal in
   one app, the last hour. Figure: p50/p95 wall time of `LogStore.search`. Peer: `grep -c -F -i` of
   the same literal over the same lines as a text file (page-cached), and `LC_ALL=C grep -c -F`.
3. Collector: N containers (dockyard/demo:1.0 labelled as an installation of its own), each writing
   R lines/s, followed live by a real LogCollector for S seconds. Figure: CPU of this process and of
   dockerd per second and per MB collected, as a share of one core. Peer: `docker logs` of the same
   containers afterwards (CLI + dockerd CPU per MB), the engine's own way to read them.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    children_cpu,
    goal,
    instance_containers,
    log,
    machine_info,
    ms,
    ms_summary,
    percentile,
    proc_cpu_seconds,
    ratio,
    wait_until,
    write_result,
)

NAME = "logs"
GOAL_INGEST_MBS = 5.0
GOAL_SEARCH_P95_MS = 200.0
T0_NS = 1_790_000_000 * 10**9
RARE = "needle-5d1f"          # written into one line in 200,000
PATHS = ["/api/v1/items", "/api/v1/users", "/healthz", "/static/app.js", "/api/v1/orders", "/login", "/search"]
AGENTS = ["curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64)", "python-httpx/0.27", "Go-http-client/1.1"]


class Lines:
    """Access-log lines of C containers, one second of each at a time; about `rate` lines/s in all."""

    def __init__(self, containers: int, seed: int = 11) -> None:
        from dockyard.logs.store import LogSource

        self.rnd = random.Random(seed)
        self.sources = [LogSource("bench", "p1", f"app-{c // 2:03d}", c % 2, f"dybench_p1_app-{c // 2:03d}_h_{c % 2}",
                                  f"id{c:04d}") for c in range(containers)]
        self.n = 0

    def line(self, ts_ns: int) -> str:
        r = self.rnd
        self.n += 1
        status = 200 if r.random() < 0.9 else r.choice((201, 304, 404, 500))
        extra = f" {RARE}" if self.n % 200_000 == 7 else ""
        return (f"10.0.{r.randint(0, 255)}.{r.randint(1, 254)} - - [{ts_ns // 10**9}] \"GET {r.choice(PATHS)}/"
                f"{r.randint(1, 99999)} HTTP/1.1\" {status} {r.randint(80, 90000)} \"{r.choice(AGENTS)}\" "
                f"rt={r.randint(1, 900)}ms trace={r.getrandbits(64):016x}{extra}")


def ingest_and_search(total: int, containers: int, tmp: Path, searches: int) -> dict[str, Any]:
    from dockyard.logs.store import LogStore, ReadPosition, truncate_line

    store = LogStore(tmp / "logs.db")
    gen = Lines(containers)
    plain = open(tmp / "plain.log", "w", encoding="utf-8")  # noqa: SIM115 — closed below
    jsonfile = open(tmp / "json-file.log", "w", encoding="utf-8")  # noqa: SIM115
    per = 64                                   # lines per container per flush: full chunks
    ours = plain_cpu = json_cpu = 0.0
    text_bytes = 0
    written = 0
    t = T0_NS
    while written < total:
        batch = []
        positions = {}
        for src in gen.sources:
            lines = [(t + i * 1_000_000, "stderr" if i % 17 == 0 else "stdout", gen.line(t)) for i in range(per)]
            batch.append((src, lines))
            positions[src.container_id] = ReadPosition(lines[-1][0], 1)
        n = sum(len(b[1]) for b in batch)
        text_bytes += sum(len(x[2]) + 1 for b in batch for x in b[1])
        c0 = time.process_time()
        written += store.write([(s, [(ts, st, truncate_line(x)) for ts, st, x in ls]) for s, ls in batch], positions)
        c1 = time.process_time()
        for _, ls in batch:
            plain.write("".join(x + "\n" for _, _, x in ls))
        plain.flush()
        c2 = time.process_time()
        for _, ls in batch:
            jsonfile.write("".join(json.dumps({"log": x + "\n", "stream": st,
                                               "time": datetime.fromtimestamp(ts / 1e9, UTC).isoformat()}) + "\n"
                                   for ts, st, x in ls))
        jsonfile.flush()
        c3 = time.process_time()
        ours += c1 - c0
        plain_cpu += c2 - c1
        json_cpu += c3 - c2
        t += 1_000_000_000
        if n == 0:
            break
    plain.close()
    jsonfile.close()
    mb = text_bytes / 1e6
    size = sum(p.stat().st_size for p in tmp.glob("logs.db*"))
    newest = t / 1e9
    queries = {
        "rare literal (full scan)": {"grep": RARE},
        "rare literal, other case": {"grep": RARE.upper()},
        "common literal (newest 1000)": {"grep": "GET /healthz"},
        "rare literal in one app": {"grep": RARE, "app": "app-000"},
        "last hour, no grep (newest 1000)": {"since": newest - 3600},
        "absent literal (full scan)": {"grep": "no-such-text-anywhere"},
    }
    results: dict[str, Any] = {}
    for label, q in queries.items():
        times, found = [], 0
        for _ in range(searches):
            w0 = time.perf_counter()
            r = store.search("bench/p1", limit=1000, **q)
            times.append(time.perf_counter() - w0)
            found = len(r.items)
        results[label] = {"query": dict(q), "lines_found": found, **_p50_p95(times)}
    peer = {}
    for label, cmd, env in (("grep -c -F -i", ["grep", "-c", "-F", "-i", RARE], None),
                            ("LC_ALL=C grep -c -F", ["grep", "-c", "-F", RARE], {**os.environ, "LC_ALL": "C"})):
        subprocess.run(cmd + [str(tmp / "plain.log")], capture_output=True, env=env)  # warm the page cache
        times = []
        for _ in range(searches):
            w0 = time.perf_counter()
            out = subprocess.run(cmd + [str(tmp / "plain.log")], capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - w0)
        peer[label] = {"count": int(out.stdout.strip() or 0), **_p50_p95(times)}
    stats = store.stats()
    store.close()
    return {"lines": written, "containers": containers, "text_mb": round(mb, 1), "chunks": stats["chunks"],
            "ingest_cpu_s": round(ours, 3), "ingest_mb_per_s": round(mb / ours, 2),
            "ingest_lines_per_s": round(written / ours),
            "peer_plain_file_mb_per_s": round(mb / plain_cpu, 2), "peer_json_file_mb_per_s": round(mb / json_cpu, 2),
            "file_bytes": size, "file_bytes_per_text_byte": round(size / text_bytes, 3),
            "search": results, "peer_grep": peer}


def _p50_p95(times: list[float]) -> dict[str, float]:
    """The summary of `ms_summary` plus the p50 and p95 the issue's goal names."""
    return {**ms_summary(times), "p50": ms(percentile(times, 50)), "p95": ms(percentile(times, 95))}


def _talker_script(rate: int) -> str:
    """A shell loop writing `rate` access-log-like lines every second."""
    return (f'i=0; while :; do j=0; while [ $j -lt {rate} ]; do '
            f'echo "GET /api/v1/items/$i HTTP/1.1 200 trace=$RANDOM$RANDOM rt=${{j}}ms host=$(hostname)"; '
            f'i=$((i+1)); j=$((j+1)); done; sleep 1; done')


def collector_cost(n: int, rate: int, seconds: float) -> dict[str, Any]:
    from dockyard.engines import open_engine
    from dockyard.logs.collector import LogCollector
    from dockyard.logs.store import LogStore

    with instance_containers(n, "-c", _talker_script(rate), entrypoint="sh") as (instance, ids, dpid):
        engine = open_engine("unix:///var/run/docker.sock", instance=instance)
        with tempfile.TemporaryDirectory(prefix="dockyard-bench-logs-") as d:
            # dockerd's own cost of the containers' logging (json-file), without the collector
            d0, w0 = proc_cpu_seconds(dpid), time.perf_counter()
            time.sleep(seconds)
            baseline = (proc_cpu_seconds(dpid) - d0) / (time.perf_counter() - w0)
            store = LogStore(Path(d) / "logs.db")
            col = LogCollector(store, engine)
            # catch up with what the containers wrote before the collector started (not timed)
            col.start()
            wait_until(lambda: len(col._followers) == n, timeout=60, interval=0.2, what="a follower per container")
            time.sleep(3)
            lines0 = store.stats()["lines"]
            bytes0 = store.stats()["bytes"]
            c0, d0, w0 = time.process_time(), proc_cpu_seconds(dpid), time.perf_counter()
            time.sleep(seconds)
            ours, dockerd_ours, wall = (time.process_time() - c0, proc_cpu_seconds(dpid) - d0,
                                        time.perf_counter() - w0)
            col.stop()
            st = store.stats()
            store.close()
            engine.close()
        lines = st["lines"] - lines0
        mb = (st["bytes"] - bytes0) / 1e6
        k0, d0, w0 = children_cpu(), proc_cpu_seconds(dpid), time.perf_counter()
        peer_bytes = 0
        for cid in ids:
            out = subprocess.run(["docker", "logs", "--timestamps", cid], capture_output=True, check=True, timeout=120)
            peer_bytes += len(out.stdout) + len(out.stderr)
        peer_cpu, peer_dockerd, peer_wall = children_cpu() - k0, proc_cpu_seconds(dpid) - d0, time.perf_counter() - w0
    peer_mb = peer_bytes / 1e6
    dockerd_extra = max(0.0, dockerd_ours - baseline * wall)   # what following costs dockerd
    ours_pct = (ours + dockerd_extra) / wall * 100
    return {"containers": n, "lines_per_s_each": rate, "seconds": round(wall, 1), "lines_collected": lines,
            "mb_collected": round(mb, 2), "lines_per_s": round(lines / wall),
            "collector_cpu_s": round(ours, 3), "dockerd_cpu_s": round(dockerd_ours, 3),
            "dockerd_baseline_pct_without_collector": round(baseline * 100, 2),
            "dockerd_extra_cpu_s": round(dockerd_extra, 3),
            "collector_pct_of_one_core": round(ours / wall * 100, 2),
            "with_dockerd_pct_of_one_core": round(ours_pct, 2),
            "cpu_s_per_mb": round((ours + dockerd_extra) / mb, 3) if mb else None,
            "peer_docker_logs_mb": round(peer_mb, 2), "peer_cli_cpu_s": round(peer_cpu, 3),
            "peer_dockerd_cpu_s": round(peer_dockerd, 3), "peer_wall_s": round(peer_wall, 2),
            "peer_cpu_s_per_mb": round((peer_cpu + peer_dockerd) / peer_mb, 3) if peer_mb else None}


def run(quick: bool = False) -> dict[str, Any]:
    started = datetime.now(UTC)
    machine = machine_info()
    total, containers, searches = (200_000, 50, 10) if quick else (1_000_000, 50, 40)
    n, rate, seconds = (10, 20, 10.0) if quick else (100, 10, 30.0)
    log(f"== logs: ingestion of {total:,} lines from {containers} containers (peers: a plain file, json-file lines), "
        f"search over them (peer: grep -c), collector with {n} containers x {rate} lines/s for {seconds:g} s "
        f"(peer: docker logs)")
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dockyard-bench-logstore-") as d:
        s = ingest_and_search(total, containers, Path(d), searches)
    data["store"] = s
    log(f"  ingestion: {s['lines']:,} lines, {s['text_mb']} MB in {s['ingest_cpu_s']} CPU s = "
        f"{s['ingest_mb_per_s']} MB/s ({s['ingest_lines_per_s']:,} lines/s) on one core; "
        f"plain file {s['peer_plain_file_mb_per_s']} MB/s, "
        f"json-file lines {s['peer_json_file_mb_per_s']} MB/s (ratio to json-file "
        f"{ratio(s['ingest_mb_per_s'], s['peer_json_file_mb_per_s'])}); logs.db {s['file_bytes_per_text_byte']} "
        f"bytes per text byte")
    for label, q in s["search"].items():
        log(f"  search {label}: p50 {q['p50']} ms, p95 {q['p95']} ms ({q['lines_found']} lines)")
    for label, q in s["peer_grep"].items():
        log(f"  peer {label}: p50 {q['p50']} ms, p95 {q['p95']} ms (count {q['count']})")
    worst = max(q["p95"] for q in s["search"].values())
    data["search_worst_p95_ms"] = worst
    c = collector_cost(n, rate, seconds)
    data["collector"] = c
    log(f"  collector: {c['lines_collected']:,} lines ({c['mb_collected']} MB) in {c['seconds']} s from {n} "
        f"containers: {c['collector_pct_of_one_core']} % of one core "
        f"(+ dockerd's extra: {c['with_dockerd_pct_of_one_core']} %; dockerd without the collector "
        f"{c['dockerd_baseline_pct_without_collector']} %), {c['cpu_s_per_mb']} CPU s per MB; "
        f"docker logs of the same containers: "
        f"{c['peer_cpu_s_per_mb']} CPU s per MB (CLI + dockerd)")
    data["goals"] = [
        goal(f"ingestion >= {GOAL_INGEST_MBS} MB/s on one core (is {s['ingest_mb_per_s']})",
             s["ingest_mb_per_s"] >= GOAL_INGEST_MBS),
        goal(f"search over {s['lines']:,} lines p95 <= {GOAL_SEARCH_P95_MS:g} ms (worst query's p95 is {worst})"
             + ("" if s["lines"] >= 1_000_000 else " [quick: fewer lines than the goal's 1,000,000]"),
             worst <= GOAL_SEARCH_P95_MS)]
    data["note"] = ("ingest: CPU s of store.write (truncate + chunking + one transaction per flush of 64 lines x "
                    "containers), MB of line text; search: wall time of LogStore.search with limit 1000; "
                    "collector: process CPU of the benchmark (collector threads only run) plus dockerd's CPU above its "
                    "own rate without the collector (same containers, same logging), over the measured window, "
                    "after the followers caught up.")
    write_result(NAME, data, quick=quick, started=started, machine=machine)
    return data
