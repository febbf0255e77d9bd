"""ClusterOperations: the API's ClusterOps (api/deps.py) over ClusterEngines — health, nodes and node
operations per cluster, with engine errors turned into ClusterErrors that carry an HTTP status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from dockyard.clusters.engines import ClusterEngines
from dockyard.engines.base import EngineError, EngineUnavailable, NodeInfo
from dockyard.model.cluster import LOCAL, ClusterError, ClusterHealth


class ClusterOperations:
    def __init__(self, engines: ClusterEngines, local_nodes: Callable[[], list[NodeInfo]]) -> None:
        self.engines = engines
        # the local engine's nodes as the controller manager knows them (the last known, marked
        # down, while the engine does not answer)
        self.local_nodes = local_nodes

    def cluster_health(self, cluster: str) -> ClusterHealth:
        return self.engines.health(cluster)

    def nodes(self, cluster: str | None = None) -> list[NodeInfo]:
        if cluster == LOCAL:
            return [replace(n, cluster=LOCAL) for n in self.local_nodes()]
        if cluster is not None:
            try:
                return self.engines.cluster_nodes(cluster)
            except EngineError as e:  # its driver cannot be opened
                raise ClusterError(503, f"cluster {cluster}: {e}") from None
        out = self.nodes(LOCAL)
        for name in self.engines.clusters()[1:]:
            try:
                out += self.nodes(name)
            except ClusterError:
                continue  # removed meanwhile, or its driver cannot be opened
        return out

    def update_node(self, cluster: str, node: str, *, availability: str | None = None,
                    labels: dict[str, str | None] | None = None) -> NodeInfo:
        info = self._on_cluster(cluster, lambda d: d.update_node(node, availability=availability, labels=labels))
        return replace(info, cluster=cluster)

    def join_tokens(self, cluster: str) -> dict[str, str]:
        return self._on_cluster(cluster, lambda d: d.join_tokens())

    def _on_cluster(self, cluster: str, call: Callable[[Any], Any]) -> Any:
        if cluster == LOCAL:
            raise ClusterError(409, "cluster local is the server's single engine: it has no nodes to manage")
        drv = self.engines.driver(cluster)
        try:
            return call(drv)
        except EngineUnavailable as e:
            raise ClusterError(503, f"cluster {cluster} cannot do this now: {e}") from None
        except EngineError as e:
            status = {"NodeNotFound": 404, "NodesUnsupported": 409}.get(e.reason, 502)
            raise ClusterError(status, f"cluster {cluster}: {e}") from None
