"""The registry's token service (`GET /registry/token`, the realm the registry sends docker to),
robot accounts, and what the CLI and dashboard need to show `docker login` lines."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from dockyard.api.access import expiry_ttl
from dockyard.api.authz import AuthzDep
from dockyard.api.deps import PrincipalDep, StoreDep
from dockyard.api.problems import Problem
from dockyard.model.meta import DnsLabel, Schema
from dockyard.registry.tokens import parse_scopes
from dockyard.store import robots as robot_store
from dockyard.store.errors import NotFound
from dockyard.store.repository import iso_time

token_router = APIRouter(tags=["registry"])   # outside /api/v1: docker and the registry call it
router = APIRouter()                          # under /api/v1
TOKEN_TTL = 300
MAX_SCOPES = 32
BASIC_REALM = 'Basic realm="Dockyard registry"'


def _registry_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in the registry's own format, which docker and skopeo print."""
    return JSONResponse({"errors": [{"code": code, "message": message}]}, status_code=status, headers=headers)


def _unauthorized(message: str) -> JSONResponse:
    return _registry_error(401, "UNAUTHORIZED", message, {"WWW-Authenticate": BASIC_REALM})


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, password) if sep and username else None


def _throttle_keys(request: Request, username: str) -> list[str]:
    """Failures count per user name, and per address unless it is loopback: the local dockerd
    asks for every user of the machine from 127.0.0.1, so a lock on that address would lock all of
    them out after one user's typos."""
    keys = [f"user:{username}"]
    addr = request.client.host if request.client else ""
    try:
        if addr and not ipaddress.ip_address(addr).is_loopback:
            keys.append(f"addr:{addr}")
    except ValueError:
        keys.append(f"addr:{addr}")
    return keys


@token_router.get("/registry/token", operation_id="registryToken",
                  summary="The registry's token service (Docker registry token authentication)",
                  description="HTTP Basic auth with a user's password or API token, a robot "
                              "(`robot$TENANT+PROJECT+NAME`) and its secret, or an ephemeral credential. "
                              "Each asked scope is granted the actions the caller may take on it (none "
                              "for what they may not touch); registry errors are the registry's JSON.")
def registry_token(request: Request,
                   scope: Annotated[list[str], Query(max_length=MAX_SCOPES)] = [],  # noqa: B006 — FastAPI reads it
                   service: Annotated[str | None, Query(max_length=255)] = None) -> Any:
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        return _registry_error(404, "UNSUPPORTED", "this Dockyard server has no registry (--registry-listen off)")
    if service and service != registry.settings.service:
        return _registry_error(400, "DENIED", f"this token service serves '{registry.settings.service}', "
                                              f"not '{service}'")
    scopes = parse_scopes(scope)
    if len(scopes) > MAX_SCOPES:  # several may share one parameter, space-separated
        raise Problem(400, f"query parameter scope: at most {MAX_SCOPES} scopes in all, not {len(scopes)}")
    creds = _basic_credentials(request)
    if creds is None:
        return _unauthorized("log in with your Dockyard user name and password (or an API token or robot secret)")
    username, password = creds
    throttle = request.app.state.login_throttle
    keys = _throttle_keys(request, username)
    try:
        wait = throttle.before(keys)
    except Problem as p:
        return _registry_error(429, "TOOMANYREQUESTS", p.detail, p.headers)
    if wait:
        time.sleep(wait)  # a worker thread: slows guessing down without holding the event loop
    grantee = registry.credentials.authenticate(username, password)
    if grantee is None:
        throttle.failed(keys)
        return _unauthorized("wrong user name or password (or the token or robot is expired, revoked or disabled)")
    throttle.succeeded(keys[0])
    issued = registry.issuer.issue_for(grantee, scopes, TOKEN_TTL)
    return {"token": issued.token, "access_token": issued.token, "expires_in": issued.expires_in,
            "issued_at": iso_time(issued.issued_at)}


@router.get("/registry", operation_id="getRegistry", tags=["registry"],
            summary="Whether this server has a registry, and the host that image references start with")
def registry_info(request: Request, _: PrincipalDep) -> dict:
    registry = getattr(request.app.state, "registry", None)
    settings = registry.settings if registry is not None else None
    return {"enabled": bool(settings and settings.enabled), "host": settings.host if settings else None,
            "external": bool(settings and settings.external_url)}


# --- robots ---------------------------------------------------------------------------------

ROBOTS = "/tenants/{tenant}/projects/{project}/robots"


class RobotCreate(Schema):
    name: DnsLabel
    access: Literal["pull", "push"] = Field(default="pull", description="pull, or push (which includes pull)")
    expires: str | None = Field(default="30d", max_length=16, description="e.g. 12h, 30d; null: never")


class RobotUpdate(Schema):
    disabled: bool


def _show(r: robot_store.Robot) -> dict:
    def iso(t: Any) -> str | None:
        return t.isoformat() if t else None

    return {"name": r.name, "username": r.username, "access": r.access, "disabled": r.disabled,
            "expired": r.expired(), "expiresAt": iso(r.expires_at), "createdBy": r.created_by,
            "createdAt": iso(r.created_at), "lastUsedAt": iso(r.last_used_at)}


@router.get(ROBOTS, operation_id="listRobots", tags=["robots"], summary="The project's robot accounts (no secrets)")
def robots_list(store: StoreDep, authz: AuthzDep, tenant: str, project: str) -> dict:
    authz.require("robots.manage", tenant=tenant, project=project)
    robot_store.delete_project_robots(store, tenant, project, keep_uid=store.get("Project", tenant, project).uid)
    return {"items": [_show(r) for r in robot_store.list_robots(store, tenant, project)]}


@router.post(ROBOTS, operation_id="createRobot", tags=["robots"], status_code=201,
             summary="Create a robot account; its secret is shown only in this response",
             description="Robots log in to the registry only (`docker login -u USERNAME`), never to this API.")
def robots_create(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str,
                  body: RobotCreate) -> dict:
    authz.require("robots.manage", tenant=tenant, project=project)
    uid = store.get("Project", tenant, project).uid
    ttl = expiry_ttl(body.expires)
    robot_store.delete_project_robots(store, tenant, project, keep_uid=uid)  # an earlier incarnation's
    robot, secret = robot_store.create_robot(store, tenant, project, uid, body.name, body.access,
                                             created_by=authz.user.name, ttl=ttl)
    request.state.audit_detail = f"robot {robot.username}, access {robot.access}, expires {body.expires or 'never'}"
    return {**_show(robot), "secret": secret}


@router.patch(ROBOTS + "/{name}", operation_id="updateRobot", tags=["robots"],
              summary="Disable or enable a robot account")
def robots_update(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str,
                  body: RobotUpdate) -> dict:
    authz.require("robots.manage", tenant=tenant, project=project)
    robot = robot_store.set_robot_disabled(store, tenant, project, name, body.disabled)
    if robot is None:
        raise NotFound(f"robot '{name}' not found in project {tenant}/{project}")
    request.state.audit_detail = f"robot {robot.username} {'disabled' if body.disabled else 'enabled'}"
    return _show(robot)


@router.delete(ROBOTS + "/{name}", operation_id="deleteRobot", tags=["robots"], summary="Delete a robot account")
def robots_delete(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str) -> dict:
    authz.require("robots.manage", tenant=tenant, project=project)
    if not robot_store.delete_robot(store, tenant, project, name):
        raise NotFound(f"robot '{name}' not found in project {tenant}/{project}")
    request.state.audit_detail = f"robot {robot_store.robot_username(tenant, project, name)} deleted"
    return {"name": name, "deleted": True}
