"""Runs the reconcilers: a leader lease in the store, a work queue fed by the store's change
feed, engine events and a periodic resync, and a few worker threads."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import replace
from datetime import timedelta

from dockyard.controllers.app import AppReconciler, Outcome
from dockyard.controllers.images import ImageResolver
from dockyard.controllers.project import OrphanCollector, ProjectReconciler
from dockyard.controllers.queue import WorkQueue
from dockyard.controllers.timeline import NODE_DOWN, EngineEventTranslator, fallback_node_name, node_event
from dockyard.engines.base import EngineDriver, EngineError, EngineUnavailable, NodeInfo
from dockyard.metrics.registry import RECONCILE_ERRORS, RECONCILE_SECONDS
from dockyard.store import leases
from dockyard.store.errors import Gone
from dockyard.store.repository import CLUSTER_SCOPE, Event, Store, now

log = logging.getLogger(__name__)
LEASE = "controllers"
EVENT_RETENTION = timedelta(days=14)
PRUNE_EVERY = 600.0  # seconds between deletions of events older than EVENT_RETENTION


class ControllerManager:
    def __init__(self, store: Store, engine: EngineDriver, *, workers: int = 4, resync: float = 30.0,
                 lease_ttl: float = 15.0, identity: str | None = None, images: ImageResolver | None = None) -> None:
        self.store = store
        self.engine = engine
        self.queue = WorkQueue()
        self.apps = AppReconciler(store, engine, images=images)
        self.projects = ProjectReconciler(store, engine)
        self.orphans = OrphanCollector(store, engine)
        self.workers = workers
        self.resync = resync
        self.lease_ttl = lease_ttl
        # a stable identity lets a restarted server take its own lease back at once
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.leading = threading.Event()
        self.engine_ok = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._failures: dict[tuple, int] = {}
        self.timeline = EngineEventTranslator()
        self._known_nodes: list[NodeInfo] = []
        self._engine_seen: bool | None = None  # None until the events loop first reaches the engine or fails
        self._pruned_at = 0.0

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        targets = [self._lease_loop, self._feed_loop, self._events_loop, self._resync_loop]
        targets += [self._worker] * self.workers
        for i, target in enumerate(targets):
            t = threading.Thread(target=target, name=f"ctl-{target.__name__}-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()
        with self.store.changed:
            self.store.changed.notify_all()
        for t in self._threads:
            t.join(timeout=5)
        if self.leading.is_set():
            leases.release(self.store, LEASE, self.identity)

    # --- leadership -----------------------------------------------------------------------

    def _lease_loop(self) -> None:
        while not self._stop.is_set():
            try:
                held = leases.try_acquire(self.store, LEASE, self.identity, self.lease_ttl)
            except Exception:  # noqa: BLE001 — a store hiccup must not kill the loop
                log.exception("lease renewal failed")
                held = False
            if held and not self.leading.is_set():
                log.info("controllers: this replica (%s) is the leader", self.identity)
                self.leading.set()
                self._enqueue_all()
            elif not held and self.leading.is_set():
                log.warning("controllers: lost the lease; standing by")
                self.leading.clear()
            self._stop.wait(self.lease_ttl / 3)

    # --- sources of work ------------------------------------------------------------------

    def _enqueue_all(self) -> None:
        for obj in self.store.list("Project")[0]:
            self.queue.add(("Project", obj.scope, obj.name))
        for obj in self.store.list("App")[0]:
            self.queue.add(("App", obj.scope, obj.name))

    def _feed_loop(self) -> None:
        cursor = self.store.current_rv()
        while not self._stop.is_set():
            if not self.leading.wait(1.0):
                cursor = self.store.current_rv()
                continue
            # writes of other kinds and events move the store's newest resourceVersion past the
            # cursor without giving this loop a change: wait for a write after this read instead
            seen = self.store.last_local_rv
            try:
                batch = self.store.changes_since(cursor, kinds=("App", "Project", "Secret", "Config"))
            except Gone:
                cursor = self.store.current_rv()
                self._enqueue_all()
                continue
            except Exception:  # noqa: BLE001
                log.exception("reading the change feed failed")
                self._stop.wait(1.0)
                continue
            for ch in batch:
                cursor = ch.resource_version
                meta = ch.object.get("metadata", {})
                status = ch.object.get("status") or {}
                if ch.type == "MODIFIED" and status.get("observedGeneration") == meta.get("generation") \
                        and ch.object.get("kind") == "App":
                    continue  # a status write: nothing new to act on
                if ch.kind in ("Secret", "Config"):
                    self._enqueue_users_of(ch.kind, ch.scope, ch.name)
                    continue
                self.queue.add((ch.kind, ch.scope, ch.name))
                if ch.kind == "Project" and ch.type == "DELETED":
                    self.queue.add(("Project", ch.scope, ch.name))
            if not batch:
                self.store.wait_for_change(max(cursor, seen), timeout=1.0)

    def _enqueue_users_of(self, kind: str, scope: str, name: str) -> None:
        """Apps that mount a changed Secret or Config roll out its new content."""
        field = "secrets" if kind == "Secret" else "configs"
        for app in self.store.list("App", scope=scope)[0]:
            if any(ref.get("name") == name for ref in app.spec.get(field) or []):
                self.queue.add(("App", app.scope, app.name))

    def _events_loop(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            if not self.leading.wait(1.0):
                continue
            try:
                self.engine.ping()
                if not self.engine_ok.is_set():
                    log.info("engine %s answers", self.engine.url)
                    self.engine_ok.set()
                    self._engine_changed(up=True)
                    self._enqueue_all()  # whatever happened while it was away, converge now
                backoff = 0.5
                for ev in self.engine.events(self._stop):
                    if ev.key is None or ev.action.startswith("exec_"):
                        continue
                    self.queue.add(("App", ev.key.scope, ev.key.app))
                    if self.leading.is_set():
                        self._record(self.timeline.event_for(ev))
                if self._stop.is_set():
                    return
                raise EngineUnavailable("event stream closed")
            except EngineError as e:
                if self.engine_ok.is_set():
                    log.warning("engine %s: %s; reconnecting", self.engine.url, e)
                if self.engine_ok.is_set() or self._engine_seen is None:
                    self._engine_changed(up=False)
                self.engine_ok.clear()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    # --- the timeline ---------------------------------------------------------------------

    def _record(self, event: Event | None) -> None:
        """Record a timeline event; a store hiccup costs the event, never the events loop."""
        if event is None:
            return
        try:
            self.store.record_event(event)
        except Exception:  # noqa: BLE001
            log.exception("recording event %s of %s/%s failed", event.reason, event.scope, event.name)

    def nodes(self) -> list[NodeInfo]:
        """The engine's nodes now; while it does not answer, the last known ones, marked down
        (without waiting for the engine again when this replica's events loop knows it is away)."""
        known = self._known_nodes or [NodeInfo(fallback_node_name(self.engine.url), "down")]
        down = [replace(n, status="down", containers=()) for n in known]
        if self.leading.is_set() and self._engine_seen is False:
            return down
        try:
            found = self.engine.nodes()
        except EngineError as e:
            return [] if e.reason == "NodesUnsupported" else down
        self._known_nodes = found
        return found

    def _engine_changed(self, *, up: bool) -> None:
        """Node down/up events, on transitions only: "up" only after a recorded "down" (also one
        recorded before a restart), "down" once per outage."""
        self._engine_seen = up
        if not self.leading.is_set():
            return
        names = [n.name for n in self.nodes()]  # when down: the last known, without asking the engine
        for name in names or [fallback_node_name(self.engine.url)]:
            try:
                last = self.store.last_event(CLUSTER_SCOPE, "Node", name)
            except Exception:  # noqa: BLE001
                log.exception("reading node events failed")
                continue
            was_down = last is not None and last.reason == NODE_DOWN
            if up == was_down:
                self._record(node_event(name, self.engine.url, up))

    def _prune_events(self) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = time.monotonic()
        dropped = self.store.prune_events(now() - EVENT_RETENTION)
        if dropped:
            log.info("dropped %d events older than %s", dropped, EVENT_RETENTION)

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.resync):
            if not self.leading.is_set() or not self.engine_ok.is_set():
                continue
            try:
                self._resync()
                for what in self.orphans.collect():
                    log.info("removed orphaned %s", what)
                self.store.compact_changes()
                self._prune_events()
                if self.apps.images is not None:
                    self.apps.images.check_tags(self.store)  # autoDeploy pushes whose notification was lost
            except Exception:  # noqa: BLE001
                log.exception("resync failed")

    def _resync(self) -> None:
        """Periodic safety net: reconcile every App whose engine state may differ from its status.
        One container listing covers all apps, so thousands of settled apps cost next to nothing."""
        seen = self.engine.summary()
        if seen is None:  # the engine cannot summarise: reconcile everything
            self._enqueue_all()
            return
        for obj in self.store.list("Project")[0]:
            self.queue.add(("Project", obj.scope, obj.name))
        apps = self.store.list("App")[0]
        by_scope = {(k.scope, k.app): v for k, v in seen.items()}
        for obj in apps:
            st = obj.status or {}
            engine_side = by_scope.get((obj.scope, obj.name), [])
            settled = (st.get("phase") == "Ready" and st.get("observedGeneration") == obj.generation
                       and {n for n, _ in engine_side} == {c.get("name") for c in st.get("containers") or []}
                       and all(state == "running" for _, state in engine_side))
            if not settled:
                self.queue.add(("App", obj.scope, obj.name))

    # --- workers --------------------------------------------------------------------------

    def _worker(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=1.0)
            if key is None:
                continue
            try:
                if not self.leading.is_set():
                    continue
                outcome = self._handle(key)
                self._failures.pop(key, None)
                if outcome.requeue is not None:
                    self.queue.add(key, delay=outcome.requeue)
            except Exception as e:  # noqa: BLE001 — any failure is retried with backoff
                RECONCILE_ERRORS.inc((key[0],))
                n = self._failures.get(key, 0) + 1
                self._failures[key] = n
                delay = min(0.5 * 2 ** min(n - 1, 5), 10.0)  # a bounded exponent: n grows for as long as it fails
                if isinstance(e, EngineError):
                    log.warning("reconcile %s failed (retry in %.1fs): %s", "/".join(key[1:]), delay, e)
                else:
                    log.exception("reconcile %s failed (retry in %.1fs)", "/".join(key[1:]), delay)
                self.queue.add(key, delay=delay)
            finally:
                self.queue.done(key)

    def _handle(self, key: tuple) -> Outcome:
        kind, scope, name = key
        t0 = time.monotonic()
        try:
            if kind == "App":
                return self.apps.reconcile(scope, name)
            if kind == "Project":
                return self.projects.reconcile(scope, name)
            return Outcome()
        finally:
            took = time.monotonic() - t0
            RECONCILE_SECONDS.observe((kind,), took)
            log.debug("reconciled %s %s/%s in %.3fs", kind, scope, name, took)
