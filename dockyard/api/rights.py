"""What the caller may do in a project: the dashboard hides the buttons of actions the caller
lacks (the API still checks every request; hiding is a courtesy, not the control)."""

from __future__ import annotations

from fastapi import APIRouter

from dockyard.api.authz import Authorizer, AuthzDep
from dockyard.api.deps import StoreDep
from dockyard.api.problems import Problem
from dockyard.policy.permissions import RULES
from dockyard.store.errors import NotFound

router = APIRouter(tags=["projects"])


def _allowed(authz: Authorizer, level: str, tenant: str, project: str | None) -> dict[str, bool]:
    allowed: dict[str, bool] = {}
    for rule in RULES:
        if rule.level != level:
            continue
        try:
            authz.require(rule.action, tenant=tenant, project=project)
            allowed[rule.action] = True
        except (Problem, NotFound):
            allowed[rule.action] = False
    return allowed


@router.get("/tenants/{tenant}/rights", operation_id="getTenantRights", tags=["tenants"],
            summary="Your role in a tenant and the tenant-level actions it allows")
def tenant_rights(store: StoreDep, authz: AuthzDep, tenant: str) -> dict:
    authz.require("tenant.read", tenant=tenant)
    store.get("Tenant", "", tenant)
    return {"tenant": tenant, "role": authz.tenant_role(tenant), "admin": authz.is_admin,
            "allowed": _allowed(authz, "tenant", tenant, None)}


@router.get("/projects/{tenant}/{project}/rights", operation_id="getProjectRights",
            summary="Your role in a project and the actions it allows")
def project_rights(store: StoreDep, authz: AuthzDep, tenant: str, project: str) -> dict:
    authz.require("project.read", tenant=tenant, project=project)
    store.get("Project", tenant, project)
    allowed = _allowed(authz, "project", tenant, project)
    return {"project": f"{tenant}/{project}", "role": authz.project_role(tenant, project),
            "admin": authz.is_admin, "allowed": allowed}
