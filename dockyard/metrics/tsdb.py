"""An embedded time-series store: series (metric name + labels), Gorilla-style compressed chunks
in a SQLite file of their own (WAL), an in-memory head per series, 1-minute downsampling (avg and
max), retention and compaction, and range queries aggregated across series.

Pure storage: no engine, no HTTP. Times are float seconds at the interface and integer
milliseconds inside.

Crash safety: chunks are written in SQLite transactions, so a reopened store keeps every flushed
chunk. The head (samples appended since the last flush) lives only in memory: a crash loses at
most `flush_interval` seconds of samples per series (the owner calls `flush()` that often, and on
shutdown), never more than one chunk's span (20 minutes of raw samples). Partial chunks written by
those flushes are merged into full ones by `compact()`.
"""

from __future__ import annotations

import json
import math
import sqlite3
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

RAW, AVG_1M, MAX_1M = 0, 1, 2
TIER_NAMES = {RAW: "raw", AVG_1M: "1m-avg", MAX_1M: "1m-max"}
MINUTE_MS = 60_000

# a chunk closes at this many samples or this span, whichever comes first
CHUNK_SAMPLES = 120
CHUNK_SPAN_MS = {RAW: 20 * MINUTE_MS, AVG_1M: 120 * MINUTE_MS, MAX_1M: 120 * MINUTE_MS}

RAW_RETENTION_S = 24 * 3600.0
DOWNSAMPLED_RETENTION_S = 14 * 24 * 3600.0

ENC_XOR = 0      # Gorilla: XOR of the float64 bits against the previous value
ENC_DECIMAL = 1  # values that are decimals with ≤ 6 places: scaled to integers, delta-of-delta coded

AGGREGATIONS = ("sum", "avg", "max")


class MetricsStoreError(ValueError):
    """A bad argument to the store (unknown aggregation, step ≤ 0, reversed range)."""


# --- bit packing -------------------------------------------------------------------------------

class BitWriter:
    __slots__ = ("acc", "n")

    def __init__(self) -> None:
        self.acc = 0
        self.n = 0

    def write(self, value: int, bits: int) -> None:
        self.acc = (self.acc << bits) | value
        self.n += bits

    def to_bytes(self) -> bytes:
        pad = (-self.n) % 8
        return (self.acc << pad).to_bytes((self.n + pad) // 8, "big")


class BitReader:
    __slots__ = ("big", "total", "pos")

    def __init__(self, data: bytes) -> None:
        self.big = int.from_bytes(data, "big")
        self.total = len(data) * 8
        self.pos = 0

    def read(self, bits: int) -> int:
        if self.pos + bits > self.total:
            raise ValueError("chunk data ends early")
        self.pos += bits
        return (self.big >> (self.total - self.pos)) & ((1 << bits) - 1)


# delta-of-delta buckets on the zigzag value: (prefix, prefix length, payload bits)
_BUCKETS = ((0b10, 2, 7), (0b110, 3, 12), (0b1110, 4, 20), (0b11110, 5, 32), (0b11111, 5, 64))


def _zigzag(v: int) -> int:
    return v << 1 if v >= 0 else ((-v) << 1) - 1


def _unzigzag(z: int) -> int:
    return z >> 1 if not z & 1 else -((z + 1) >> 1)


def _write_dod(w: BitWriter, v: int) -> None:
    z = _zigzag(v)
    if z == 0:
        w.write(0, 1)
        return
    for prefix, plen, bits in _BUCKETS:
        if z < (1 << bits):
            w.write(prefix, plen)
            w.write(z, bits)
            return
    raise ValueError(f"delta {v} does not fit in 64 bits")


def _read_dod(r: BitReader) -> int:
    if r.read(1) == 0:
        return 0
    ones = 1
    while ones < 5 and r.read(1) == 1:
        ones += 1
    bits = {1: 7, 2: 12, 3: 20, 4: 32, 5: 64}[ones]
    return _unzigzag(r.read(bits))


def _float_bits(v: float) -> int:
    return struct.unpack(">Q", struct.pack(">d", v))[0]


def _bits_float(b: int) -> float:
    return struct.unpack(">d", struct.pack(">Q", b))[0]


def _decimal_exponent(values: list[float]) -> int | None:
    """The smallest e ≤ 6 with every value exactly int/10**e (so decoding is bit-exact), or None."""
    for e in range(7):
        scale = 10 ** e
        ok = True
        for v in values:
            if not math.isfinite(v) or abs(v) * scale >= 2 ** 53:
                return None
            iv = round(v * scale)
            if iv / scale != v or (v == 0.0 and math.copysign(1.0, v) < 0):
                ok = False
                break
        if ok:
            return e
    return None


def encode_chunk(ts: list[int], vs: list[float]) -> bytes:
    """Samples (ms timestamps, strictly increasing; float values) → chunk bytes. The first
    timestamp is stored too, so a chunk decodes on its own."""
    n = len(ts)
    if n == 0 or n != len(vs) or n > 0xFFFF:
        raise ValueError("a chunk holds 1..65535 samples with one value each")
    w = BitWriter()
    _write_dods(w, ts)
    e = _decimal_exponent(vs)
    if e is not None:
        scale = 10 ** e
        _write_dods(w, [round(v * scale) for v in vs])
        header = bytes((ENC_DECIMAL, e)) + n.to_bytes(2, "big")
    else:
        _write_xor(w, vs)
        header = bytes((ENC_XOR, 0)) + n.to_bytes(2, "big")
    return header + w.to_bytes()


def _write_dods(w: BitWriter, xs: list[int]) -> None:
    """Integers as the first one and then delta-of-deltas (timestamps; scaled decimal values)."""
    w.write(_zigzag(xs[0]), 64)
    prev, prev_d = xs[0], 0
    for x in xs[1:]:
        d = x - prev
        _write_dod(w, d - prev_d)
        prev, prev_d = x, d


def _read_dods(r: BitReader, n: int) -> list[int]:
    """The inverse of _write_dods for `n` integers."""
    xs = [_unzigzag(r.read(64))]
    d = 0
    for _ in range(n - 1):
        d += _read_dod(r)
        xs.append(xs[-1] + d)
    return xs


def _write_xor(w: BitWriter, vs: list[float]) -> None:
    prev = _float_bits(vs[0])
    w.write(prev, 64)
    lead, trail = -1, 0
    for v in vs[1:]:
        b = _float_bits(v)
        x = b ^ prev
        prev = b
        if x == 0:
            w.write(0, 1)
            continue
        xl = min(64 - x.bit_length(), 31)
        xt = (x & -x).bit_length() - 1
        if lead >= 0 and xl >= lead and xt >= trail:
            w.write(0b10, 2)
            w.write(x >> trail, 64 - lead - trail)
        else:
            lead, trail = xl, xt
            sig = 64 - lead - trail
            w.write(0b11, 2)
            w.write(lead, 5)
            w.write(sig & 63, 6)  # 64 is written as 0
            w.write(x >> trail, sig)


def decode_chunk(data: bytes) -> tuple[list[int], list[float]]:
    """Chunk bytes → (ms timestamps, values), exactly as encoded."""
    enc, e, n = data[0], data[1], int.from_bytes(data[2:4], "big")
    r = BitReader(data[4:])
    ts = _read_dods(r, n)
    if enc == ENC_DECIMAL:
        scale = 10 ** e
        return ts, [i / scale for i in _read_dods(r, n)]
    if enc != ENC_XOR:
        raise ValueError(f"unknown chunk encoding {enc}")
    prev = r.read(64)
    vs = [_bits_float(prev)]
    lead, trail = 0, 0
    for _ in range(n - 1):
        if r.read(1) == 0:
            vs.append(_bits_float(prev))
            continue
        if r.read(1) == 1:
            lead = r.read(5)
            sig = r.read(6) or 64
            trail = 64 - lead - sig
        prev ^= r.read(64 - lead - trail) << trail
        vs.append(_bits_float(prev))
    return ts, vs


# --- the store ---------------------------------------------------------------------------------

@dataclass
class Series:
    id: int
    metric: str
    labels: dict[str, str]
    downsampled_to: int = 0  # ms: minutes before this are in the 1m tiers
    head_t: list[int] = field(default_factory=list)
    head_v: list[float] = field(default_factory=list)
    last_t: int = 0  # the newest sample's time (head or flushed)


@dataclass
class SeriesResult:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (bucket start in seconds, value)


@dataclass
class RangeResult:
    metric: str
    resolution: str  # "raw" or "1m": which data answered
    step: float
    series: list[SeriesResult]
    aggregate: list[tuple[float, float]]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    metric TEXT NOT NULL,
    labels TEXT NOT NULL,
    downsampled_to INTEGER NOT NULL DEFAULT 0,
    UNIQUE (metric, labels)
);
CREATE TABLE IF NOT EXISTS chunks (
    series_id INTEGER NOT NULL,
    tier INTEGER NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    count INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (series_id, tier, start_ms)
) WITHOUT ROWID;
"""


class MetricsStore:
    """The time-series store over `<data-dir>/metrics.db` (or ":memory:"). Thread-safe: one lock
    guards the head and the connection; queries are short."""

    def __init__(self, path: Path | str, *, raw_retention: float = RAW_RETENTION_S,
                 downsampled_retention: float = DOWNSAMPLED_RETENTION_S) -> None:
        self.path = str(path)
        self.raw_retention_ms = int(raw_retention * 1000)
        self.ds_retention_ms = int(downsampled_retention * 1000)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._series: dict[int, Series] = {}
        self._by_key: dict[tuple[str, str], Series] = {}
        self._by_metric: dict[str, list[Series]] = {}
        for sid, metric, labels, ds in self._db.execute("SELECT id, metric, labels, downsampled_to FROM series"):
            s = Series(sid, metric, json.loads(labels), ds)
            self._index(s, labels)
        for sid, last in self._db.execute("SELECT series_id, MAX(end_ms) FROM chunks WHERE tier = 0 GROUP BY series_id"):
            if sid in self._series:
                self._series[sid].last_t = last

    def _index(self, s: Series, labels_key: str) -> None:
        self._series[s.id] = s
        self._by_key[(s.metric, labels_key)] = s
        self._by_metric.setdefault(s.metric, []).append(s)

    def close(self) -> None:
        """Flush every head and close the file."""
        with self._lock:
            self.flush()
            self._db.close()

    # --- writing ---

    def _series_for(self, metric: str, labels: Mapping[str, str]) -> Series:
        key = _labels_key(labels)
        s = self._by_key.get((metric, key))
        if s is None:
            cur = self._db.execute("INSERT INTO series (metric, labels) VALUES (?, ?)", (metric, key))
            s = Series(int(cur.lastrowid), metric, json.loads(key))
            self._index(s, key)
        return s

    def append(self, metric: str, labels: Mapping[str, str], t: float, value: float) -> bool:
        """Add one sample. Samples at or before the series' newest time are dropped (False)."""
        return self.append_many([(metric, labels, t, value)]) == 1

    def append_many(self, samples: Iterable[tuple[str, Mapping[str, str], float, float]]) -> int:
        """Add samples (metric, labels, t seconds, value); returns how many were taken (out-of-order
        ones are dropped). A head that reaches a full chunk is written out."""
        taken = 0
        with self._lock:
            for metric, labels, t, value in samples:
                s = self._series_for(metric, labels)
                tm = int(round(t * 1000))
                if tm <= s.last_t:
                    continue
                if s.head_t and (len(s.head_t) >= CHUNK_SAMPLES or tm - s.head_t[0] >= CHUNK_SPAN_MS[RAW]):
                    self._write_head(s)
                s.head_t.append(tm)
                s.head_v.append(float(value))
                s.last_t = tm
                taken += 1
        return taken

    def _write_head(self, s: Series) -> None:
        if not s.head_t:
            return
        data = encode_chunk(s.head_t, s.head_v)
        self._db.execute("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                         (s.id, RAW, s.head_t[0], s.head_t[-1], len(s.head_t), data))
        s.head_t, s.head_v = [], []

    def flush(self) -> None:
        """Write every series' head as a (possibly partial) chunk, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for s in self._series.values():
                    self._write_head(s)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # --- downsampling, compaction, retention ---

    def compact(self, now: float | None = None) -> dict[str, int]:
        """One maintenance pass: downsample completed minutes of raw data into the 1m tiers, merge
        partial chunks into full ones, and drop chunks past retention (raw 24 h, 1m 14 d, at chunk
        granularity: a chunk goes once its newest sample is past the limit). Returns counts."""
        now_ms = int((time.time() if now is None else now) * 1000)
        stats = {"downsampled": 0, "merged": 0, "deleted": 0, "series_removed": 0}
        for sid in list(self._series):
            with self._lock:
                s = self._series.get(sid)
                if s is None:
                    continue
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    stats["downsampled"] += self._downsample(s, now_ms)
                    for tier in (RAW, AVG_1M, MAX_1M):
                        stats["merged"] += self._merge(s, tier)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        with self._lock:
            cur = self._db.execute("DELETE FROM chunks WHERE (tier = 0 AND end_ms < ?) OR (tier > 0 AND end_ms < ?)",
                                   (now_ms - self.raw_retention_ms, now_ms - self.ds_retention_ms))
            stats["deleted"] = cur.rowcount
            live = {r[0] for r in self._db.execute("SELECT DISTINCT series_id FROM chunks")}
            for s in list(self._series.values()):
                if s.id not in live and not s.head_t and s.last_t < now_ms - self.ds_retention_ms:
                    self._db.execute("DELETE FROM series WHERE id = ?", (s.id,))
                    del self._series[s.id]
                    del self._by_key[(s.metric, _labels_key(s.labels))]
                    self._by_metric[s.metric] = [x for x in self._by_metric[s.metric] if x.id != s.id]
                    stats["series_removed"] += 1
        return stats

    def _downsample(self, s: Series, now_ms: int) -> int:
        flushed_end = self._db.execute("SELECT MAX(end_ms) FROM chunks WHERE series_id = ? AND tier = 0",
                                       (s.id,)).fetchone()[0]
        if flushed_end is None:
            return 0
        # a minute is complete once a flushed sample lies at or after its end; a series that went
        # quiet (no head, nothing new for 2 minutes) completes its last minute too
        complete_to = flushed_end // MINUTE_MS * MINUTE_MS
        if not s.head_t and now_ms - s.last_t > 2 * MINUTE_MS:
            complete_to = (s.last_t // MINUTE_MS + 1) * MINUTE_MS
        if complete_to <= s.downsampled_to:
            return 0
        ts, vs = self._read_tier(s, RAW, s.downsampled_to, complete_to)
        minutes = _minute_aggregates(ts, vs)
        for tier, idx in ((AVG_1M, 1), (MAX_1M, 2)):
            for i in range(0, len(minutes), CHUNK_SAMPLES):
                part = minutes[i:i + CHUNK_SAMPLES]
                self._db.execute("INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                                 (s.id, tier, part[0][0], part[-1][0], len(part),
                                  encode_chunk([m[0] for m in part], [m[idx] for m in part])))
        s.downsampled_to = complete_to
        self._db.execute("UPDATE series SET downsampled_to = ? WHERE id = ?", (complete_to, s.id))
        return len(minutes)

    def _merge(self, s: Series, tier: int) -> int:
        rows = self._db.execute("SELECT start_ms, end_ms, count, data FROM chunks WHERE series_id = ? AND tier = ? "
                                "AND count < ? ORDER BY start_ms", (s.id, tier, CHUNK_SAMPLES)).fetchall()
        merged = 0
        group: list[tuple] = []

        def close_group() -> None:
            nonlocal merged
            if len(group) > 1:
                ts: list[int] = []
                vs: list[float] = []
                for row in group:
                    t, v = decode_chunk(row[3])
                    ts += t
                    vs += v
                self._db.executemany("DELETE FROM chunks WHERE series_id = ? AND tier = ? AND start_ms = ?",
                                     [(s.id, tier, row[0]) for row in group])
                self._db.execute("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)",
                                 (s.id, tier, ts[0], ts[-1], len(ts), encode_chunk(ts, vs)))
                merged += len(group)
            group.clear()

        for row in rows:
            if group and (sum(r[2] for r in group) + row[2] > CHUNK_SAMPLES
                          or row[1] - group[0][0] >= CHUNK_SPAN_MS[tier]):
                close_group()
            group.append(row)
        close_group()
        return merged

    # --- reading ---

    def _read_tier(self, s: Series, tier: int, start_ms: int, end_ms: int) -> tuple[list[int], list[float]]:
        """Samples of one tier with start_ms ≤ t < end_ms, the head included for raw."""
        ts: list[int] = []
        vs: list[float] = []
        for (data,) in self._db.execute("SELECT data FROM chunks WHERE series_id = ? AND tier = ? AND end_ms >= ? "
                                        "AND start_ms < ? ORDER BY start_ms", (s.id, tier, start_ms, end_ms)):
            t, v = decode_chunk(data)
            for a, b in zip(t, v, strict=True):
                if start_ms <= a < end_ms:
                    ts.append(a)
                    vs.append(b)
        if tier == RAW:
            for a, b in zip(s.head_t, s.head_v, strict=True):
                if start_ms <= a < end_ms:
                    ts.append(a)
                    vs.append(b)
        return ts, vs

    def select(self, metric: str, match: Mapping[str, str] | None = None) -> list[Series]:
        """The series of `metric` whose labels include every pair of `match`."""
        match = match or {}
        with self._lock:
            return [s for s in self._by_metric.get(metric, [])
                    if all(s.labels.get(k) == v for k, v in match.items())]

    def samples(self, metric: str, labels: Mapping[str, str], start: float, end: float,
                tier: int = RAW) -> list[tuple[float, float]]:
        """The stored samples of one series in [start, end) seconds, for a tier."""
        with self._lock:
            s = self._by_key.get((metric, _labels_key(labels)))
            if s is None:
                return []
            ts, vs = self._read_tier(s, tier, int(start * 1000), int(end * 1000))
        return [(t / 1000, v) for t, v in zip(ts, vs, strict=True)]

    def range(self, metric: str, match: Mapping[str, str] | None, start: float, end: float, step: float,
              agg: str = "sum", *, group_by: str | None = None, now: float | None = None) -> RangeResult:
        """Points of every matching series in buckets of `step` seconds aligned to multiples of step
        (each series: the bucket's average, or maximum when agg is "max"), and their aggregate
        across series (sum, avg or max). With `group_by` (a label), series with the same value of
        that label are first combined with `agg` (labels: just that one). Raw data answers when the
        range lies within raw retention and step < 60 s; otherwise the 1m tiers (with minutes not
        yet downsampled computed from raw)."""
        if agg not in AGGREGATIONS:
            raise MetricsStoreError(f"aggregation must be one of {', '.join(AGGREGATIONS)}")
        if step <= 0:
            raise MetricsStoreError("step must be positive")
        if end < start:
            raise MetricsStoreError("the range ends before it starts")
        now_ms = int((time.time() if now is None else now) * 1000)
        start_ms, end_ms, step_ms = int(start * 1000), int(end * 1000), max(1, int(step * 1000))
        use_raw = start_ms >= now_ms - self.raw_retention_ms and step_ms < MINUTE_MS
        start_ms = max(start_ms, now_ms - (self.raw_retention_ms if use_raw else self.ds_retention_ms))
        out: list[SeriesResult] = []
        for s in self.select(metric, match):
            with self._lock:
                if use_raw:
                    ts, vs = self._read_tier(s, RAW, start_ms, end_ms)
                else:
                    ts, vs = self._minutes(s, start_ms, end_ms, agg == "max")
            points = _bucket(ts, vs, step_ms, use_max=agg == "max")
            if points:
                out.append(SeriesResult(dict(s.labels), [(t / 1000, v) for t, v in points]))
        if group_by is not None:
            groups: dict[str, list[SeriesResult]] = {}
            for r in out:
                groups.setdefault(r.labels.get(group_by, ""), []).append(r)
            out = [SeriesResult({group_by: k}, _aggregate(v, agg)) for k, v in groups.items()]
        out.sort(key=lambda r: sorted(r.labels.items()))
        return RangeResult(metric, "raw" if use_raw else "1m", step_ms / 1000, out, _aggregate(out, agg))

    def _minutes(self, s: Series, start_ms: int, end_ms: int, use_max: bool) -> tuple[list[int], list[float]]:
        ts, vs = self._read_tier(s, MAX_1M if use_max else AVG_1M, start_ms, min(end_ms, s.downsampled_to))
        if end_ms > s.downsampled_to:
            lo = max(start_ms // MINUTE_MS * MINUTE_MS, s.downsampled_to)
            rt, rv = self._read_tier(s, RAW, lo, end_ms)
            for m, avg, mx in _minute_aggregates(rt, rv):
                if m >= start_ms:
                    ts.append(m)
                    vs.append(mx if use_max else avg)
        return ts, vs

    def stats(self) -> dict[str, int]:
        """Series, chunk and sample counts and the bytes of chunk data, per tier."""
        with self._lock:
            out: dict[str, int] = {"series": len(self._series),
                                   "head_samples": sum(len(s.head_t) for s in self._series.values())}
            for tier, n, samples, size in self._db.execute(
                    "SELECT tier, COUNT(*), SUM(count), SUM(LENGTH(data)) FROM chunks GROUP BY tier"):
                name = TIER_NAMES[tier]
                out[f"{name}_chunks"], out[f"{name}_samples"], out[f"{name}_bytes"] = n, samples, size
            return out

    def vacuum(self) -> None:
        """Give freed pages back to the file system (after large deletions)."""
        with self._lock:
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _labels_key(labels: Mapping[str, str]) -> str:
    """The canonical text of a label set: the series table's `labels` column and the index key."""
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def _minute_aggregates(ts: list[int], vs: list[float]) -> list[tuple[int, float, float]]:
    """(minute start ms, average, maximum) for each minute that has samples. Averages are rounded to
    one decimal place more than the samples have (at most 6), so that the 1m tiers stay in the
    compact decimal encoding: an average is about as precise as what it averages."""
    places = _decimal_exponent(vs)
    places = 6 if places is None else min(6, places + 1)
    out: list[tuple[int, float, float]] = []
    cur, total, count, peak = None, 0.0, 0, -math.inf
    for t, v in zip(ts, vs, strict=True):
        m = t // MINUTE_MS * MINUTE_MS
        if m != cur:
            if cur is not None:
                out.append((cur, round(total / count, places), peak))
            cur, total, count, peak = m, 0.0, 0, -math.inf
        total += v
        count += 1
        peak = max(peak, v)
    if cur is not None:
        out.append((cur, round(total / count, places), peak))
    return out


def _bucket(ts: list[int], vs: list[float], step_ms: int, *, use_max: bool) -> list[tuple[int, float]]:
    buckets: dict[int, list[float]] = {}
    for t, v in zip(ts, vs, strict=True):
        buckets.setdefault(t // step_ms * step_ms, []).append(v)
    return [(b, max(x) if use_max else sum(x) / len(x)) for b, x in sorted(buckets.items())]


def _aggregate(series: list[SeriesResult], agg: str) -> list[tuple[float, float]]:
    by_t: dict[float, list[float]] = {}
    for s in series:
        for t, v in s.points:
            by_t.setdefault(t, []).append(v)
    fn = {"sum": sum, "max": max, "avg": lambda x: sum(x) / len(x)}[agg]
    return [(t, fn(x)) for t, x in sorted(by_t.items())]
