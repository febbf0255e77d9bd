"""Storage quota decisions for registry uploads: `spec.quota.storage` of the project and of its tenant
against what the registry already holds plus what is being uploaded right now."""

from __future__ import annotations

import time

from dockyard.model.quantity import approx_memory, format_memory, parse_memory
from dockyard.registry.usage import StorageUsage
from dockyard.store.errors import NotFound
from dockyard.store.repository import Store

# a quota change reaches uploads within this time
LIMITS_TTL = 2.0


def _limit(quota: dict | None) -> int | None:
    raw = (quota or {}).get("storage")
    if raw is None:
        return None
    try:
        return parse_memory(raw)
    except ValueError:
        return None  # admission refuses these; an old stored value is not a reason to block pushes


class StoreQuotaPolicy:
    """Decides with the quotas in the store (read at most every LIMITS_TTL seconds per project).

    `inflight` is what this project's uploads that the registry has not committed yet already hold
    (the proxy counts them): the registry's storage does not show those bytes as the project's yet."""

    def __init__(self, store: Store, usage: StorageUsage, *, ttl: float = LIMITS_TTL) -> None:
        self.store = store
        self.usage = usage
        self.ttl = ttl
        self._limits: dict[tuple[str, str], tuple[float, tuple[int | None, int | None]]] = {}

    def limits(self, tenant: str, project: str) -> tuple[int | None, int | None]:
        """(project limit, tenant limit) in bytes; None is unlimited. Read again after `ttl` seconds:
        every upload request asks, and two store reads each would be most of the proxy's work."""
        now = time.monotonic()
        hit = self._limits.get((tenant, project))
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        found = self._read_limits(tenant, project)
        self._limits[(tenant, project)] = (now, found)
        return found

    def _read_limits(self, tenant: str, project: str) -> tuple[int | None, int | None]:
        try:
            p = self.store.get("Project", tenant, project)
        except NotFound:
            return None, None
        try:
            t = self.store.get("Tenant", "", tenant)
        except NotFound:
            t = None
        return _limit(p.spec.get("quota")), _limit(t.spec.get("quota") if t else None)

    def remaining(self, tenant: str, project: str, inflight: int) -> int | None:
        """Bytes the project may still upload (may be negative), or None when it has no limit."""
        project_limit, tenant_limit = self.limits(tenant, project)
        left: int | None = None
        if project_limit is not None:
            left = project_limit - self.usage.project_bytes(tenant, project) - inflight
        if tenant_limit is not None:
            tenant_used = inflight + sum(self.usage.project_bytes(tenant, p.name)
                                         for p in self.store.list("Project", scope=tenant)[0])
            left = min(left if left is not None else tenant_limit, tenant_limit - tenant_used)
        return left

    def message(self, tenant: str, project: str, inflight: int, adding: int) -> str:
        """Why an upload of `adding` bytes (on top of `inflight`) does not fit, in words."""
        project_limit, tenant_limit = self.limits(tenant, project)
        used = self.usage.project_bytes(tenant, project)
        if project_limit is not None and used + inflight + adding > project_limit:
            return (f"storage quota exceeded: project {tenant}/{project} stores {approx_memory(used)}"
                    + (f" and is uploading {approx_memory(inflight)}" if inflight else "")
                    + f"; this upload ({approx_memory(adding)} so far) does not fit in its quota (spec.quota.storage) of "
                    f"{format_memory(project_limit)}. Delete images or tags, or ask for a larger quota")
        limit = format_memory(tenant_limit) if tenant_limit is not None else "?"
        return (f"storage quota exceeded: the projects of tenant {tenant} together would pass the tenant's "
                f"quota (spec.quota.storage) of {limit}. Delete images or tags, or ask for a larger quota")
