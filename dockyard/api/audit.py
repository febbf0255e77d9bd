"""The audit trail: a middleware that records every mutating request and every login, and the
routes that read and verify it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from dockyard.api.authz import AuthzDep, admin_only
from dockyard.api.deps import StoreDep
from dockyard.store import audit
from dockyard.store.repository import now

log = logging.getLogger(__name__)
router = APIRouter(tags=["audit"])
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
NOT_AUDITED = {"/api/v1/compose/convert"}  # pure conversions change nothing


async def audit_middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    if request.method not in MUTATING or not request.url.path.startswith("/api/v1/") or \
            request.url.path in NOT_AUDITED:
        return await call_next(request)
    response = await call_next(request)
    try:
        entry = _entry(request, response)
        await run_in_threadpool(audit.append, request.app.state.store, entry)
    except Exception:  # noqa: BLE001 — the audit must never turn a done request into an error
        log.exception("could not write an audit entry for %s %s", request.method, request.url.path)
    return response


def _entry(request: Request, response: Response) -> audit.AuditEntry:
    user = getattr(request.state, "user", None)
    name = user.name if user is not None else getattr(request.state, "audit_user", "") or "(anonymous)"
    params = request.path_params
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    tenant = params.get("tenant", "")
    project = params.get("project", "")
    if template.startswith("/api/v1/tenants/{name}"):
        tenant = params.get("name", "")
    elif template.startswith("/api/v1/projects/{tenant}/{name}"):
        project = params.get("name", "")
    extra = getattr(request.state, "audit_scope", None)
    if extra:
        tenant, project = extra
    detail = getattr(request.state, "audit_detail", "")
    client = request.client.host if request.client else ""
    return audit.AuditEntry(at=now(), user=name, source=client, method=request.method, path=request.url.path,
                            action=f"{request.method} {template.removeprefix('/api/v1')}", tenant=tenant,
                            project=project, object=request.url.path.removeprefix("/api/v1"),
                            outcome=response.status_code, detail=detail)


def _show(e: audit.AuditEntry) -> dict:
    return {"id": e.id, "at": e.at.isoformat(), "user": e.user, "source": e.source, "action": e.action,
            "object": e.object, "tenant": e.tenant or None, "project": e.project or None, "outcome": e.outcome,
            "detail": e.detail or None}


@router.get("/audit", operation_id="listAudit", summary="Audit entries: admins see all, tenant owners their tenant's")
def audit_list(store: StoreDep, authz: AuthzDep,
               tenant: Annotated[str | None, Query(max_length=63)] = None,
               project: Annotated[str | None, Query(max_length=130, description="TENANT/PROJECT")] = None,
               user: Annotated[str | None, Query(max_length=63)] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict:
    tenants = None
    pname = None
    if project:
        tenant, _, pname = project.partition("/")
    if not authz.is_admin:
        owned = {b.tenant for b in authz.bindings if b.project == "" and b.role == "owner"}
        if tenant:
            authz.require("audit.read", tenant=tenant)
        tenants = owned
    entries = audit.query(store, tenants=tenants, tenant=tenant, project=pname, user=user, limit=limit)
    return {"items": [_show(e) for e in entries]}


@router.post("/audit/verify", operation_id="verifyAudit", dependencies=[admin_only("audit.read")],
             summary="Recompute the hash chain of the whole audit log")
def audit_verify(store: StoreDep) -> dict:
    v = audit.verify(store)
    return {"ok": v.ok, "entries": v.entries, "brokenAt": v.broken_at, "reason": v.reason or None}


