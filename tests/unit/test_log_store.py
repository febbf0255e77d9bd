"""The log store: search semantics, ordering across overlapping chunks, cursors for the drains,
read positions, retention, export."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from dockyard.logs.store import (
    CURSOR_SPAN,
    MAX_LINE_BYTES,
    TRUNCATED_MARK,
    LogSource,
    LogStore,
    LogStoreError,
    ReadPosition,
    truncate_line,
)

S = 1_790_000_000 * 10**9   # a start time in ns
SEC = 10**9
WEB0 = LogSource("acme", "shop", "web", 0, "dy_web_0", "cid-web-0")
WEB1 = LogSource("acme", "shop", "web", 1, "dy_web_1", "cid-web-1")
API0 = LogSource("acme", "shop", "api", 0, "dy_api_0", "cid-api-0")
OTHER = LogSource("acme", "other", "web", 0, "dy_other_0", "cid-other-0")


def lines(t0: int, texts: list[str], step: int = SEC, stream: str = "stdout") -> list[tuple[int, str, str]]:
    return [(t0 + i * step, stream, t) for i, t in enumerate(texts)]


@pytest.fixture()
def store(tmp_path: Path):
    s = LogStore(tmp_path / "logs.db", chunk_lines=4)
    yield s
    s.close()


def texts(result) -> list[str]:
    return [e.text for e in result.items]


def test_grep_is_a_literal_ascii_case_insensitive_substring(store: LogStore) -> None:
    store.write([(WEB0, lines(S, ["GET /a 100%", "GET /b 100x", "user_id=1", "userXid=2", "back\\slash",
                                  "Ärger ÄRGER", "ärger", "Error: disk", "error: net", "fine"]))])
    assert texts(store.search("acme/shop", grep="100%")) == ["GET /a 100%"]
    assert texts(store.search("acme/shop", grep="user_id")) == ["user_id=1"]
    assert texts(store.search("acme/shop", grep="k\\s")) == ["back\\slash"]
    assert texts(store.search("acme/shop", grep="ERROR:")) == ["Error: disk", "error: net"]
    # only ASCII letters fold, as in SQLite's LIKE: Ä and ä differ
    assert texts(store.search("acme/shop", grep="ärger")) == ["ärger"]
    assert texts(store.search("acme/shop", grep="ÄRGER")) == ["Ärger ÄRGER"]
    assert texts(store.search("acme/shop", grep="nothing")) == []
    with pytest.raises(LogStoreError):
        store.search("acme/shop", grep="a\nb")


def test_search_filters_scope_app_and_time_and_returns_the_newest_lines_oldest_first(store: LogStore) -> None:
    store.write([(WEB0, lines(S, [f"web0 {i}" for i in range(10)])),
                 (API0, lines(S + SEC // 2, [f"api0 {i}" for i in range(10)])),
                 (OTHER, lines(S, ["other project"]))])
    r = store.search("acme/shop", limit=3)
    assert texts(r) == ["api0 8", "web0 9", "api0 9"] and r.truncated
    assert [e.app for e in r.items] == ["api", "web", "api"]
    r = store.search("acme/shop", app="web", since=(S + 2 * SEC) / 1e9, until=(S + 4 * SEC) / 1e9)
    assert texts(r) == ["web0 2", "web0 3", "web0 4"] and not r.truncated
    assert texts(store.search("acme/other")) == ["other project"]
    assert store.search("acme/none").items == []
    e = store.search("acme/shop", app="api", limit=1).items[0]
    assert (e.tenant, e.project, e.replica, e.container, e.stream) == ("acme", "shop", 0, "dy_api_0", "stdout")
    assert e.ts == pytest.approx((S + SEC // 2 + 9 * SEC) / 1e9)


def test_lines_of_overlapping_chunks_come_in_exact_time_order(store: LogStore) -> None:
    # replica 1's chunks span the same seconds as replica 0's, written later and interleaved
    store.write([(WEB0, lines(S, [f"a{i}" for i in range(12)], step=2 * SEC))])
    store.write([(WEB1, lines(S + SEC, [f"b{i}" for i in range(12)], step=2 * SEC, stream="stderr"))])
    want = [x for i in range(12) for x in (f"a{i}", f"b{i}")]
    assert [e.text for e in store.scan("acme/shop")] == want
    assert [e.text for e in store.scan("acme/shop", newest_first=True)] == want[::-1]
    for limit in (1, 5, 7, 23, 24, 30):
        r = store.search("acme/shop", limit=limit)
        assert texts(r) == want[-limit:] and r.truncated == (limit < 24)
    assert {e.stream for e in store.scan("acme/shop") if e.text.startswith("b")} == {"stderr"}
    assert [e.text for e in store.export("acme/shop", limit=5)] == want[-5:]
    assert [e.text for e in store.export("acme/shop", grep="A1")] == ["a1", "a10", "a11"]


def test_cursors_grow_and_survive_reopen_and_deletion(tmp_path: Path) -> None:
    db = tmp_path / "logs.db"
    s = LogStore(db, chunk_lines=4)
    assert s.last_cursor("acme/shop") == 0 and s.read_after("acme/shop", 0) == []
    s.write([(WEB0, lines(S, [f"l{i}" for i in range(10)])), (OTHER, lines(S, ["x"]))])
    got = s.read_after("acme/shop", 0)
    assert [e.text for e in got] == [f"l{i}" for i in range(10)]
    cursors = [e.cursor for e in got]
    assert cursors == sorted(cursors) and len(set(cursors)) == 10
    assert s.last_cursor("acme/shop") == cursors[-1]
    assert [e.text for e in s.read_after("acme/shop", cursors[4], limit=3)] == ["l5", "l6", "l7"]
    assert s.read_after("acme/shop", cursors[-1]) == []
    s.close()

    s = LogStore(db, chunk_lines=4)
    assert [e.cursor for e in s.read_after("acme/shop", 0)] == cursors
    assert s.last_cursor("acme/shop") == cursors[-1]
    # deleting the newest chunks never lets a cursor be given out twice
    s.delete_scope("acme/shop")
    assert s.last_cursor("acme/shop") == 0
    s.write([(WEB0, lines(S + 100 * SEC, ["after"]))])
    (e,) = s.read_after("acme/shop", cursors[-1])
    assert e.text == "after" and e.cursor > cursors[-1] and e.cursor % CURSOR_SPAN == 0
    s.close()


def test_read_positions_are_stored_with_the_lines(tmp_path: Path) -> None:
    s = LogStore(tmp_path / "logs.db")
    s.write([(WEB0, lines(S, ["a", "b"]))], {"cid-web-0": ReadPosition(S + SEC, 1)})
    s.write([], {"cid-api-0": ReadPosition(S, 2, finished=True)})
    assert s.positions() == {"cid-web-0": ReadPosition(S + SEC, 1), "cid-api-0": ReadPosition(S, 2, True)}
    s.forget_positions(["cid-api-0"])
    s.close()
    assert LogStore(tmp_path / "logs.db").positions() == {"cid-web-0": ReadPosition(S + SEC, 1)}


def test_retention_deletes_whole_oldest_chunks_by_age_then_by_size(store: LogStore) -> None:
    now = (S + 1000 * SEC) / 1e9
    store.write([(WEB0, lines(S, [f"old{i}" for i in range(8)]))])                  # 2 chunks, 1000 s ago
    store.write([(WEB0, lines(S + 900 * SEC, [f"new{i}" for i in range(8)]))])      # 2 chunks, 100 s ago
    store.write([(OTHER, lines(S, ["other"]))])
    assert store.sweep("acme/shop", max_age=500, max_bytes=10**9, now=now) == 2
    assert texts(store.search("acme/shop")) == [f"new{i}" for i in range(8)]
    size = store.usage()["acme/shop"][0]
    assert store.sweep("acme/shop", max_age=500, max_bytes=size - 1, now=now) == 1
    assert texts(store.search("acme/shop")) == [f"new{i}" for i in range(4, 8)]
    assert store.usage()["acme/shop"][0] <= size - 1
    assert texts(store.search("acme/other")) == ["other"], "another project's logs are untouched"
    assert store.sweep("acme/shop", max_age=500, max_bytes=0, now=now) == 1
    assert store.search("acme/shop").items == [] and "acme/shop" not in store.usage()


def test_long_lines_are_truncated_with_a_marker() -> None:
    assert truncate_line("short") == "short"
    assert truncate_line("a\nb") == "a b"
    long = truncate_line("é" * MAX_LINE_BYTES)
    assert long.endswith(TRUNCATED_MARK) and len(long.removesuffix(TRUNCATED_MARK).encode()) <= MAX_LINE_BYTES


def test_chunks_are_rows_of_joined_text(tmp_path: Path) -> None:
    s = LogStore(tmp_path / "logs.db", chunk_lines=64)
    s.write([(WEB0, lines(S, [json.dumps({"i": i}) for i in range(100)]))])
    s.close()
    rows = sqlite3.connect(tmp_path / "logs.db").execute("SELECT lines, text FROM chunks ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [64, 36]
    assert rows[0][1].split("\n")[:2] == ['{"i": 0}', '{"i": 1}']


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, "big") + payload


def test_engine_log_frames_decode_to_timestamped_lines_with_bounded_lines() -> None:
    from dockyard.engines.logframes import decode_frames, parse_timestamp_ns

    assert parse_timestamp_ns(b"2026-11-27T11:17:00.5Z") == 1_795_778_220_500_000_000
    assert parse_timestamp_ns(b"2026-11-27T11:17:00Z") == 1_795_778_220_000_000_000
    assert parse_timestamp_ns(b"2026-11-27T11:17:00.123456789Z") == 1_795_778_220_123_456_789
    assert parse_timestamp_ns(b"not a time") is None
    stream = (frame(1, b"2026-11-27T11:17:00.1Z hello\n") + frame(2, b"2026-11-27T11:17:00.2Z oops\r\n")
              + frame(1, b"2026-11-27T11:17:01Z " + b"x" * 100) + frame(1, b"y" * 100 + b"\n")
              + frame(1, b"2026-11-27T11:17:02Z tail without newline"))
    # any split of the byte stream gives the same lines
    for size in (1, 7, 64, len(stream)):
        got = list(decode_frames([stream[i:i + size] for i in range(0, len(stream), size)], max_line=50))
        assert got == [(1_795_778_220_100_000_000, "stdout", "hello"), (1_795_778_220_200_000_000, "stderr", "oops"),
                       (1_795_778_221_000_000_000, "stdout", "x" * 51),
                       (1_795_778_222_000_000_000, "stdout", "tail without newline")]
    assert truncate_line("x" * (MAX_LINE_BYTES + 1)).endswith(TRUNCATED_MARK)


def test_a_chunked_http_body_is_decoded_across_any_split() -> None:
    from dockyard.engines.logframes import ChunkedBody

    wire = b"5\r\nhello\r\n1;ext=1\r\n \r\nb\r\nworld\nagain\r\n0\r\n\r\n"
    for size in (1, 2, 3, 7, len(wire)):
        body = ChunkedBody()
        got = b"".join(body.feed(wire[i:i + size]) for i in range(0, len(wire), size))
        assert got == b"hello world\nagain" and body.done


class FakeEngine:
    """What the collector asks of an engine: containers and their lines (the engine includes lines at
    exactly `since_ns`, as Docker does)."""

    def __init__(self) -> None:
        self.lines: dict[str, list[tuple[int, str, str]]] = {}
        self.state: dict[str, str] = {}

    def containers(self):  # noqa: ANN201
        from dockyard.engines.base import EngineContainer, WorkloadKey

        return [EngineContainer(WorkloadKey("acme", "shop", "web"), i, f"web_{cid}", cid, self.state[cid])
                for i, cid in enumerate(sorted(self.state))]

    def container_logs(self, container_id: str, *, since_ns=None, follow=False, stop=None, pace=0.0):  # noqa: ANN001, ANN201
        for line in self.lines.get(container_id, []):
            if since_ns is None or line[0] >= since_ns:
                yield line


def collect(store: LogStore, engine: FakeEngine) -> None:
    from dockyard.logs.collector import LogCollector

    col = LogCollector(store, engine)  # type: ignore[arg-type]
    col.discover_once()
    for f in list(col._followers.values()):
        f.thread.join(5)
    col.flush()


def test_the_collector_resumes_at_its_position_without_repeats_even_at_the_same_ns(tmp_path: Path) -> None:
    store = LogStore(tmp_path / "logs.db")
    engine = FakeEngine()
    engine.state = {"c1": "exited"}
    # two lines share one timestamp; a third line stamped with that same ns arrives after the first round
    engine.lines["c1"] = [(S, "stdout", "a"), (S + 1, "stdout", "b1"), (S + 1, "stderr", "b2")]
    collect(store, engine)
    assert [e.text for e in store.scan("acme/shop")] == ["a", "b1", "b2"]
    assert store.positions() == {"c1": ReadPosition(S + 1, 2, finished=True)}
    # a finished container is not read again; when it runs again, only what is new is added
    collect(store, engine)
    engine.lines["c1"] += [(S + 1, "stdout", "b3"), (S + 2, "stdout", "c")]
    engine.state["c1"] = "running"
    collect(store, engine)
    assert [e.text for e in store.scan("acme/shop")] == ["a", "b1", "b2", "b3", "c"]
    # a container the engine no longer has loses its position (its lines stay)
    engine.state = {}
    collect(store, engine)
    assert store.positions() == {} and len(list(store.scan("acme/shop"))) == 5


def test_retention_limits_come_from_the_project_or_the_server(tmp_path: Path) -> None:
    from dockyard.logs.retention import Limits, default_limits, limits_of, sweep
    from dockyard.model.project import LogPolicy

    assert default_limits({}) == Limits(7 * 86400.0, 1024**3)
    assert default_limits({"DOCKYARD_LOG_RETENTION": "2h", "DOCKYARD_LOG_MAX_SIZE": "10Mi"}) == Limits(7200.0, 10 * 2**20)
    for env, var in (({"DOCKYARD_LOG_RETENTION": "soon"}, "DOCKYARD_LOG_RETENTION"),
                     ({"DOCKYARD_LOG_MAX_SIZE": "0"}, "DOCKYARD_LOG_MAX_SIZE")):
        with pytest.raises(ValueError, match=var):
            default_limits(env)
    d = Limits(100.0, 1000)
    assert limits_of(LogPolicy(retention="1h"), d) == Limits(3600.0, 1000)
    assert limits_of(LogPolicy(max_size="2Mi"), d) == Limits(100.0, 2 * 2**20)
    store = LogStore(tmp_path / "logs.db")
    store.write([(WEB0, lines(S, ["kept"])), (OTHER, lines(S, ["of a deleted project"]))])
    assert sweep(store, lambda: {"acme/shop": Limits(10**9, 10**9)}, now=S / 1e9) == 1
    assert store.scopes() == ["acme/shop"]
    # "keep for ages" (200000d, whose ns overflow 64 bits) keeps everything; it raised OverflowError
    # from SQLite, which stopped the sweep of every project after this one (and of deleted ones)
    store.write([(OTHER, lines(S, ["of another deleted project"]))])
    ages = limits_of(LogPolicy(retention="200000d"), d)
    assert sweep(store, lambda: {"acme/shop": ages}, now=S / 1e9) == 1
    assert store.scopes() == ["acme/shop"] and texts(store.search("acme/shop")) == ["kept"]
