"""ClusterMonitor: on the controllers' leader, probes every stored Cluster every few seconds, writes what
it finds into the Cluster's status (only when something changed, so the change feed stays quiet) and
records timeline events when a cluster or one of its nodes goes down or comes back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from dockyard.clusters.engines import ClusterEngines
from dockyard.model.cluster import ClusterError, ClusterHealth, event_scope, without_addresses
from dockyard.store.errors import NotFound
from dockyard.store.repository import Event, Store

log = logging.getLogger(__name__)

PROBE_EVERY = 3.0
_REASONS = {"Ready": "ClusterReady", "Degraded": "ClusterDegraded", "Unavailable": "ClusterUnavailable"}


class ClusterMonitor:
    def __init__(self, store: Store, engines: ClusterEngines, *, leading: Callable[[], bool],
                 every: float = PROBE_EVERY) -> None:
        self.store = store
        self.engines = engines
        self.leading = leading
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._nodes: dict[tuple[str, str], str] = {}  # (cluster, node) → status last seen

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="cluster-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            if not self.leading():
                continue
            try:
                self.probe_all()
            except Exception:  # noqa: BLE001 — a store hiccup must not end the monitor
                log.exception("probing clusters failed")

    def probe_all(self) -> None:
        for obj in self.store.list("Cluster")[0]:
            try:
                self.probe(obj.name)
            except (ClusterError, NotFound):
                continue  # removed meanwhile

    def probe(self, name: str) -> ClusterHealth:
        health = self.engines.health(name)
        obj = self.store.get("Cluster", "", name)
        before = obj.status or {}
        status = status_of(health)
        if {k: v for k, v in before.items() if k != "lastTransitionTime"} != {
                k: v for k, v in status.items() if k != "lastTransitionTime"}:
            if before.get("phase") == status["phase"]:
                status["lastTransitionTime"] = before.get("lastTransitionTime", status["lastTransitionTime"])
            self.store.update_status("Cluster", "", name, status, uid=obj.uid)
        if before.get("phase") != health.phase and health.phase in _REASONS:
            self.store.record_event(Event(event_scope(name), "Cluster", name,
                                          "Normal" if health.phase == "Ready" else "Warning",
                                          _REASONS[health.phase],
                                          f"cluster {name}: {without_addresses(health.message)}"))  # its projects show it
        # node states come only from a swarm's leader: without one (an election) they are not known,
        # and reporting the nodes down would be a false alarm
        self._node_events(name, health.node_states)
        return health

    def _node_events(self, cluster: str, states: tuple[tuple[str, str], ...]) -> None:
        for node, state in states:
            was = self._nodes.get((cluster, node))
            self._nodes[(cluster, node)] = state
            if {was, state} != {"ready", "down"}:  # "unknown" (a node's state in doubt) is no transition
                continue
            up = state == "ready"
            self.store.record_event(Event(
                event_scope(cluster), "Node", node, "Normal" if up else "Warning", "NodeUp" if up else "NodeDown",
                f"node {node} of cluster {cluster} is {'ready again' if up else state}"))


def status_of(h: ClusterHealth) -> dict:
    return {**h.status_fields(), "lastTransitionTime": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
