"""The embedded time-series store: chunk encoding, compaction, downsampling, retention, queries,
crash safety."""

from __future__ import annotations

import math
import os
import random
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dockyard.metrics.tsdb import (
    AVG_1M,
    CHUNK_SAMPLES,
    MAX_1M,
    RAW,
    MetricsStore,
    MetricsStoreError,
    decode_chunk,
    encode_chunk,
)

T0 = 1_789_999_980.0  # a round start time (seconds): a multiple of 60
L = {"tenant": "t", "project": "p", "app": "web", "replica": "0"}


def test_chunk_round_trip_is_bit_exact_for_every_kind_of_value() -> None:
    rnd = random.Random(1)
    ts = [1_790_000_000_000 + i * 10_000 + rnd.randint(-3, 3) for i in range(120)]
    cases = [
        [round(rnd.uniform(0, 100), 2) for _ in ts],            # decimals → decimal encoding
        [rnd.random() * 1e300 for _ in ts],                       # arbitrary floats → XOR encoding
        [float(4096 * rnd.randint(0, 10**9)) for _ in ts],        # large integers
        [0.0] * 120,
        [-1.5, math.inf, -math.inf, 1e-300, 5e-324, -0.0, 2.0**60] + [0.1 * i for i in range(113)],
    ]
    for vs in cases:
        t2, v2 = decode_chunk(encode_chunk(ts, vs))
        assert t2 == ts
        assert [math.copysign(1, v) for v in v2] == [math.copysign(1, v) for v in vs]  # -0.0 kept
        assert v2 == vs
    nan_t, nan_v = decode_chunk(encode_chunk(ts[:2], [math.nan, 1.0]))
    assert math.isnan(nan_v[0]) and nan_v[1] == 1.0 and nan_t == ts[:2]


def test_store_round_trip_across_flushes_and_reopen(tmp_path: Path) -> None:
    db = tmp_path / "metrics.db"
    s = MetricsStore(db)
    rnd = random.Random(2)
    want = [(T0 + i * 10, round(rnd.uniform(0, 3), 3)) for i in range(500)]
    for i, (t, v) in enumerate(want):
        s.append("cpu", L, t, v)
        if i % 37 == 0:
            s.flush()  # partial chunks, merged later
    assert not s.append("cpu", L, T0, 1.0), "an out-of-order sample is dropped"
    assert s.samples("cpu", L, T0, T0 + 10_000) == want
    s.compact(now=T0 + 5000)
    assert s.samples("cpu", L, T0, T0 + 10_000) == want
    s.close()
    s2 = MetricsStore(db)
    assert s2.samples("cpu", L, T0, T0 + 10_000) == want
    rows = sqlite3.connect(db).execute("SELECT count FROM chunks WHERE tier = 0 ORDER BY start_ms").fetchall()
    # 14 partial chunks (37 samples) merged greedily into chunks of at most 120
    assert max(r[0] for r in rows) <= CHUNK_SAMPLES and len(rows) <= 6, rows
    s2.close()


def realistic_container(rnd: random.Random, busy: bool, n: int) -> dict[str, list[float]]:
    """What the collector records for one container every 10 s: cpu % (2 decimals), memory bytes
    (whole pages, changing now and then), a constant limit, network and block rates in bytes/s
    (1 decimal; mostly idle with bursts), restart and OOM counters."""
    cpu, mem, out = [], [], {}
    m = rnd.randint(2_000, 50_000) * 4096
    for _ in range(n):
        cpu.append(round(rnd.uniform(99.3, 100.2), 2) if busy else round(max(0.0, rnd.gauss(0.05, 0.04)), 2))
        if rnd.random() < 0.1:
            m += rnd.randint(-20, 20) * 4096
        mem.append(float(m))
    out["cpu"] = cpu
    out["memory"] = mem
    out["memory_limit"] = [float(256 * 2**20)] * n
    for name, p in (("network_rx", 0.2), ("network_tx", 0.2), ("block_read", 0.02), ("block_write", 0.05)):
        out[name] = [round(rnd.uniform(0, 5000), 1) if rnd.random() < p else 0.0 for _ in range(n)]
    out["restarts"] = [0.0] * n
    out["oom_kills"] = [0.0] * n
    return out


def test_realistic_data_takes_at_most_two_bytes_per_sample_after_compaction(tmp_path: Path) -> None:
    """20 containers (a quarter busy) for 6 hours at 10 s, 9 metrics each, flushed every minute
    as the collector does, then compacted (partial chunks merged, minutes downsampled) and
    vacuumed. Bound: the whole metrics.db file (chunks, keys, the series table, SQLite's pages)
    divided by every point it holds (raw samples and 1m avg/max points) ≤ 2 bytes, the issue's
    goal and Prometheus's order of magnitude; the raw chunks alone ≤ 1.2 bytes per sample
    (Prometheus reports about 1.3). Measured when written: 1.52 and 0.99."""
    db = tmp_path / "metrics.db"
    s = MetricsStore(db)
    rnd = random.Random(3)
    n = 6 * 360
    data = {c: realistic_container(rnd, c % 4 == 0, n) for c in range(20)}
    total = 0
    for i in range(n):
        t = T0 + i * 10
        batch = [(metric, {**L, "replica": str(c)}, t, vals[i]) for c, d in data.items() for metric, vals in d.items()]
        total += s.append_many(batch)
        if i % 6 == 5:
            s.flush()
    s.flush()
    s.compact(now=T0 + n * 10 + 300)
    s.vacuum()
    st = s.stats()
    s.close()
    size = os.path.getsize(db) + (os.path.getsize(f"{db}-wal") if os.path.exists(f"{db}-wal") else 0)
    points = st["raw_samples"] + st["1m-avg_samples"] + st["1m-max_samples"]
    print(f"\n{total} samples ({points} points with the 1m tiers), file {size} bytes → "
          f"{size / points:.2f} bytes/point; raw chunk data {st['raw_bytes'] / st['raw_samples']:.2f} bytes/sample")
    assert st["raw_samples"] == total
    assert size / points <= 2.0
    assert st["raw_bytes"] / st["raw_samples"] <= 1.2


def test_downsampling_keeps_average_and_maximum_per_minute(tmp_path: Path) -> None:
    s = MetricsStore(tmp_path / "m.db")
    for i in range(60):  # 10 minutes, values 0..5 within each minute
        s.append("cpu", L, T0 + i * 10, float(i % 6))
    s.append("cpu", L, T0 + 600, 100.0)  # the first sample of minute 10: minutes 0..9 are complete
    s.flush()
    s.compact(now=T0 + 610)
    assert s.samples("cpu", L, T0, T0 + 3600, tier=AVG_1M) == [(T0 + 60 * m, 2.5) for m in range(10)]
    assert s.samples("cpu", L, T0, T0 + 3600, tier=MAX_1M) == [(T0 + 60 * m, 5.0) for m in range(10)]
    # a second pass does not downsample the same minutes again, and the open minute waits
    assert s.compact(now=T0 + 620)["downsampled"] == 0
    # once the series goes quiet for 2 minutes its last minute completes
    assert s.compact(now=T0 + 600 + 121)["downsampled"] == 1
    assert s.samples("cpu", L, T0 + 600, T0 + 700, tier=MAX_1M) == [(T0 + 600, 100.0)]


def test_retention_boundaries(tmp_path: Path) -> None:
    s = MetricsStore(tmp_path / "m.db")
    day, hour = 86_400, 3600
    # 15 days of one sample per minute
    for i in range(15 * 24 * 60):
        s.append("memory", L, T0 + i * 60, float(i))
        if i % 100 == 99:
            s.flush()
    s.flush()
    now = T0 + 15 * day
    s.compact(now=now)
    raw = s.samples("memory", L, T0, now, tier=RAW)
    ds = s.samples("memory", L, T0, now, tier=AVG_1M)
    # raw: everything newer than 24 h kept; nothing older than 24 h + one chunk span (20 min)
    assert raw[-1][0] == now - 60
    assert now - day - 20 * 60 <= raw[0][0] <= now - day
    # 1m: newer than 14 d kept; nothing older than 14 d + one chunk span (2 h)
    assert now - 14 * day - 2 * hour <= ds[0][0] <= now - 14 * day
    # queries: a range starting 2 days ago is answered from the 1m tier, a recent one from raw
    r = s.range("memory", {}, now - 2 * day, now, 60, now=now)
    assert r.resolution == "1m" and r.aggregate[0][0] == now - 2 * day
    r = s.range("memory", {}, now - 3600, now, 10, now=now)
    assert r.resolution == "raw" and len(r.aggregate) == 60
    # a query reaching past 14 d returns only what is retained, clipped at the limit
    r = s.range("memory", {}, T0, now, 3600, now=now)
    assert r.aggregate[0][0] >= now - 14 * day - hour


def test_a_series_past_retention_is_forgotten_and_comes_back_as_a_new_one(tmp_path: Path) -> None:
    s = MetricsStore(tmp_path / "m.db")
    gone, kept = {**L, "replica": "1"}, {**L, "replica": "2"}
    s.append("memory", gone, T0, 1.0)
    s.append("memory", kept, T0, 2.0)
    s.append("memory", kept, T0 + 15 * 86_400, 3.0)
    s.flush()
    assert s.compact(now=T0 + 15 * 86_400)["series_removed"] == 1
    assert [x.labels for x in s.select("memory")] == [kept]
    assert s.samples("memory", gone, T0, T0 + 1) == []
    assert s.append("memory", gone, T0 + 15 * 86_400, 4.0)
    s.flush()
    assert s.samples("memory", gone, T0, T0 + 16 * 86_400) == [(T0 + 15 * 86_400, 4.0)]
    assert len(MetricsStore(tmp_path / "m.db").select("memory")) == 2


def test_range_aggregates_across_series_and_picks_a_resolution(tmp_path: Path) -> None:
    s = MetricsStore(tmp_path / "m.db")
    for i in range(60):
        t = T0 + i * 10
        s.append("cpu", {**L, "replica": "0"}, t, 10.0)
        s.append("cpu", {**L, "replica": "1"}, t, 30.0 if i % 2 else 50.0)
        s.append("cpu", {**L, "app": "other", "replica": "0"}, t, 1000.0)
    now = T0 + 600
    r = s.range("cpu", {"app": "web"}, T0, T0 + 600, 60, "sum", now=now)
    assert r.resolution == "1m"  # step ≥ 60 s: minute aggregates (computed from raw: not downsampled yet)
    assert [x.labels["replica"] for x in r.series] == ["0", "1"]
    assert r.aggregate == [(T0 + 60 * m, 50.0) for m in range(10)]
    assert s.range("cpu", {"app": "web"}, T0, T0 + 600, 60, "max", now=now).aggregate[0] == (T0, 50.0)
    assert s.range("cpu", {"app": "web"}, T0, T0 + 600, 60, "avg", now=now).aggregate[0] == (T0, 25.0)
    r = s.range("cpu", {"app": "web"}, T0, T0 + 100, 20, "sum", now=now)
    assert r.resolution == "raw" and r.aggregate == [(T0 + 20 * k, 50.0) for k in range(5)]
    # after downsampling the 1m answer is the same
    s.flush()
    s.compact(now=now + 200)
    assert s.range("cpu", {"app": "web"}, T0, T0 + 600, 60, "sum", now=now).aggregate == \
        [(T0 + 60 * m, 50.0) for m in range(10)]
    with pytest.raises(MetricsStoreError):
        s.range("cpu", {}, T0, T0 + 1, 10, "median")
    with pytest.raises(MetricsStoreError):
        s.range("cpu", {}, T0, T0 + 1, 0)
    assert s.range("nothing", {}, T0, T0 + 100, 10).series == []


def test_a_crash_keeps_flushed_chunks_and_loses_only_the_head(tmp_path: Path) -> None:
    """A process that flushed after 30 samples, appended 5 more and was killed: the reopened store
    has exactly the 30 (the head's 5 are the documented loss)."""
    db = tmp_path / "metrics.db"
    script = textwrap.dedent(f"""
        import os
        from dockyard.metrics.tsdb import MetricsStore
        s = MetricsStore({str(db)!r})
        for i in range(35):
            s.append("cpu", {{"app": "web"}}, {T0} + i * 10, float(i))
            if i == 29:
                s.flush()
        os._exit(9)  # no close, no flush: like kill -9
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 9, r.stderr
    s = MetricsStore(db)
    assert s.samples("cpu", {"app": "web"}, T0, T0 + 1000) == [(T0 + i * 10, float(i)) for i in range(30)]
    # appending continues after the last flushed sample
    assert s.append("cpu", {"app": "web"}, T0 + 300, 1.0)
    assert not s.append("cpu", {"app": "web"}, T0 + 290, 1.0)
