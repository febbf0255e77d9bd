"""Dependencies shared by the routers: the store, the caller's identity, injected services."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from dockyard.api.problems import Problem
from dockyard.model.cluster import ClusterHealth
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


class ExecSession(Protocol):
    """A process started in a container with a terminal: raw bytes both ways. Blocking calls;
    the API runs them in threads of their own."""

    container: str  # the container's name, for the audit log

    def read(self) -> bytes:
        """The next output; b"" once the process has ended (or the session was closed)."""
        ...

    def write(self, data: bytes) -> None: ...

    def resize(self, cols: int, rows: int) -> None: ...

    def exit_code(self) -> int | None:
        """The exit code after read() returned b"" (None if the engine cannot tell)."""
        ...

    def close(self) -> None:
        """Release the connection and end the process if it still runs. Safe to call twice."""
        ...


class ExecError(Exception):
    """Why a session could not be opened, as an HTTP status (404: no running replica)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ExecProvider(Protocol):
    """Runs commands in an App's containers; the server wires an engine-backed one in."""

    def open_exec(self, tenant: str, project: str, app: str, *, replica: int | None, command: list[str],
                  cols: int, rows: int) -> ExecSession:
        """Start `command` in the running container of `replica` (None: the lowest running slot).
        Raises ExecError."""
        ...


class MetricSeriesView(Protocol):
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (bucket start, unix seconds; value)


class MetricRangeView(Protocol):
    resolution: str  # "raw" (10 s samples) or "1m" (downsampled)
    step: float
    series: list[MetricSeriesView]
    aggregate: list[tuple[float, float]]


class MetricsProvider(Protocol):
    """Container metrics; the server wires one over its time-series store and collector in. None
    in create_app means metrics are off (the routes answer 503)."""

    def range(self, metric: str, match: dict[str, str], start: float, end: float, step: float, agg: str,
              group_by: str) -> MetricRangeView:
        """Series of `metric` whose labels include `match` (tenant, project, app), combined with
        `agg` (sum, avg, max) per value of label `group_by` (replica, app), in buckets of `step`
        seconds, plus their aggregate. Raises ValueError for arguments it refuses."""
        ...

    def current(self, tenant: str | None = None, project: str | None = None, app: str | None = None) -> list:
        """The newest reading of each running container (objects with the fields of
        dockyard.metrics.service.Usage)."""
        ...


class LogEntryView(Protocol):
    ts: float          # unix seconds
    app: str
    replica: int
    container: str
    stream: str        # stdout | stderr
    text: str


class LogSearchView(Protocol):
    items: list[LogEntryView]   # oldest first
    truncated: bool             # more lines matched than the limit


class LogSearchProvider(Protocol):
    """The stored container logs (dockyard.logs.store.LogStore); None in create_app means log search
    is off (the routes answer 503). `grep` is a literal, ASCII case-insensitive substring; times are
    unix seconds. Both raise ValueError for arguments they refuse."""

    def search(self, scope: str, *, app: str | None = None, grep: str | None = None, since: float | None = None,
               until: float | None = None, limit: int = 1000) -> LogSearchView:
        """The newest `limit` matching lines of project `scope` ("tenant/project"), oldest first."""
        ...

    def export(self, scope: str, *, app: str | None = None, grep: str | None = None, since: float | None = None,
               until: float | None = None, limit: int = 1_000_000) -> Iterator[LogEntryView]:
        """The same lines as `search`, streamed without holding them all."""
        ...


class PlatformInfo(Protocol):
    def engine_status(self) -> dict: ...

    def leader(self) -> bool: ...

    def nodes(self) -> list:
        """The engine's nodes (objects with the fields of dockyard.engines.base.NodeInfo); the
        last known ones, marked down, while the engine does not answer. Blocking."""
        ...


class ClusterOps(Protocol):
    """The clusters the server drives (the local engine as `local`, and every stored Cluster); the
    server wires one over its cluster router in. None in create_app: node operations and join
    tokens answer 503 (see create_app). Failures raise dockyard.model.cluster.ClusterError
    carrying the HTTP status. Blocking."""

    def cluster_health(self, cluster: str) -> ClusterHealth:
        """Whether `cluster` can apply changes now; cached for a moment, so it is cheap to ask."""
        ...

    def nodes(self, cluster: str | None = None) -> list:
        """NodeInfo objects (dockyard.engines.base) with .cluster set; None: of every cluster that answers."""
        ...

    def update_node(self, cluster: str, node: str, *, availability: str | None = None,
                    labels: dict[str, str | None] | None = None) -> object:
        """Set a node's availability (active | pause | drain) and labels (None removes one); the NodeInfo."""
        ...

    def join_tokens(self, cluster: str) -> dict[str, str]:
        """{"worker", "manager", "managerAddress"} for adding nodes to a swarm."""
        ...


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_logs(request: Request) -> LogProvider:
    return request.app.state.logs


def metrics_provider(request: Request) -> MetricsProvider:
    """The injected MetricsProvider; 503 when metrics are off. Called after the rights check."""
    provider = getattr(request.app.state, "metrics", None)
    if provider is None:
        raise Problem(503, "metrics are off on this server (its metrics store could not be opened)")
    return provider


def log_search_provider(request: Request) -> LogSearchProvider:
    """The injected LogSearchProvider; 503 when log search is off. Called after the rights check."""
    provider = getattr(request.app.state, "log_search", None)
    if provider is None:
        raise Problem(503, "log search is off on this server (its log store could not be opened)")
    return provider


def cluster_ops(request: Request) -> ClusterOps:
    """The injected ClusterOps; 503 when the server has none. Called after the rights check."""
    ops = getattr(request.app.state, "clusters", None)
    if ops is None:
        raise Problem(503, "clusters are not available on this server")
    return ops


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
ClusterOpsDep = Annotated[ClusterOps, Depends(cluster_ops)]
