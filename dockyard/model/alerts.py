"""AlertRule, Notifier and Silence: when to raise an alert about a project's apps, where to send
it, and when to hold it back. The evaluator in `dockyard.alerts` reads these; no I/O here.

A rule is either a threshold on a metric (`metric`, `op`, `threshold`) or a named condition
(`condition: notReady | oomKilled | quota`). Cross-field mistakes are reported on the field the
user has to change (`spec.threshold`, not `spec`)."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from dockyard.model.logdrain import URL_FORBIDDEN, check_headers
from dockyard.model.meta import API_VERSION, DnsLabel, Metadata, Schema, check_dns_label
from dockyard.model.quantity import parse_duration, parse_memory

# metric → (what the value is, unit); values are per app: the hottest replica for cpu and memory,
# the sum over replicas for network rates and counter increases
METRICS: dict[str, tuple[str, str]] = {
    "cpu": ("CPU of the busiest replica, in % of one core", "%"),
    "memory": ("memory of the fullest replica, in % of its limit", "%"),
    "memory_bytes": ("memory of the fullest replica", "bytes"),
    "restarts": ("container restarts within the window", "restarts"),
    "network_rx": ("bytes received per second by all replicas", "bytes/s"),
    "network_tx": ("bytes sent per second by all replicas", "bytes/s"),
}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _check_duration(v: str | int | float) -> str | int | float:
    if not math.isfinite(parse_duration(v)):  # 400 digits, or 1e400 in JSON: inf broke the metrics query
        raise ValueError("must be a finite duration")
    return v


Duration = Annotated[str | int | float, AfterValidator(_check_duration)]


def _fail(model: str, errors: list[tuple[str, str]]) -> None:
    """Raise pydantic's own error for fields of the model being validated, so that admission
    names `spec.<field>` instead of the whole spec."""
    if errors:
        raise ValidationError.from_exception_data(model, [
            InitErrorDetails(type=PydanticCustomError("invalid", msg), loc=(field,), input=None)
            for field, msg in errors])


def compare(value: float, op: str, threshold: float) -> bool:
    """Whether `value op threshold` holds."""
    return {">": value > threshold, ">=": value >= threshold, "<": value < threshold,
            "<=": value <= threshold}[op]


def format_value(v: float, unit: str) -> str:
    """93.25, "%" → 93.2%; 1536, "bytes/s" → 1.5KiB/s."""
    if unit in ("bytes", "bytes/s"):
        suffix = "/s" if unit == "bytes/s" else ""
        for u in ("B", "KiB", "MiB", "GiB"):
            if abs(v) < 1024 or u == "GiB":
                return f"{v:.0f}{u}{suffix}" if u == "B" else f"{v:.1f}{u}{suffix}"
            v /= 1024
    text = f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{text}%" if unit == "%" else f"{text} {unit}".rstrip()


# --- AlertRule -----------------------------------------------------------------------------

class AlertRuleSpec(Schema):
    app: DnsLabel | None = Field(default=None, description="one app; absent: every app of the project, one alert each")
    metric: Literal["cpu", "memory", "memory_bytes", "restarts", "network_rx", "network_tx"] | None = None
    condition: Literal["notReady", "oomKilled", "quota"] | None = None
    op: Literal[">", ">=", "<", "<="] = ">"
    threshold: float | str | None = Field(default=None, description="a number; memory_bytes and network "
                                          "rates also take quantities like 512Mi; quota: percent of the quota")
    resource: Literal["cpu", "memory"] | None = Field(default=None, description="quota: which resource")
    for_: Duration = Field(default="0s", alias="for", description="how long the condition must hold to fire")
    window: Duration | None = Field(default=None, description="restarts and oomKilled: how far back to count "
                                    "(default 10m)")
    repeat_interval: Duration | None = Field(default=None, description="notify again this often while firing")
    notifiers: list[DnsLabel] = Field(default_factory=list)
    summary: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> AlertRuleSpec:
        errors: list[tuple[str, str]] = []
        if (self.metric is None) == (self.condition is None):
            errors.append(("metric", "give either metric (a threshold rule) or condition (notReady, oomKilled, "
                                     "quota), not both" if self.metric else "is required unless condition is given"))
        needs_threshold = self.metric is not None or self.condition == "quota"
        if needs_threshold and self.threshold is None:
            errors.append(("threshold", "is required for a metric or quota rule"))
        if not needs_threshold and self.threshold is not None:
            errors.append(("threshold", f"does not apply to condition {self.condition}"))
        if self.threshold is not None and needs_threshold:
            try:
                if not math.isfinite(self.threshold_value()):
                    errors.append(("threshold", "must be a finite number"))
            except ValueError as e:
                errors.append(("threshold", str(e)))
        if self.condition == "quota":
            if self.resource is None:
                errors.append(("resource", "is required for a quota rule: cpu or memory"))
            if self.app is not None:
                errors.append(("app", "does not apply to a quota rule: the quota is the project's"))
        elif self.resource is not None:
            errors.append(("resource", "applies only to condition quota"))
        if self.window is not None and self.metric != "restarts" and self.condition != "oomKilled":
            errors.append(("window", "applies only to metric restarts and condition oomKilled"))
        if self.window is not None and parse_duration(self.window) < 10:
            errors.append(("window", "must be at least 10s (one collection interval)"))
        if self.repeat_interval is not None and parse_duration(self.repeat_interval) < 60:
            errors.append(("repeatInterval", "must be at least 1m"))
        if len(set(self.notifiers)) != len(self.notifiers):
            errors.append(("notifiers", "lists a notifier twice"))
        _fail("AlertRuleSpec", errors)
        return self

    def threshold_value(self) -> float:
        """The threshold as a number (quantities like 512Mi resolved). Raises ValueError."""
        t = self.threshold
        if isinstance(t, (int, float)):
            return float(t)
        if t is None:
            raise ValueError("is required")
        if self.metric in ("memory_bytes", "network_rx", "network_tx"):
            return float(parse_memory(t))
        try:
            return float(t)
        except ValueError:
            raise ValueError(f"'{t}' is not a number") from None

    def for_seconds(self) -> float:
        return parse_duration(self.for_)

    def window_seconds(self) -> float:
        return parse_duration(self.window) if self.window is not None else 600.0

    def repeat_seconds(self) -> float | None:
        return parse_duration(self.repeat_interval) if self.repeat_interval is not None else None

    def unit(self) -> str:
        """The unit of the rule's values, for messages and tables."""
        if self.metric in ("cpu", "memory") or self.condition == "quota":
            return "%"
        if self.metric:
            return METRICS[self.metric][1]
        return "OOM kills" if self.condition == "oomKilled" else "ready replicas"

    def subject(self) -> str:
        """What the rule watches, for messages: 'cpu', 'notReady', 'quota cpu'."""
        if self.condition == "quota":
            return f"quota {self.resource}"
        return self.metric or self.condition or ""


class AlertRule(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["AlertRule"] = "AlertRule"
    metadata: Metadata
    spec: AlertRuleSpec
    status: dict | None = None


# --- Notifier ------------------------------------------------------------------------------

class SmtpSettings(Schema):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=587, ge=1, le=65535)
    from_: str = Field(alias="from", description="the sender address")
    starttls: bool = True
    username: str | None = None
    password_secret: DnsLabel | None = Field(default=None, description="a Secret of the project holding the password")

    @model_validator(mode="after")
    def _sender(self) -> SmtpSettings:
        errors = []
        if not EMAIL.match(self.from_):
            errors.append(("from", f"'{self.from_}' is not an email address"))
        if self.password_secret and not self.username:
            errors.append(("username", "is required when passwordSecret is given"))
        _fail("SmtpSettings", errors)
        return self


class NotifierSpec(Schema):
    type: Literal["webhook", "email", "dingtalk", "wecom", "feishu", "slack"]
    url: str | None = Field(default=None, max_length=2000, description="where to POST (every type but email)")
    secret: str | None = Field(default=None, max_length=200, description="dingtalk and feishu: the signing secret")
    to: list[str] = Field(default_factory=list, description="email: recipients")
    smtp: SmtpSettings | None = None
    headers: Annotated[dict[str, str], AfterValidator(check_headers)] = Field(
        default_factory=dict, description="webhook: extra request headers (e.g. Authorization)")

    @model_validator(mode="after")
    def _per_type(self) -> NotifierSpec:
        errors: list[tuple[str, str]] = []
        if self.type == "email":
            if self.url is not None:
                errors.append(("url", "does not apply to an email notifier; give smtp and to"))
            if not self.to:
                errors.append(("to", "is required: at least one recipient"))
            errors += [(f"to[{i}]", f"'{a}' is not an email address") for i, a in enumerate(self.to) if not EMAIL.match(a)]
            if self.smtp is None:
                errors.append(("smtp", "is required for an email notifier"))
        else:
            if not self.url:
                errors.append(("url", f"is required for a {self.type} notifier"))
            elif URL_FORBIDDEN.search(self.url):
                errors.append(("url", "must not contain spaces or control characters"))
            if self.to or self.smtp:
                errors.append(("to" if self.to else "smtp", f"applies only to email notifiers, not {self.type}"))
        if self.secret is not None and self.type not in ("dingtalk", "feishu"):
            errors.append(("secret", "applies only to dingtalk and feishu (their signing secret)"))
        if self.headers and self.type != "webhook":
            errors.append(("headers", "apply only to webhook notifiers"))
        _fail("NotifierSpec", errors)
        return self


class Notifier(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["Notifier"] = "Notifier"
    metadata: Metadata
    spec: NotifierSpec
    status: dict | None = None


# --- Silence -------------------------------------------------------------------------------

def parse_time(v: str) -> datetime:
    """An RFC 3339 time with a zone. Raises ValueError."""
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"'{v}' is not an RFC 3339 time (example: 2026-05-01T12:00:00Z)") from None
    if t.tzinfo is None:
        raise ValueError(f"'{v}' has no time zone; add Z for UTC")
    return t


def _check_time(v: str) -> str:
    parse_time(v)
    return v


Time = Annotated[str, AfterValidator(_check_time)]


class SilenceSpec(Schema):
    rule: str = Field(description="an AlertRule's name, or * for every rule of the project")
    app: DnsLabel | None = None
    starts_at: Time | None = None
    ends_at: Time
    comment: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _window(self) -> SilenceSpec:
        errors = []
        if self.rule != "*":
            try:
                check_dns_label(self.rule)
            except ValueError as e:
                errors.append(("rule", f"{e}, or *"))
        if self.starts_at and parse_time(self.starts_at) >= parse_time(self.ends_at):
            errors.append(("endsAt", "must be after startsAt"))
        _fail("SilenceSpec", errors)
        return self

    def covers(self, rule: str, app: str, at: datetime) -> bool:
        """Whether this silence holds notifications of `rule` for `app` at time `at`."""
        if self.rule not in ("*", rule) or (self.app is not None and self.app != app):
            return False
        if self.starts_at and at < parse_time(self.starts_at):
            return False
        return at < parse_time(self.ends_at)


class Silence(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["Silence"] = "Silence"
    metadata: Metadata
    spec: SilenceSpec
    status: dict | None = None
