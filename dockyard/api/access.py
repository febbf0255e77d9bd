"""Users, API tokens, role bindings (members) and quota reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Path, Request
from pydantic import Field

from dockyard.api import cluster_rules, objects
from dockyard.api.authz import AuthzDep, admin_only
from dockyard.api.deps import StoreDep
from dockyard.api.problems import Problem
from dockyard.model.meta import DnsLabel, ProjectRef, Schema
from dockyard.model.quantity import parse_duration
from dockyard.store import bindings as rb
from dockyard.store.errors import NotFound
from dockyard.store.users import (
    create_user,
    delete_user,
    get_preferences,
    get_user,
    issue_token,
    list_tokens,
    list_users,
    revoke_token_id,
    set_password,
    update_preferences,
    verify_password,
)

router = APIRouter()
Role = Literal["viewer", "developer", "maintainer", "owner"]
UserName = Annotated[str, Path(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
MIN_PASSWORD = 8


class UserCreate(Schema):
    name: DnsLabel
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024)
    admin: bool = False


class PasswordChange(Schema):
    current_password: str | None = Field(default=None, max_length=1024)
    password: str = Field(min_length=MIN_PASSWORD, max_length=1024)


class TokenCreate(Schema):
    name: DnsLabel = "api"
    expires: str | None = Field(default="30d", max_length=16, description="e.g. 12h, 30d; null: never")
    project: ProjectRef | None = None
    role: Role | None = None


class Grant(Schema):
    user: DnsLabel
    role: Role


Language = Literal["en", "zh-CN"]
Theme = Literal["light", "dark", "system"]
DEFAULT_PREFERENCES = {"language": "en", "theme": "system"}


class PreferencesUpdate(Schema):
    """Fields left out keep their value; null returns a field to its default."""

    language: Language | None = None
    theme: Theme | None = None


# --- users ---------------------------------------------------------------------------------

@router.get("/users", operation_id="listUsers", tags=["users"], dependencies=[admin_only("users.manage")])
def users_list(store: StoreDep, authz: AuthzDep) -> dict:
    authz.require("users.manage")
    return {"items": [{"name": u.name, "admin": u.is_admin, "createdAt": c.isoformat()} for u, c in list_users(store)]}


@router.post("/users", operation_id="createUser", tags=["users"], status_code=201,
             dependencies=[admin_only("users.manage")])
def users_create(store: StoreDep, authz: AuthzDep, body: UserCreate) -> dict:
    authz.require("users.manage")
    u = create_user(store, body.name, body.password, is_admin=body.admin)
    return {"name": u.name, "admin": u.is_admin}


@router.delete("/users/{name}", operation_id="deleteUser", tags=["users"], dependencies=[admin_only("users.manage")])
def users_delete(store: StoreDep, authz: AuthzDep, name: UserName) -> dict:
    authz.require("users.manage")
    if name == authz.user.name:
        raise Problem(409, "you cannot delete yourself")
    if not delete_user(store, name):
        raise NotFound(f"user '{name}' not found")
    return {"name": name, "deleted": True}


@router.post("/users/{name}/password", operation_id="setPassword", tags=["users"], status_code=204)
def users_password(store: StoreDep, authz: AuthzDep, name: UserName, body: PasswordChange) -> None:
    if name != authz.user.name:
        authz.require("users.manage")
        if get_user(store, name) is None:
            raise NotFound(f"user '{name}' not found")
    elif verify_password(store, name, body.current_password or "") is None:
        raise Problem(403, "the current password is wrong")
    set_password(store, name, body.password)


# --- preferences -----------------------------------------------------------------------------

def _with_defaults(stored: dict) -> dict:
    # a value this server no longer offers reads as the default
    offered = {"language": get_args(Language), "theme": get_args(Theme)}
    return {k: stored[k] if stored.get(k) in offered[k] else default for k, default in DEFAULT_PREFERENCES.items()}


@router.get("/preferences", operation_id="getPreferences", tags=["users"], summary="Your console preferences")
def preferences_get(store: StoreDep, authz: AuthzDep) -> dict:
    return _with_defaults(get_preferences(store, authz.user.id))


@router.put("/preferences", operation_id="setPreferences", tags=["users"],
            summary="Change your console preferences (the fields given)")
def preferences_set(store: StoreDep, authz: AuthzDep, body: PreferencesUpdate) -> dict:
    changes = body.model_dump(by_alias=True, exclude_unset=True)
    return _with_defaults(update_preferences(store, authz.user.id, changes))


# --- tokens --------------------------------------------------------------------------------

MAX_EXPIRY = timedelta(days=36525)


def expiry_ttl(expires: str | None, field: str = "expires") -> timedelta | None:
    """The lifetime an `expires` field asks for (None: never expires); 422 naming the field when it
    is no positive duration. Tokens and robot accounts take it."""
    if not expires:
        return None
    try:
        ttl = timedelta(seconds=parse_duration(expires))
    except (ValueError, OverflowError) as e:
        raise Problem(422, f"{field}: {e}", errors=[objects.FieldError(field, str(e))]) from None
    if ttl.total_seconds() <= 0:
        raise Problem(422, f"{field}: must be positive", errors=[objects.FieldError(field, "must be positive")])
    if ttl > MAX_EXPIRY:  # beyond it, now + ttl overflows the calendar
        why = "at most 100 years (null: never expires)"
        raise Problem(422, f"{field}: {why}", errors=[objects.FieldError(field, why)])
    return ttl


@router.get("/tokens", operation_id="listTokens", tags=["tokens"], summary="Your tokens (never their secrets)")
def tokens_list(store: StoreDep, authz: AuthzDep) -> dict:
    return {"items": [{"id": t.id, "name": t.name, "kind": t.kind, "project": t.project, "role": t.role,
                       "expiresAt": t.expires_at.isoformat() if t.expires_at else None, "revoked": t.revoked,
                       "createdAt": t.created_at.isoformat()} for t in list_tokens(store, authz.user.id)]}


@router.post("/tokens", operation_id="createToken", tags=["tokens"], status_code=201,
             summary="Create an API token; its secret is shown only in this response")
def tokens_create(store: StoreDep, authz: AuthzDep, body: TokenCreate) -> dict:
    if authz.user.token_project:
        raise Problem(403, "a project-scoped token cannot create tokens; log in with your password")
    if (body.project is None) != (body.role is None):
        raise Problem(422, "give both project and role, or neither",
                      errors=[objects.FieldError("role" if body.project else "project", "is required with the other")])
    if body.project:
        t, p = body.project.split("/")
        authz.require("project.read", tenant=t, project=p)
    ttl = expiry_ttl(body.expires)
    issued = issue_token(store, authz.user, kind="api", name=body.name, ttl=ttl, project=body.project, role=body.role)
    return {"id": issued.id, "name": body.name, "token": issued.token, "project": body.project, "role": body.role,
            "expiresAt": issued.expires_at.isoformat() if issued.expires_at else None}


@router.delete("/tokens/{token_id}", operation_id="revokeToken", tags=["tokens"])
def tokens_revoke(store: StoreDep, authz: AuthzDep, token_id: Annotated[int, Path(ge=1)]) -> dict:
    if not revoke_token_id(store, authz.user.id, token_id):
        raise NotFound(f"token {token_id} not found")
    return {"id": token_id, "revoked": True}


# --- members -------------------------------------------------------------------------------

def _members(bs: list[rb.Binding]) -> dict:
    return {"items": [{"user": b.user, "role": b.role, "scope": f"{b.tenant}/{b.project}" if b.project else b.tenant,
                       "inherited": False if b.project else None} for b in bs]}


def _need_user(store: StoreDep, name: str) -> None:
    if get_user(store, name) is None:
        raise NotFound(f"user '{name}' not found")


@router.get("/tenants/{tenant}/members", operation_id="listTenantMembers", tags=["members"])
def tenant_members(store: StoreDep, authz: AuthzDep, tenant: str) -> dict:
    authz.require("tenant.read", tenant=tenant)
    store.get("Tenant", "", tenant)
    return _members(rb.bindings_in(store, tenant, ""))


@router.post("/tenants/{tenant}/members", operation_id="grantTenantRole", tags=["members"], status_code=201)
def tenant_grant(store: StoreDep, authz: AuthzDep, tenant: str, body: Grant) -> dict:
    authz.require("members.manage", tenant=tenant)
    store.get("Tenant", "", tenant)
    _need_user(store, body.user)
    rb.grant(store, body.user, tenant, "", body.role)
    return {"user": body.user, "role": body.role, "scope": tenant}


@router.delete("/tenants/{tenant}/members/{user}", operation_id="revokeTenantRole", tags=["members"])
def tenant_revoke(store: StoreDep, authz: AuthzDep, tenant: str, user: UserName) -> dict:
    authz.require("members.manage", tenant=tenant)
    if not rb.revoke(store, user, tenant, ""):
        raise NotFound(f"user '{user}' has no role in tenant {tenant}")
    return {"user": user, "scope": tenant, "revoked": True}


@router.get("/projects/{tenant}/{project}/members", operation_id="listProjectMembers", tags=["members"])
def project_members(store: StoreDep, authz: AuthzDep, tenant: str, project: str) -> dict:
    authz.require("project.read", tenant=tenant, project=project)
    store.get("Project", tenant, project)
    out = _members(rb.bindings_in(store, tenant, project))
    for m in out["items"]:
        m["inherited"] = m["scope"] == tenant
    return out


@router.post("/projects/{tenant}/{project}/members", operation_id="grantProjectRole", tags=["members"],
             status_code=201)
def project_grant(store: StoreDep, authz: AuthzDep, tenant: str, project: str, body: Grant) -> dict:
    authz.require("members.manage", tenant=tenant, project=project)
    store.get("Project", tenant, project)
    _need_user(store, body.user)
    rb.grant(store, body.user, tenant, project, body.role)
    return {"user": body.user, "role": body.role, "scope": f"{tenant}/{project}"}


@router.delete("/projects/{tenant}/{project}/members/{user}", operation_id="revokeProjectRole", tags=["members"])
def project_revoke(store: StoreDep, authz: AuthzDep, tenant: str, project: str, user: UserName) -> dict:
    authz.require("members.manage", tenant=tenant, project=project)
    if not rb.revoke(store, user, tenant, project):
        raise NotFound(f"user '{user}' has no role in project {tenant}/{project}")
    return {"user": user, "scope": f"{tenant}/{project}", "revoked": True}


@router.get("/projects/{tenant}/{project}/quota", operation_id="getProjectQuota", tags=["projects"],
            summary="Quota used and hard, for the project and its tenant")
def project_quota(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str) -> dict:
    registry = getattr(request.app.state, "registry", None)
    usage = getattr(registry, "usage", None)
    return objects.quota_report(store, authz, tenant, project, usage.project_bytes if usage is not None else None)


@router.post("/admin/secret-key/rotate", operation_id="rotateSecretKey", tags=["secrets"],
             dependencies=[admin_only("users.manage")],
             summary="Encrypt every Secret (and Cluster TLS key) with a new key and retire the old keys")
def rotate_secret_key(store: StoreDep) -> dict:
    ring = store.keyring
    new_id = ring.rotate()
    count = 0
    items, _, _ = store.list("Secret")
    for obj in items:
        if obj.spec.get("keyId") == new_id or "ciphertext" not in obj.spec:
            continue
        plain = ring.decrypt(obj.spec["ciphertext"])
        key_id, token = ring.encrypt(plain)
        store.replace("Secret", obj.scope, obj.name, {**obj.spec, "keyId": key_id, "ciphertext": token})
        count += 1
    count += cluster_rules.reseal_tls_keys(store)  # the Clusters' TLS keys are sealed with the same ring
    ring.retire_except({new_id})
    return {"activeKey": new_id, "reencrypted": count}
