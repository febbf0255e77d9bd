"""The rollout planner decides zero-downtime steps; these tests walk rollouts step by step."""

from dockyard.engines.base import ObservedContainer
from dockyard.engines.rollout import Target, plan_step


def c(slot: int, h: str, state: str = "running", health: str | None = None, **kw) -> ObservedContainer:
    return ObservedContainer(name=f"{h}-{slot}", id=f"id{h}{slot}", slot=slot, template_hash=h, revision=None,
                             state=state, health=health, **kw)


def simulate(target: Target, observed: list[ObservedContainer], steps: int = 50) -> list[list[ObservedContainer]]:
    """Apply plans assuming new containers become ready at the next step; record every state."""
    states = [list(observed)]
    for _ in range(steps):
        plan = plan_step(target, observed)
        if not plan.actions:
            break
        removed = {a.container for a in plan.actions if a.verb in ("remove", "recreate")}
        observed = [o for o in observed if o.name not in removed]
        for a in plan.actions:
            if a.verb in ("create", "recreate"):
                observed.append(c(a.slot, target.template_hash))
        states.append(list(observed))
    return states


def test_fresh_deploy_creates_all_replicas() -> None:
    plan = plan_step(Target("new", 3, 1, 0), [])
    assert sorted(a.slot for a in plan.actions if a.verb == "create") == [0, 1, 2]


def test_scale_down_removes_highest_slots() -> None:
    plan = plan_step(Target("h", 2, 1, 0), [c(0, "h"), c(1, "h"), c(2, "h"), c(3, "h")])
    assert sorted(a.slot for a in plan.actions if a.verb == "remove") == [2, 3]
    assert not [a for a in plan.actions if a.verb == "create"]


def test_missing_replica_is_recreated_and_created_container_started() -> None:
    plan = plan_step(Target("h", 3, 1, 0), [c(0, "h"), c(2, "h", state="created")])
    assert ("create", 1) in [(a.verb, a.slot) for a in plan.actions]
    assert ("start", 2) in [(a.verb, a.slot) for a in plan.actions]


def test_rolling_update_never_drops_below_desired_ready_nor_exceeds_surge() -> None:
    target = Target("new", 4, 1, 0)
    states = simulate(target, [c(i, "old") for i in range(4)])
    for s in states:
        assert sum(1 for x in s if x.ready) >= 4
        assert len(s) <= 5
    assert sorted((x.template_hash, x.slot) for x in states[-1]) == [("new", i) for i in range(4)]


def test_rolling_update_with_max_unavailable_goes_faster_but_keeps_minimum() -> None:
    target = Target("new", 4, 2, 2)
    states = simulate(target, [c(i, "old") for i in range(4)])
    assert len(states) <= 4
    for s in states:
        assert sum(1 for x in s if x.ready) >= 2
        assert len(s) <= 6


def test_failing_new_replica_stalls_rollout_and_keeps_old() -> None:
    observed = [c(0, "old"), c(1, "old"), c(0, "new", health="unhealthy")]
    plan = plan_step(Target("new", 2, 1, 0), observed)
    assert plan.stalled_reason and "health check" in plan.stalled_reason
    assert not [a for a in plan.actions if a.verb == "remove"]
    assert not [a for a in plan.actions if a.verb == "create"]


def test_starting_new_replica_holds_old_until_ready() -> None:
    observed = [c(0, "old"), c(0, "new", health="starting")]
    plan = plan_step(Target("new", 1, 1, 0), observed)
    assert plan.actions == [] and plan.stalled_reason is None


def test_undo_after_stall_removes_failed_replicas_first() -> None:
    # back to "old": the unhealthy "new" replica is now of another template and not ready
    observed = [c(0, "old"), c(1, "old"), c(0, "new", health="unhealthy")]
    plan = plan_step(Target("old", 2, 1, 0), observed)
    assert [(a.verb, a.container) for a in plan.actions] == [("remove", "new-0")]


def test_deadline_stall_freezes_rollout() -> None:
    observed = [c(0, "old"), c(0, "new", health="starting")]
    plan = plan_step(Target("new", 1, 1, 0, stalled=True), observed)
    assert plan.stalled_reason and "deadline" in plan.stalled_reason
    assert plan.actions == []


def test_recreate_strategy_removes_old_before_creating() -> None:
    target = Target("new", 2, 0, 1, strategy="Recreate")
    p1 = plan_step(target, [c(0, "old"), c(1, "old")])
    assert {a.verb for a in p1.actions} == {"remove"}
    p2 = plan_step(target, [])
    assert {a.verb for a in p2.actions} == {"create"}


def test_unhealthy_replica_in_steady_state_is_replaced() -> None:
    plan = plan_step(Target("h", 2, 1, 0), [c(0, "h"), c(1, "h", health="unhealthy")])
    assert [(a.verb, a.slot) for a in plan.actions] == [("recreate", 1)]


def test_hold_creates_nothing() -> None:
    assert plan_step(Target("h", 2, 1, 0, hold=True), []).actions == []


def test_stopped_container_is_started_unless_policy_never() -> None:
    stopped = [c(0, "h", state="exited", exit_code=0)]
    assert [a.verb for a in plan_step(Target("h", 1, 1, 0), stopped).actions] == ["start"]
    assert plan_step(Target("h", 1, 1, 0, restart_policy="never"), stopped).actions == []
