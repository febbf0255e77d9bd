"""Container metrics: time series of an App (per replica and the App's total) and of a project
(per App), and the current usage of a project's replicas (`dockyard top`)."""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from dockyard.admission import FieldError
from dockyard.api.authz import AuthzDep
from dockyard.api.deps import StoreDep, metrics_provider
from dockyard.api.problems import Problem
from dockyard.metrics.collector import METRICS
from dockyard.model.quantity import parse_duration

router = APIRouter(prefix="/projects/{tenant}/{project}", tags=["metrics"])

MAX_POINTS = 11_000  # as Prometheus: a chart never needs more
DEFAULT_POINTS = 360
RANGE_DOC = ("RFC 3339 time (2026-11-27T09:00:00Z), relative to now (-1h, -30m, now) or unix seconds; "
             "default from=-1h, to=now")

MetricQ = Annotated[str, Query(description=f"one of {', '.join(METRICS)}")]
FromQ = Annotated[str | None, Query(alias="from", description=RANGE_DOC)]
ToQ = Annotated[str | None, Query(description=RANGE_DOC)]
StepQ = Annotated[str | None, Query(description="bucket width such as 10s, 1m, 1h (default: the range / 360, "
                                                 "at least 10s); ranges older than 24 h use 1-minute data")]
AggQ = Annotated[str, Query(description="how series are combined: sum (default), avg or max")]


def bad_param(param: str, message: str) -> Problem:
    """A 400 problem naming a query parameter (the field of its error) and what is wrong with it."""
    return Problem(400, f"{param}: {message}", errors=[FieldError(param, message)])


def parse_time(value: str | None, default: float, now: float, param: str) -> float:
    """Unix seconds from an RFC 3339 time, a relative time (-1h, now) or unix seconds."""
    if value is None or value == "":
        return default
    v = value.strip()
    if v == "now":
        return now
    if v.startswith("-"):
        try:
            return now - parse_duration(v[1:])
        except ValueError as e:
            raise bad_param(param, f"'{value}' is not a relative time such as -1h or -30m ({e})") from None
    try:
        seconds = float(v)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            raise bad_param(param, f"'{value}' is not a time")
        return seconds
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise bad_param(param, f"'{value}' is not an RFC 3339 time (2026-11-27T09:00:00Z), a relative time "
                          f"(-1h) or unix seconds") from None
    if dt.tzinfo is None:
        raise bad_param(param, f"'{value}' has no time zone; add Z or an offset such as +08:00")
    return dt.timestamp()


def parse_window(from_: str | None, to: str | None, step: str | None) -> tuple[float, float, float]:
    now = time.time()
    end = parse_time(to, now, now, "to")
    start = parse_time(from_, end - 3600, now, "from")
    if start >= end:
        raise bad_param("from", "must be before 'to'")
    if step is None or step == "":
        width = max(10.0, math.ceil((end - start) / DEFAULT_POINTS / 10) * 10)
    else:
        try:
            width = parse_duration(step)
        except ValueError as e:
            raise bad_param("step", str(e)) from None
        if width < 1:
            raise bad_param("step", "must be at least 1s (samples are 10 s apart)")
        if (end - start) / width > MAX_POINTS:
            raise bad_param("step", f"gives {math.ceil((end - start) / width)} points; at most {MAX_POINTS} "
                               f"(use a larger step or a shorter range)")
    return start, end, width


def _check(metric: str, agg: str) -> None:
    if metric not in METRICS:
        raise bad_param("metric", f"'{metric}' is not a metric; choose one of {', '.join(METRICS)}")
    if agg not in ("sum", "avg", "max"):
        raise bad_param("agg", f"'{agg}' is not an aggregation; choose sum, avg or max")


def _points(points: list[tuple[float, float]]) -> list[list[float]]:
    return [[t, v] for t, v in points]


def _sort_key(value: str) -> tuple[int, Any]:
    return (0, int(value)) if value.isdigit() else (1, value)


def _query(request: Request, metric: str, match: dict[str, str], from_: str | None, to: str | None,
           step: str | None, agg: str, group_by: str) -> tuple[dict, Any]:
    provider = metrics_provider(request)
    start, end, width = parse_window(from_, to, step)
    try:
        result = provider.range(metric, match, start, end, width, agg, group_by)
    except ValueError as e:
        raise Problem(400, str(e)) from None
    head = {"metric": metric, "unit": METRICS[metric], "from": start, "to": end, "step": result.step,
            "resolution": result.resolution, "aggregation": agg}
    return head, result


@router.get("/apps/{name}/metrics", operation_id="getAppMetrics", summary="Time series of an app: per replica and total")
def app_metrics(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str,
                metric: MetricQ, from_: FromQ = None, to: ToQ = None, step: StepQ = None,
                agg: AggQ = "sum") -> dict:
    scope = f"{tenant}/{project}"
    authz.require("app.read", tenant=tenant, project=project, missing=f"app '{scope}/{name}' not found")
    _check(metric, agg)
    store.get("App", scope, name)  # 404 for an app that does not exist
    head, result = _query(request, metric, {"tenant": tenant, "project": project, "app": name}, from_, to, step,
                          agg, "replica")
    replicas = sorted(result.series, key=lambda s: _sort_key(s.labels.get("replica", "")))
    return {**head, "app": name,
            "replicas": [{"replica": s.labels.get("replica", ""), "points": _points(s.points)} for s in replicas],
            "total": {"points": _points(result.aggregate)}}


@router.get("/metrics", operation_id="getProjectMetrics", summary="Time series of a project: per app and total")
def project_metrics(request: Request, authz: AuthzDep, tenant: str, project: str, metric: MetricQ,
                    from_: FromQ = None, to: ToQ = None, step: StepQ = None, agg: AggQ = "sum") -> dict:
    authz.require("app.read", tenant=tenant, project=project)
    _check(metric, agg)
    head, result = _query(request, metric, {"tenant": tenant, "project": project}, from_, to, step, agg, "app")
    return {**head, "project": f"{tenant}/{project}",
            "apps": [{"app": s.labels.get("app", ""), "points": _points(s.points)} for s in result.series],
            "total": {"points": _points(result.aggregate)}}


def _usage_row(u: Any) -> dict:
    return {"replica": u.replica, "container": u.container, "timestamp": u.timestamp, "cpu": u.cpu,
            "memory": u.memory, "memoryLimit": u.memory_limit, "networkRx": u.network_rx, "networkTx": u.network_tx,
            "blockRead": u.block_read, "blockWrite": u.block_write, "restarts": u.restarts, "oomKills": u.oom_kills}


def _sum(values: list[Any]) -> Any:
    known = [v for v in values if v is not None]
    return round(sum(known), 2) if known else None


@router.get("/top", operation_id="getProjectTop", summary="Current usage of each app and replica")
def top(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str,
        app: Annotated[str | None, Query(description="only this app")] = None) -> dict:
    scope = f"{tenant}/{project}"
    authz.require("app.read", tenant=tenant, project=project)
    if app is not None:
        store.get("App", scope, app)  # 404 for an app that does not exist
    provider = metrics_provider(request)
    by_app: dict[str, list[Any]] = {}
    for u in provider.current(tenant, project, app):
        by_app.setdefault(u.app, []).append(u)
    apps = []
    for name in sorted(by_app):
        rows = by_app[name]
        limits = [u.memory_limit for u in rows]
        apps.append({"app": name, "replicas": len(rows), "cpu": _sum([u.cpu for u in rows]),
                     "memory": sum(u.memory for u in rows),
                     "memoryLimit": None if None in limits else sum(limits),
                     "networkRx": _sum([u.network_rx for u in rows]), "networkTx": _sum([u.network_tx for u in rows]),
                     "restarts": sum(u.restarts for u in rows), "oomKills": sum(u.oom_kills for u in rows),
                     "containers": [_usage_row(u) for u in rows]})
    return {"project": scope, "items": apps}
