"""The audit log: every mutating request and every login, hash-chained so that an edit or a
deletion in the store is detected by `verify`."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select, update

from dockyard.store.repository import Store, now
from dockyard.store.tables import audit_log, settings

GENESIS = "0" * 64
HEAD = "audit_head"


@dataclass
class AuditEntry:
    at: datetime
    user: str
    source: str
    method: str
    path: str
    action: str
    tenant: str
    project: str
    object: str
    outcome: int
    detail: str
    id: int | None = None
    prev_hash: str = ""
    hash: str = ""

    def digest(self, prev: str) -> str:
        d = asdict(self)
        for k in ("id", "prev_hash", "hash"):
            d.pop(k)
        at = self.at if self.at.tzinfo else self.at.replace(tzinfo=UTC)
        d["at"] = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        blob = prev + json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def append(store: Store, e: AuditEntry) -> None:
    """Append one entry; the head row is updated first, which serialises appenders."""
    e.at = e.at or now()
    with store.tx() as conn:
        conn.execute(update(settings).where(settings.c.key == HEAD).values(number=settings.c.number + 1))
        head = conn.execute(select(settings.c.value).where(settings.c.key == HEAD)).scalar()
        if head is None:
            conn.execute(insert(settings).values(key=HEAD, value=GENESIS, number=1))
            head = GENESIS
        e.prev_hash = head
        e.hash = e.digest(head)
        conn.execute(insert(audit_log).values(
            at=e.at, user=e.user[:63], source=e.source[:64], method=e.method, path=e.path[:2000], action=e.action[:64],
            tenant=e.tenant, project=e.project, object=e.object[:500], outcome=e.outcome, detail=e.detail[:1000],
            prev_hash=e.prev_hash, hash=e.hash))
        conn.execute(update(settings).where(settings.c.key == HEAD).values(value=e.hash))


def query(store: Store, *, tenants: set[str] | None = None, tenant: str | None = None, project: str | None = None,
          user: str | None = None, limit: int = 100, before_id: int | None = None,
          action: str | None = None) -> list[AuditEntry]:
    """The newest `limit` entries that match (with `before_id`: the newest older than that
    entry), returned oldest first. `action` matches a part of the action."""
    q = select(audit_log)
    if tenants is not None:
        q = q.where(audit_log.c.tenant.in_(sorted(tenants)))
    if tenant:
        q = q.where(audit_log.c.tenant == tenant)
    if project:
        q = q.where(audit_log.c.project == project)
    if user:
        q = q.where(audit_log.c.user == user)
    if before_id:
        q = q.where(audit_log.c.id < before_id)
    if action:
        q = q.where(audit_log.c.action.contains(action, autoescape=True))
    with store.read_engine.connect() as conn:
        rows = conn.execute(q.order_by(audit_log.c.id.desc()).limit(limit)).all()
    return [_entry(r) for r in reversed(rows)]


def _entry(r: object) -> AuditEntry:
    return AuditEntry(at=r.at, user=r.user, source=r.source, method=r.method, path=r.path, action=r.action,  # type: ignore[attr-defined]
                      tenant=r.tenant, project=r.project, object=r.object, outcome=r.outcome,  # type: ignore[attr-defined]
                      detail=r.detail, id=r.id, prev_hash=r.prev_hash, hash=r.hash)  # type: ignore[attr-defined]


@dataclass
class Verification:
    ok: bool
    entries: int
    broken_at: int | None = None
    reason: str = ""


def verify(store: Store) -> Verification:
    """Recompute the chain: each entry's hash, each link to the previous one, and the head."""
    prev = GENESIS
    n = 0
    last_id = 0
    with store.read_engine.connect() as conn:
        head = conn.execute(select(settings.c.value).where(settings.c.key == HEAD)).scalar()
        for r in conn.execute(select(audit_log).order_by(audit_log.c.id)):
            e = _entry(r)
            n += 1
            if e.prev_hash != prev:
                return Verification(False, n, e.id, f"entry {e.id} does not follow entry {last_id} "
                                                     "(an entry before it was deleted or changed)")
            if e.digest(prev) != e.hash:
                return Verification(False, n, e.id, f"entry {e.id} was changed after it was written")
            prev, last_id = e.hash, e.id or 0
    if (head or GENESIS) != prev:
        return Verification(False, n, None, "the newest entries were deleted (the chain ends before its head)")
    return Verification(True, n)


