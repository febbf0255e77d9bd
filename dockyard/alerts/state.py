"""The life of one alert (one rule, one app) as pure functions over its status entry.

States: inactive → pending (the condition holds) → firing (it held for the rule's `for`) →
resolved (it stopped holding); pending falls back to inactive if the condition stops before
`for`. Notifications follow from the state and what was last notified, never from the
transition itself, so an evaluator that restarts (or another server that takes over) reads the
entry back from the rule's status and neither skips nor repeats a notification — except when it
stops between a delivery and the status write, which makes delivery at-least-once.

Delivery of one notification to the rule's notifiers is tracked in `delivery`: the notifiers
still to be told, attempts so far and when to try again (exponential backoff). A notifier that
keeps failing is given up after MAX_ATTEMPTS and its error stays in `notifierErrors`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MAX_ATTEMPTS = 6
BACKOFF = (10.0, 30.0, 60.0, 120.0, 300.0)  # seconds before attempt 2, 3, …


def iso(t: float) -> str:
    """Unix seconds as RFC 3339 UTC with a Z, to the second."""
    return datetime.fromtimestamp(t, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def unix(s: str | None) -> float | None:
    return None if not s else datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@dataclass
class Alert:
    """One alert's status entry (`status.alerts[i]` of an AlertRule); `app` is "" for a
    project-wide rule (quota)."""

    app: str
    state: str = "inactive"  # inactive | pending | firing | resolved
    value: float | None = None
    active_since: str | None = None
    firing_since: str | None = None
    resolved_at: str | None = None
    silenced: bool = False
    last_notified: dict[str, str] | None = None  # {state, at}
    notifier_errors: dict[str, str] = field(default_factory=dict)
    delivery: dict[str, Any] | None = None  # {state, pending: [names], attempts, retryAt}

    _FIELDS = (("app", "app"), ("state", "state"), ("value", "value"), ("active_since", "activeSince"),
               ("firing_since", "firingSince"), ("resolved_at", "resolvedAt"), ("silenced", "silenced"),
               ("last_notified", "lastNotified"), ("notifier_errors", "notifierErrors"), ("delivery", "delivery"))

    @classmethod
    def from_status(cls, d: dict[str, Any]) -> Alert:
        a = cls(app=str(d.get("app") or ""))
        for attr, key in cls._FIELDS[1:]:
            if d.get(key) is not None:
                setattr(a, attr, d[key])
        return a

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for attr, key in self._FIELDS:
            v = getattr(self, attr)
            if v is not None and v != {} or attr in ("app", "state", "silenced"):
                out[key] = v
        return out


def advance(a: Alert, active: bool, value: float | None, now: float, for_seconds: float) -> str | None:
    """Move `a` on by one evaluation; returns "firing" or "resolved" when it became so (for events)."""
    a.value = value
    if active:
        if a.state in ("inactive", "resolved"):
            a.state, a.active_since = "pending", iso(now)
        if a.state == "pending" and now - (unix(a.active_since) or now) >= for_seconds:
            a.state, a.firing_since, a.resolved_at = "firing", iso(now), None
            return "firing"
        return None
    if a.state == "pending":
        a.state, a.active_since = "inactive", None
    elif a.state == "firing":
        a.state, a.resolved_at = "resolved", iso(now)
        return "resolved"
    return None


def due(a: Alert, now: float, repeat_seconds: float | None) -> str | None:
    """The notification `a` owes its notifiers now: "firing", "resolved" or None."""
    last = a.last_notified or {}
    last_at = unix(last.get("at"))
    episode = unix(a.firing_since)
    told_firing = last.get("state") == "firing" and last_at is not None and episode is not None and last_at >= episode
    if a.state == "firing":
        if not told_firing:
            return "firing"
        if repeat_seconds and last_at is not None and now - last_at >= repeat_seconds:
            return "firing"
        return None
    if a.state == "resolved" and told_firing:
        return "resolved"
    return None


def to_send(a: Alert, notifiers: list[str], now: float, *, silenced: bool, repeat_seconds: float | None) -> list[str]:
    """Which notifiers to try now. A silence holds every notification (the state still moves);
    what is owed when it ends goes out then."""
    a.silenced = silenced
    owed = due(a, now, repeat_seconds)
    if owed is None:
        a.delivery = None
        return []
    if silenced:
        return []
    if a.delivery is None or a.delivery.get("state") != owed:
        a.delivery = {"state": owed, "pending": list(notifiers), "attempts": 0, "retryAt": iso(now)}
    if (unix(a.delivery.get("retryAt")) or 0) > now:
        return []
    # a notifier deleted (or dropped from the rule) meanwhile is owed nothing any more
    pending = [n for n in a.delivery.get("pending") or [] if n in notifiers]
    a.delivery["pending"] = pending
    if not pending:
        finish(a, now)
    return pending


def finish(a: Alert, now: float) -> None:
    a.last_notified = {"state": a.delivery["state"] if a.delivery else a.state, "at": iso(now)}
    a.delivery = None


def record(a: Alert, results: dict[str, str | None], now: float) -> None:
    """Note the outcome of one attempt (notifier → error, None when delivered)."""
    if a.delivery is None:
        return
    for name, error in results.items():
        if error is None:
            a.notifier_errors.pop(name, None)
        else:
            a.notifier_errors[name] = error
    pending = [n for n in a.delivery.get("pending", []) if results.get(n, "not tried") is not None]
    attempts = int(a.delivery.get("attempts", 0)) + 1
    if not pending or attempts >= MAX_ATTEMPTS:
        finish(a, now)
        return
    a.delivery = {**a.delivery, "pending": pending, "attempts": attempts,
                  "retryAt": iso(now + BACKOFF[min(attempts - 1, len(BACKOFF) - 1)])}
