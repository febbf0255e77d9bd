"""What the engine reports, as timeline events: crashes with their exit code, OOM kills, health
changes of an App's replicas, and nodes going down and coming back.

A replica that the driver itself stops (a rollout, a scale-down, a removal) dies too; the driver
marks those deaths as expected and they are left out: only what nobody asked for is a Warning.
Engine events say only what changed now, so the last health of each replica slot is remembered
here to report "healthy again" only after "unhealthy" (not each start's starting → healthy) — by
slot, because the reconciler replaces an unhealthy replica: its successor's health is the recovery.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from dockyard.engines.base import EngineEvent
from dockyard.store.repository import CLUSTER_SCOPE, Event

NODE_DOWN, NODE_UP = "NodeDown", "NodeUp"
OOM_MEMORY = 30.0  # seconds an OOM kill explains a container's death that follows it


class EngineEventTranslator:
    """Turns the engine's container events into timeline events (None: not worth one)."""

    def __init__(self) -> None:
        self._health: dict[tuple, str] = {}  # (scope, app, slot or container) → last health reported
        self._oom: dict[str, float] = {}    # container name → when it last had an OOM kill

    def event_for(self, ev: EngineEvent) -> Event | None:
        if ev.key is None or not ev.container:
            return None
        replica = f"replica {ev.slot}" if ev.slot is not None else f"container {ev.container}"
        if ev.action == "oom":
            self._oom[ev.container] = time.monotonic()
            return self._event(ev, "Warning", "OOMKilled",
                               f"{replica}: a process was killed for lack of memory (memory limit reached)")
        if ev.action == "die":
            oom_at = self._oom.pop(ev.container, None)
            if ev.expected:
                return None  # stopped by Dockyard: a rollout, a scale-down, a removal
            code = ev.exit_code
            after_oom = oom_at is not None and time.monotonic() - oom_at < OOM_MEMORY
            if code == 0 and not after_oom:
                return self._event(ev, "Normal", "Completed", f"{replica} exited with code 0")
            what = f"{replica} exited with code {code if code is not None else 'unknown'}"
            return self._event(ev, "Warning", "Crashed", what + (" after an OOM kill" if after_oom else ""))
        if ev.action == "health_status":
            status = ev.detail.partition(":")[2].strip()
            where = (ev.key.scope, ev.key.app, ev.slot if ev.slot is not None else ev.container)
            before = self._health.get(where)
            self._health[where] = status
            if status == "unhealthy" and before != "unhealthy":
                return self._event(ev, "Warning", "Unhealthy", f"{replica} failed its health check")
            if status == "healthy" and before == "unhealthy":
                return self._event(ev, "Normal", "Healthy", f"{replica} passes its health check again")
            return None
        if ev.action == "destroy":
            self._oom.pop(ev.container, None)
            if ev.slot is None:
                self._health.pop((ev.key.scope, ev.key.app, ev.container), None)
        return None

    @staticmethod
    def _event(ev: EngineEvent, type_: str, reason: str, message: str) -> Event:
        assert ev.key is not None
        return Event(ev.key.scope, "App", ev.key.app, type_, reason, message)


def node_event(name: str, url: str, up: bool) -> Event:
    """A cluster-level event: the node's engine stopped or started answering."""
    if up:
        return Event(CLUSTER_SCOPE, "Node", name, "Normal", NODE_UP, f"the engine at {url} answers again")
    return Event(CLUSTER_SCOPE, "Node", name, "Warning", NODE_DOWN, f"the engine at {url} does not answer")


def fallback_node_name(url: str) -> str:
    """A node's name when its engine never answered: the host the engine URL points at."""
    host = urlsplit(url).hostname
    return host if host and not url.startswith("unix://") else socket.gethostname()
