"""The resource repository: every read and write of API objects, and the change feed.

Each write runs in one transaction that bumps the global resourceVersion counter, updates the
object and appends a row to `changes`. Because the counter row is written first, writers are
serialised and change rows become visible in resourceVersion order, which is what lets a
watcher resume from a resourceVersion without missing anything.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, select, union_all, update
from sqlalchemy.exc import IntegrityError

from dockyard.model.app import AppSpec, template_hash, template_of
from dockyard.model.cluster import public_spec as cluster_public_spec
from dockyard.store import db
from dockyard.store.errors import AlreadyExists, Conflict, Gone, NotFound
from dockyard.store.selectors import Selector
from dockyard.store.tables import changes, events, resources, revisions, settings

REVISION_HISTORY = 10
# why an App's template changed, shown by `rollout history`; it describes the write that set it only
CHANGE_CAUSE = "dockyard.io/change-cause"
CHANGE_FEED_KEEP = 100_000
REPEAT_WINDOW = timedelta(hours=1)  # an event seen again within this is counted, not stored again
CLUSTER_SCOPE = ""  # the scope of cluster-level events (nodes), which every project's timeline shows


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class StoredObject:
    kind: str
    scope: str
    name: str
    uid: str
    generation: int
    resource_version: int
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    status: dict[str, Any]
    created_at: datetime

    def manifest(self) -> dict[str, Any]:
        """The object as the API shows it (kubectl-style envelope)."""
        meta: dict[str, Any] = {"name": self.name}
        if self.kind == "Project":
            meta["tenant"] = self.scope
        elif self.scope:
            meta["project"] = self.scope
        meta.update(uid=self.uid, generation=self.generation, resourceVersion=str(self.resource_version),
                    labels=self.labels, annotations=self.annotations,
                    createdAt=iso_time(self.created_at))
        spec = self.spec
        if self.kind == "Secret":
            # write-only: the encrypted value never leaves the server, not even encrypted
            spec = {k: v for k, v in spec.items() if k not in ("ciphertext", "keyId")}
        elif self.kind == "Cluster":
            spec = cluster_public_spec(spec)  # TLS keys are write-only too
        return {"apiVersion": "dockyard/v1", "kind": self.kind, "metadata": meta,
                "spec": spec, "status": self.status}

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.scope, self.name)


@dataclass
class Change:
    resource_version: int
    kind: str
    scope: str
    name: str
    type: str
    object: dict[str, Any]


@dataclass
class Revision:
    revision: int
    template_hash: str
    template: dict[str, Any]
    change_cause: str
    created_at: datetime


@dataclass
class Event:
    """A timeline entry about an object: `scope` CLUSTER_SCOPE for cluster-level ones (nodes).
    `id` stays with the row; `seq` is its last write's cursor."""

    scope: str
    kind: str
    name: str
    type: str
    reason: str
    message: str
    at: datetime = field(default_factory=now)
    count: int = 1
    first_at: datetime | None = None
    id: int = 0
    seq: int = 0


@dataclass
class EventQuery:
    """Which events to read: in any of `scopes`, optionally of one object, type or reason, last seen
    at or after `since`; `after` (cursor) reads forwards, otherwise the newest `limit` (before
    `before`, to page backwards)."""

    scopes: list[str]
    kind: str | None = None
    name: str | None = None
    type: str | None = None
    reason: str | None = None
    since: datetime | None = None
    after: int | None = None
    before: int | None = None
    limit: int = 50


def iso_time(d: datetime) -> str:
    """A stored time as the API shows it: ISO 8601 in UTC with a Z (SQLite returns naive times)."""
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return d.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _row_to_obj(row: Any) -> StoredObject:
    return StoredObject(kind=row.kind, scope=row.scope, name=row.name, uid=row.uid,
                        generation=row.generation, resource_version=row.resource_version,
                        labels=row.labels or {}, annotations=row.annotations or {},
                        spec=row.spec or {}, status=row.status or {}, created_at=row.created_at)


def encode_continue(scope: str, name: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([scope, name]).encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[str, str]:
    try:
        scope, name = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return str(scope), str(name)
    except (ValueError, TypeError):
        raise ValueError("the continue token is not one this server issued") from None


class Store:
    """Reads and writes of resources. Thread-safe: each call uses its own connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = db.make_engine(url)
        # reads never need SQLite's write lock; PostgreSQL uses one engine for both
        self.read_engine: Engine = db.make_read_engine(url) if url.startswith("sqlite") else self.engine
        # wakes watchers and controllers of this process at once; other replicas poll the feed
        self.changed = threading.Condition()
        self._last_rv = 0
        self._async_waiters: list[tuple[Any, Any]] = []
        self.keyring: Any = None  # the KeyRing for Secret values, set by the server
        self.token_cache: Any = None  # users.TokenCache, set by the API
        self.password_cache: Any = None  # registry.credentials' verified passwords, set by the registry
        # SQLite has one writer at a time; queueing writers on a lock here is fair and fast, where
        # SQLite's own busy handler sleeps with growing back-off under contention
        self._write_lock = threading.Lock() if url.startswith("sqlite") else None

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A write transaction."""
        if self._write_lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def _notify(self, rv: int) -> None:
        with self.changed:
            self._last_rv = max(self._last_rv, rv)
            self.changed.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, ev in waiters:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:
                pass  # that loop is closed

    @property
    def last_local_rv(self) -> int:
        """The newest resourceVersion this process has written (0 before its first write)."""
        return self._last_rv

    async def changed_after(self, after_rv: int, timeout: float) -> None:
        """For the event loop: return when this process writes past `after_rv`, or after `timeout`."""
        import asyncio

        ev = asyncio.Event()
        with self.changed:
            if self._last_rv > after_rv:
                return
            self._async_waiters.append((asyncio.get_running_loop(), ev))
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            pass

    def wait_for_change(self, after_rv: int, timeout: float) -> None:
        """Block until this process writes past `after_rv` or `timeout` passes (then poll)."""
        with self.changed:
            if self._last_rv <= after_rv:
                self.changed.wait(timeout)

    def migrate(self) -> None:
        db.migrate(self.engine)
        with self.tx() as conn:
            if conn.execute(select(settings.c.key).where(settings.c.key == "resource_version")).first() is None:
                try:
                    conn.execute(insert(settings).values(key="resource_version", value="", number=0))
                except IntegrityError:
                    pass

    def close(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()

    # --- settings -------------------------------------------------------------------------

    def setting(self, key: str, default: Callable[[], str]) -> str:
        """Read a setting, creating it with `default()` the first time (race-free)."""
        with self.read_engine.connect() as conn:
            row = conn.execute(select(settings.c.value).where(settings.c.key == key)).first()
        if row:
            return row.value
        try:
            with self.tx() as conn:
                conn.execute(insert(settings).values(key=key, value=default(), number=0))
        except IntegrityError:
            pass
        with self.read_engine.connect() as conn:
            return conn.execute(select(settings.c.value).where(settings.c.key == key)).scalar_one()

    # --- writes ---------------------------------------------------------------------------

    def _next_rv(self, conn: Connection) -> int:
        conn.execute(update(settings).where(settings.c.key == "resource_version")
                     .values(number=settings.c.number + 1))
        return conn.execute(select(settings.c.number).where(settings.c.key == "resource_version")).scalar_one()

    def _append_change(self, conn: Connection, obj: StoredObject, type_: str) -> None:
        conn.execute(insert(changes).values(resource_version=obj.resource_version, kind=obj.kind,
                                            scope=obj.scope, name=obj.name, type=type_,
                                            object=obj.manifest(), at=now()))

    def _fetch(self, conn: Connection, kind: str, scope: str, name: str) -> StoredObject | None:
        row = conn.execute(select(resources).where(and_(resources.c.kind == kind, resources.c.scope == scope,
                                                        resources.c.name == name))).first()
        return _row_to_obj(row) if row else None

    def create(self, kind: str, scope: str, name: str, spec: dict, *, labels: dict | None = None,
               annotations: dict | None = None, status: dict | None = None, dry_run: bool = False,
               check: Callable[[Connection, StoredObject], None] | None = None,
               change_cause: str | None = None) -> StoredObject:
        """Insert a new object; AlreadyExists if the key is taken.

        `check` runs inside the transaction before commit (parent exists, quota...) and may raise.
        An App's first revision records `change_cause`, by default its change-cause annotation.
        """
        with self.tx() as conn:
            if self._fetch(conn, kind, scope, name) is not None:
                raise AlreadyExists(f"{kind.lower()} '{_display(scope, name)}' already exists")
            ts = now()
            obj = StoredObject(kind=kind, scope=scope, name=name, uid=str(uuid.uuid4()), generation=1,
                               resource_version=0, labels=labels or {}, annotations=annotations or {},
                               spec=spec, status=status or {}, created_at=ts)
            if check:
                check(conn, obj)
            if dry_run:
                conn.rollback()
                return obj
            obj.resource_version = self._next_rv(conn)
            try:
                conn.execute(insert(resources).values(
                    kind=kind, scope=scope, name=name, uid=obj.uid, generation=1,
                    resource_version=obj.resource_version, spec_version=obj.resource_version, labels=obj.labels,
                    annotations=obj.annotations, spec=spec, status=obj.status, created_at=ts, updated_at=ts))
            except IntegrityError:
                raise AlreadyExists(f"{kind.lower()} '{_display(scope, name)}' already exists") from None
            if kind == "App":
                self._record_revision(conn, obj, obj.annotations.get(CHANGE_CAUSE, "")
                                      if change_cause is None else change_cause)
            self._append_change(conn, obj, "ADDED")
        self._notify(obj.resource_version)
        return obj

    def replace(self, kind: str, scope: str, name: str, spec: dict, *, labels: dict | None = None,
                annotations: dict | None = None, expected_rv: int | None = None, dry_run: bool = False,
                check: Callable[[Connection, StoredObject], None] | None = None,
                change_cause: str | None = None) -> StoredObject:
        """Replace spec, labels and annotations. A stale expected_rv raises Conflict (409).

        A new App revision records `change_cause`; by default the change-cause annotation if this
        write sets or changes it, else nothing: an annotation carried along unchanged (a restart's,
        a rollback's) was the cause of an earlier write, not of this one."""
        with self.tx() as conn:
            cur = self._fetch(conn, kind, scope, name)
            if cur is None:
                raise NotFound(f"{kind.lower()} '{_display(scope, name)}' not found")
            spec_version = conn.execute(select(resources.c.spec_version).where(
                resources.c.uid == cur.uid)).scalar_one()
            if expected_rv is not None and expected_rv < spec_version:
                raise Conflict(
                    f"{kind.lower()} '{_display(scope, name)}' was changed by someone else "
                    f"(you sent resourceVersion {expected_rv}, it was changed at {spec_version}); "
                    "get it again and reapply")
            new_labels = cur.labels if labels is None else labels
            new_ann = cur.annotations if annotations is None else annotations
            if spec == cur.spec and new_labels == cur.labels and new_ann == cur.annotations:
                return cur
            gen = cur.generation + (1 if spec != cur.spec else 0)
            obj = replace(cur, spec=spec, labels=new_labels, annotations=new_ann, generation=gen)
            if check:
                check(conn, obj)
            if dry_run:
                conn.rollback()
                return obj
            obj.resource_version = self._next_rv(conn)
            res = conn.execute(update(resources).where(and_(
                resources.c.uid == cur.uid, resources.c.resource_version == cur.resource_version)).values(
                spec=spec, labels=new_labels, annotations=new_ann, generation=gen,
                resource_version=obj.resource_version, spec_version=obj.resource_version, updated_at=now()))
            if res.rowcount != 1:
                raise Conflict(f"{kind.lower()} '{_display(scope, name)}' was changed concurrently; retry")
            if kind == "App":
                if change_cause is None:
                    given = new_ann.get(CHANGE_CAUSE, "")
                    change_cause = given if given != cur.annotations.get(CHANGE_CAUSE, "") else ""
                self._record_revision(conn, obj, change_cause)
            self._append_change(conn, obj, "MODIFIED")
        self._notify(obj.resource_version)
        return obj

    def update_status(self, kind: str, scope: str, name: str, status: dict,
                      uid: str | None = None) -> StoredObject | None:
        """Write an object's observed status; a no-op when unchanged or the object is gone."""
        with self.read_engine.connect() as conn:
            cur = self._fetch(conn, kind, scope, name)
        if cur is None or (uid is not None and cur.uid != uid):
            return None
        if cur.status == status:
            return cur  # the common case of a resync: no write, no lock
        with self.tx() as conn:
            cur = self._fetch(conn, kind, scope, name)
            if cur is None or (uid is not None and cur.uid != uid):
                return None
            if cur.status == status:
                return cur
            obj = replace(cur, status=status)
            obj.resource_version = self._next_rv(conn)
            conn.execute(update(resources).where(resources.c.uid == cur.uid).values(
                status=status, resource_version=obj.resource_version, updated_at=now()))
            self._append_change(conn, obj, "MODIFIED")
        self._notify(obj.resource_version)
        return obj

    def delete(self, kind: str, scope: str, name: str, *, expected_rv: int | None = None,
               dry_run: bool = False, cascade: Iterable[str] = (),
               check: Callable[[Connection, StoredObject], None] | None = None) -> StoredObject:
        """Delete an object, and with `cascade` the objects of those kinds scoped under it.
        `check` runs inside the transaction and may refuse (e.g. a tenant that still has projects)."""
        with self.tx() as conn:
            cur = self._fetch(conn, kind, scope, name)
            if cur is None:
                raise NotFound(f"{kind.lower()} '{_display(scope, name)}' not found")
            spec_version = conn.execute(select(resources.c.spec_version).where(
                resources.c.uid == cur.uid).with_for_update()).scalar_one()
            if expected_rv is not None and expected_rv < spec_version:
                raise Conflict(f"{kind.lower()} '{_display(scope, name)}' was changed by someone else; "
                               "get it again before deleting")
            if check:
                check(conn, cur)
            if dry_run:
                conn.rollback()
                return cur
            child_scope = f"{scope}/{name}" if scope else name
            for child_kind in cascade:
                rows = conn.execute(select(resources).where(and_(
                    resources.c.kind == child_kind, resources.c.scope == child_scope))).all()
                for row in rows:
                    child = _row_to_obj(row)
                    child.resource_version = self._next_rv(conn)
                    conn.execute(delete(resources).where(resources.c.uid == child.uid))
                    self._append_change(conn, child, "DELETED")
                if child_kind == "App":
                    conn.execute(delete(revisions).where(revisions.c.scope == child_scope))
            cur.resource_version = self._next_rv(conn)
            conn.execute(delete(resources).where(resources.c.uid == cur.uid))
            if kind == "App":
                conn.execute(delete(revisions).where(and_(revisions.c.scope == scope, revisions.c.app == name)))
            self._append_change(conn, cur, "DELETED")
        self._notify(cur.resource_version)
        return cur

    # --- reads ----------------------------------------------------------------------------

    def get(self, kind: str, scope: str, name: str) -> StoredObject:
        with self.read_engine.connect() as conn:
            obj = self._fetch(conn, kind, scope, name)
        if obj is None:
            raise NotFound(f"{kind.lower()} '{_display(scope, name)}' not found")
        return obj

    def exists(self, conn: Connection, kind: str, scope: str, name: str) -> bool:
        return self._fetch(conn, kind, scope, name) is not None

    def list(self, kind: str, *, scope: str | None = None, scope_prefix: str | None = None,
             selector: Selector | None = None, limit: int | None = None,
             continue_token: str | None = None, name_contains: str | None = None,
             visible: Callable[[str, str], bool] | None = None,
             ) -> tuple[list[StoredObject], str | None, int]:
        """A page of objects ordered by (scope, name), the token for the next page, and the
        resourceVersion the page was read at (to start a watch from)."""
        q = select(resources).where(resources.c.kind == kind)
        if scope is not None:
            q = q.where(resources.c.scope == scope)
        if scope_prefix is not None:
            q = q.where(resources.c.scope.like(scope_prefix.replace("%", r"\%") + "%", escape="\\"))
        if name_contains:
            q = q.where(resources.c.name.contains(name_contains, autoescape=True))
        if continue_token:
            cs, cn = decode_continue(continue_token)
            q = q.where((resources.c.scope > cs) | and_(resources.c.scope == cs, resources.c.name > cn))
        q = q.order_by(resources.c.scope, resources.c.name)
        out: list[StoredObject] = []
        more = False
        with self.read_engine.connect() as conn:
            rv = conn.execute(select(settings.c.number).where(settings.c.key == "resource_version")).scalar_one()
            filtered = selector is not None or visible is not None
            chunk = 500 if filtered else (limit + 1 if limit else None)
            offset_q = q
            while True:
                rows = conn.execute(offset_q.limit(chunk) if chunk else offset_q).all()
                for row in rows:
                    obj = _row_to_obj(row)
                    if selector and not selector.matches(obj.labels):
                        continue
                    if visible and not visible(obj.scope, obj.name):
                        continue
                    if limit and len(out) == limit:
                        more = True
                        break
                    out.append(obj)
                if more or not chunk or len(rows) < chunk:
                    break
                last = rows[-1]
                offset_q = q.where((resources.c.scope > last.scope) |
                                   and_(resources.c.scope == last.scope, resources.c.name > last.name))
        token = encode_continue(out[-1].scope, out[-1].name) if more and out else None
        return out, token, rv

    def current_rv(self) -> int:
        with self.read_engine.connect() as conn:
            return conn.execute(select(settings.c.number).where(settings.c.key == "resource_version")).scalar_one()

    def changes_since(self, rv: int, *, kinds: Iterable[str] | None = None, limit: int = 500) -> list[Change]:
        """Changes after `rv` in order. Gone if changes after `rv` were already compacted away."""
        with self.read_engine.connect() as conn:
            compacted = conn.execute(select(settings.c.number).where(settings.c.key == "compacted_below")).scalar()
            if compacted is not None and rv < compacted:
                raise Gone(f"resourceVersion {rv} is too old; list again and watch from the new one")
            q = select(changes).where(changes.c.resource_version > rv)
            if kinds:
                q = q.where(changes.c.kind.in_(list(kinds)))
            rows = conn.execute(q.order_by(changes.c.resource_version).limit(limit)).all()
        return [Change(r.resource_version, r.kind, r.scope, r.name, r.type, r.object) for r in rows]

    def compact_changes(self, keep: int = CHANGE_FEED_KEEP) -> int:
        """Drop all but the newest `keep` changes; returns how many were dropped."""
        with self.tx() as conn:
            top = conn.execute(select(func.max(changes.c.resource_version))).scalar() or 0
            below = top - keep
            if below <= 0:
                return 0
            n = conn.execute(delete(changes).where(changes.c.resource_version <= below)).rowcount
            if conn.execute(select(settings.c.key).where(settings.c.key == "compacted_below")).first():
                conn.execute(update(settings).where(settings.c.key == "compacted_below").values(number=below))
            else:
                conn.execute(insert(settings).values(key="compacted_below", value="", number=below))
            return n

    # --- app revisions --------------------------------------------------------------------

    def _record_revision(self, conn: Connection, obj: StoredObject, cause: str) -> None:
        """Record a new revision, caused by `cause`, when the App's container template changed
        (same transaction)."""
        template = template_of(AppSpec.model_validate(obj.spec))
        h = template_hash(template)
        latest = conn.execute(select(revisions).where(and_(
            revisions.c.scope == obj.scope, revisions.c.app == obj.name))
            .order_by(revisions.c.revision.desc()).limit(1)).first()
        if latest is not None and latest.template_hash == h:
            return
        if latest is not None and "imageDigest" not in latest.template and template.get("imageDigest") and \
                {k: v for k, v in template.items() if k != "imageDigest"} == latest.template:
            # the controller filled in the digest the deployed tag resolved to: the same deploy,
            # now exact (controllers/images.py), not a new revision
            conn.execute(update(revisions).where(and_(
                revisions.c.scope == obj.scope, revisions.c.app == obj.name, revisions.c.revision == latest.revision))
                .values(template_hash=h, template=template))
            return
        number = (latest.revision + 1) if latest else 1
        conn.execute(insert(revisions).values(scope=obj.scope, app=obj.name, revision=number, template_hash=h,
                                              template=template, change_cause=cause, created_at=now()))
        old = conn.execute(select(revisions.c.revision).where(and_(
            revisions.c.scope == obj.scope, revisions.c.app == obj.name))
            .order_by(revisions.c.revision.desc()).offset(REVISION_HISTORY)).scalars().all()
        if old:
            conn.execute(delete(revisions).where(and_(revisions.c.scope == obj.scope, revisions.c.app == obj.name,
                                                      revisions.c.revision.in_(old))))

    def revisions(self, scope: str, app: str) -> list[Revision]:
        with self.read_engine.connect() as conn:
            rows = conn.execute(select(revisions).where(and_(revisions.c.scope == scope, revisions.c.app == app))
                                .order_by(revisions.c.revision)).all()
        return [Revision(r.revision, r.template_hash, r.template, r.change_cause, r.created_at) for r in rows]

    # --- events ---------------------------------------------------------------------------

    def record_event(self, ev: Event) -> None:
        """Append an event; the same event (object, type, reason, message) seen again within
        REPEAT_WINDOW is counted on its row instead of stored again, even with other events in
        between (a crash loop alternates "crashed" and "ready"). Either write takes the next
        resourceVersion as the row's `seq`, so a repeat moves to the end of the timeline and its
        watchers see it (they are woken like watchers of objects)."""
        message = ev.message[:2000]
        with self.tx() as conn:
            # the counter first: its row lock serialises event writers (PostgreSQL too), so the
            # repeat found below is current and never counted twice
            seq = self._next_rv(conn)
            same = conn.execute(select(events.c.id).where(and_(
                events.c.scope == ev.scope, events.c.kind == ev.kind, events.c.name == ev.name,
                events.c.type == ev.type, events.c.reason == ev.reason, events.c.message == message,
                events.c.at >= ev.at - REPEAT_WINDOW)).order_by(events.c.seq.desc()).limit(1)).scalar()
            if same is not None:
                conn.execute(update(events).where(events.c.id == same).values(count=events.c.count + 1, at=ev.at,
                                                                              seq=seq))
            else:
                conn.execute(insert(events).values(scope=ev.scope, kind=ev.kind, name=ev.name, type=ev.type,
                                                   reason=ev.reason, message=message, count=1, first_at=ev.at,
                                                   at=ev.at, seq=seq))
        self._notify(seq)

    def last_event(self, scope: str, kind: str, name: str) -> Event | None:
        """The newest event about one object (the node watcher asks whether it last said "down")."""
        found = self.query_events(EventQuery([scope], kind=kind, name=name, limit=1))
        return found[0] if found else None

    def list_events(self, scope: str, kind: str | None = None, name: str | None = None,
                    limit: int = 50, since: datetime | None = None) -> list[Event]:
        """The latest `limit` events, oldest first; `since` leaves out older ones (an object
        deleted and made again under the same name does not inherit its predecessor's events)."""
        return self.query_events(EventQuery([scope], kind=kind, name=name, since=since, limit=limit))

    def query_events(self, q: EventQuery) -> list[Event]:
        """Events in cursor order (oldest first): the first `limit` after `q.after`, or else the
        newest `limit` (before `q.before`)."""
        order = events.c.seq if q.after is not None else events.c.seq.desc()

        def of_scope(scope: str) -> Any:
            # one scope per query walks the (scope, seq) index in order and stops at `limit`; one
            # query over several scopes would read them all and sort
            sel = select(events).where(events.c.scope == scope)
            for column, value in ((events.c.kind, q.kind), (events.c.name, q.name), (events.c.type, q.type),
                                  (events.c.reason, q.reason)):
                if value:
                    sel = sel.where(column == value)
            if q.since is not None:
                sel = sel.where(events.c.at >= q.since)
            if q.after is not None:
                sel = sel.where(events.c.seq > q.after)
            elif q.before is not None:
                sel = sel.where(events.c.seq < q.before)
            return sel.order_by(order).limit(q.limit)

        if len(q.scopes) == 1:
            sel = of_scope(q.scopes[0])
        else:
            both = union_all(*(select(of_scope(sc).subquery()) for sc in q.scopes)).subquery()
            sel = select(both).order_by(both.c.seq if q.after is not None else both.c.seq.desc()).limit(q.limit)
        with self.read_engine.connect() as conn:
            rows = conn.execute(sel).all()
        if q.after is None:
            rows.reverse()
        return [Event(r.scope, r.kind, r.name, r.type, r.reason, r.message, r.at, r.count, r.first_at, r.id, r.seq)
                for r in rows]

    def prune_events(self, older_than: datetime) -> int:
        """Delete events last seen before `older_than`; returns how many."""
        with self.tx() as conn:
            return conn.execute(delete(events).where(events.c.at < older_than)).rowcount


def _display(scope: str, name: str) -> str:
    return f"{scope}/{name}" if scope else name
