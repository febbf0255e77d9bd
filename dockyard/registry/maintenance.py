"""Scheduled registry housekeeping: tag retention for every project with rules (every
`$DOCKYARD_REGISTRY_RETENTION_INTERVAL`, default 1h) and garbage collection (every
`$DOCKYARD_REGISTRY_GC_INTERVAL`, default 24h; `off` disables either). Only the server holding the
controllers' lease acts, like the controllers; the on-demand routes call the same functions."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard.model.quantity import parse_duration
from dockyard.registry import retention
from dockyard.registry.client import RegistryClient
from dockyard.registry.events import record_deleted
from dockyard.registry.gc import GarbageCollector, GcBusy
from dockyard.registry.images import ImageRecords
from dockyard.store.repository import Event, Store

if TYPE_CHECKING:
    from dockyard.registry.service import RegistryService

log = logging.getLogger(__name__)
TICK = 30.0
FORGET_EVERY = 3600.0  # seconds between prunes of applied notification ids


def interval_from_env(name: str, default: str) -> float | None:
    """Seconds from a duration in the environment ("1h", "90s"); None for "off"."""
    text = os.environ.get(name, default).strip()
    if text.lower() in ("off", "0", ""):
        return None
    try:
        return parse_duration(text)
    except ValueError as e:
        raise ValueError(f"${name}: {e}") from None


def apply_retention(store: Store, service: RegistryService, client: RegistryClient, tenant: str, project: str,
                    *, dry_run: bool, actor: str = "retention") -> dict:
    """Plan the project's retention and, unless `dry_run`, delete what it lets go."""
    plan = retention.plan_project(store, service.settings, tenant, project)
    delete = plan.delete
    failed: list[str] = []
    if delete and not dry_run:
        gone, failed = retention.apply(client, delete, actor)
        for v in gone:  # each deleted tag's ImageDeleted, once, whether or not the notification came first
            record_deleted(store, service, v.repository, v.digest, actor)
        if gone:
            names = ", ".join(f"{v.repository.split('/', 2)[2]}:{v.tag}" for v in gone[:20])
            more = f" and {len(gone) - 20} more" if len(gone) > 20 else ""
            store.record_event(Event(f"{tenant}/{project}", "Project", project, "Normal", "RetentionApplied",
                                     f"{actor} deleted {len(gone)} tag(s) by the retention policy: {names}{more}"))
    return {"dryRun": dry_run, "deleted" if not dry_run else "wouldDelete": [v.public() for v in delete],
            "protected": [v.public() for v in plan.protected], "kept": [v.public() for v in plan.kept],
            "failed": failed}


class RegistryMaintenance:
    def __init__(self, store: Store, service: RegistryService, client: RegistryClient, gc: GarbageCollector,
                 leading: Callable[[], bool]) -> None:
        self.store = store
        self.service = service
        self.client = client
        self.gc = gc
        self.leading = leading
        self.retention_every = interval_from_env("DOCKYARD_REGISTRY_RETENTION_INTERVAL", "1h")
        self.gc_every = interval_from_env("DOCKYARD_REGISTRY_GC_INTERVAL", "24h")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="registry-maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        last_retention = last_gc = last_forget = time.monotonic()
        tick = min([TICK, *(x for x in (self.retention_every, self.gc_every) if x)])
        while not self._stop.wait(tick):
            if not self.leading():
                continue
            now = time.monotonic()
            if now - last_forget >= FORGET_EVERY:
                last_forget = now
                self._forget_events()
            if self.retention_every and now - last_retention >= self.retention_every:
                last_retention = now
                self.retention_round()
            if self.gc_every and now - last_gc >= self.gc_every and self.service.runs_registry:
                last_gc = now
                try:
                    self.gc.run()
                except GcBusy:
                    pass
                except Exception:  # noqa: BLE001 — the next round tries again
                    log.exception("scheduled registry garbage collection failed")

    def _forget_events(self) -> None:
        try:
            ImageRecords(self.store).forget_events()
        except Exception:  # noqa: BLE001 — a store hiccup; the next round tries again
            log.exception("forgetting old registry notification ids failed")

    def retention_round(self) -> int:
        """Apply every project's retention rules; returns how many tags went."""
        gone = 0
        for project in self.store.list("Project")[0]:
            if not (project.spec.get("registry") or {}).get("retention"):
                continue
            try:
                report = apply_retention(self.store, self.service, self.client, project.scope, project.name,
                                         dry_run=False)
                gone += len(report["deleted"]) - len(report["failed"])
            except Exception:  # noqa: BLE001 — one project's failure must not stop the others
                log.exception("retention of project %s/%s failed", project.scope, project.name)
        return gone
