"""The events timeline of a project: what happened to its apps (deploys, scale, rollbacks, exits,
OOM kills, health changes, quota refusals, alerts) and to the cluster's nodes, newest last, with a
cursor per event; `watch=1` streams new and repeated events as server-sent events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api import objects
from dockyard.api.authz import Authorizer, AuthzDep
from dockyard.api.deps import StoreDep
from dockyard.api.logsearch import parse_when
from dockyard.api.metrics import bad_param
from dockyard.api.watch import Batch, follow, sse, sse_response
from dockyard.model.cluster import event_scope
from dockyard.model.project import project_cluster
from dockyard.store.repository import CLUSTER_SCOPE, Event, EventQuery, Store, iso_time

router = APIRouter(prefix="/projects/{tenant}/{project}", tags=["events"])

MAX_LIMIT = 1000
WATCH_BATCH = 500
TYPES = ("Normal", "Warning")
_LATEST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()  # a since that still fits a datetime
MAX_CURSOR = 2**63 - 1  # cursors are 64-bit integers in the database


def event_json(e: Event) -> dict[str, Any]:
    """An event as the API shows it: `id` stays with the event; `resourceVersion`, its cursor,
    moves on with each repeat; `project` is null for cluster-level events."""
    return {"id": e.id, "resourceVersion": str(e.seq), "type": e.type, "reason": e.reason, "message": e.message,
            "kind": e.kind, "name": e.name, "project": e.scope if "/" in e.scope else None, "count": e.count,
            "firstSeen": iso_time(e.first_at or e.at), "lastSeen": iso_time(e.at)}


def parse_since(value: str | None) -> datetime | None:
    """`1h`, `30m` (that long ago), RFC 3339, -1h or unix seconds: the log search's `since`."""
    seconds = parse_when(value, "since")
    if seconds is None:
        return None
    # far off is no error (as in the log search): before 1970 is "everything", beyond a date's range "nothing"
    return datetime.fromtimestamp(min(max(seconds, 0.0), _LATEST), UTC)


def _cursor(value: str | None, param: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        cursor = int(value)
    except ValueError:
        raise bad_param(param, f"'{value}' is not a cursor (the cursor of an event, a number)") from None
    if abs(cursor) > MAX_CURSOR:
        raise bad_param(param, f"'{value}' is not a cursor (out of range)")
    return cursor


def _later(since: datetime | None, born: datetime) -> datetime:
    if born.tzinfo is None:
        born = born.replace(tzinfo=UTC)  # SQLite returns naive UTC times
    return born if since is None else max(since, born)


def _require(authz: Authorizer, tenant: str, project: str) -> None:
    authz.require("alerts.read", tenant=tenant, project=project)


@router.get("/events", operation_id="listProjectEvents",
            summary="The project's events timeline (and the cluster's node events), newest last; watch=1 streams")
def list_events(
        request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str,
        app: Annotated[str | None, Query(max_length=63, description="only events of this app")] = None,
        kind: Annotated[str | None, Query(max_length=40, description="only events of this kind (App, AlertRule, Node)")] = None,
        type: Annotated[str | None, Query(description="Normal or Warning")] = None,  # noqa: A002
        reason: Annotated[str | None, Query(max_length=64)] = None,
        since: Annotated[str | None, Query(max_length=40, description="last seen since: 1h, 30m or an RFC 3339 time")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        before: Annotated[str | None, Query(description="page backwards: events before this cursor")] = None,
        after: Annotated[str | None, Query(description="events after this cursor (oldest first)")] = None,
        resource_version: Annotated[str | None, Query(alias="resourceVersion",
                                                      description="watch: resume after this cursor (as after=)")] = None,
        watch: bool = False,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", include_in_schema=False)] = None,
) -> Any:
    _require(authz, tenant, project)
    # 404 for a project that does not exist (admins pass the check above); a project deleted and
    # made again under the same name does not inherit its predecessor's events
    proj = store.get("Project", tenant, project)
    born = proj.created_at
    if type is not None and type not in TYPES:
        raise bad_param("type", f"'{type}' is not an event type; choose Normal or Warning")
    if app is not None and kind is not None and kind != "App":
        raise bad_param("kind", "app= names an App: leave kind out or set it to App")
    scopes = [f"{tenant}/{project}", CLUSTER_SCOPE, event_scope(project_cluster(proj.spec))]
    q = EventQuery(list(dict.fromkeys(scopes)), kind="App" if app else kind, name=app, type=type,
                   reason=reason, since=_later(parse_since(since), born), after=_cursor(after, "after"),
                   before=_cursor(before, "before"), limit=limit)
    if watch:
        resume = _cursor(last_event_id, "Last-Event-ID") or _cursor(resource_version, "resourceVersion")
        if resume is not None:
            q = replace(q, after=resume)
        return _watch(request, store, q, tenant, project)
    cursor = store.current_rv()
    found = store.query_events(q)
    body: dict[str, Any] = {"items": [event_json(e) for e in found], "resourceVersion": str(cursor)}
    if q.after is None and len(found) == limit and found:
        body["nextBefore"] = str(found[0].seq)
    return body


def _watch(request: Request, store: Store, q: EventQuery, tenant: str, project: str) -> StreamingResponse:
    """Without a cursor, first the newest `limit` events; then every event written after the
    cursor, each with its cursor as the SSE id (a client resumes with Last-Event-ID). The caller's
    token and rights are checked again every second; losing them ends the stream with ERROR."""
    reading = replace(q, before=None, limit=WATCH_BATCH)

    def recheck() -> None:
        _require(objects.reauthorize(store, request), tenant, project)

    def read(cursor: int) -> Batch:
        found = store.query_events(replace(reading, after=cursor))
        return [_event_sse(e) for e in found], found[-1].seq if found else cursor, len(found) == WATCH_BATCH

    async def stream() -> AsyncIterator[str]:
        cursor = q.after
        if cursor is None:
            cursor = await run_in_threadpool(store.current_rv)
            for e in await run_in_threadpool(store.query_events, replace(q, before=None)):
                yield _event_sse(e)
        yield sse("BOOKMARK", {"type": "BOOKMARK", "resourceVersion": str(cursor)}, cursor)
        async for message in follow(request, store, cursor, read, recheck):
            yield message

    return sse_response(stream())


def _event_sse(e: Event) -> str:
    kind = "ADDED" if e.count == 1 else "MODIFIED"
    return sse(kind, {"type": kind, "object": event_json(e)}, e.seq)
