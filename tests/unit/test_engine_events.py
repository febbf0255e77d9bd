"""Which engine events become timeline events (pure: EngineEventTranslator)."""

from __future__ import annotations

from dockyard.controllers.timeline import EngineEventTranslator, node_event
from dockyard.engines.base import EngineEvent, WorkloadKey

KEY = WorkloadKey("acme", "shop", "web")


def ev(action: str, container: str = "c1", slot: int | None = 0, **kw) -> EngineEvent:  # noqa: ANN003
    return EngineEvent(KEY, action, container=container, detail=kw.pop("detail", action), slot=slot, **kw)


def test_a_crash_is_a_warning_with_its_exit_code_and_a_stop_by_dockyard_is_nothing() -> None:
    t = EngineEventTranslator()
    e = t.event_for(ev("die", exit_code=3))
    assert e is not None and (e.scope, e.kind, e.name) == ("acme/shop", "App", "web")
    assert (e.type, e.reason, e.message) == ("Warning", "Crashed", "replica 0 exited with code 3")
    assert t.event_for(ev("die", exit_code=137, expected=True)) is None
    done = t.event_for(ev("die", exit_code=0))
    assert done is not None and (done.type, done.reason) == ("Normal", "Completed")


def test_an_oom_kill_is_a_warning_and_explains_the_death_after_it() -> None:
    t = EngineEventTranslator()
    oom = t.event_for(ev("oom"))
    assert oom is not None and (oom.type, oom.reason) == ("Warning", "OOMKilled")
    died = t.event_for(ev("die", exit_code=137))
    assert died is not None and died.message == "replica 0 exited with code 137 after an OOM kill"
    again = t.event_for(ev("die", exit_code=137))
    assert again is not None and "OOM" not in again.message


def test_health_changes_only_between_healthy_and_unhealthy_per_replica() -> None:
    t = EngineEventTranslator()
    assert t.event_for(ev("health_status", detail="health_status: healthy")) is None  # starting → healthy
    bad = t.event_for(ev("health_status", detail="health_status: unhealthy"))
    assert bad is not None and (bad.type, bad.reason) == ("Warning", "Unhealthy")
    assert t.event_for(ev("health_status", detail="health_status: unhealthy")) is None
    t.event_for(ev("destroy"))
    # the replacement on the same slot passing its check is the recovery
    good = t.event_for(ev("health_status", container="c2", detail="health_status: healthy"))
    assert good is not None and (good.type, good.reason) == ("Normal", "Healthy")
    other = t.event_for(ev("health_status", container="c3", slot=1, detail="health_status: healthy"))
    assert other is None


def test_events_without_an_app_or_of_no_interest_are_left_out() -> None:
    t = EngineEventTranslator()
    assert t.event_for(EngineEvent(None, "die", container="x", exit_code=1)) is None
    assert t.event_for(ev("start")) is None and t.event_for(ev("create")) is None


def test_node_events_are_cluster_level() -> None:
    down, up = node_event("host-1", "unix:///run/d.sock", up=False), node_event("host-1", "unix:///run/d.sock", up=True)
    assert (down.scope, down.kind, down.type, down.reason) == ("", "Node", "Warning", "NodeDown")
    assert (up.type, up.reason) == ("Normal", "NodeUp")
