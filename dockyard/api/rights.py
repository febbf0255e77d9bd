"""What the caller may do in a project: the dashboard hides the buttons of actions the caller
lacks (the API still checks every request; hiding is a courtesy, not the control)."""

from __future__ import annotations

from fastapi import APIRouter

from dockyard.api.authz import AuthzDep
from dockyard.api.deps import StoreDep
from dockyard.api.problems import Problem
from dockyard.policy.permissions import RULES
from dockyard.store.errors import NotFound

router = APIRouter(tags=["projects"])


@router.get("/projects/{tenant}/{project}/rights", operation_id="getProjectRights",
            summary="Your role in a project and the actions it allows")
def project_rights(store: StoreDep, authz: AuthzDep, tenant: str, project: str) -> dict:
    authz.require("project.read", tenant=tenant, project=project)
    store.get("Project", tenant, project)
    allowed: dict[str, bool] = {}
    for rule in RULES:
        if rule.level != "project":
            continue
        try:
            authz.require(rule.action, tenant=tenant, project=project)
            allowed[rule.action] = True
        except (Problem, NotFound):
            allowed[rule.action] = False
    return {"project": f"{tenant}/{project}", "role": authz.project_role(tenant, project),
            "admin": authz.is_admin, "allowed": allowed}
