"""The embedded log store: `<data-dir>/logs.db`, a SQLite file of its own (WAL).

Layout. One row per *chunk*: up to `CHUNK_LINES` consecutive lines of one container, their text
joined with "\\n" in a TEXT column, their timestamps (ns) and streams packed in a small blob, plus
what searches filter on (scope "tenant/project", app, replica, container, ts_min/ts_max in ns) and
the chunk's byte size for retention. Why chunks: one row per line (and FTS5 indexes) made ingest
slow and the file large; a `text LIKE ?` scan over chunks of tens of lines reads a million lines in
tens of milliseconds, because SQLite's LIKE runs in C over big strings and the row overhead is paid
once per chunk (figures in docs/architecture.md, bench/logs.py).

Cursors. A line's cursor is `chunk_id * 65536 + index`. Chunk ids come from AUTOINCREMENT, so they
never repeat even after retention deletes the newest rows: cursors grow strictly over the file's
whole life, which is what the log drains resume from (`read_after`).

Read positions. The collector stores, per engine container, how far it has read (`ReadPosition`)
in the same transaction as the chunks holding those lines, so a restart resumes exactly there.

Search semantics: `grep` is a literal substring (no wildcards: `%`, `_` and `\\` are escaped),
case-insensitive for ASCII letters only (SQLite's LIKE rule, applied again line by line here).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import sqlite3
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

CHUNK_LINES = 64
CURSOR_SPAN = 65536     # lines per chunk id in a cursor; CHUNK_LINES must stay below it
MAX_LINE_BYTES = 16 * 1024
TRUNCATED_MARK = " …[truncated]"
STREAMS = ("stdout", "stderr")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    app TEXT NOT NULL,
    replica INTEGER NOT NULL,
    container TEXT NOT NULL,
    ts_min INTEGER NOT NULL,
    ts_max INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    meta BLOB NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_scope_time ON chunks (scope, ts_max);
CREATE INDEX IF NOT EXISTS chunks_app_time ON chunks (scope, app, ts_max);
-- read_after (the log drains) walks a scope's chunks in id order from a cursor: without this it
-- sorted every later chunk of the scope on each call, so catching up a backlog was quadratic
CREATE INDEX IF NOT EXISTS chunks_scope_id ON chunks (scope, id);
CREATE TABLE IF NOT EXISTS read_positions (
    container_id TEXT PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    at_ts INTEGER NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class LogEntry:
    """One stored line. `cursor` grows strictly over the store's whole life."""

    cursor: int      # chunk_id * 65536 + index in the chunk
    ts: float        # unix seconds (ns precision kept internally)
    tenant: str
    project: str
    app: str
    replica: int
    container: str
    stream: str      # "stdout" | "stderr"
    text: str


@dataclass(frozen=True)
class LogSource:
    """The container some lines came from."""

    tenant: str
    project: str
    app: str
    replica: int
    container: str       # its name
    container_id: str

    @property
    def scope(self) -> str:
        return f"{self.tenant}/{self.project}"


@dataclass(frozen=True)
class ReadPosition:
    """How far the collector has read one container: the newest stored line's timestamp and how many
    stored lines carry exactly that timestamp (so resuming from `ts_ns`, which the engine includes,
    skips exactly those). `finished`: the container has ended and was read to its end."""

    ts_ns: int
    at_ts: int = 0
    finished: bool = False


@dataclass
class SearchResult:
    items: list[LogEntry]   # oldest first
    truncated: bool         # more lines matched than `limit`


class LogStoreError(ValueError):
    """A bad argument to the store (a limit < 1, a pattern with a newline)."""


def truncate_line(text: str) -> str:
    """A line cut to at most MAX_LINE_BYTES of UTF-8 (plus a marker), newlines made spaces (a
    stored line never holds "\\n": chunks are split on it)."""
    if "\n" in text:
        text = text.replace("\n", " ")
    if len(text) * 4 <= MAX_LINE_BYTES:
        return text
    raw = text.encode("utf-8", "replace")
    if len(raw) <= MAX_LINE_BYTES:
        return text
    return raw[:MAX_LINE_BYTES].decode("utf-8", "ignore") + TRUNCATED_MARK


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def ascii_lower(s: str) -> str:
    """Lower-case ASCII letters only, as SQLite's LIKE compares."""
    return s.lower() if s.isascii() else s.translate(_ASCII_LOWER)


def like_pattern(q: str) -> str:
    """`q` as a LIKE pattern matching it literally anywhere (escape character `\\`)."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _ns_bound(seconds: float | None) -> int | None:
    """Seconds as ns, clamped to what SQLite's 64-bit integers hold (a time far off is no error)."""
    if seconds is None:
        return None
    ns = seconds * 1e9   # clamped as a float: 1e300 s is inf ns, which int() refuses
    return -(2**63) if ns <= -(2**63) else 2**63 - 1 if ns >= 2**63 - 1 else int(ns)


def _pack_meta(ts: Sequence[int], streams: Sequence[int], base: int) -> bytes:
    deltas = struct.pack(f"<{len(ts)}q", *[t - base for t in ts])
    return bytes(streams) + deltas


def _unpack_meta(meta: bytes, n: int, base: int) -> tuple[list[int], bytes]:
    streams = meta[:n]
    deltas = struct.unpack(f"<{n}q", meta[n:n + 8 * n])
    return [base + d for d in deltas], streams


class LogStore:
    """The log store over `path` (a file: readers use connections of their own, so a search never
    waits for the collector's writes). Thread-safe."""

    def __init__(self, path: Path | str, *, chunk_lines: int = CHUNK_LINES) -> None:
        if not 1 <= chunk_lines < CURSOR_SPAN:
            raise LogStoreError("chunk_lines out of range")
        self.path = str(path)
        self.chunk_lines = chunk_lines
        self._lock = threading.Lock()
        self._db = self._connect()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._idle: list[sqlite3.Connection] = []
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of its own for one query (taken from a pool): a streamed export may
        be resumed on another thread than the one that started it, so connections are not per thread."""
        with self._lock:
            db = self._idle.pop() if self._idle else None
        if db is None:
            db = self._connect()
            db.execute("PRAGMA query_only=1")
        try:
            yield db
        finally:
            with self._lock:
                if self._closed or len(self._idle) >= 8:
                    db.close()
                else:
                    self._idle.append(db)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for r in self._idle:
                r.close()
            self._idle.clear()
            self._db.close()

    # --- writing ---

    def write(self, batches: Iterable[tuple[LogSource, Sequence[tuple[int, str, str]]]],
              positions: dict[str, ReadPosition] | None = None) -> int:
        """Store lines `(ts_ns, stream, text)` of each source (in the order read, split into chunks
        of at most `chunk_lines`) and the collector's read positions, in one transaction. Lines are
        stored as given: callers truncate them first (`truncate_line`). Returns the lines stored."""
        rows = []
        for src, lines in batches:
            scope = src.scope
            for i in range(0, len(lines), self.chunk_lines):
                part = lines[i:i + self.chunk_lines]
                ts = [ln[0] for ln in part]
                text = "\n".join(ln[2] for ln in part)
                lo = min(ts)
                meta = _pack_meta(ts, [1 if ln[1] == "stderr" else 0 for ln in part], lo)
                rows.append((scope, src.app, src.replica, src.container, lo, max(ts), len(part),
                             len(text.encode("utf-8")) + len(meta), meta, text))
        pos_rows = [(cid, p.ts_ns, p.at_ts, int(p.finished)) for cid, p in (positions or {}).items()]
        if not rows and not pos_rows:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO chunks (scope, app, replica, container, ts_min, ts_max, lines, bytes, meta, text)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                self._db.executemany("INSERT OR REPLACE INTO read_positions VALUES (?, ?, ?, ?)", pos_rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return sum(r[6] for r in rows)

    def positions(self) -> dict[str, ReadPosition]:
        """Every container's read position (engine container id → position)."""
        with self._reading() as db:
            return {cid: ReadPosition(ts, at, bool(fin)) for cid, ts, at, fin in
                    db.execute("SELECT container_id, ts_ns, at_ts, finished FROM read_positions")}

    def forget_positions(self, container_ids: Iterable[str]) -> None:
        """Drop read positions of containers the engine no longer has."""
        ids = [(c,) for c in container_ids]
        if ids:
            with self._lock:
                self._db.executemany("DELETE FROM read_positions WHERE container_id = ?", ids)

    # --- reading ---

    _COLUMNS = "id, scope, app, replica, container, ts_min, ts_max, lines, meta, text"

    def _lines(self, row: tuple, needle: str | None = None, lo: int | None = None, hi: int | None = None
               ) -> Iterator[tuple[int, int, LogEntry]]:
        """(ts_ns, cursor, entry) of a chunk's lines within [lo, hi] containing `needle` (lower-cased)."""
        cid, scope, app, replica, container, base, _, n, meta, text = row
        tenant, _, project = scope.partition("/")
        ts, streams = _unpack_meta(meta, n, base)
        for i, line in enumerate(text.split("\n")):
            t = ts[i]
            if (lo is not None and t < lo) or (hi is not None and t > hi):
                continue
            if needle is not None and needle not in ascii_lower(line):
                continue
            cursor = cid * CURSOR_SPAN + i
            yield t, cursor, LogEntry(cursor, t / 1e9, tenant, project, app, replica, container,
                                      STREAMS[streams[i]], line)

    def read_after(self, scope: str, after: int, limit: int = 1000) -> list[LogEntry]:
        """Lines of project `scope` ("tenant/project") with cursor > `after`, oldest (lowest cursor)
        first, at most `limit`."""
        if limit < 1:
            raise LogStoreError("limit must be at least 1")
        out: list[LogEntry] = []
        with self._reading() as db:
            rows = db.execute(f"SELECT {self._COLUMNS} FROM chunks WHERE scope = ? AND id >= ? ORDER BY id",
                              (scope, max(0, after) // CURSOR_SPAN))
            for row in rows:
                for _, cursor, e in self._lines(row):
                    if cursor > after:
                        out.append(e)
                        if len(out) >= limit:
                            return out
        return out

    def last_cursor(self, scope: str) -> int:
        """The cursor of the newest stored line of `scope`; 0 when it has none."""
        with self._reading() as db:
            row = db.execute("SELECT id, lines FROM chunks WHERE scope = ? ORDER BY id DESC LIMIT 1",
                             (scope,)).fetchone()
        return 0 if row is None else row[0] * CURSOR_SPAN + row[1] - 1

    def scan(self, scope: str, *, app: str | None = None, grep: str | None = None, since: float | None = None,
             until: float | None = None, newest_first: bool = False) -> Iterator[LogEntry]:
        """Every stored line of `scope` matching the filters (one app, [since, until] in seconds, a
        literal `grep`), in exact time order (ties by cursor). Streams: memory holds only the lines of
        chunks that overlap in time, never the whole result."""
        lo, hi = _ns_bound(since), _ns_bound(until)
        return (e for _, _, e in self._scan(scope, app, grep, lo, hi, newest_first))

    def _scan(self, scope: str, app: str | None, grep: str | None, lo: int | None, hi: int | None,
              newest_first: bool) -> Iterator[tuple[int, int, LogEntry]]:
        if grep is not None and "\n" in grep:
            raise LogStoreError("grep cannot contain a newline")
        where, args = ["scope = ?"], [scope]
        if app is not None:
            where.append("app = ?")
            args.append(app)
        if lo is not None:
            where.append("ts_max >= ?")
            args.append(lo)
        if hi is not None:
            where.append("ts_min <= ?")
            args.append(hi)
        needle = None
        if grep:
            where.append("text LIKE ? ESCAPE '\\'")
            args.append(like_pattern(grep))
            needle = ascii_lower(grep)
        order = "ts_max DESC, id DESC" if newest_first else "ts_min, id"
        # Chunks of different containers overlap in time: a line is released only once no chunk still
        # to come can hold one that goes before it, i.e. once it is past the next chunk's bound.
        sign = -1 if newest_first else 1
        pending: list[tuple[int, int, LogEntry]] = []
        with self._reading() as db:
            for row in db.execute(f"SELECT {self._COLUMNS} FROM chunks WHERE {' AND '.join(where)} ORDER BY {order}",
                                  args):
                bound = sign * (row[6] if newest_first else row[5])
                while pending and pending[0][0] < bound:
                    yield heapq.heappop(pending)
                for t, cursor, e in self._lines(row, needle, lo, hi):
                    heapq.heappush(pending, (sign * t, sign * cursor, e))
        while pending:
            yield heapq.heappop(pending)

    def search(self, scope: str, *, app: str | None = None, grep: str | None = None,
               since: float | None = None, until: float | None = None, limit: int = 1000) -> SearchResult:
        """The newest `limit` lines of `scope` matching the filters (see `scan`), oldest first;
        `truncated` when more matched."""
        if limit < 1:
            raise LogStoreError("limit must be at least 1")
        items = list(itertools.islice(self.scan(scope, app=app, grep=grep, since=since, until=until,
                                                newest_first=True), limit + 1))
        truncated = len(items) > limit
        del items[limit:]
        items.reverse()
        return SearchResult(items, truncated)

    def export(self, scope: str, *, app: str | None = None, grep: str | None = None,
               since: float | None = None, until: float | None = None, limit: int = 1_000_000
               ) -> Iterator[LogEntry]:
        """The newest `limit` matching lines, oldest first, streamed (two passes over the chunks: one
        finds where the newest `limit` begin, the other yields from there)."""
        if limit < 1:
            raise LogStoreError("limit must be at least 1")
        lo, hi = _ns_bound(since), _ns_bound(until)
        first = None
        for n, (t, cursor, _) in enumerate(self._scan(scope, app, grep, lo, hi, True), 1):
            first = (-t, -cursor)
            if n == limit:
                break
        if first is None:
            return
        for t, cursor, e in self._scan(scope, app, grep, first[0], hi, False):
            if (t, cursor) >= first:
                yield e

    # --- retention ---

    def usage(self) -> dict[str, tuple[int, float]]:
        """Per scope: stored bytes and the oldest line's time (seconds)."""
        with self._reading() as db:
            return {scope: (b, lo / 1e9) for scope, b, lo in
                    db.execute("SELECT scope, SUM(bytes), MIN(ts_min) FROM chunks GROUP BY scope")}

    def scopes(self) -> list[str]:
        with self._reading() as db:
            return [s for (s,) in db.execute("SELECT DISTINCT scope FROM chunks")]

    def sweep(self, scope: str, *, max_age: float, max_bytes: int, now: float | None = None) -> int:
        """Delete whole chunks of `scope` whose newest line is older than `max_age` seconds, then the
        oldest chunks until the rest is at most `max_bytes`. Returns the chunks deleted."""
        cutoff = _ns_bound((time.time() if now is None else now) - max_age)  # "keep for ages" overflows ns
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = self._db.execute("DELETE FROM chunks WHERE scope = ? AND ts_max < ?",
                                           (scope, cutoff)).rowcount
                total = 0
                keep_from = None
                for cid, b in self._db.execute("SELECT id, bytes FROM chunks WHERE scope = ? ORDER BY id DESC",
                                               (scope,)):
                    if total + b > max_bytes:
                        keep_from = cid
                        break
                    total += b
                if keep_from is not None:
                    deleted += self._db.execute("DELETE FROM chunks WHERE scope = ? AND id <= ?",
                                                (scope, keep_from)).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return deleted

    def delete_scope(self, scope: str) -> int:
        """Delete every line of a project (it was deleted). Returns the chunks deleted."""
        with self._lock:
            return self._db.execute("DELETE FROM chunks WHERE scope = ?", (scope,)).rowcount

    def stats(self) -> dict[str, int]:
        with self._reading() as db:
            chunks, lines, size = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(lines), 0), COALESCE(SUM(bytes), 0) FROM chunks").fetchone()
        return {"chunks": chunks, "lines": lines, "bytes": size}

