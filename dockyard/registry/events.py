"""The registry's push and delete notifications: recorded as image metadata (who pushed what when),
told to the project's timeline, and turned into auto-deploys.

The registry posts envelopes `{"events": [...]}` and retries one until it is acknowledged; each
event is applied once, by its id, in the same transaction as the row it writes. What follows a
committed event (timeline, usage cache, auto-deploy) is best effort: the controllers' periodic tag
check catches an auto-deploy a crash between the two left out.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from dockyard.model.quantity import approx_memory
from dockyard.registry import autodeploy
from dockyard.registry.client import MANIFEST_TYPES, RegistryClient, RegistryError
from dockyard.registry.images import ImageRecords, TagRecord
from dockyard.store.repository import Event, Store, now

if TYPE_CHECKING:
    from dockyard.registry.service import RegistryService

log = logging.getLogger(__name__)
_FRACTION = re.compile(r"(\.\d{6})\d+")


class MalformedEnvelope(ValueError):
    pass


@dataclass(frozen=True)
class Notification:
    id: str
    action: str       # push | delete
    repository: str   # tenant/project/name
    tag: str | None
    digest: str
    media_type: str
    size: int         # of the manifest itself; the image's size is read from the manifest
    actor: str
    at: datetime


def _when(text: str | None) -> datetime:
    if not text:
        return now()
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
    except ValueError:
        return now()


def parse_envelope(body: bytes) -> list[Notification]:
    """The manifest pushes and deletes of an envelope; blob events and pulls are left out."""
    try:
        doc = json.loads(body)
        raw = doc["events"]
        if not isinstance(raw, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise MalformedEnvelope("expected a JSON object with an 'events' list") from None
    out = []
    for ev in raw:
        if not isinstance(ev, dict):
            continue
        target = ev.get("target") or {}
        action = ev.get("action")
        repo, digest = target.get("repository"), target.get("digest")
        if action not in ("push", "delete") or not repo or not digest or not ev.get("id"):
            continue
        media = target.get("mediaType") or ""
        if action == "push" and media not in MANIFEST_TYPES:
            continue  # a blob
        out.append(Notification(str(ev["id"]), action, repo, target.get("tag") or None, digest, media,
                                int(target.get("size") or 0), (ev.get("actor") or {}).get("name") or "",
                                _when(ev.get("timestamp"))))
    return out


class EventReceiver:
    """Applies notifications for `service` (its settings name the registry's host; its usage cache,
    made when the registry starts, is dropped after a push or a delete). `client` reads image sizes
    (None: the manifest's own size is kept)."""

    def __init__(self, store: Store, service: RegistryService, *, client: RegistryClient | None = None) -> None:
        self.store = store
        self.service = service
        self.records = ImageRecords(store)
        self.client = client

    def _invalidate(self, tenant: str, project: str) -> None:
        if self.service.usage is not None:
            self.service.usage.invalidate(tenant, project)

    def receive(self, notes: list[Notification]) -> int:
        """Apply what is new; returns how many notifications were applied (not repeats)."""
        applied = 0
        for n in notes:
            parts = n.repository.split("/")
            if len(parts) < 3:
                continue  # not a project repository: Dockyard's token service never grants one
            tags = self._apply(n)
            if tags is not None:
                applied += 1
                self._after(n, parts[0], parts[1], tags)
        return applied

    def _apply(self, n: Notification) -> list[str] | None:
        """Record a notification; the tags it concerns, or None when there is nothing new."""
        size, media = n.size, n.media_type
        usage = self.service.usage
        local = usage.image_size(n.digest) if n.action == "push" and usage is not None else None
        if local is not None:
            size = local  # read from the registry's storage: no request, no token (pushes/s count)
        elif n.action == "push" and self.client is not None:
            try:
                m = self.client.manifest(n.repository, n.digest)
                if m is not None:
                    size, media = m.size, m.media_type
            except RegistryError as e:
                log.warning("reading %s@%s for its size failed: %s", n.repository, n.digest, e)
        with self.store.tx() as conn:
            if not self.records.first_time(conn, n.id):
                return None
            if n.action == "delete":
                return self.records.record_delete(conn, n.repository, n.digest, n.tag)
            if n.tag is None:
                return None  # a platform manifest of an index, pushed by digest: no tag to record
            newer = not self.records.record_push(conn, TagRecord(n.repository, n.tag, n.digest, size, media, n.at,
                                                                 n.actor or "unknown"))
            return None if newer else [n.tag]

    def _after(self, n: Notification, tenant: str, project: str, tags: list[str]) -> None:
        scope, name = f"{tenant}/{project}", n.repository.split("/", 2)[2]
        try:
            self._invalidate(tenant, project)
            if n.action == "push":
                rec = self.records.tag(n.repository, n.tag or "")
                size = f", {approx_memory(rec.size)}" if rec else ""
                self.store.record_event(Event(scope, "Image", name[:63], "Normal", "ImagePushed",
                                              f"{n.actor or 'unknown'} pushed {name}:{n.tag} ({n.digest}{size})"))
                cause = autodeploy.push_cause(n.tag or "", n.actor)
                for app in autodeploy.apps_following(self.store, self.service.settings, n.repository, n.tag or ""):
                    autodeploy.roll_out_digest(self.store, app, n.digest, cause)
            elif tags:  # [] when the API's or retention's own record of the delete came first
                deleted_events(self.store, n.repository, n.digest, tags, n.actor or "unknown")
        except Exception:  # noqa: BLE001 — the event is recorded; the resync catches a missed deploy
            log.exception("after the registry's %s of %s", n.action, n.repository)


def record_deleted(store: Store, service: RegistryService | None, repository: str, digest: str, actor: str) -> list[str]:
    """Record a manifest delete Dockyard made for `actor` (a user, or the retention policy): its
    tags are marked deleted and the timeline gets one ImageDeleted per tag. The registry's
    notification of the same delete races with this; whichever marks the rows first writes the
    events, the other finds nothing (ImageRecords.record_delete), and both name `actor`, the
    subject of the delete's token. Returns the tags this call recorded."""
    with store.tx() as conn:
        tags = ImageRecords.record_delete(conn, repository, digest, None)
    if service is not None and service.usage is not None:
        tenant, project = repository.split("/")[:2]
        service.usage.invalidate(tenant, project)
    deleted_events(store, repository, digest, tags, actor)
    return tags


def deleted_events(store: Store, repository: str, digest: str, tags: list[str], actor: str) -> None:
    """One ImageDeleted per tag (one manifest delete takes every tag pointing to it)."""
    tenant, project, name = repository.split("/", 2)
    for tag in tags:
        store.record_event(Event(f"{tenant}/{project}", "Image", name[:63], "Normal", "ImageDeleted",
                                 f"{actor} deleted {name}:{tag} ({digest})"))
