"""A work queue keyed by object: a key is processed by one worker at a time, added twice it
runs once more after the current run, and it can be re-added after a delay (backoff). A key waits
in at most one delay, the soonest asked for: otherwise every extra run of a failing key (a resync,
an event) would leave one more delayed retry behind, and the retries of a key that keeps failing
would multiply without bound."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Hashable


class WorkQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: list[Hashable] = []
        self._queued: set[Hashable] = set()
        self._processing: set[Hashable] = set()
        self._dirty: set[Hashable] = set()  # added while processing: run again when done
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}  # key → when its one delayed entry is due
        self._seq = itertools.count()
        self._closed = False

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        with self._cond:
            if delay > 0:
                at = time.monotonic() + delay
                if self._due.get(key, float("inf")) <= at:
                    return  # already due sooner
                self._due[key] = at
                heapq.heappush(self._delayed, (at, next(self._seq), key))
                self._cond.notify()
                return
            self._add_now(key)

    def _add_now(self, key: Hashable) -> None:
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next key to process, or None when closed or on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    at, _, key = heapq.heappop(self._delayed)
                    if self._due.get(key) != at:
                        continue  # replaced by a sooner delay
                    del self._due[key]
                    self._add_now(key)
                if self._ready:
                    key = self._ready.pop(0)
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                wait = None if deadline is None else deadline - now
                if self._delayed:
                    until = self._delayed[0][0] - now
                    wait = until if wait is None else min(wait, until)
                if wait is not None and wait <= 0:
                    if deadline is not None and now >= deadline:
                        return None
                    continue
                self._cond.wait(wait)

    def done(self, key: Hashable) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add_now(key)

    def depth(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._due)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
