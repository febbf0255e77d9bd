"""Alert rules without an engine: spec validation with field paths, the state machine and its
notification dedupe with a fake clock, silences, delivery retries, and the evaluator's round
over a real store with fake metrics and a recording sender."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from dockyard.admission import InvalidObject, admit
from dockyard.alerts import state
from dockyard.alerts.evaluator import AlertEvaluator
from dockyard.alerts.notifiers import DeliveryError, Notification, Target
from dockyard.alerts.state import Alert
from dockyard.model.alerts import SilenceSpec
from dockyard.store.repository import Store

T0 = 1_800_000_000.0


def rule(spec: dict) -> dict:
    return {"kind": "AlertRule", "metadata": {"name": "r", "project": "acme/shop"}, "spec": spec}


# --- validation ----------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "field", "words"), [
    ({"metric": "cpu"}, "spec.threshold", "is required"),
    ({"metric": "cpu", "threshold": 80, "condition": "notReady"}, "spec.metric", "not both"),
    ({"threshold": 1}, "spec.metric", "unless condition"),
    ({"metric": "gpu", "threshold": 1}, "spec.metric", ""),
    ({"condition": "quota", "threshold": 80}, "spec.resource", "cpu or memory"),
    ({"condition": "quota", "resource": "cpu", "threshold": 80, "app": "web"}, "spec.app", "project"),
    ({"condition": "notReady", "threshold": 1}, "spec.threshold", "does not apply"),
    ({"metric": "cpu", "threshold": 1, "for": "5 minutes"}, "spec.for", ""),
    ({"metric": "cpu", "threshold": 1, "window": "5m"}, "spec.window", "restarts"),
    ({"metric": "memory_bytes", "threshold": "12Zi"}, "spec.threshold", "unit"),
    ({"metric": "cpu", "threshold": 1, "notifiers": ["a", "a"]}, "spec.notifiers", "twice"),
    ({"metric": "cpu", "threshold": 1, "repeatInterval": "10s"}, "spec.repeatInterval", "1m"),
    # float() takes these; a rule with them could never fire (nan) or never stop being compared (inf)
    ({"metric": "cpu", "threshold": "nan"}, "spec.threshold", "finite"),
    ({"metric": "cpu", "threshold": "1e400"}, "spec.threshold", "finite"),
    ({"metric": "restarts", "threshold": 1, "window": "9" * 400 + "d"}, "spec.window", "finite"),
    ({"metric": "cpu", "threshold": 1, "for": 1e400}, "spec.for", "finite"),
])
def test_rule_errors_name_the_field(spec: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidObject) as e:
        admit("AlertRule", rule(spec))
    assert any(err.field == field and words in err.message for err in e.value.errors), e.value.errors


def test_the_issue_example_is_admitted_with_quantities() -> None:
    a = admit("AlertRule", rule({"app": "web", "metric": "cpu", "op": ">", "threshold": 80, "for": "5m",
                                 "notifiers": ["oncall"]}))
    assert a.spec["for"] == "5m" and a.spec["threshold"] == 80
    b = admit("AlertRule", rule({"metric": "memory_bytes", "threshold": "512Mi"}))
    assert b.spec["threshold"] == "512Mi"


@pytest.mark.parametrize(("spec", "field"), [
    ({"type": "webhook"}, "spec.url"),
    ({"type": "email", "to": ["a@b"]}, "spec.smtp"),
    ({"type": "email", "to": ["nobody"], "smtp": {"host": "h", "from": "a@b"}}, "spec.to[0]"),
    ({"type": "email", "to": ["a@b"], "smtp": {"host": "h", "from": "x"}}, "spec.smtp.from"),
    ({"type": "email", "to": ["a@b"], "smtp": {"host": "h", "from": "a@b", "passwordSecret": "pw"}},
     "spec.smtp.username"),
    ({"type": "slack", "url": "https://x", "secret": "s"}, "spec.secret"),
    ({"type": "pager", "url": "https://x"}, "spec.type"),
    ({"type": "webhook", "url": "https://x", "headers": {"Host": "intranet"}}, "spec.headers"),
    # a pasted URL with a space could never be sent (and the send error would show its token)
    ({"type": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send?access_token=t0ken "}, "spec.url"),
    ({"type": "webhook", "url": "https://hooks.example/a\tb"}, "spec.url"),
])
def test_notifier_errors_name_the_field(spec: dict, field: str) -> None:
    with pytest.raises(InvalidObject) as e:
        admit("Notifier", {"kind": "Notifier", "metadata": {"name": "n", "project": "acme/shop"}, "spec": spec})
    assert field in [err.field for err in e.value.errors], e.value.errors


def test_silence_times_and_coverage() -> None:
    with pytest.raises(InvalidObject) as e:
        admit("Silence", {"kind": "Silence", "metadata": {"name": "s", "project": "a/b"},
                          "spec": {"rule": "r", "endsAt": "tomorrow"}})
    assert e.value.errors[0].field == "spec.endsAt"
    with pytest.raises(InvalidObject) as e:
        admit("Silence", {"kind": "Silence", "metadata": {"name": "s", "project": "a/b"},
                          "spec": {"rule": "r", "startsAt": "2026-01-02T00:00:00Z", "endsAt": "2026-01-01T00:00:00Z"}})
    assert e.value.errors[0].field == "spec.endsAt"
    s = SilenceSpec.model_validate({"rule": "hot", "app": "web", "endsAt": "2026-01-01T10:00:00Z"})
    at = datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert s.covers("hot", "web", at)
    assert not s.covers("hot", "api", at) and not s.covers("cold", "web", at)
    assert not s.covers("hot", "web", datetime(2026, 1, 1, 10, tzinfo=UTC))
    assert SilenceSpec.model_validate({"rule": "*", "endsAt": "2026-01-01T10:00:00Z"}).covers("any", "x", at)


# --- the state machine ---------------------------------------------------------------------

def test_pending_then_firing_after_for_then_resolved() -> None:
    a = Alert(app="web")
    assert state.advance(a, True, 90, T0, 20) is None and a.state == "pending"
    assert state.advance(a, True, 91, T0 + 10, 20) is None and a.state == "pending"
    assert state.advance(a, True, 92, T0 + 20, 20) == "firing"
    assert a.firing_since == state.iso(T0 + 20) and a.active_since == state.iso(T0) and a.value == 92
    assert state.advance(a, True, 93, T0 + 30, 20) is None and a.state == "firing"
    assert state.advance(a, False, 3, T0 + 40, 20) == "resolved"
    assert a.resolved_at == state.iso(T0 + 40)
    assert state.advance(a, False, 3, T0 + 50, 20) is None and a.state == "resolved"


def test_pending_that_stops_before_for_never_fires() -> None:
    a = Alert(app="web")
    state.advance(a, True, 90, T0, 60)
    state.advance(a, False, 10, T0 + 10, 60)
    assert a.state == "inactive" and a.active_since is None
    assert state.due(a, T0 + 10, None) is None


def test_for_zero_fires_at_once() -> None:
    a = Alert(app="web")
    assert state.advance(a, True, 1, T0, 0) == "firing"


def _round(a: Alert, active: bool, now: float, *, silenced: bool = False, repeat: float | None = None,
           fail: set[str] = frozenset(), notifiers: tuple[str, ...] = ("hook",)) -> list[str]:
    """One evaluation with delivery; returns what was sent ("hook:firing")."""
    state.advance(a, active, 1.0, now, 0)
    names = state.to_send(a, list(notifiers), now, silenced=silenced, repeat_seconds=repeat)
    sent = [f"{n}:{a.delivery['state']}" for n in names if n not in fail]
    if names:
        state.record(a, {n: ("boom" if n in fail else None) for n in names}, now)
    return sent


def test_one_notification_per_transition() -> None:
    a = Alert(app="web")
    assert _round(a, True, T0) == ["hook:firing"]
    for i in range(1, 10):
        assert _round(a, True, T0 + 10 * i) == []
    assert _round(a, False, T0 + 100) == ["hook:resolved"]
    assert _round(a, False, T0 + 110) == []
    assert _round(a, True, T0 + 120) == ["hook:firing"]  # a new episode is a new notification


def test_repeat_interval_while_firing() -> None:
    a = Alert(app="web")
    assert _round(a, True, T0, repeat=60) == ["hook:firing"]
    assert _round(a, True, T0 + 50, repeat=60) == []
    assert _round(a, True, T0 + 60, repeat=60) == ["hook:firing"]
    assert _round(a, True, T0 + 100, repeat=60) == []


def test_status_round_trip_continues_without_renotifying() -> None:
    """What a new leader reads back from status behaves like the alert it was."""
    a = Alert(app="web")
    _round(a, True, T0)
    again = Alert.from_status(a.to_status())
    assert again == a
    assert _round(again, True, T0 + 10) == []
    assert _round(again, False, T0 + 20) == ["hook:resolved"]


def test_silence_holds_and_notifies_when_it_ends_if_still_firing() -> None:
    a = Alert(app="web")
    assert _round(a, True, T0, silenced=True) == [] and a.silenced and a.state == "firing"
    assert _round(a, True, T0 + 10, silenced=True) == []
    assert _round(a, True, T0 + 20) == ["hook:firing"] and not a.silenced


def test_silence_over_a_whole_episode_sends_nothing() -> None:
    a = Alert(app="web")
    _round(a, True, T0, silenced=True)
    _round(a, False, T0 + 10, silenced=True)
    assert a.state == "resolved"
    assert _round(a, False, T0 + 20) == []  # nobody was told it fired, so nobody is told it resolved


def test_failed_notifier_is_retried_with_backoff_and_given_up() -> None:
    a = Alert(app="web")
    assert _round(a, True, T0, fail={"bad"}, notifiers=("hook", "bad")) == ["hook:firing"]
    assert a.notifier_errors == {"bad": "boom"} and a.delivery["pending"] == ["bad"]
    assert a.delivery["retryAt"] == state.iso(T0 + state.BACKOFF[0])
    assert _round(a, True, T0 + 5, fail={"bad"}, notifiers=("hook", "bad")) == []  # not yet
    now = T0 + state.BACKOFF[0]
    assert _round(a, True, now, notifiers=("hook", "bad")) == ["bad:firing"]  # only the one still owed
    assert a.notifier_errors == {} and a.delivery is None and a.last_notified["state"] == "firing"

    b = Alert(app="web")
    now = T0
    for _ in range(state.MAX_ATTEMPTS):
        _round(b, True, now, fail={"bad"}, notifiers=("bad",))
        now += 400
    assert b.delivery is None and b.last_notified["state"] == "firing" and b.notifier_errors["bad"] == "boom"
    assert _round(b, True, now, notifiers=("bad",)) == []  # given up: no more tries for this episode


def test_a_notifier_removed_while_owed_is_dropped() -> None:
    a = Alert(app="web")
    _round(a, True, T0, fail={"bad"}, notifiers=("hook", "bad"))
    assert a.delivery["pending"] == ["bad"]
    assert _round(a, True, T0 + 100, notifiers=("hook",)) == [] and a.delivery is None
    assert a.last_notified["state"] == "firing"


def test_resolved_before_firing_was_delivered_drops_it() -> None:
    a = Alert(app="web")
    _round(a, True, T0, fail={"hook"})
    assert a.delivery and a.delivery["state"] == "firing"
    assert _round(a, False, T0 + 20) == [] and a.delivery is None


# --- the evaluator over a real store -------------------------------------------------------

@dataclass
class Reading:
    app: str
    container: str
    cpu: float | None
    memory: int = 1 << 20
    memory_limit: int | None = 16 << 20
    network_rx: float | None = None
    network_tx: float | None = None


@dataclass
class Series:
    labels: dict
    points: list


@dataclass
class Range:
    series: list


class FakeMetrics:
    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.series: dict[str, list[Series]] = {}

    def current(self, tenant=None, project=None, app=None):  # noqa: ANN001, ANN201
        return list(self.readings)

    def range(self, metric, match, start, end, step, agg, group_by):  # noqa: ANN001, ANN201
        return Range([Series(s.labels, [p for p in s.points if start <= p[0] <= end])
                      for s in self.series.get(metric, []) if s.labels["app"] == match["app"]])


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def world(tmp_path):  # noqa: ANN001, ANN201
    store = Store(f"sqlite:///{tmp_path / 'd.db'}")
    store.migrate()
    store.create("Tenant", "", "acme", {})
    store.create("Project", "acme", "shop", {"quota": {"cpu": "2"}})
    for name in ("web", "api"):
        store.create("App", "acme/shop", name, {"image": "x", "replicas": 1, "resources": {"cpu": "0.5"}},)
    store.create("Notifier", "acme/shop", "hook", {"type": "webhook", "url": "http://127.0.0.1:9/x"})
    sent: list[Notification] = []
    fail: set[str] = set()

    def send(target: Target, n: Notification) -> str:
        if target.name in fail:
            raise DeliveryError("HTTP 500: nope")
        sent.append(n)
        return "HTTP 200"

    metrics, clock = FakeMetrics(), Clock()
    ev = AlertEvaluator(store, metrics, leading=lambda: True, public_url="http://dash", clock=clock, send=send)
    yield store, ev, metrics, clock, sent, fail
    ev.stop()
    store.close()


def alerts_of(store: Store, name: str) -> dict[str, dict]:
    return {a["app"]: a for a in store.get("AlertRule", "acme/shop", name).status.get("alerts", [])}


def test_evaluator_fires_per_app_and_writes_status(world) -> None:  # noqa: ANN001
    store, ev, metrics, clock, sent, _ = world
    store.create("AlertRule", "acme/shop", "hot", {"metric": "cpu", "op": ">", "threshold": 50, "for": "20s",
                                                  "notifiers": ["hook", "missing"]})
    metrics.readings = [Reading("web", "c1", 95.0), Reading("web", "c2", 10.0), Reading("api", "c3", 5.0)]
    ev.run_once()
    st = store.get("AlertRule", "acme/shop", "hot").status
    assert st["problems"] == ["notifier 'missing' not found"]
    assert alerts_of(store, "hot")["web"]["state"] == "pending" and alerts_of(store, "hot")["api"]["state"] == "inactive"
    clock.t += 10
    ev.run_once()
    assert sent == []
    clock.t += 10
    ev.run_once()
    assert [(n.app, n.state, n.value) for n in sent] == [("web", "firing", 95.0)]
    n = sent[0]
    assert n.url == "http://dash/#/projects/acme/shop/apps/web/metrics" and n.threshold == 50 and n.op == ">"
    web = alerts_of(store, "hot")["web"]
    assert web["state"] == "firing" and web["lastNotified"]["state"] == "firing" and web["value"] == 95.0
    # a new evaluator (a restarted server, another leader) continues without notifying again
    ev2 = AlertEvaluator(store, metrics, leading=lambda: True, public_url="http://dash", clock=clock, send=ev.send)
    clock.t += 10
    ev2.run_once()
    assert len(sent) == 1
    metrics.readings = []  # scaled to 0: no readings
    clock.t += 10
    ev2.run_once()
    assert [(n.app, n.state) for n in sent[1:]] == [("web", "resolved")]
    assert alerts_of(store, "hot")["web"]["state"] == "resolved"
    evs = store.list_events("acme/shop", kind="AlertRule", name="hot")
    assert [e.reason for e in evs] == ["AlertFiring", "AlertResolved"] and evs[0].type == "Warning"
    ev2.stop()


def test_failing_notifier_does_not_hold_back_other_rules(world) -> None:  # noqa: ANN001
    store, ev, metrics, clock, sent, fail = world
    store.create("Notifier", "acme/shop", "broken", {"type": "webhook", "url": "http://127.0.0.1:9/y"})
    store.create("AlertRule", "acme/shop", "a", {"metric": "cpu", "threshold": 50, "notifiers": ["broken"]})
    store.create("AlertRule", "acme/shop", "b", {"metric": "cpu", "threshold": 50, "app": "web", "notifiers": ["hook"]})
    fail.add("broken")
    metrics.readings = [Reading("web", "c1", 95.0)]
    ev.run_once()
    assert [(n.rule, n.app) for n in sent] == [("b", "web")]
    web = alerts_of(store, "a")["web"]
    assert web["notifierErrors"] == {"broken": "HTTP 500: nope"} and web["delivery"]["attempts"] == 1


def test_a_stored_notifier_the_schema_now_refuses_does_not_stop_the_rule(world) -> None:  # noqa: ANN001
    """Stored before a stricter schema (a header or URL now refused): the rule still fires, its other
    notifiers are told and the rule's problems name the invalid one (it raised and skipped the rule)."""
    store, ev, metrics, _, sent, _ = world
    store.create("Notifier", "acme/shop", "old", {"type": "webhook", "url": "http://127.0.0.1:9/a b"})
    store.create("AlertRule", "acme/shop", "hot", {"metric": "cpu", "threshold": 50, "app": "web",
                                                  "notifiers": ["old", "hook"]})
    metrics.readings = [Reading("web", "c1", 95.0)]
    ev.run_once()
    assert [(n.rule, n.app) for n in sent] == [("hot", "web")]
    st = store.get("AlertRule", "acme/shop", "hot").status
    assert st["alerts"][0]["state"] == "firing"
    assert [p for p in st["problems"] if p.startswith("notifier 'old' is not valid")], st["problems"]


def test_silence_holds_until_it_ends(world) -> None:  # noqa: ANN001
    store, ev, metrics, clock, sent, _ = world
    store.create("AlertRule", "acme/shop", "hot", {"metric": "cpu", "threshold": 50, "notifiers": ["hook"]})
    ends = state.iso(T0 + 25)
    store.create("Silence", "acme/shop", "quiet", {"rule": "hot", "app": "web", "endsAt": ends})
    metrics.readings = [Reading("web", "c1", 95.0)]
    ev.run_once()
    assert sent == [] and alerts_of(store, "hot")["web"]["silenced"] is True
    clock.t += 10
    ev.run_once()
    assert sent == []
    clock.t += 20
    ev.run_once()
    assert [(n.app, n.state) for n in sent] == [("web", "firing")]


def test_conditions_not_ready_quota_and_oom(world) -> None:  # noqa: ANN001
    store, ev, metrics, clock, sent, _ = world
    store.update_status("App", "acme/shop", "web", {"readyReplicas": 0, "conditions": [{"type": "Ready", "status": "False"}]})
    store.update_status("App", "acme/shop", "api", {"readyReplicas": 1, "conditions": [{"type": "Ready", "status": "True"}]})
    store.create("AlertRule", "acme/shop", "down", {"condition": "notReady", "notifiers": ["hook"]})
    store.create("AlertRule", "acme/shop", "full", {"condition": "quota", "resource": "cpu", "threshold": 40,
                                                    "notifiers": ["hook"]})
    store.create("AlertRule", "acme/shop", "oom", {"condition": "oomKilled", "window": "5m", "notifiers": ["hook"]})
    # web: a container since before the window with 1 kill then, 2 now; api: a new container with 1 kill
    metrics.series["oom_kills"] = [
        Series({"app": "web", "container": "web-1"}, [(T0 - 400, 1.0), (T0 - 310, 1.0), (T0 - 10, 2.0)]),
        Series({"app": "api", "container": "api-1"}, [(T0 - 20, 1.0)]),
        Series({"app": "web", "container": "old-1"}, [(T0 - 400, 3.0), (T0 - 10, 3.0)]),
    ]
    ev.run_once()
    got = {(n.rule, n.app, n.value) for n in sent}
    assert ("down", "web", 0.0) in got and not any(r == "down" and a == "api" for r, a, _ in got)
    assert ("full", None, 50.0) in got  # 2 apps × 0.5 cpu of a 2-cpu quota
    assert ("oom", "web", 1.0) in got and ("oom", "api", 1.0) in got
    assert next(n for n in sent if n.rule == "full").url == "http://dash/#/projects/acme/shop/usage"


def test_smtp_password_comes_from_the_projects_secret(world) -> None:  # noqa: ANN001
    from dockyard.alerts.evaluator import notifier_target
    from dockyard.store.keyring import KeyRing

    store = world[0]
    store.keyring = KeyRing(None)
    key_id, token = store.keyring.encrypt(b"s3cret-pw")
    store.create("Secret", "acme/shop", "smtp-pw", {"sha256": "x", "size": 9, "keyId": key_id, "ciphertext": token})
    spec = {"type": "email", "to": ["a@example.com"],
            "smtp": {"host": "mail.example.com", "from": "d@example.com", "username": "d", "passwordSecret": "smtp-pw"}}
    store.create("Notifier", "acme/shop", "mail", spec)
    assert notifier_target(store, store.get("Notifier", "acme/shop", "mail")).password() == "s3cret-pw"
    store.create("Notifier", "acme/shop", "mail2", {**spec, "smtp": {**spec["smtp"], "passwordSecret": "gone"}})
    with pytest.raises(DeliveryError, match="secret 'gone'"):
        notifier_target(store, store.get("Notifier", "acme/shop", "mail2")).password()
