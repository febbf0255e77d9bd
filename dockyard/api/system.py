"""Login, identity, health, server info and Compose conversion."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field

from dockyard import __version__
from dockyard.admission import FieldError
from dockyard.api.deps import PlatformDep, PrincipalDep, StoreDep, bearer_token
from dockyard.api.problems import Problem
from dockyard.compose.convert import ComposeError, convert_compose
from dockyard.model.meta import ProjectRef, Schema
from dockyard.store.users import issue_token, revoke_token, verify_password

router = APIRouter()


class LoginRequest(Schema):
    username: str = Field(min_length=1, max_length=63)
    password: str = Field(min_length=1, max_length=1024)


class ComposeRequest(Schema):
    project: ProjectRef
    compose: dict = Field(description="the parsed Compose file")
    files: dict[str, str] = Field(default_factory=dict, description="env_file contents by the path written")
    env: dict[str, str] = Field(default_factory=dict, description="variables for ${VAR} interpolation")


@router.post("/login", operation_id="login", tags=["auth"], summary="Exchange a password for a session token")
def login(request: Request, store: StoreDep, body: LoginRequest) -> dict:
    request.state.audit_user = body.username
    throttle = request.app.state.login_throttle
    keys = [f"user:{body.username}", f"addr:{request.client.host if request.client else ''}"]
    wait = throttle.before(keys)
    if wait:
        time.sleep(wait)  # slows guessing down; runs in a worker thread, not the event loop
    user = verify_password(store, body.username, body.password)
    if user is None:
        throttle.failed(keys)
        raise Problem(401, "wrong user name or password")
    throttle.succeeded(keys[0])
    issued = issue_token(store, user)
    return {"token": issued.token, "expiresAt": issued.expires_at.isoformat() if issued.expires_at else None,
            "user": {"name": user.name, "admin": user.is_admin}}


@router.post("/logout", operation_id="logout", tags=["auth"], status_code=204, summary="Revoke this token")
def logout(request: Request, store: StoreDep, _: PrincipalDep) -> None:
    revoke_token(store, bearer_token(request) or "")


@router.get("/whoami", operation_id="whoami", tags=["auth"])
def whoami(user: PrincipalDep) -> dict:
    return {"name": user.name, "admin": user.is_admin}


@router.get("/info", operation_id="info", tags=["system"],
            summary="Server version, engine, leadership and whether the web terminal (exec) is available")
def info(request: Request, _: PrincipalDep, platform: PlatformDep) -> dict:
    return {"version": __version__, "engine": platform.engine_status(), "leader": platform.leader(),
            "exec": request.app.state.exec_provider is not None}


@router.post("/compose/convert", operation_id="convertCompose", tags=["compose"],
             summary="Turn a Compose file into App manifests of a project (nothing is stored)")
def convert(_: PrincipalDep, body: ComposeRequest) -> JSONResponse:
    try:
        result = convert_compose(body.compose, body.project, files=body.files, env=body.env)
    except ComposeError as e:
        raise Problem(422, f"the Compose file cannot be imported: {e}", title="Invalid Compose file",
                      errors=[FieldError(i.path, i.message) for i in e.issues]) from None
    return JSONResponse({"items": result.items,
                         "warnings": [{"field": w.path, "message": w.message} for w in result.warnings]})
