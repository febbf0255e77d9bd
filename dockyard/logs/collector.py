"""The log collector: follows every container of this installation into the log store.

- **Discovery.** Every second one listing of all this installation's containers (exited included).
  A running (or restarting, paused) container gets a follower thread that streams its log live from
  where the store left off; a stopped one that was not yet read to its end gets a follower that
  reads to the end once and marks it finished. Because followers start within a second of a
  container and read from its first line, the lines of a container the reconciler replaces or
  removes are already held when it goes (a container that lives less than a second can be missed).
- **Flush.** Followers only append to a shared buffer; one flush every second (and on stop) writes
  all buffered lines as chunks and every container's read position in one store transaction.
- **Positions.** A container's position is its newest stored line's timestamp (ns) and how many
  stored lines carry exactly that timestamp. The engine's `since` includes lines at exactly that
  ns, so a resumed follower skips that many of them: a restart, even `kill -9`, neither repeats nor
  loses lines. (Not covered: a stdout line and a stderr line whose timestamps arrive out of order
  across the crash point — the engine stamps the two streams separately, microseconds apart.)
- **Bounded memory.** Lines are cut at 16 KiB (`truncate_line`), and a follower blocks when the
  buffer holds `max_buffer` bytes until the next flush; the engine keeps the lines meanwhile.
- **Leadership.** It works only while `leading()` is true (the controller lease): otherwise every
  follower is stopped and flushed, and it starts afresh from the stored positions when leading again.
- **Retention.** Every `sweep_interval` each project's chunks are swept by its policy
  (`retention.py`); a project that no longer exists loses its logs.

It never raises into the server: engine and store errors are logged and retried the next round.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dockyard.engines.base import EngineContainer, EngineDriver, EngineError
from dockyard.logs.store import LogSource, LogStore, ReadPosition, truncate_line

log = logging.getLogger(__name__)

LIVE_STATES = frozenset({"running", "restarting", "paused"})
FLUSH_INTERVAL = 1.0
DISCOVER_INTERVAL = 1.0
SWEEP_INTERVAL = 60.0
READ_PACE = 0.5       # a follower reads what arrived at most this often (batches: less CPU per line)
MAX_BUFFER = 8 * 1024 * 1024
STOP_WAIT = 3.0       # how long stopping waits for all followers together before the final flush


@dataclass
class _Follower:
    source: LogSource
    position: ReadPosition | None        # newest line read (stored or buffered)
    one_shot: bool                        # the container had stopped: read to its end, then finished
    lines: list[tuple[int, str, str]] = field(default_factory=list)
    dirty: bool = False                   # position changed since the last flush
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def done(self) -> bool:
        return self.stop.is_set()


class LogCollector:
    """Collects into `store` from `engine` on threads of its own (`start`/`stop`); `discover_once`
    and `flush` run one step (tests, benchmarks). `sweeper` (optional) applies retention."""

    def __init__(self, store: LogStore, engine: EngineDriver, *, leading: Callable[[], bool] = lambda: True,
                 sweeper: Callable[[LogStore], object] | None = None, flush_interval: float = FLUSH_INTERVAL,
                 discover_interval: float = DISCOVER_INTERVAL, sweep_interval: float = SWEEP_INTERVAL,
                 max_buffer: int = MAX_BUFFER, pace: float = READ_PACE) -> None:
        self.store = store
        self.engine = engine
        self.leading = leading
        self.sweeper = sweeper
        self.flush_interval = flush_interval
        self.discover_interval = discover_interval
        self.sweep_interval = sweep_interval
        self.max_buffer = max_buffer
        self.pace = pace
        self._followers: dict[str, _Follower] = {}       # container id → its follower
        self._positions: dict[str, ReadPosition] | None = None  # stored positions, loaded when leading
        self._buffered = 0
        self._cond = threading.Condition()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- lifecycle ---

    def start(self) -> None:
        for name, target in (("logs-discover", self._discover_loop), ("logs-flush", self._flush_loop)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stop every follower and write what they read: a clean stop loses no line."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        self._stop_followers()

    def _stop_followers(self) -> None:
        with self._cond:
            followers = list(self._followers.values())
            for f in followers:
                f.stop.set()
            self._cond.notify_all()
        deadline = time.monotonic() + STOP_WAIT
        for f in followers:  # one deadline for all: a hundred followers must not take 100 x the wait
            if f.thread is not None:
                f.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self.flush()
        with self._cond:
            self._followers.clear()
            self._positions = None

    def _discover_loop(self) -> None:
        last_sweep = 0.0
        while not self._stop.wait(self.discover_interval):
            if not self.leading():
                if self._positions is not None:
                    log.info("log collection paused: this server does not hold the controller lease")
                    self._stop_followers()
                continue
            self.discover_once()
            if self.sweeper is not None and time.monotonic() - last_sweep >= self.sweep_interval:
                last_sweep = time.monotonic()
                try:
                    self.sweeper(self.store)
                except Exception:  # noqa: BLE001 — retention retries next time; collection goes on
                    log.exception("log retention sweep failed")

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()

    # --- discovery ---

    def discover_once(self) -> None:
        """List the engine's containers; start followers for new ones, forget removed ones."""
        try:
            containers = self.engine.containers()
            if self._positions is None:
                self._positions = self.store.positions()
        except EngineError as e:
            log.debug("log collector: cannot list containers: %s", e)
            return
        except Exception:  # noqa: BLE001 — the store could not be read; next round
            log.exception("log collector: cannot read positions")
            return
        present = {c.id for c in containers}
        with self._cond:
            for c in containers:
                f = self._followers.get(c.id)
                if f is not None and not f.done:
                    continue
                live = c.state in LIVE_STATES
                pos = f.position if f is not None else self._positions.get(c.id)
                if not live and (c.state == "created" or (pos is not None and pos.finished)):
                    continue
                self._start(c, pos, one_shot=not live, carry=f)
            gone = [cid for cid, f in self._followers.items() if cid not in present and f.done and not f.lines]
            for cid in gone:
                del self._followers[cid]
            forget = [cid for cid in self._positions if cid not in present and cid not in self._followers]
        if forget:
            try:
                self.store.forget_positions(forget)
                for cid in forget:
                    self._positions.pop(cid, None)
            except Exception:  # noqa: BLE001 — forgotten next round
                log.exception("log collector: cannot forget read positions")

    def _start(self, c: EngineContainer, pos: ReadPosition | None, *, one_shot: bool, carry: _Follower | None) -> None:
        src = LogSource(c.key.tenant, c.key.project, c.key.app, c.slot, c.name, c.id)
        f = _Follower(src, pos, one_shot)
        if carry is not None:  # lines its predecessor read that are not flushed yet
            f.lines, f.dirty = carry.lines, carry.dirty
        f.thread = threading.Thread(target=self._follow, args=(f,), name=f"logs-{c.name}", daemon=True)
        self._followers[c.id] = f
        f.thread.start()

    # --- following ---

    def _follow(self, f: _Follower) -> None:
        since = f.position.ts_ns if f.position is not None and f.position.ts_ns else None
        skip = f.position.at_ts if since is not None else 0
        ended = False
        try:
            for ts, stream, text in self.engine.container_logs(f.source.container_id, since_ns=since,
                                                               follow=True, stop=f.stop, pace=self.pace):
                if since is not None and ts <= since:
                    if ts < since:
                        continue
                    if skip > 0:   # stored before: the engine's `since` includes its own ns
                        skip -= 1
                        continue
                if not self._add(f, ts, stream, truncate_line(text)):
                    return
            ended = not f.stop.is_set()
        except EngineError as e:
            log.debug("log collector: %s: %s", f.source.container, e)
        except Exception:  # noqa: BLE001 — a follower never takes the server down
            log.exception("log collector: following %s failed", f.source.container)
        finally:
            with self._cond:
                if ended and f.one_shot:
                    p = f.position or ReadPosition(0)
                    f.position = ReadPosition(p.ts_ns, p.at_ts, finished=True)
                    f.dirty = True
                f.stop.set()

    def _add(self, f: _Follower, ts: int, stream: str, text: str) -> bool:
        size = len(text) + 16
        with self._cond:
            while self._buffered + size > self.max_buffer and not f.stop.is_set():
                self._cond.wait(0.5)   # back-pressure: the engine holds the lines until the flush
            if f.stop.is_set():
                return False
            f.lines.append((ts, stream, text))
            p = f.position
            if p is None or ts > p.ts_ns:
                f.position = ReadPosition(ts, 1)
            elif ts == p.ts_ns:
                f.position = ReadPosition(ts, p.at_ts + 1)
            f.dirty = True
            self._buffered += size
        return True

    # --- flushing ---

    def flush(self) -> int:
        """Write every buffered line and the positions they reach, in one transaction."""
        with self._flush_lock:
            with self._cond:
                batches, positions = [], {}
                for cid, f in self._followers.items():
                    if f.lines:
                        batches.append((f.source, f.lines))
                        f.lines = []
                    if f.dirty:
                        positions[cid] = f.position
                        f.dirty = False
                self._buffered = 0
                self._cond.notify_all()
            if not batches and not positions:
                return 0
            try:
                n = self.store.write(batches, positions)
            except Exception:  # noqa: BLE001 — a full disk: those lines are lost, collection goes on
                log.exception("log collector: cannot write %d lines", sum(len(b[1]) for b in batches))
                return 0
            with self._cond:
                if self._positions is not None:
                    self._positions.update(positions)
            return n
