"""Dependencies shared by the routers: the store, the caller's identity, injected services."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from dockyard.api.problems import Problem
from dockyard.store.repository import Store
from dockyard.store.users import User


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


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_logs(request: Request) -> LogProvider:
    return request.app.state.logs


async def get_platform(request: Request) -> PlatformInfo:
    return request.app.state.platform


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def get_principal(request: Request) -> User:
    """The caller, from the bearer token (401 without a valid one). Blocking: may query the store."""
    cached = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    token = bearer_token(request)
    if token is None:
        raise Problem(401, "log in first: this request carries no bearer token",
                      headers={"WWW-Authenticate": 'Bearer realm="dockyard"'})
    store = request.app.state.store
    user = store.token_cache.authenticate(store, token)
    if user is None:
        raise Problem(401, "the token is invalid, expired or revoked; log in again",
                      headers={"WWW-Authenticate": 'Bearer realm="dockyard", error="invalid_token"'})
    request.state.user = user
    request.app.state.limiter.check(f"token:{user.token_id}")
    return user


async def principal(request: Request) -> User:
    """get_principal for the event loop: a token fresh in the cache costs no thread hop."""
    token = bearer_token(request)
    if getattr(request.state, "user", None) is not None or (
            token is not None and request.app.state.store.token_cache.peek(token) is not None):
        return get_principal(request)
    return await run_in_threadpool(get_principal, request)


StoreDep = Annotated[Store, Depends(get_store)]
PrincipalDep = Annotated[User, Depends(principal)]
LogsDep = Annotated[LogProvider, Depends(get_logs)]
PlatformDep = Annotated[PlatformInfo, Depends(get_platform)]
