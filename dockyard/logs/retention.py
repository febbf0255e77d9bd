"""Retention of the log store per project: by age and by size, the oldest whole chunks first.

A project may set `spec.logs: {retention: 7d, maxSize: 512Mi}` (`model/project.LogPolicy`); what it
leaves out comes from the server's environment, `DOCKYARD_LOG_RETENTION` (7d) and
`DOCKYARD_LOG_MAX_SIZE` (1Gi), each a limit per project. Lines of a project that no longer exists
are deleted at the next sweep."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dockyard.logs.store import LogStore
from dockyard.model.project import LogPolicy
from dockyard.model.quantity import parse_duration, parse_memory
from dockyard.store.repository import Store

log = logging.getLogger(__name__)

DEFAULT_RETENTION = "7d"
DEFAULT_MAX_SIZE = "1Gi"


@dataclass(frozen=True)
class Limits:
    max_age: float    # seconds
    max_bytes: int


def default_limits(env: Mapping[str, str]) -> Limits:
    """The server's per-project defaults; ValueError naming the variable when one is malformed."""
    out = []
    for var, default, parse in (("DOCKYARD_LOG_RETENTION", DEFAULT_RETENTION, parse_duration),
                                ("DOCKYARD_LOG_MAX_SIZE", DEFAULT_MAX_SIZE, parse_memory)):
        try:
            value = parse(env.get(var) or default)
        except ValueError as e:
            raise ValueError(f"{var}: {e}") from None
        if value <= 0:
            raise ValueError(f"{var}: must be greater than zero")
        out.append(value)
    return Limits(float(out[0]), int(out[1]))


def limits_of(policy: LogPolicy, defaults: Limits) -> Limits:
    """A project's limits: its own policy where it has one, the defaults elsewhere."""
    return Limits(parse_duration(policy.retention) if policy.retention is not None else defaults.max_age,
                  parse_memory(policy.max_size) if policy.max_size is not None else defaults.max_bytes)


def sweep(store: LogStore, policies: Callable[[], Mapping[str, Limits]], now: float | None = None) -> int:
    """Apply every project's limits (`policies()`: scope "tenant/project" → Limits of every existing
    project); delete the lines of scopes no project owns. Returns the chunks deleted."""
    limits = policies()
    deleted = 0
    for scope in store.scopes():
        lim = limits.get(scope)
        if lim is None:
            deleted += store.delete_scope(scope)
        else:
            deleted += store.sweep(scope, max_age=lim.max_age, max_bytes=lim.max_bytes, now=now)
    if deleted:
        log.info("log retention: deleted %d chunks", deleted)
    return deleted


def project_limits(store: Store, defaults: Limits) -> dict[str, Limits]:
    """Limits of every project in the control-plane store, by scope "tenant/project"."""
    projects, _, _ = store.list("Project")
    return {f"{p.scope}/{p.name}": limits_of(LogPolicy.model_validate((p.spec or {}).get("logs") or {}), defaults)
            for p in projects}
