"""The audit trail: a middleware that records every mutating request and every login, and the
routes that read and verify it."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from dockyard.api.asgi import StatusRecorder
from dockyard.api.authz import AuthzDep, admin_only
from dockyard.api.deps import StoreDep
from dockyard.api.problems import Problem
from dockyard.store import audit
from dockyard.store.repository import now

log = logging.getLogger(__name__)
router = APIRouter(tags=["audit"])
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
NOT_AUDITED = {"/api/v1/compose/convert"}  # pure conversions change nothing


class AuditTrail:
    """ASGI middleware: after a mutating request is answered, append its audit entry."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") not in MUTATING or not path.startswith("/api/v1/") \
                or path in NOT_AUDITED:
            await self.app(scope, receive, send)
            return
        recorder = StatusRecorder(send)
        try:
            await self.app(scope, receive, recorder)
        finally:
            try:
                entry = _entry(scope, recorder.status)
                await run_in_threadpool(audit.append, self.app.state.store, entry)
            except Exception:  # noqa: BLE001 — the audit must never turn a done request into an error
                log.exception("could not write an audit entry for %s %s", scope.get("method"), path)


def _entry(scope: dict, status: int) -> audit.AuditEntry:
    state = scope.get("state") or {}
    user = state.get("user")
    name = user.name if user is not None else state.get("audit_user") or "(anonymous)"
    params = scope.get("path_params") or {}
    template = getattr(scope.get("route"), "path", scope.get("path", ""))
    tenant = params.get("tenant", "")
    project = params.get("project", "")
    if template.startswith("/api/v1/tenants/{name}"):
        tenant = params.get("name", "")
    elif template.startswith("/api/v1/projects/{tenant}/{name}"):
        project = params.get("name", "")
    client = scope.get("client")
    path = scope.get("path", "")
    return audit.AuditEntry(at=now(), user=name, source=client[0] if client else "", method=scope["method"],
                            path=path, action=f"{scope['method']} {template.removeprefix('/api/v1')}", tenant=tenant,
                            project=project, object=path.removeprefix("/api/v1"), outcome=status,
                            detail=state.get("audit_detail", ""))


def record(request: Any, status: int, detail: str) -> None:
    """Append an entry for a request the middleware does not record: a read that hands out
    credentials (a swarm's join tokens). Blocking."""
    request.state.audit_detail = detail
    audit.append(request.app.state.store, _entry(request.scope, status))


def _show(e: audit.AuditEntry) -> dict:
    return {"id": e.id, "at": e.at.isoformat(), "user": e.user, "source": e.source, "action": e.action,
            "object": e.object, "tenant": e.tenant or None, "project": e.project or None, "outcome": e.outcome,
            "detail": e.detail or None}


@router.get("/audit", operation_id="listAudit",
            summary="Audit entries: admins see all, tenant owners their tenant's",
            description="The newest `limit` matching entries, listed oldest first. For the page before "
                        "them, pass `before` = the `nextBefore` of this answer (null when there is none).")
def audit_list(store: StoreDep, authz: AuthzDep,
               tenant: Annotated[str | None, Query(max_length=63)] = None,
               project: Annotated[str | None, Query(max_length=130, description="TENANT/PROJECT")] = None,
               user: Annotated[str | None, Query(max_length=63)] = None,
               action: Annotated[str | None, Query(max_length=64, description="actions containing this, "
                                                   "e.g. EXEC or /apps/{name}/restart")] = None,
               before: Annotated[int | None, Query(ge=1, le=2**62, description="only entries with a smaller id")] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    tenants = None
    pname = None
    if project:
        tenant, _, pname = project.partition("/")
    if not authz.is_admin:
        if authz.user.token_project:
            raise Problem(403, "a project-scoped token cannot read the audit log (it needs a tenant owner)")
        owned = {b.tenant for b in authz.bindings if b.project == "" and authz.tenant_role(b.tenant) == "owner"}
        if tenant:
            authz.require("audit.read", tenant=tenant)
        tenants = owned
    # one more than asked for tells whether an older page exists
    entries = audit.query(store, tenants=tenants, tenant=tenant, project=pname, user=user, limit=limit + 1,
                          before_id=before, action=action)
    more = len(entries) > limit
    entries = entries[-limit:]
    return {"items": [_show(e) for e in entries], "nextBefore": entries[0].id if more and entries else None}


@router.post("/audit/verify", operation_id="verifyAudit", dependencies=[admin_only("audit.read")],
             summary="Recompute the hash chain of the whole audit log")
def audit_verify(store: StoreDep) -> dict:
    v = audit.verify(store)
    return {"ok": v.ok, "entries": v.entries, "brokenAt": v.broken_at, "reason": v.reason or None}


