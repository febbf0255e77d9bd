"""The log drain forwarder: for every LogDrain, ship the project's new log lines to its destination.

Delivery is at least once. A drain's cursor (the last log-store cursor it has delivered) is kept in
the table `drain_cursors` of `logs.db`, beside the lines it points into, and advanced only after the
destination acknowledged a batch (HTTP 2xx; for syslog, the write to the socket succeeded). A crash
or restart re-sends at most the batch that was in flight; nothing is skipped. If `logs.db` is
replaced, the cursors go with it and every drain starts again from the newest line.

A drain starts at the project's newest line when the forwarder first sees it (from now on, not the
project's history). Each drain has its own thread, so a slow or dead destination holds up only its
own drain; the log collector never waits for a drain (they share nothing but the SQLite file, read
through the store's reader connections). Failed batches are retried with capped exponential backoff
(`DOCKYARD_DRAIN_MAX_BACKOFF`, default 30 s); a batch the destination refuses as malformed (HTTP
400/415/422) is dropped and counted instead, since it would be refused forever. Status (conditions,
`sentLines`, `lastSentAt`, `lastError`) is written at once when the drain's state changes and
otherwise at most every `STATUS_INTERVAL` seconds. Everything runs only while this server holds
the controllers' lease."""

from __future__ import annotations

import logging
import os
import random
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from dockyard.admission.egress import allowed_at_send
from dockyard.logs.senders import HttpSender, Sender, SendError, SyslogSender, loki_body, ndjson_body
from dockyard.model.logdrain import LogDrainSpec
from dockyard.policy.egress import Destination, EgressRefused
from dockyard.store.repository import Store, StoredObject, iso_time

if TYPE_CHECKING:
    from dockyard.logs.store import LogEntry

log = logging.getLogger(__name__)

BATCH_LINES = 500
BATCH_BYTES = 1024 * 1024
IDLE_POLL = 1.0          # how often an idle drain looks for new lines
STATUS_INTERVAL = 10.0   # counters reach the drain's status at most this often
MIN_BACKOFF = 0.5


def max_backoff() -> float:
    try:
        return max(MIN_BACKOFF, float(os.environ.get("DOCKYARD_DRAIN_MAX_BACKOFF", "30")))
    except ValueError:
        return 30.0


def backoff_delay(failures: int, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the `failures`-th failure in a row: 0.5 s doubling up to `cap`, with up
    to 20 % jitter so that drains to one destination do not retry in lock-step."""
    base = min(cap, MIN_BACKOFF * (2 ** max(0, failures - 1)))
    return base * (0.8 + 0.2 * rand())


class LogReader(Protocol):
    """What the forwarder needs of `dockyard.logs.store.LogStore`."""

    def read_after(self, scope: str, after: int, limit: int = 1000) -> list[LogEntry]: ...

    def last_cursor(self, scope: str) -> int: ...


def take_batch(entries: Sequence[LogEntry], max_bytes: int = BATCH_BYTES) -> Sequence[LogEntry]:
    """The longest prefix of `entries` whose text fits in `max_bytes` (at least one entry)."""
    total = 0
    for i, e in enumerate(entries):
        total += len(e.text) + 64
        if total > max_bytes and i > 0:
            return entries[:i]
    return entries


class DrainCursors:
    """Each drain's delivered position, by the drain's uid, in `logs.db` (see the module doc)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        # logs.db is in WAL mode: NORMAL loses no committed write when the process dies, only (on power
        # loss) the newest cursors, which means re-sending a batch or two; FULL cost an fsync per batch
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS drain_cursors (uid TEXT PRIMARY KEY, cursor INTEGER NOT NULL,"
                        " updated REAL NOT NULL) WITHOUT ROWID")
        self.lock = threading.Lock()
        self.closed = False

    def get(self, uid: str) -> int | None:
        with self.lock:
            row = self.db.execute("SELECT cursor FROM drain_cursors WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else int(row[0])

    def set(self, uid: str, cursor: int) -> None:
        with self.lock:
            if self.closed:
                return   # a worker still finishing a send at shutdown: that batch is sent again later
            self.db.execute("INSERT OR REPLACE INTO drain_cursors VALUES (?, ?, ?)", (uid, cursor, time.time()))

    def forget_except(self, uids: set[str]) -> None:
        """Drop the cursors of drains that no longer exist."""
        with self.lock:
            stale = [r[0] for r in self.db.execute("SELECT uid FROM drain_cursors") if r[0] not in uids]
            self.db.executemany("DELETE FROM drain_cursors WHERE uid = ?", [(u,) for u in stale])

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.db.close()


def make_sender(spec: LogDrainSpec, connect_to: Callable[[], Destination], hostname: str) -> Sender:
    """The transport for a drain's type."""
    if spec.type == "syslog":
        return SyslogSender(spec.url, connect_to, spec.labels, hostname)
    if spec.type == "http":
        return HttpSender(spec.url, connect_to, spec.headers, "application/x-ndjson",
                          lambda entries: ndjson_body(entries, spec.labels))
    newest: dict = {}
    return HttpSender(spec.url, connect_to, spec.headers, "application/json",
                      lambda entries: loki_body(entries, spec.labels, newest))


def _now_iso() -> str:
    return iso_time(datetime.now(UTC))


@dataclass
class DrainState:
    """What a worker reports; turned into the drain's status."""

    ready: str = "Unknown"
    reason: str = "Starting"
    message: str = ""
    sent: int = 0
    dropped: int = 0
    last_sent_at: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    since: dict[str, str] = field(default_factory=dict)   # condition → lastTransitionTime

    def status(self, generation: int) -> dict:
        cond = {"type": "Ready", "status": self.ready, "reason": self.reason, "message": self.message,
                "lastTransitionTime": self.since.get("Ready")}
        out: dict = {"observedGeneration": generation, "conditions": [cond], "sentLines": self.sent,
                     "droppedLines": self.dropped}
        for key, value in (("lastSentAt", self.last_sent_at), ("lastError", self.last_error),
                           ("lastErrorAt", self.last_error_at)):
            if value is not None:
                out[key] = value
        return out


class DrainWorker:
    """One drain's loop on its own thread. The forwarder hands it newer versions of the object with
    `update()`; a changed spec or annotation takes effect on the next batch."""

    def __init__(self, obj: StoredObject, store: Store, logs: LogReader, cursors: DrainCursors, hostname: str) -> None:
        self.store = store
        self.logs = logs
        self.cursors = cursors
        self.hostname = hostname
        self.obj = obj
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        st = obj.status or {}
        self.state = DrainState(sent=int(st.get("sentLines", 0)), dropped=int(st.get("droppedLines", 0)),
                                last_sent_at=st.get("lastSentAt"), last_error=st.get("lastError"),
                                last_error_at=st.get("lastErrorAt"))
        ready = next((c for c in st.get("conditions", []) if c.get("type") == "Ready"), None)
        if ready and ready.get("lastTransitionTime"):
            self.state.since["Ready"] = ready["lastTransitionTime"]
        self._written: tuple[tuple, tuple] | None = None   # (condition, counters) last written
        self._written_at = 0.0
        self._sender: Sender | None = None
        self._sender_for: tuple | None = None
        self.cursor: int | None = None   # the last delivered cursor; read on the first step
        self.failures = 0                # failed sends in a row
        self.thread = threading.Thread(target=self._run, name=f"drain-{obj.scope}/{obj.name}", daemon=True)

    # --- control ---

    def start(self) -> None:
        self.thread.start()

    def update(self, obj: StoredObject) -> None:
        with self._lock:
            self.obj = obj

    def stop(self) -> None:
        self.stopping.set()

    # --- status ---

    def _set(self, ready: str, reason: str, message: str = "") -> None:
        if ready != self.state.ready:
            self.state.since["Ready"] = _now_iso()
        self.state.ready, self.state.reason, self.state.message = ready, reason, message

    def _error(self, reason: str, message: str) -> None:
        self.state.last_error, self.state.last_error_at = message, _now_iso()
        self._set("False", reason, message)

    def _write_status(self, obj: StoredObject, force: bool = False) -> None:
        """Write at once when the condition or the last error changed, else at most every STATUS_INTERVAL."""
        condition = (obj.generation, self.state.ready, self.state.reason, self.state.message, self.state.last_error)
        counters = (self.state.sent, self.state.dropped)
        if not force and self._written is not None and self._written[0] == condition:
            if self._written[1] == counters or time.monotonic() - self._written_at < STATUS_INTERVAL:
                return
        try:
            self.store.update_status("LogDrain", obj.scope, obj.name, self.state.status(obj.generation), uid=obj.uid)
        except Exception:  # noqa: BLE001 — a store hiccup: the next write carries the same numbers
            log.exception("log drain %s/%s: writing status failed", obj.scope, obj.name)
            return
        self._written, self._written_at = (condition, counters), time.monotonic()

    # --- sending ---

    def _sender_of(self, obj: StoredObject, spec: LogDrainSpec) -> Sender:
        identity = (obj.generation, tuple(sorted(obj.annotations.items())))
        if self._sender is None or identity != self._sender_for:
            if self._sender is not None:
                self._sender.close()
            annotations = dict(obj.annotations)
            self._sender = make_sender(spec, lambda: allowed_at_send(spec.url, spec.schemes, annotations),
                                       self.hostname)
            self._sender_for = identity
        return self._sender

    def _start_cursor(self, scope: str) -> int:
        """The saved cursor, or the project's newest line for a new drain (from now on). A saved
        cursor beyond the newest line (retention or a project's deletion removed lines) stays right:
        store cursors never repeat, so every line stored later is above it."""
        saved = self.cursors.get(self.obj.uid)
        if saved is None:
            saved = self.logs.last_cursor(scope)
            self.cursors.set(self.obj.uid, saved)
        return saved

    def _deliver(self, sender: Sender, wanted: Sequence[LogEntry]) -> None:
        """Send, halving on 413 (Request Entity Too Large); a single refused line is dropped."""
        try:
            sender.send(wanted)
        except SendError as e:
            if not e.too_large:
                raise
            if len(wanted) == 1:
                raise SendError(str(e), retry=False) from None
            half = len(wanted) // 2
            self._deliver(sender, wanted[:half])
            self._deliver(sender, wanted[half:])

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # noqa: BLE001 — a bug here must not take the server down; the forwarder restarts us
            log.exception("log drain %s/%s stopped", self.obj.scope, self.obj.name)
        finally:
            if self._sender is not None:
                self._sender.close()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            delay = self.step()
            if delay:
                self.stopping.wait(delay)

    def step(self) -> float:
        """One round: send the next batch if there is one; returns how long to wait before the next."""
        with self._lock:
            obj = self.obj
        if self.cursor is None:
            self.cursor = self._start_cursor(obj.scope)
        try:
            spec = LogDrainSpec.model_validate(obj.spec)
        except ValidationError as e:
            # stored before a stricter schema: say so until someone fixes it, rather than crash-loop
            self._set("False", "InvalidSpec", str(e).replace("\n", " ")[:500])
            self._write_status(obj)
            return IDLE_POLL
        if spec.paused:
            self._set("False", "Paused", "the drain is paused; it resumes where it stopped")
            self._write_status(obj)
            return IDLE_POLL
        entries = self.logs.read_after(obj.scope, self.cursor, BATCH_LINES)
        if not entries:
            if self.failures == 0:
                self._set("True", "Forwarding")
            self._write_status(obj)
            return IDLE_POLL
        batch = take_batch(entries)
        wanted = [e for e in batch if not spec.apps or e.app in spec.apps]
        try:
            if wanted:
                self._deliver(self._sender_of(obj, spec), wanted)
        except (SendError, EgressRefused) as e:
            refused = isinstance(e, EgressRefused)
            if refused or getattr(e, "retry", True):
                self.failures += 1
                self._error("DestinationRefused" if refused else "SendFailed", str(e))
                self._write_status(obj)
                return backoff_delay(self.failures, max_backoff())
            self.state.dropped += len(wanted)
            self.state.last_error, self.state.last_error_at = f"{len(wanted)} lines dropped: {e}", _now_iso()
            log.warning("log drain %s/%s: destination refused %d lines: %s", obj.scope, obj.name, len(wanted), e)
            wanted = []
        self.cursor = batch[-1].cursor
        self.cursors.set(obj.uid, self.cursor)
        self.failures = 0
        if wanted:
            self.state.sent += len(wanted)
            self.state.last_sent_at = _now_iso()
        self._set("True", "Forwarding")
        self._write_status(obj)
        return 0.0 if len(entries) == BATCH_LINES or len(batch) < len(entries) else IDLE_POLL


class DrainForwarder:
    """Keeps one DrainWorker per LogDrain while `leading()` (this server holds the controllers'
    lease), none otherwise."""

    @classmethod
    def over(cls, store: Store, logs: LogReader, logs_path: str, leading: Callable[[], bool]) -> DrainForwarder:
        """The forwarder for the log store at `logs_path`, keeping its cursors in that file."""
        return cls(store, logs, DrainCursors(logs_path), leading)

    def __init__(self, store: Store, logs: LogReader, cursors: DrainCursors, leading: Callable[[], bool], *,
                 hostname: str | None = None, interval: float = 1.0) -> None:
        self.store = store
        self.logs = logs
        self.cursors = cursors
        self.leading = leading
        self.hostname = hostname or socket.gethostname()
        self.interval = interval
        self.workers: dict[str, DrainWorker] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="drain-forwarder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        self._stop_workers(set())
        for w in list(self.workers.values()):
            w.thread.join(timeout=2)
        self.cursors.close()

    def _loop(self) -> None:
        seen_rv = -1
        while not self._stop.is_set():
            try:
                if self.leading():
                    rv = self.store.current_rv()
                    if rv != seen_rv or any(not w.thread.is_alive() for w in self.workers.values()):
                        self.sync()
                        seen_rv = rv
                else:
                    self._stop_workers(set())
                    seen_rv = -1
            except Exception:  # noqa: BLE001 — a store hiccup: try again next round
                log.exception("log drains: sync failed")
            self._stop.wait(self.interval)

    def sync(self) -> None:
        """Start, update and stop workers to match the LogDrains in the store."""
        drains = {obj.uid: obj for obj in self.store.list("LogDrain")[0]}
        self._stop_workers(set(drains))
        for uid, obj in drains.items():
            w = self.workers.get(uid)
            if w is not None and w.thread.is_alive():
                if not w.stopping.is_set():
                    w.update(obj)
                continue   # still finishing after a stop: its successor starts once it has ended
            w = DrainWorker(obj, self.store, self.logs, self.cursors, self.hostname)
            self.workers[uid] = w
            w.start()
        self.cursors.forget_except(set(drains))

    def _stop_workers(self, keep: set[str]) -> None:
        for uid, w in list(self.workers.items()):
            if uid not in keep:
                w.stop()
                if not w.thread.is_alive():
                    del self.workers[uid]
