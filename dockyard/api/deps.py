"""Dependencies shared by the routers: the store, the caller's identity, injected services."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request

from dockyard.api.problems import Problem
from dockyard.store.repository import Store
from dockyard.store.users import User, authenticate_token


@dataclass
class LogRecord:
    replica: int
    container: str
    text: str
    timestamp: str | None = None


class LogProvider(Protocol):
    """Reads an App's container logs; the server wires an engine-backed one in."""

    def app_logs(self, tenant: str, project: str, app: str, *, follow: bool, tail: int | None,
                 since: float | None, timestamps: bool, stop: threading.Event) -> Iterator[LogRecord]: ...


class PlatformInfo(Protocol):
    def engine_status(self) -> dict: ...

    def leader(self) -> bool: ...


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_logs(request: Request) -> LogProvider:
    return request.app.state.logs


def get_platform(request: Request) -> PlatformInfo:
    return request.app.state.platform


def get_principal(request: Request) -> User:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "log in first: this request carries no bearer token",
                      headers={"WWW-Authenticate": 'Bearer realm="dockyard"'})
    user = authenticate_token(request.app.state.store, token.strip())
    if user is None:
        raise Problem(401, "the token is invalid, expired or revoked; log in again",
                      headers={"WWW-Authenticate": 'Bearer realm="dockyard", error="invalid_token"'})
    request.state.user = user
    request.app.state.limiter.check(f"token:{user.token_id}")
    return user


StoreDep = Annotated[Store, Depends(get_store)]
PrincipalDep = Annotated[User, Depends(get_principal)]
LogsDep = Annotated[LogProvider, Depends(get_logs)]
PlatformDep = Annotated[PlatformInfo, Depends(get_platform)]
