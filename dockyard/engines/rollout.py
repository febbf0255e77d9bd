"""Planning one convergence step of a replicated workload: a pure function, testable without
an engine. The `docker` driver observes containers, calls `plan_step`, executes the actions."""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.engines.base import ObservedContainer


@dataclass(frozen=True)
class Action:
    verb: str  # create | start | remove | recreate
    slot: int
    container: str | None = None  # engine name of the container acted on (start/remove/recreate)
    reason: str = ""


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    stalled_reason: str | None = None

    def verbs(self) -> list[str]:
        return [f"{a.verb}:{a.slot}" for a in self.actions]


@dataclass(frozen=True)
class Target:
    template_hash: str
    replicas: int
    max_surge: int
    max_unavailable: int
    strategy: str = "RollingUpdate"  # or Recreate
    restart_policy: str = "always"
    stalled: bool = False             # the controller decided the rollout has passed its deadline
    hold: bool = False                # create nothing (e.g. dependencies not ready)


def plan_step(target: Target, observed: list[ObservedContainer]) -> Plan:
    """Decide the next actions that move `observed` towards `target`.

    Zero-downtime rule: while containers of an older template exist, the number of ready
    containers never drops below replicas - maxUnavailable, and the total never exceeds
    replicas + maxSurge. New containers that fail stop the rollout and old ones stay.
    """
    plan = Plan()
    n = target.replicas
    new = sorted((c for c in observed if c.template_hash == target.template_hash), key=lambda c: c.slot)
    old = [c for c in observed if c.template_hash != target.template_hash]

    # duplicates of a slot cannot come from Dockyard (names are deterministic) but are removed if seen
    by_slot: dict[int, ObservedContainer] = {}
    for c in new:
        if c.slot in by_slot or c.slot >= n:
            plan.actions.append(Action("remove", c.slot, c.name, "scale down" if c.slot >= n else "duplicate"))
        else:
            by_slot[c.slot] = c
    current = list(by_slot.values())

    for c in current:
        if c.state == "created":
            plan.actions.append(Action("start", c.slot, c.name, "created but never started"))
        elif c.state == "exited" and _should_restart(target.restart_policy, c):
            plan.actions.append(Action("start", c.slot, c.name, "stopped outside Dockyard"))

    failing_new = [c for c in current if c.failing]
    if old and failing_new:
        bad = failing_new[0]
        why = "failed its health check" if bad.health == "unhealthy" else (
            f"exited with code {bad.exit_code}" if bad.exit_code else "keeps restarting")
        plan.stalled_reason = (f"new replica {bad.name} {why}; the rollout is stopped and "
                               f"{len(old)} replica(s) of the previous revision keep serving")
        return plan
    if old and target.stalled:
        plan.stalled_reason = "the rollout did not complete within its progress deadline"
        return plan

    if not old:
        # steady state: self-heal replicas that went unhealthy, fill missing slots
        for c in failing_new:
            if c.health == "unhealthy" and c.state == "running":
                plan.actions.append(Action("recreate", c.slot, c.name, "unhealthy"))
        if not target.hold:
            for slot in range(n):
                if slot not in by_slot:
                    plan.actions.append(Action("create", slot, None, "missing replica"))
        return plan

    if target.strategy == "Recreate":
        for c in old:
            plan.actions.append(Action("remove", c.slot, c.name, "recreate strategy"))
        return plan

    # rolling update
    ready_new = sum(1 for c in current if c.ready)
    ready_old = [c for c in old if c.ready]
    not_ready_old = [c for c in old if not c.ready]
    min_available = max(n - target.max_unavailable, 0)
    max_total = n + target.max_surge

    for c in not_ready_old:  # removing them costs no availability
        plan.actions.append(Action("remove", c.slot, c.name, "old revision, not ready"))
    removable = max(ready_old.__len__() + ready_new - min_available, 0)
    if ready_new >= n:
        removable = len(ready_old)
    for c in sorted(ready_old, key=lambda c: -c.slot)[:removable]:
        plan.actions.append(Action("remove", c.slot, c.name, "old revision replaced"))
    remaining_old = len(ready_old) - min(removable, len(ready_old))

    if not target.hold:
        room = max_total - (remaining_old + len(current))
        missing = [s for s in range(n) if s not in by_slot]
        for slot in missing[:max(room, 0)]:
            plan.actions.append(Action("create", slot, None, "rolling update"))
    return plan


def _should_restart(policy: str, c: ObservedContainer) -> bool:
    if policy == "always":
        return True
    if policy == "on-failure":
        return (c.exit_code or 0) != 0
    return False
