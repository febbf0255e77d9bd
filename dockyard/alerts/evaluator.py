"""The alert evaluator: every collection interval, while this server holds the controller lease,
evaluate every AlertRule for every app it covers, move each alert's state on, deliver what is
owed to the rule's notifiers and write it all back to the rule's `status.alerts`.

All state lives in the rule's status, so a restarted server or a new leader continues where the
last one stopped. Deliveries of one round run in parallel with a socket timeout each, so a dead or
refusing notifier costs at most one timeout per round (one that trickles its answer can hold the
round longer: the timeout is per socket operation, not per send); a failed
delivery is retried on later rounds with backoff (see alerts.state). A notification sent just
before a crash, whose status write was lost, is sent again: delivery is at-least-once."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from dockyard.alerts import state
from dockyard.alerts.notifiers import DeliveryError, Notification, Target, deliver
from dockyard.alerts.signals import MetricsSource, ProjectView, observe
from dockyard.alerts.state import Alert
from dockyard.model.alerts import AlertRuleSpec, NotifierSpec, SilenceSpec
from dockyard.policy.egress import PRIVATE_ANNOTATION
from dockyard.store.errors import NotFound
from dockyard.store.repository import Event, Store, StoredObject

log = logging.getLogger(__name__)

INTERVAL = 10.0
OFFSET = 2.0  # evaluate a little after the collector's tick, so that its readings are fresh
VALUE_ONLY_WRITE_EVERY = 60.0  # a status change that is only a new value is written at most this often
SEND_WORKERS = 8


def public_url(fallback: str) -> str:
    """The dashboard's base URL for links in notifications: $DOCKYARD_PUBLIC_URL, else `fallback`."""
    return (os.environ.get("DOCKYARD_PUBLIC_URL") or fallback).rstrip("/")


def dashboard_link(base: str, scope: str, spec: AlertRuleSpec, app: str) -> str:
    """Where a notification points: the app's page (its metrics or events tab) or the project's usage."""
    project = f"{base.rstrip('/')}/#/projects/{scope}"
    if not app:
        return f"{project}/usage"
    tab = {"notReady": "", "oomKilled": "/events"}.get(spec.condition or "", "/metrics")
    return f"{project}/apps/{app}{tab}"


def notifier_target(store: Store, obj: StoredObject) -> Target:
    """A Notifier object made ready to send; its SMTP password is read from the project's Secret
    only when a message goes out."""
    spec = NotifierSpec.model_validate(obj.spec)

    def password() -> str | None:
        if spec.smtp is None or not spec.smtp.password_secret:
            return None
        try:
            secret = store.get("Secret", obj.scope, spec.smtp.password_secret)
        except NotFound:
            raise DeliveryError(f"secret '{spec.smtp.password_secret}' (smtp.passwordSecret) not found") from None
        if store.keyring is None or "ciphertext" not in secret.spec:
            raise DeliveryError("the SMTP password cannot be read: the server has no key ring")
        try:
            return store.keyring.decrypt(secret.spec["ciphertext"]).decode()
        except ValueError as e:
            raise DeliveryError(str(e)) from None

    return Target(obj.name, spec, PRIVATE_ANNOTATION in obj.annotations, password)


@dataclass
class _Job:
    rule: StoredObject
    alert: Alert
    target: Target
    notification: Notification


class AlertEvaluator:
    """Runs `run_once` every `interval` seconds on a thread of its own while `leading()` says so."""

    def __init__(self, store: Store, metrics: MetricsSource | None, *, leading: Callable[[], bool],
                 public_url: str, interval: float = INTERVAL, clock: Callable[[], float] = time.time,
                 send: Callable[[Target, Notification], str] = deliver) -> None:
        self.store = store
        self.metrics = metrics
        self.leading = leading
        self.public_url = public_url
        self.interval = interval
        self.clock = clock
        self.send = send
        self._written: dict[str, float] = {}  # rule uid → when this server last wrote its status
        self._pool = ThreadPoolExecutor(max_workers=SEND_WORKERS, thread_name_prefix="alert-send")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the thread ---

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alert-evaluator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=20)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            tick = (self.clock() // self.interval) * self.interval
            if self.leading():
                try:
                    self.run_once()
                except Exception:  # noqa: BLE001 — a store hiccup costs one round, never the thread
                    log.exception("alert evaluation failed")
            else:
                self._written.clear()  # another server writes the statuses meanwhile
            self._stop.wait(max(0.5, tick + self.interval + OFFSET - self.clock()))

    # --- one round ---

    def run_once(self) -> int:
        """Evaluate every rule once; returns how many notifications were attempted."""
        now = self.clock()
        rules = self.store.list("AlertRule")[0]
        by_scope: dict[str, list[StoredObject]] = {}
        for r in rules:
            by_scope.setdefault(r.scope, []).append(r)
        jobs: list[_Job] = []
        statuses: dict[str, tuple[StoredObject, list[Alert], list[str]]] = {}
        for scope, scoped in by_scope.items():
            try:
                view = self._project_view(scope)
            except NotFound:
                continue  # the project is being deleted with its rules
            notifiers = {n.name: n for n in self.store.list("Notifier", scope=scope)[0]}
            silences = self._silences(scope)
            for rule in scoped:
                try:
                    alerts, problems, rule_jobs = self._evaluate(rule, view, notifiers, silences, now)
                except Exception:  # noqa: BLE001 — one broken rule must not stop the others
                    log.exception("evaluating alert rule %s/%s failed", rule.scope, rule.name)
                    continue
                statuses[rule.uid] = (rule, alerts, problems)
                jobs += rule_jobs
        self._deliver(jobs, now)
        for rule, alerts, problems in statuses.values():
            self._write(rule, alerts, problems, now)
        live = {r.uid for r in rules}
        for uid in set(self._written) - live:
            del self._written[uid]
        return len(jobs)

    def _project_view(self, scope: str) -> ProjectView:
        tenant, _, project = scope.partition("/")
        proj = self.store.get("Project", tenant, project)
        apps = {a.name: (a.spec, a.status or {}) for a in self.store.list("App", scope=scope)[0]}
        readings = self.metrics.current(tenant, project) if self.metrics is not None else []
        return ProjectView(scope, apps, proj.spec.get("quota") or {}, readings)

    def _silences(self, scope: str) -> list[SilenceSpec]:
        out = []
        for s in self.store.list("Silence", scope=scope)[0]:
            try:
                out.append(SilenceSpec.model_validate(s.spec))
            except ValidationError:
                continue
        return out

    def _evaluate(self, rule: StoredObject, view: ProjectView, notifiers: dict[str, StoredObject],
                  silences: list[SilenceSpec], now: float) -> tuple[list[Alert], list[str], list[_Job]]:
        spec = AlertRuleSpec.model_validate(rule.spec)
        problems = [f"notifier '{n}' not found" for n in spec.notifiers if n not in notifiers]
        if spec.app and spec.app not in view.apps:
            problems.append(f"app '{spec.app}' not found")
        if self.metrics is None and (spec.metric is not None or spec.condition == "oomKilled"):
            problems.append("metrics are off on this server: the rule cannot be evaluated")
        seen = observe(spec, view, self.metrics, now)
        known = {a.app: a for a in (Alert.from_status(d) for d in (rule.status or {}).get("alerts") or [])}
        targets: dict[str, Target] = {}
        for n in spec.notifiers:
            if n not in notifiers:
                continue
            try:
                targets[n] = notifier_target(self.store, notifiers[n])
            except ValidationError as e:
                # stored before a stricter schema: the rule still goes on for its other notifiers
                problems.append(f"notifier '{n}' is not valid: {e.error_count()} error(s); fix it")
        names = list(targets)
        at = datetime.fromtimestamp(now, UTC)
        jobs: list[_Job] = []
        alerts: list[Alert] = []
        for app in sorted(set(known) | set(seen)):
            a = known.get(app) or Alert(app=app)
            obs = seen.get(app)
            change = state.advance(a, obs is not None and obs.active, obs.value if obs else None, now,
                                   spec.for_seconds())
            if change:
                self._record(rule, spec, a, change)
            if obs is None and a.state == "inactive" or obs is None and a.state == "resolved" and not \
                    state.due(a, now, None):
                continue  # the app is gone and nothing is owed for it
            silenced = any(s.covers(rule.name, app, at) for s in silences)
            send_to = state.to_send(a, names, now, silenced=silenced, repeat_seconds=spec.repeat_seconds())
            if send_to and a.delivery:
                n = self._notification(rule, spec, a, a.delivery["state"])
                jobs += [_Job(rule, a, targets[name], n) for name in send_to]
            alerts.append(a)
        return alerts, problems, jobs

    def _notification(self, rule: StoredObject, spec: AlertRuleSpec, a: Alert, owed: str) -> Notification:
        threshold = spec.threshold_value() if spec.threshold is not None else None
        op = spec.op if threshold is not None else None
        unit = spec.unit()
        n = Notification(rule=rule.name, project=rule.scope, app=a.app or None, state=owed, subject=spec.subject(),
                         value=a.value, threshold=threshold, op=op, unit=unit,
                         starts_at=a.firing_since or a.active_since or "",
                         ends_at=a.resolved_at if owed == "resolved" else None,
                         url=dashboard_link(self.public_url, rule.scope, spec, a.app), summary="")
        n.summary = spec.summary or n.headline()
        return n

    def _record(self, rule: StoredObject, spec: AlertRuleSpec, a: Alert, change: str) -> None:
        what = f"app {a.app}: " if a.app else ""
        n = self._notification(rule, spec, a, change)
        if change == "firing":
            msg = f"{what}{n.condition_text()}" + (f" for {spec.for_}" if spec.for_seconds() else "")
            ev = Event(rule.scope, "AlertRule", rule.name, "Warning", "AlertFiring", msg)
        else:
            ev = Event(rule.scope, "AlertRule", rule.name, "Normal", "AlertResolved", f"{what}{n.condition_text()}")
        try:
            self.store.record_event(ev)
        except Exception:  # noqa: BLE001 — an event is worth less than the alert itself
            log.exception("recording an alert event failed")

    def _deliver(self, jobs: list[_Job], now: float) -> None:
        """Send every job in parallel; each alert's results are recorded once all of its are in."""
        if not jobs:
            return
        futures = [(j, self._pool.submit(self._send_one, j)) for j in jobs]
        results: dict[int, tuple[Alert, dict[str, str | None]]] = {}
        for job, fut in futures:
            error = fut.result()
            results.setdefault(id(job.alert), (job.alert, {}))[1][job.target.name] = error
        done = self.clock()
        for alert, outcome in results.values():
            state.record(alert, outcome, done)
            for name, error in outcome.items():
                if error:
                    log.warning("alert %s: notifier %s failed: %s", alert.app or "-", name, error)

    def _send_one(self, job: _Job) -> str | None:
        try:
            self.send(job.target, job.notification)
            return None
        except DeliveryError as e:
            return str(e)
        except Exception as e:  # noqa: BLE001 — whatever a notifier does, it is that notifier's error
            return f"{type(e).__name__}: {e}"

    def _write(self, rule: StoredObject, alerts: list[Alert], problems: list[str], now: float) -> None:
        status = {"observedGeneration": rule.generation, "alerts": [a.to_status() for a in alerts],
                  "problems": problems}
        stored = rule.status or {}
        if status == stored:
            return
        if _without_values(status) == _without_values(stored) and \
                now - self._written.get(rule.uid, 0.0) < VALUE_ONLY_WRITE_EVERY:
            return  # only a value moved: not worth a write (and a change-feed entry) every round
        if self.store.update_status("AlertRule", rule.scope, rule.name, status, uid=rule.uid) is not None:
            self._written[rule.uid] = now


def _without_values(status: dict) -> dict:
    return {**status, "alerts": [{k: v for k, v in a.items() if k != "value"} for a in status.get("alerts") or []]}


