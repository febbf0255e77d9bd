"""Authorization, enforced in one place: every object operation asks an Authorizer built from
the caller's identity. What the caller may not see answers 404 exactly like what does not exist;
what they may see but not change answers 403."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from dockyard.api.deps import PrincipalDep, StoreDep, principal
from dockyard.api.problems import Problem
from dockyard.policy.permissions import BY_ACTION, RANK, at_least, strongest
from dockyard.store.bindings import Binding, bindings_of_user
from dockyard.store.errors import NotFound
from dockyard.store.repository import Store
from dockyard.store.users import User


@dataclass
class Authorizer:
    store: Store
    user: User
    _bindings: list[Binding] | None = field(default=None, repr=False)

    @property
    def is_admin(self) -> bool:
        # a token limited to one project never carries admin rights
        return self.user.is_admin and not self.user.token_project

    @property
    def bindings(self) -> list[Binding]:
        if self._bindings is None:
            self._bindings = bindings_of_user(self.store, self.user.name)
        return self._bindings

    def _cap(self, role: str | None, tenant: str, project: str | None) -> str | None:
        """Limit a role by the token's scope (a project token sees only its project)."""
        tp = self.user.token_project
        if not tp:
            return role
        if project is None or f"{tenant}/{project}" != tp:
            return None
        if self.user.is_admin:
            role = "owner"
        if role is None:
            return None
        token_role = self.user.token_role or "viewer"
        return role if RANK[role] <= RANK[token_role] else token_role

    def tenant_role(self, tenant: str) -> str | None:
        if self.user.token_project:
            return None
        if self.is_admin:
            return "owner"
        return strongest(*(b.role for b in self.bindings if b.tenant == tenant and b.project == ""))

    def project_role(self, tenant: str, project: str) -> str | None:
        if self.is_admin:
            return "owner"
        base = strongest(*(b.role for b in self.bindings
                           if b.tenant == tenant and b.project in ("", project)))
        if self.user.token_project and self.user.is_admin:
            base = "owner"
        return self._cap(base, tenant, project)

    def can_see_tenant(self, tenant: str) -> bool:
        if self.is_admin:
            return True
        if self.user.token_project:
            return self.user.token_project.split("/")[0] == tenant
        return any(b.tenant == tenant for b in self.bindings)

    def can_see_project(self, tenant: str, project: str) -> bool:
        return self.project_role(tenant, project) is not None

    def visible_scopes(self) -> tuple[set[str], set[str]] | None:
        """(tenants wholly visible, projects "t/p" visible), or None for everything (admin)."""
        if self.is_admin:
            return None
        if self.user.token_project:
            return set(), {self.user.token_project}
        tenants = {b.tenant for b in self.bindings if b.project == ""}
        projects = {f"{b.tenant}/{b.project}" for b in self.bindings if b.project}
        return tenants, projects

    def require(self, action: str, *, tenant: str | None = None, project: str | None = None,
                missing: str | None = None) -> None:
        """Allow `action` on the tenant/project or raise: NotFound (`missing` names what the
        caller asked for) when it is invisible to them, Problem 403 when it is visible but denied."""
        rule = BY_ACTION[action]
        if self.is_admin:
            return
        if rule.level == "admin":
            if tenant and not self.can_see_tenant(tenant):
                raise NotFound(missing or f"tenant '{tenant}' not found")
            raise Problem(403, f"only platform admins may do this ({rule.description})")
        if tenant is None:
            raise Problem(403, f"not allowed: {rule.description}")
        if project is not None and rule.level == "project":
            visible = self.can_see_project(tenant, project)
            role = self.project_role(tenant, project)
            where = f"project {tenant}/{project}"
        else:
            visible = self.can_see_tenant(tenant) if project is None else self.can_see_project(tenant, project)
            role = self.tenant_role(tenant)
            where = f"tenant {tenant}"
        if not visible:
            raise NotFound(missing or (f"project '{tenant}/{project}' not found" if project
                                       else f"tenant '{tenant}' not found"))
        if action == "tenant.read":
            return  # any role in the tenant or in one of its projects lets one see the tenant
        if not at_least(role, rule.min_role):
            have = f"your role there is {role}" if role else "you have no role there"
            raise Problem(403, f"{rule.description} in {where} needs the {rule.min_role} role; {have}")


async def get_authorizer(request: Request, store: StoreDep, user: PrincipalDep) -> Authorizer:
    cached = getattr(request.state, "authz", None)
    return cached if cached is not None else Authorizer(store, user)


AuthzDep = Annotated[Authorizer, Depends(get_authorizer)]


async def check_path_visibility(request: Request) -> None:
    """Applied to every route: a tenant or project named in the path that the caller may not see
    is a 404 with the same words as one that does not exist, before the body is even read."""
    params = request.path_params
    route = request.scope.get("route")
    path = getattr(route, "path", "")
    tenant, project = params.get("tenant"), params.get("project")
    if path.startswith("/api/v1/tenants/{name}"):
        tenant = params.get("name")
    elif path.startswith("/api/v1/projects/{tenant}/{name}"):
        project = params.get("name")
    if not tenant:
        return
    store: Store = request.app.state.store
    authz = Authorizer(store, await principal(request))
    request.state.authz = authz
    if authz.is_admin:
        return  # admins see everything; the handler answers 404 for what does not exist
    await run_in_threadpool(check_visible, store, authz, tenant, project)


def check_visible(store: Store, authz: Authorizer, tenant: str, project: str | None) -> None:
    """NotFound unless the tenant (and project) exists and the caller may see it (blocking)."""
    if project:
        if not authz.can_see_project(tenant, project) or not _exists(store, "Project", tenant, project):
            raise NotFound(f"project '{tenant}/{project}' not found")
    elif not authz.can_see_tenant(tenant) or not _exists(store, "Tenant", "", tenant):
        raise NotFound(f"tenant '{tenant}' not found")


def _exists(store: Store, kind: str, scope: str, name: str) -> bool:
    try:
        store.get(kind, scope, name)
        return True
    except NotFound:
        return False


def admin_only(action: str) -> Any:
    """A route dependency for admin-level actions: refused before the body is read."""
    async def dependency(authz: AuthzDep) -> None:
        authz.require(action)

    return Depends(dependency)
