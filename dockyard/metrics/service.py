"""What the API asks of metrics (it implements the API's MetricsProvider protocol): range queries
over the store and the collector's newest readings."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.metrics.collector import Collector
from dockyard.metrics.tsdb import RangeResult


@dataclass
class Usage:
    """The newest reading of one replica's container. Rates (cpu %, bytes/s) are None until the
    collector has read the container twice."""

    tenant: str
    project: str
    app: str
    replica: int
    container: str
    timestamp: float
    cpu: float | None
    memory: int
    memory_limit: int | None
    network_rx: float | None
    network_tx: float | None
    block_read: float | None
    block_write: float | None
    restarts: int
    oom_kills: int
    # cumulative counters, for the Prometheus exposition
    cpu_seconds: float
    network_rx_bytes: int
    network_tx_bytes: int
    block_read_bytes: int
    block_write_bytes: int


class MetricsService:
    """Over a collector: its store answers range queries, its newest readings `current`."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def range(self, metric: str, match: dict[str, str], start: float, end: float, step: float, agg: str,
              group_by: str) -> RangeResult:
        """Series of `metric` matching `match`, combined per value of label `group_by`, with their
        aggregate. Raises MetricsStoreError for bad arguments."""
        return self.collector.store.range(metric, match, start, end, step, agg, group_by=group_by)

    def current(self, tenant: str | None = None, project: str | None = None, app: str | None = None) -> list[Usage]:
        """The newest reading of every running container, optionally of one project or app."""
        out = []
        for r in self.collector.snapshot():
            tg, c = r.target, r.counters
            if (tenant is not None and tg.tenant != tenant) or (project is not None and tg.project != project) \
                    or (app is not None and tg.app != app):
                continue
            out.append(Usage(tg.tenant, tg.project, tg.app, tg.slot, tg.name, r.t, r.cpu_percent, c.memory,
                             c.memory_limit, r.rates.get("network_rx"), r.rates.get("network_tx"),
                             r.rates.get("block_read"), r.rates.get("block_write"), tg.restarts, c.oom_kills,
                             c.cpu_usec / 1e6, c.net_rx, c.net_tx, c.block_read, c.block_write))
        out.sort(key=lambda u: (u.tenant, u.project, u.app, u.replica, u.container))
        return out
