"""Read models for the web dashboard: one row per App for the tables of large projects, and the
overview of every project the caller may see. Each reads the objects once and derives the rest."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from dockyard.api import objects
from dockyard.api.authz import Authorizer
from dockyard.api.deps import PlatformInfo
from dockyard.model.app import APP_STATES, AppSpec, app_state
from dockyard.model.quota import Quota
from dockyard.policy import quota as quota_math
from dockyard.store.repository import Store, StoredObject, iso_time

SortKey = Literal["name", "-name", "age", "-age", "state", "-state", "restarts", "-restarts", "ready", "-ready"]
State = Literal["ready", "progressing", "degraded", "failed"]
# "state" sorts by severity: ready first, failed last ("-state" puts failed apps on top)
STATE_ORDER = {s: i for i, s in enumerate(APP_STATES)}


def _ready_message(status: dict) -> str:
    for c in status.get("conditions") or ():
        if c.get("type") == "Ready":
            return str(c.get("message") or "")
    return ""


def app_row(obj: StoredObject) -> dict[str, Any]:
    """One App as a row of the summary table."""
    spec, status = obj.spec, obj.status or {}
    return {"name": obj.name, "image": spec.get("image", ""), "replicas": spec.get("replicas", 1),
            "readyReplicas": status.get("readyReplicas", 0), "state": app_state(status),
            "phase": status.get("phase", "Pending"), "message": _ready_message(status),
            "createdAt": iso_time(obj.created_at), "_created": obj.created_at,
            "restarts": sum(int(c.get("restarts") or 0) for c in status.get("containers") or ()),
            "revision": status.get("revision")}


def _counts(states: Iterable[str]) -> dict[str, int]:
    out = dict.fromkeys(APP_STATES, 0)
    for s in states:
        out[s] += 1
    return out


SORT_KEYS: dict[str, Any] = {
    "age": lambda r: r["_created"],  # the time itself: ISO text drops ".000000" and would misorder
    "state": lambda r: STATE_ORDER[r["state"]],
    "restarts": lambda r: r["restarts"],
    "ready": lambda r: r["readyReplicas"],
}


def _sort(rows: list[dict], sort: str) -> list[dict]:
    """Sort by `sort` (a leading - reverses); equal keys stay in name order. "age" ascending
    means youngest first, as `kubectl get` shows AGE: the newest App comes first."""
    rows.sort(key=lambda r: r["name"])
    field = sort.lstrip("-")
    descending = sort.startswith("-")
    if field == "name":
        if descending:
            rows.reverse()
        return rows
    if field == "age":
        descending = not descending
    rows.sort(key=SORT_KEYS[field], reverse=descending)  # stable, also when reversed
    return rows


def app_summaries(store: Store, authz: Authorizer, tenant: str, project: str, *, name: str | None,
                  state: str | None, sort: str, offset: int, limit: int) -> dict:
    """A page of a project's Apps as rows, with the total and the count of each state."""
    scope = f"{tenant}/{project}"
    authz.require("app.read", tenant=tenant, project=project, missing=f"project '{scope}' not found")
    store.get("Project", tenant, project)  # a missing project is a 404, not an empty table
    items, _, rv = store.list("App", scope=scope, name_contains=name or None)
    rows = [app_row(o) for o in items]
    counts = _counts(r["state"] for r in rows)
    if state:
        rows = [r for r in rows if r["state"] == state]
    rows = _sort(rows, sort)
    page = [{k: v for k, v in r.items() if k != "_created"} for r in rows[offset:offset + limit]]
    return {"total": len(rows), "counts": counts, "resourceVersion": str(rv), "items": page}


def _usage_row(used: quota_math.Usage, quota: Quota, resource: str) -> dict[str, str | None]:
    hard = quota_math.hard_amount(quota, resource)
    return {"used": quota_math.show(resource, used.amount(resource)),
            "hard": quota_math.show(resource, hard) if hard is not None else None}


def overview(store: Store, authz: Authorizer, platform: PlatformInfo) -> dict:
    """The engine, leadership, and per project the App states and the cpu and memory reserved
    (limits × replicas, as quotas count them) — for the projects the caller may see."""
    # watching both kinds from the first read's version misses nothing that happened in between
    projects, _, rv = store.list("Project", visible=objects.visible_filter(authz, "Project"))
    apps, _, _ = store.list("App", visible=objects.visible_filter(authz, "App"))
    by_scope: dict[str, list[StoredObject]] = {}
    for a in apps:
        by_scope.setdefault(a.scope, []).append(a)
    rows = []
    for p in projects:
        scoped = by_scope.get(f"{p.scope}/{p.name}", [])
        used = quota_math.Usage()
        for a in scoped:
            used.add(AppSpec.model_validate(a.spec))
        quota = Quota.model_validate(p.spec.get("quota") or {})
        rows.append({"tenant": p.scope, "project": p.name,
                     "apps": _counts(app_state(a.status) for a in scoped), "appCount": len(scoped),
                     "cpu": _usage_row(used, quota, "cpu"), "memory": _usage_row(used, quota, "memory")})
    totals = _counts(app_state(a.status) for a in apps)
    return {"engine": platform.engine_status(), "leader": platform.leader(), "totals": totals, "projects": rows,
            "resourceVersion": str(rv)}
