"""Log drains without a server: the LogDrain schema, the admission of its URL, the record formats
and framing, batching and backoff, and the forwarder's cursor rules (over an in-memory double of
the log store's read interface and a recording sender). The transports are exercised against small
loopback servers here; tests/integration/test_log_drains_live.py runs the whole path on a real server."""

from __future__ import annotations

import http.server
import json
import re
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from test_egress import fake_resolver

from dockyard.admission import InvalidObject, admit
from dockyard.admission.egress import DestinationForbidden, admit_destinations
from dockyard.logs import drains, senders
from dockyard.logs.drains import DrainCursors, DrainWorker, backoff_delay, take_batch
from dockyard.logs.senders import HttpSender, SendError, SyslogSender, loki_body, ndjson_body, syslog_message
from dockyard.logs.store import LogEntry, LogSource, LogStore
from dockyard.policy.egress import PRIVATE_ANNOTATION, Destination
from dockyard.store.repository import StoredObject

# --- schema -----------------------------------------------------------------------------------


def drain_body(**spec) -> dict:  # noqa: ANN003
    return {"kind": "LogDrain", "metadata": {"name": "central", "project": "acme/shop"},
            "spec": {"type": "loki", "url": "http://127.0.0.1:3100/loki/api/v1/push", **spec}}


def fields_of(body: dict) -> dict[str, str]:
    with pytest.raises(InvalidObject) as e:
        admit("LogDrain", body)
    return {err.field: err.message for err in e.value.errors}


def test_a_valid_drain_is_admitted_with_defaults() -> None:
    a = admit("LogDrain", drain_body(apps=["web"], labels={"env": "prod"}, headers={"X-Scope-OrgID": "acme"}))
    assert (a.scope, a.name) == ("acme/shop", "central")
    assert a.spec == {"type": "loki", "url": "http://127.0.0.1:3100/loki/api/v1/push", "apps": ["web"],
                      "labels": {"env": "prod"}, "headers": {"X-Scope-OrgID": "acme"}, "paused": False}


@pytest.mark.parametrize("spec,field,words", [
    ({"type": "syslog", "url": "http://logs:514"}, "spec.url", "syslog drain needs a URL with scheme syslog"),
    ({"type": "http", "url": "syslog+tcp://logs:514"}, "spec.url", "scheme http or https"),
    ({"type": "syslog", "url": "syslog://logs:514/x"}, "spec.url", "no path"),
    ({"url": "https://u:p@logs/x"}, "spec.url", "user or password"),
    ({"url": "http://:80/"}, "spec.url", "no host"),
    ({"url": "http://logs:99999/"}, "spec.url", "not a valid URL"),
    ({"url": "https://logs/in?token=abc "}, "spec.url", "spaces or control characters"),
    ({"type": "kafka"}, "spec.type", "'syslog', 'http' or 'loki'"),
    ({"labels": {"app": "x"}}, "spec.labels", "set by Dockyard"),
    ({"labels": {"9lives": "x"}}, "spec.labels", "invalid"),
    ({"labels": {"env": "a\nb"}}, "spec.labels", "line breaks"),
    ({"headers": {"Content-Type": "text/plain"}}, "spec.headers", "set by the sender"),
    ({"headers": {"X-A": "1\r\nEvil: 1"}}, "spec.headers", "line breaks"),
    ({"type": "syslog", "url": "syslog://logs", "headers": {"X-A": "1"}}, "spec.headers", "no HTTP headers"),
    ({"apps": ["Web"]}, "spec.apps[0]", "not a valid name"),
    ({"colour": "red"}, "spec.colour", "unknown field"),
])
def test_bad_specs_name_the_field(spec: dict, field: str, words: str) -> None:
    errors = fields_of(drain_body(**spec))
    assert field in errors, errors
    assert words in errors[field]


# --- admission of the destination ---------------------------------------------------------------

RESOLVE = fake_resolver({"logs.example.com": ["93.184.216.34"], "intranet.corp": ["10.0.0.8"]})
LOOP = {"type": "http", "url": "http://127.0.0.1:9000/in"}
PUBLIC = {"type": "http", "url": "https://logs.example.com/in"}


def test_admins_may_send_to_private_addresses_and_the_object_is_marked() -> None:
    ann = admit_destinations("LogDrain", LOOP, {}, is_admin=True, resolve=RESOLVE)
    assert ann == {PRIVATE_ANNOTATION: "true"}
    # the mark follows the destination: a public URL drops it, whoever writes
    assert admit_destinations("LogDrain", PUBLIC, ann, is_admin=True, resolve=RESOLVE) == {}


def test_maintainers_may_not_send_to_private_addresses_nor_forge_the_mark() -> None:
    for spec in (LOOP, {"type": "syslog", "url": "syslog+tcp://intranet.corp:514"}):
        with pytest.raises(DestinationForbidden) as e:
            admit_destinations("LogDrain", spec, {PRIVATE_ANNOTATION: "true"}, is_admin=False, resolve=RESOLVE)
        assert [x.field for x in e.value.errors] == ["spec.url"]
        assert "only a platform admin" in e.value.errors[0].message
    assert admit_destinations("LogDrain", PUBLIC, {PRIVATE_ANNOTATION: "true", "team": "a"}, is_admin=False,
                              resolve=RESOLVE) == {"team": "a"}


def test_a_maintainer_may_edit_an_admins_private_drain_but_not_its_url() -> None:
    previous = (LOOP, {PRIVATE_ANNOTATION: "true"})
    paused = {**LOOP, "paused": True}
    assert admit_destinations("LogDrain", paused, {}, is_admin=False, previous=previous,
                              resolve=RESOLVE) == {PRIVATE_ANNOTATION: "true"}
    with pytest.raises(DestinationForbidden):
        admit_destinations("LogDrain", {**LOOP, "url": "http://127.0.0.1:9001/in"}, {}, is_admin=False,
                           previous=previous, resolve=RESOLVE)


def test_metadata_addresses_are_invalid_even_for_admins() -> None:
    with pytest.raises(InvalidObject) as e:
        admit_destinations("LogDrain", {"type": "http", "url": "http://169.254.169.254/"}, {}, is_admin=True,
                           resolve=RESOLVE)
    assert e.value.errors[0].field == "spec.url" and "metadata" in e.value.errors[0].message


def test_kinds_without_destinations_pass_untouched() -> None:
    assert admit_destinations("App", {"image": "x"}, {"a": "b"}, is_admin=False) == {"a": "b"}


# --- formats ------------------------------------------------------------------------------------

TS = datetime(2026, 11, 27, 11, 14, 49, 123456, tzinfo=UTC).timestamp()


def entry(cursor: int, text: str = "hello", *, app: str = "web", replica: int = 0, stream: str = "stdout",
          ts: float = TS) -> LogEntry:
    return LogEntry(cursor, ts, "acme", "shop", app, replica, f"dyabc_acme_shop_{app}_h_{replica}", stream, text)


RFC5424 = re.compile(rb'^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) (\[.*?[^\\]\]) \xef\xbb\xbf(.*)$', re.S)


def test_syslog_messages_follow_rfc_5424() -> None:
    m = RFC5424.match(syslog_message(entry(1, 'a "quoted" ] line ü', stream="stderr"), {"env": "prod"}, "node-1"))
    assert m, "not RFC 5424"
    pri, ts, host, app, procid, msgid, sd, msg = m.groups()
    assert int(pri) == 8 * 1 + 3                 # facility user, severity err
    assert ts == b"2026-11-27T11:14:49.123456Z"  # at most 6 fractional digits
    assert (host, app, procid, msgid) == (b"node-1", b"acme.shop.web", b"0", b"stderr")
    assert sd == (b'[dockyard@32473 tenant="acme" project="shop" app="web" replica="0" '
                  b'container="dyabc_acme_shop_web_h_0" env="prod"]')
    assert msg.decode() == 'a "quoted" ] line ü'
    assert syslog_message(entry(1), {}, "h").startswith(b"<14>1 ")   # stdout: info
    long_app = syslog_message(entry(1, app="a" * 63), {}, "h").split(b" ")[3]
    assert len(long_app) == 48
    sd_escaped = syslog_message(entry(1), {"k": 'x"]\\'}, "h")
    assert b'k="x\\"\\]\\\\"]' in sd_escaped


def test_octet_counting_and_datagram_cuts() -> None:
    assert senders.octet_frame("ü".encode()) == b"2 \xc3\xbc"
    cut = senders.cut_datagram(("a" + "ü" * 10).encode(), limit=4)
    assert cut == b"a\xc3\xbc" and cut.decode()
    assert senders.cut_datagram(b"abc", limit=10) == b"abc"


def test_rfc3339_keeps_nanoseconds_when_asked() -> None:
    assert senders.rfc3339(1.5, 9) == "1970-01-01T00:00:01.500000000Z"
    assert senders.rfc3339(TS, 6) == "2026-11-27T11:14:49.123456Z"


def test_ndjson_has_one_object_per_line() -> None:
    body = ndjson_body([entry(1, "one"), entry(2, "two", stream="stderr", replica=1)], {"env": "prod"})
    lines = body.decode().splitlines()
    assert len(lines) == 2 and body.endswith(b"\n")
    first = json.loads(lines[0])
    assert re.fullmatch(r"2026-11-27T11:14:49\.123456\d{3}Z", first.pop("ts"))
    assert first == {"tenant": "acme", "project": "shop", "app": "web", "replica": 0,
                     "container": "dyabc_acme_shop_web_h_0", "stream": "stdout", "text": "one", "labels": {"env": "prod"}}
    assert json.loads(lines[1])["stream"] == "stderr"


def test_loki_streams_are_grouped_sorted_and_never_go_back() -> None:
    newest: dict = {}
    es = [entry(1, "late", ts=TS + 2), entry(2, "early", ts=TS + 1), entry(3, "err", stream="stderr"),
          entry(4, "other", replica=1)]
    body = json.loads(loki_body(es, {"env": "prod"}, newest))
    streams = {(s["stream"]["replica"], s["stream"]["stream"]): s for s in body["streams"]}
    assert set(streams) == {("0", "stdout"), ("0", "stderr"), ("1", "stdout")}
    assert streams[("0", "stdout")]["stream"] == {"tenant": "acme", "project": "shop", "app": "web", "replica": "0",
                                                  "stream": "stdout", "env": "prod"}
    values = streams[("0", "stdout")]["values"]
    assert [v[1] for v in values] == ["early", "late"]
    assert all(isinstance(v[0], str) and v[0].isdigit() for v in values)
    assert int(values[0][0]) < int(values[1][0])
    # a later batch with an older line on the same stream is sent at the newest time already sent
    again = json.loads(loki_body([entry(5, "straggler", ts=TS)], {}, newest))
    assert again["streams"][0]["values"][0] == [values[1][0], "straggler"]


# --- batching and backoff -------------------------------------------------------------------------

def test_backoff_doubles_up_to_the_cap_with_some_jitter() -> None:
    delays = [backoff_delay(n, 30.0, rand=lambda: 1.0) for n in range(1, 10)]
    assert delays[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(delays) == 30.0
    assert backoff_delay(3, 30.0, rand=lambda: 0.0) == pytest.approx(1.6)


def test_batches_are_bounded_in_bytes_but_never_empty() -> None:
    es = [entry(i, "x" * 1000) for i in range(10)]
    assert len(take_batch(es, max_bytes=3500)) == 3
    assert len(take_batch(es[:1], max_bytes=10)) == 1


# --- the worker's cursor rules --------------------------------------------------------------------

class MemoryLogs:
    """The read interface of dockyard.logs.store.LogStore, over a list."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    def add(self, *texts: str, app: str = "web") -> None:
        for t in texts:
            self.entries.append(entry(len(self.entries) + 1, t, app=app))

    def read_after(self, scope: str, after: int, limit: int = 1000) -> list[LogEntry]:
        return [e for e in self.entries if e.cursor > after][:limit]

    def last_cursor(self, scope: str) -> int:
        return self.entries[-1].cursor if self.entries else 0


class StatusRecorder:
    def __init__(self) -> None:
        self.statuses: list[dict] = []

    def update_status(self, kind: str, scope: str, name: str, status: dict, uid: str | None = None) -> None:
        self.statuses.append(status)


class FakeSender:
    def __init__(self) -> None:
        self.got: list[str] = []
        self.fail: SendError | None = None
        self.max_lines: int | None = None

    def send(self, entries) -> None:  # noqa: ANN001
        if self.fail:
            raise self.fail
        if self.max_lines and len(entries) > self.max_lines:
            raise SendError("HTTP 413", retry=False, too_large=True)
        self.got += [e.text for e in entries]

    def close(self) -> None:
        pass


@pytest.fixture
def rig(tmp_path, monkeypatch) -> Iterator:  # noqa: ANN001
    logs, store, sender = MemoryLogs(), StatusRecorder(), FakeSender()
    cursors = DrainCursors(str(tmp_path / "logs.db"))
    monkeypatch.setattr(drains, "make_sender", lambda spec, connect_to, hostname: sender)

    def worker(**spec) -> DrainWorker:  # noqa: ANN003
        obj = StoredObject("LogDrain", "acme/shop", "central", "uid-1", 1, 1, {}, {},
                           {"type": "http", "url": "https://logs.example.com/in", **spec}, {}, datetime.now(UTC))
        return DrainWorker(obj, store, logs, cursors, "node-1")  # type: ignore[arg-type]

    yield logs, store, sender, cursors, worker
    cursors.close()


def test_a_new_drain_starts_from_now_and_resumes_from_its_cursor(rig) -> None:  # noqa: ANN001
    logs, store, sender, cursors, worker = rig
    logs.add("history")
    w = worker()
    w.step()
    assert sender.got == [] and cursors.get("uid-1") == 1
    logs.add("a", "b")
    w.step()
    assert sender.got == ["a", "b"] and cursors.get("uid-1") == 3
    # a restarted server: a new worker, the same cursor
    logs.add("c")
    worker().step()
    assert sender.got == ["a", "b", "c"]
    assert store.statuses[-1]["sentLines"] == 1 and store.statuses[-1]["conditions"][0]["status"] == "True"


def test_a_failed_batch_keeps_the_cursor_and_reports_the_error(rig) -> None:  # noqa: ANN001
    logs, store, sender, cursors, worker = rig
    w = worker()
    w.step()
    logs.add("a", "b")
    sender.fail = SendError("http: Connection refused")
    delays = [w.step() for _ in range(3)]
    assert delays[0] < delays[1] < delays[2]
    assert cursors.get("uid-1") == 0 and sender.got == []
    st = store.statuses[-1]
    assert st["conditions"][0] == {"type": "Ready", "status": "False", "reason": "SendFailed",
                                   "message": "http: Connection refused",
                                   "lastTransitionTime": st["conditions"][0]["lastTransitionTime"]}
    assert st["lastError"] == "http: Connection refused"
    sender.fail = None
    w.step()
    assert sender.got == ["a", "b"] and cursors.get("uid-1") == 2 and w.failures == 0
    assert store.statuses[-1]["conditions"][0]["status"] == "True"


def test_refused_content_is_dropped_and_counted_and_413_splits(rig) -> None:  # noqa: ANN001
    logs, store, sender, cursors, worker = rig
    w = worker()
    w.step()
    logs.add("bad")
    sender.fail = SendError("HTTP 400 Bad Request", retry=False)
    w.step()
    assert cursors.get("uid-1") == 1 and store.statuses[-1]["droppedLines"] == 1
    sender.fail, sender.max_lines = None, 2
    logs.add("1", "2", "3", "4", "5")
    w.step()
    assert sender.got == ["1", "2", "3", "4", "5"] and cursors.get("uid-1") == 6


def test_only_the_chosen_apps_are_sent_and_paused_drains_wait(rig) -> None:  # noqa: ANN001
    logs, store, sender, cursors, worker = rig
    w = worker(apps=["api"])
    w.step()
    logs.add("w1", app="web")
    logs.add("a1", app="api")
    w.step()
    assert sender.got == ["a1"] and cursors.get("uid-1") == 2
    p = worker(paused=True)
    logs.add("a2", app="api")
    p.step()
    assert sender.got == ["a1"] and store.statuses[-1]["conditions"][0]["reason"] == "Paused"


def test_a_cursor_beyond_the_newest_line_resends_nothing(rig, tmp_path) -> None:  # noqa: ANN001
    """Retention removed the newest chunk (old timestamps, e.g. an exited container read late) but
    not an older one: after a restart the drain neither re-sends what it sent nor misses new lines."""
    _, _, sender, _, worker = rig
    real = LogStore(tmp_path / "logs.db")
    src = LogSource("acme", "shop", "web", 0, "web_0", "c0")
    now = time.time_ns()
    w = worker()
    w.logs = real
    w.step()   # a new drain: from now on
    real.write([(src, [(now, "stdout", "recent")])])
    real.write([(src, [(1, "stdout", "stamped long ago")])])
    while w.step() == 0.0:
        pass
    assert sender.got == ["recent", "stamped long ago"]
    assert real.sweep("acme/shop", max_age=3600, max_bytes=1 << 30) == 1
    restarted = worker()
    restarted.logs = real
    restarted.step()
    assert sender.got == ["recent", "stamped long ago"], "nothing sent twice"
    real.write([(src, [(now + 1, "stdout", "new")])])
    restarted.step()
    assert sender.got[2:] == ["new"]
    real.close()


def test_status_writes_are_rate_limited(rig, monkeypatch) -> None:  # noqa: ANN001
    logs, store, sender, cursors, worker = rig
    w = worker()
    w.step()
    n = len(store.statuses)
    for i in range(5):
        logs.add(f"l{i}")
        w.step()
    assert len(store.statuses) == n      # same condition, counters only: not yet
    monkeypatch.setattr(drains, "STATUS_INTERVAL", 0.0)
    logs.add("x")
    w.step()
    assert len(store.statuses) == n + 1 and store.statuses[-1]["sentLines"] == 6


# --- transports over loopback -------------------------------------------------------------------

def loopback(port: int) -> Destination:
    return Destination("x", "127.0.0.1", port, ("127.0.0.1",), True)


def test_tcp_syslog_sees_a_closed_receiver_before_sending() -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    s = SyslogSender(f"syslog+tcp://127.0.0.1:{port}", lambda: loopback(port), {}, "h")
    s.send([entry(1, "one")])
    conn, _ = srv.accept()
    data = conn.recv(65536)
    length, _, rest = data.partition(b" ")
    assert int(length) == len(rest) and rest.startswith(b"<14>1 ")
    conn.close()
    srv.close()
    with pytest.raises(SendError):
        s.send([entry(2, "two")])   # noticed as closed, reconnect refused: the batch is not lost
    s.close()


def test_udp_syslog_sends_a_datagram_per_line() -> None:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    port = rx.getsockname()[1]
    s = SyslogSender(f"syslog://127.0.0.1:{port}", lambda: loopback(port), {}, "h")
    s.send([entry(1, "one"), entry(2, "two")])
    got = [rx.recv(65536), rx.recv(65536)]
    assert [g.endswith(t) for g, t in zip(got, (b"one", b"two"), strict=True)] == [True, True]
    s.close()
    rx.close()


def test_http_statuses_map_to_retry_drop_or_split() -> None:
    answers: list[int] = []
    bodies: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(answers.pop(0))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a) -> None:  # noqa: ANN002
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    s = HttpSender(f"http://logs.example.com:{port}/in?x=1", lambda: loopback(port), {"X-Token": "t"},
                   "application/x-ndjson", lambda es: ndjson_body(es, {}))
    try:
        answers[:] = [204]
        s.send([entry(1, "ok")])
        assert json.loads(bodies[-1])["text"] == "ok"
        for status, retry, too_large in ((503, True, False), (429, True, False), (401, True, False),
                                         (400, False, False), (413, False, True)):
            answers[:] = [status]
            with pytest.raises(SendError) as e:
                s.send([entry(2, "x")])
            assert (e.value.retry, e.value.too_large) == (retry, too_large), status
    finally:
        s.close()
        srv.shutdown()
        srv.server_close()


def test_tls_syslog_is_octet_counted_inside_tls(tmp_path) -> None:  # noqa: ANN001
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=logs.test",
                    "-addext", "subjectAltName=DNS:logs.test"], check=True, capture_output=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = srv.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            got.append(data)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client_ctx = ssl.create_default_context(cafile=str(cert))
    s = SyslogSender(f"syslog+tls://logs.test:{port}", lambda: Destination("syslog+tls", "logs.test", port,
                                                                          ("127.0.0.1",), True),
                     {}, "h", tls_context=client_ctx)
    s.send([entry(1, "one"), entry(2, "two")])
    s.close()
    t.join(5)
    srv.close()
    first_len, _, rest = got[0].partition(b" ")
    first, second = rest[:int(first_len)], rest[int(first_len):]
    assert first.endswith(b"one") and second.split(b" ", 1)[1].endswith(b"two")


# --- the forwarder: one worker per drain, only while leading --------------------------------------

def test_the_forwarder_follows_the_drains_and_the_lease(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    from dockyard.logs.drains import DrainForwarder
    from dockyard.store.repository import Store

    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    store.migrate()
    logs, sender, leading = MemoryLogs(), FakeSender(), threading.Event()
    monkeypatch.setattr(drains, "make_sender", lambda spec, connect_to, hostname: sender)
    fwd = DrainForwarder.over(store, logs, str(tmp_path / "logs.db"), leading.is_set)
    spec = {"type": "http", "url": "https://logs.example.com/in"}
    one = store.create("LogDrain", "acme/shop", "one", spec)
    store.create("LogDrain", "acme/shop", "two", {**spec, "paused": True})
    try:
        fwd.sync()
        assert {w.obj.name for w in fwd.workers.values()} == {"one", "two"}
        logs.add("a")
        deadline = time.monotonic() + 5
        while sender.got != ["a"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sender.got == ["a"]      # "two" is paused: one copy only
        assert store.get("LogDrain", "acme/shop", "one").status["conditions"][0]["status"] == "True"
        store.delete("LogDrain", "acme/shop", "two")
        fwd.sync()
        assert [w.obj.name for w in fwd.workers.values() if not w.stopping.is_set()] == ["one"]
        fwd._stop_workers(set())
        fwd.workers[one.uid].thread.join(5)
        fwd._stop_workers(set())
        assert fwd.workers == {}
        assert fwd.cursors.get(one.uid) == 1
    finally:
        fwd.stop()
        store.close()


def test_a_stored_spec_the_schema_refuses_is_reported_not_crashed_on(rig) -> None:  # noqa: ANN001
    logs, store, sender, cursors, worker = rig
    w = worker(type="kafka")
    assert w.step() > 0
    cond = store.statuses[-1]["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "InvalidSpec") and "kafka" in cond["message"]


def test_a_private_destination_without_the_admin_mark_is_refused_at_send_time(tmp_path) -> None:  # noqa: ANN001
    """The send-time re-check: a drain whose host resolves to loopback now, but that admission did
    not mark (written by a non-admin when the name was public), never connects."""
    hits: list[bytes] = []
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    threading.Thread(target=lambda: hits.append(srv.accept()[0].recv(100)), daemon=True).start()
    logs, store = MemoryLogs(), StatusRecorder()
    cursors = DrainCursors(str(tmp_path / "logs.db"))
    obj = StoredObject("LogDrain", "acme/shop", "d", "uid-9", 1, 1, {}, {},
                       {"type": "http", "url": f"http://127.0.0.1:{port}/"}, {}, datetime.now(UTC))
    w = DrainWorker(obj, store, logs, cursors, "h")  # type: ignore[arg-type]
    w.step()
    logs.add("secret")
    assert w.step() > 0
    cond = store.statuses[-1]["conditions"][0]
    assert (cond["status"], cond["reason"]) == ("False", "DestinationRefused") and "only a platform admin" in \
        cond["message"]
    assert cursors.get("uid-9") == 0 and hits == []
    # with the mark, the same drain delivers
    w.update(StoredObject("LogDrain", "acme/shop", "d", "uid-9", 1, 2, {}, {PRIVATE_ANNOTATION: "true"}, obj.spec, {},
                          obj.created_at))
    w.step()
    time.sleep(0.2)
    assert hits and hits[0].startswith(b"POST / HTTP/1.1")
    srv.close()
    cursors.close()


def test_notifier_destinations_are_admitted_by_the_same_rule() -> None:
    hook = {"type": "webhook", "url": "http://127.0.0.1:9000/hook"}
    assert admit_destinations("Notifier", hook, {}, is_admin=True, resolve=RESOLVE) == {PRIVATE_ANNOTATION: "true"}
    mail = {"type": "email", "to": ["ops@example.com"], "smtp": {"host": "intranet.corp", "port": 25,
                                                                  "from": "dy@example.com"}}
    with pytest.raises(DestinationForbidden) as e:
        admit_destinations("Notifier", mail, {}, is_admin=False, resolve=RESOLVE)
    assert e.value.errors[0].field == "spec.smtp.host"
    with pytest.raises(InvalidObject) as bad:
        admit_destinations("Notifier", {**hook, "url": "http://169.254.169.254/"}, {}, is_admin=True, resolve=RESOLVE)
    assert bad.value.errors[0].field == "spec.url"
