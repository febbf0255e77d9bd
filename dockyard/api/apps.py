"""App sub-resources: scale, rollout history and undo, logs, events."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from dockyard.api import logsearch, objects
from dockyard.api.authz import AuthzDep
from dockyard.api.change_events import RESTART_CAUSE, ROLLBACK_CAUSE
from dockyard.api.cluster_rules import cluster_writable
from dockyard.api.deps import LogRecord, LogsDep, StoreDep
from dockyard.api.problems import Problem
from dockyard.logs.store import ascii_lower
from dockyard.model.app import AppSpec, template_hash, template_of, without_restart
from dockyard.model.meta import Schema
from dockyard.model.quantity import parse_duration
from dockyard.store.errors import Conflict
from dockyard.store.repository import CHANGE_CAUSE, now

router = APIRouter(prefix="/projects/{tenant}/{project}/apps/{name}", tags=["apps"])


class ScaleRequest(Schema):
    replicas: int = Field(ge=0, le=1000)


class RollbackRequest(Schema):
    revision: int | None = Field(default=None, ge=1, description="default: the revision before the current one")


# scale, rollback and restart reach the project's engine: refused while its cluster cannot apply them
ENGINE_WRITE = [Depends(cluster_writable)]


@router.post("/scale", operation_id="scaleApp", summary="Set the number of replicas", dependencies=ENGINE_WRITE)
def scale(store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str, body: ScaleRequest) -> dict:
    return objects.patch(store, authz, "App", {"spec": {"replicas": body.replicas}}, scope=f"{tenant}/{project}",
                         name=name, dry_run=False)


@router.get("/revisions", operation_id="listAppRevisions", summary="Rollout history (the last 10 revisions)")
def revisions(store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str) -> dict:
    scope = f"{tenant}/{project}"
    authz.require("app.read", tenant=tenant, project=project, missing=f"app '{scope}/{name}' not found")
    app = store.get("App", scope, name)
    current = app.status.get("revision")
    items = [{"revision": r.revision, "templateHash": r.template_hash, "image": r.template.get("image"),
              "imageDigest": r.template.get("imageDigest"),
              "changeCause": r.change_cause, "createdAt": r.created_at.isoformat(),
              "current": r.revision == current, "template": r.template}
             for r in store.revisions(scope, name)]
    return {"items": items}


@router.post("/rollback", operation_id="rollbackApp", summary="Roll back to an earlier revision (undo)",
             dependencies=ENGINE_WRITE)
def rollback(store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str,
             body: RollbackRequest | None = None) -> dict:
    """Restore an earlier revision's container template. Revisions that differ from the current
    one only by a restart do not count as earlier configurations, and `restartedAt` is kept as it
    is (like `replicas`): a rollback neither undoes a restart nor counts as one."""
    scope = f"{tenant}/{project}"
    authz.require("app.write", tenant=tenant, project=project, missing=f"app '{scope}/{name}' not found")
    app = store.get("App", scope, name)
    history = store.revisions(scope, name)
    current = template_hash(without_restart(template_of(AppSpec.model_validate(app.spec))))
    if body and body.revision is not None:
        target = next((r for r in history if r.revision == body.revision), None)
        if target is None:
            raise Problem(404, f"app {scope}/{name} has no revision {body.revision} "
                               f"(known: {', '.join(str(r.revision) for r in history)})")
    else:
        earlier = [r for r in history if template_hash(without_restart(r.template)) != current]
        if not earlier:
            raise Conflict(f"app {scope}/{name} has no earlier revision to roll back to")
        target = earlier[-1]
    spec = without_restart(target.template)
    for keep in ("replicas", "strategy", "dependsOn", "restartedAt"):
        if keep in app.spec:
            spec[keep] = app.spec[keep]
    cause = f"{ROLLBACK_CAUSE}{target.revision}"
    manifest = app.manifest()
    manifest["spec"] = spec
    manifest["metadata"]["annotations"] = {**app.annotations, CHANGE_CAUSE: cause}
    # the cause is given for this write only: the annotation stays, later changes are not "rollbacks"
    return objects.replace(store, authz, "App", manifest, scope=scope, name=name, dry_run=False, change_cause=cause)


@router.post("/restart", operation_id="restartApp",
             summary="Replace every replica by a rolling update (zero downtime with the default strategy)",
             dependencies=ENGINE_WRITE)
def restart(store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str) -> dict:
    """Set `spec.restartedAt` to now: the template changes, so the reconciler rolls every
    replica as it would for a new image, under the App's strategy."""
    stamp = now().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = {"spec": {"restartedAt": stamp}, "metadata": {"annotations": {CHANGE_CAUSE: RESTART_CAUSE}}}
    # the cause is given for this write only: the annotation stays, later changes are not "restarts"
    return objects.patch(store, authz, "App", body, scope=f"{tenant}/{project}", name=name, dry_run=False,
                         change_cause=RESTART_CAUSE)


@router.get("/events", operation_id="listAppEvents", summary="Recent events of the app")
def events(store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str,
           limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:
    scope = f"{tenant}/{project}"
    authz.require("app.read", tenant=tenant, project=project, missing=f"app '{scope}/{name}' not found")
    app = store.get("App", scope, name)
    found = store.list_events(scope, "App", name, limit=limit, since=app.created_at)
    return {"items": [{"type": e.type, "reason": e.reason, "message": e.message,
                       "at": e.at.isoformat(), "count": e.count} for e in found]}


@router.get("/logs", operation_id="getAppLogs",
            summary="Logs of every replica; follow streams them; grep searches the stored history (across "
                    "replaced containers) or, with follow, filters the live stream",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {}, "application/x-ndjson": {}}}})
def logs(request: Request, store: StoreDep, provider: LogsDep, authz: AuthzDep, tenant: str, project: str,
         name: str, follow: bool = False, tail: Annotated[int | None, Query(ge=0, le=100_000)] = None,
         since: Annotated[str | None, Query(max_length=32, description="e.g. 10m, 1h")] = None,
         timestamps: bool = False,
         format: Annotated[str, Query(pattern="^(text|ndjson)$")] = "text",
         grep: logsearch.GrepQ = None) -> StreamingResponse:
    scope = f"{tenant}/{project}"
    authz.require("app.logs", tenant=tenant, project=project, missing=f"app '{scope}/{name}' not found")
    born = store.get("App", scope, name).created_at
    stop = threading.Event()
    lines: Iterator[LogRecord]
    if grep and not follow:
        found = logsearch.search(request, scope, app=name, grep=grep, since=since, until=None,
                                 limit=1000 if tail is None else max(tail, 1), born=born)
        lines = iter([LogRecord(e.replica, e.container, e.text, logsearch.rfc3339(e.ts) if timestamps else None)
                      for e in found.items][:tail])
    else:
        since_ts = None
        if since:
            try:
                since_ts = time.time() - parse_duration(since)
            except ValueError as e:
                raise Problem(400, f"since: {e}") from None
        lines = provider.app_logs(tenant, project, name, follow=follow, tail=tail, since=since_ts,
                                  timestamps=timestamps, stop=stop)
        if grep:
            logsearch.check_search(grep, None, None)
            needle = ascii_lower(grep)
            lines = (rec for rec in lines if needle in ascii_lower(rec.text))

    def render() -> Iterator[bytes]:
        try:
            for rec in lines:
                if format == "ndjson":
                    d: dict[str, Any] = {"replica": rec.replica, "container": rec.container, "line": rec.text}
                    if rec.timestamp:
                        d["time"] = rec.timestamp
                    yield (json.dumps(d) + "\n").encode()
                else:
                    ts = f"{rec.timestamp} " if rec.timestamp else ""
                    yield f"[{name}-{rec.replica}] {ts}{rec.text}\n".encode()
        finally:
            stop.set()

    async def stream() -> AsyncIterator[bytes]:
        # Starlette would iterate render() in a worker thread that a quiet followed app keeps waiting
        # for its next line, long after the client left (and past a server stop). Here the wait is
        # abandoned when the response is cancelled, and `stop` ends the engine stream behind it.
        it = render()
        try:
            while (chunk := await anyio.to_thread.run_sync(next, it, None, abandon_on_cancel=True)) is not None:
                yield chunk
        finally:
            stop.set()

    media = "application/x-ndjson" if format == "ndjson" else "text/plain; charset=utf-8"
    return StreamingResponse(stream(), media_type=media)
