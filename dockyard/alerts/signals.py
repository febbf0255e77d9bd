"""What a rule looks at, per app: is its condition true now, and what is the value.

Metric values come from the collector's newest readings (`current`), counter increases
(restarts, OOM kills) from the time-series store (`range`), readiness from the App's status,
quota usage from the Apps' specs against the Project's quota. Error rates are not here: they need
the HTTP status codes that only the gateway will see."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dockyard.model.alerts import AlertRuleSpec, compare
from dockyard.model.app import AppSpec
from dockyard.model.quota import Quota
from dockyard.policy import quota as quota_math

STEP = 10.0  # the collection interval: one point per sample
LOOKBACK = 300.0  # how far before a window a counter's baseline is looked for


class UsageReading(Protocol):
    app: str
    container: str
    cpu: float | None
    memory: int
    memory_limit: int | None
    network_rx: float | None
    network_tx: float | None


class MetricsSource(Protocol):
    """The part of metrics.service.MetricsService that the evaluator uses."""

    def current(self, tenant: str | None = None, project: str | None = None,
                app: str | None = None) -> Sequence[UsageReading]: ...

    def range(self, metric: str, match: dict[str, str], start: float, end: float, step: float, agg: str,
              group_by: str) -> Any: ...


@dataclass
class Observation:
    active: bool
    value: float | None


@dataclass
class ProjectView:
    """What one evaluation round knows about a project: its apps (name → spec, status), its quota
    and the newest metric readings of its containers."""

    scope: str
    apps: dict[str, tuple[dict, dict]]
    quota: dict
    readings: Sequence[UsageReading]


def _reading_value(metric: str, readings: list[UsageReading]) -> float | None:
    if metric == "cpu":
        vals = [r.cpu for r in readings if r.cpu is not None]
        return max(vals) if vals else None
    if metric == "memory":
        vals = [r.memory / r.memory_limit * 100 for r in readings if r.memory_limit]
        return round(max(vals), 2) if vals else None
    if metric == "memory_bytes":
        return float(max(r.memory for r in readings)) if readings else None
    vals = [v for r in readings if (v := getattr(r, metric)) is not None]
    return float(sum(vals)) if vals else None


def counter_increase(metrics: MetricsSource, metric: str, scope: str, app: str, window: float, now: float) -> float:
    """How much a per-container counter grew in the last `window` seconds, summed over the app's
    containers. The baseline is a container's last sample before the window; one without a sample
    in the LOOKBACK before it is new and counts from 0 (an OOM kill before its first sample still
    counts). Metrics persist across server restarts, so a restart does not make old kills new;
    a server that was down longer than LOOKBACK does."""
    tenant, _, project = scope.partition("/")
    start = now - window
    res = metrics.range(metric, {"tenant": tenant, "project": project, "app": app}, start - LOOKBACK, now, STEP,
                        "max", "container")
    total = 0.0
    for s in res.series:
        if not s.points:
            continue
        before = [v for t, v in s.points if t < start]
        baseline = before[-1] if before else 0.0
        total += max(0.0, s.points[-1][1] - baseline)
    return total


def observe(spec: AlertRuleSpec, view: ProjectView, metrics: MetricsSource | None,
            now: float) -> dict[str, Observation]:
    """One observation per app the rule covers ("" for the project-wide quota rule)."""
    if spec.condition == "quota":
        return {"": _quota(spec, view)}
    names = [spec.app] if spec.app else sorted(view.apps)
    out: dict[str, Observation] = {}
    for name in names:
        if name not in view.apps:
            continue
        app_spec, app_status = view.apps[name]
        if spec.condition == "notReady":
            want = int(app_spec.get("replicas", 1))
            ready = int(app_status.get("readyReplicas") or 0)
            cond = next((c for c in app_status.get("conditions") or [] if c.get("type") == "Ready"), None)
            not_ready = want > 0 and (ready < want or (cond is not None and cond.get("status") != "True"))
            out[name] = Observation(not_ready, float(ready))
            continue
        if metrics is None:
            continue
        if spec.condition == "oomKilled":
            kills = counter_increase(metrics, "oom_kills", view.scope, name, spec.window_seconds(), now)
            out[name] = Observation(kills > 0, kills)
            continue
        assert spec.metric is not None
        if spec.metric == "restarts":
            value: float | None = counter_increase(metrics, "restarts", view.scope, name, spec.window_seconds(), now)
        else:
            value = _reading_value(spec.metric, [r for r in view.readings if r.app == name])
        out[name] = Observation(value is not None and compare(value, spec.op, spec.threshold_value()), value)
    return out


def _quota(spec: AlertRuleSpec, view: ProjectView) -> Observation:
    assert spec.resource is not None
    hard = quota_math.hard_amount(Quota.model_validate(view.quota or {}), spec.resource)
    if not hard:
        return Observation(False, None)
    used = quota_math.Usage()
    for app_spec, _ in view.apps.values():
        used.add(AppSpec.model_validate(app_spec))
    share = round(used.amount(spec.resource) / hard * 100, 2)
    return Observation(compare(share, spec.op, spec.threshold_value()), share)
