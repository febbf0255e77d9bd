"""What Dockyard remembers about the images in its registry: per repository and tag, the digest,
size and media type, and who pushed it when (the registry keeps none of the last two). Rows are
written from the registry's notifications (registry/events.py), at most once per notification id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.store.repository import Store, now
from dockyard.store.tables import images, registry_events

EVENT_MEMORY = timedelta(days=2)  # the registry gives up retrying long before this


@dataclass(frozen=True)
class TagRecord:
    repository: str
    tag: str
    digest: str
    size: int
    media_type: str
    pushed_at: datetime
    pushed_by: str

    @property
    def name(self) -> str:
        """The repository without its tenant/project prefix."""
        return self.repository.split("/", 2)[2]

    def public(self) -> dict:
        return {"tag": self.tag, "digest": self.digest, "size": self.size, "mediaType": self.media_type,
                "pushedAt": _iso(self.pushed_at), "pushedBy": self.pushed_by}


def _iso(d: datetime) -> str:
    return d.isoformat().replace("+00:00", "Z")


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=now().tzinfo)


def _record(row: object) -> TagRecord:
    return TagRecord(row.repository, row.tag, row.digest, row.size, row.media_type,  # type: ignore[attr-defined]
                     _aware(row.pushed_at), row.pushed_by)  # type: ignore[attr-defined]


class ImageRecords:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- writes (inside the caller's transaction, with the event id) -----------------------

    @staticmethod
    def first_time(conn: Connection, event_id: str) -> bool:
        """Remember a notification id; False when it was applied before (a retry)."""
        if conn.execute(select(registry_events.c.id).where(registry_events.c.id == event_id)).first():
            return False
        try:
            with conn.begin_nested():
                conn.execute(insert(registry_events).values(id=event_id, received_at=now()))
        except IntegrityError:  # another server took the same retry at the same moment
            return False
        return True

    @staticmethod
    def record_push(conn: Connection, rec: TagRecord) -> bool:
        """The tag now points to `rec.digest`; False when a newer push of the tag is already known
        (notifications can arrive out of order when the registry retries)."""
        cur = conn.execute(select(images).where(and_(images.c.repository == rec.repository,
                                                     images.c.tag == rec.tag))).first()
        values = {"digest": rec.digest, "size": rec.size, "media_type": rec.media_type,
                  "pushed_at": rec.pushed_at, "pushed_by": rec.pushed_by, "deleted": False}
        if cur is None:
            conn.execute(insert(images).values(repository=rec.repository, tag=rec.tag, **values))
            return True
        if _aware(cur.pushed_at) > rec.pushed_at:
            return False
        conn.execute(update(images).where(images.c.id == cur.id).values(**values))
        return True

    @staticmethod
    def record_delete(conn: Connection, repository: str, digest: str, tag: str | None) -> list[str]:
        """The manifest `digest` (or only `tag`) was deleted; returns the tags that went with it.
        One statement (UPDATE … RETURNING): of the API's or retention's own record of a delete and
        the registry's notification of it, racing in two threads, exactly one gets the tags (and
        writes the timeline event), the other [] (PostgreSQL re-checks `deleted` after the lock)."""
        cond = and_(images.c.repository == repository, images.c.deleted.is_(False),
                    images.c.tag == tag if tag else images.c.digest == digest)
        return sorted(conn.execute(update(images).where(cond).values(deleted=True).returning(images.c.tag)).scalars())

    def forget_events(self, older_than: timedelta = EVENT_MEMORY) -> int:
        with self.store.tx() as conn:
            return conn.execute(delete(registry_events).where(registry_events.c.received_at < now() - older_than)
                                ).rowcount or 0

    # --- reads ------------------------------------------------------------------------------

    def tags(self, repository: str) -> list[TagRecord]:
        """The repository's known tags, newest push first."""
        with self.store.read_engine.connect() as conn:
            rows = conn.execute(select(images).where(and_(images.c.repository == repository,
                                                          images.c.deleted.is_(False)))
                                .order_by(images.c.pushed_at.desc(), images.c.tag)).all()
        return [_record(r) for r in rows]

    def project_tags(self, tenant: str, project: str) -> list[TagRecord]:
        """Every known tag of the project's repositories, newest push first."""
        prefix = f"{tenant}/{project}/"
        with self.store.read_engine.connect() as conn:
            rows = conn.execute(select(images).where(and_(images.c.repository.startswith(prefix, autoescape=True),
                                                          images.c.deleted.is_(False)))
                                .order_by(images.c.pushed_at.desc(), images.c.tag)).all()
        return [_record(r) for r in rows]

    def tag(self, repository: str, tag: str) -> TagRecord | None:
        with self.store.read_engine.connect() as conn:
            row = conn.execute(select(images).where(and_(images.c.repository == repository, images.c.tag == tag,
                                                         images.c.deleted.is_(False)))).first()
        return _record(row) if row else None
