"""Prometheus exposition at GET /metrics (bearer token as everywhere): the platform's own metrics
and per-container gauges and counters of the apps the caller may see; and the middleware that
times every API request by method, route template and status."""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api import objects
from dockyard.api.asgi import StatusRecorder
from dockyard.api.authz import AuthzDep
from dockyard.api.nodes import node_metrics_text, node_rows
from dockyard.metrics.registry import API_REQUEST_SECONDS, REGISTRY, metric_header, sample_line

router = APIRouter(tags=["system"])
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LABELS = ("tenant", "project", "app", "replica")

# (name, type, help, Usage attribute)
CONTAINER_METRICS = (
    ("dockyard_container_cpu_usage_seconds_total", "counter", "CPU time used by the replica's container.",
     "cpu_seconds"),
    ("dockyard_container_cpu_percent", "gauge", "CPU use over the last collection interval, % of one core.", "cpu"),
    ("dockyard_container_memory_bytes", "gauge", "Memory used (without inactive file cache).", "memory"),
    ("dockyard_container_memory_limit_bytes", "gauge", "Memory limit of the container.", "memory_limit"),
    ("dockyard_container_network_receive_bytes_total", "counter", "Bytes received (all interfaces but lo).",
     "network_rx_bytes"),
    ("dockyard_container_network_transmit_bytes_total", "counter", "Bytes sent (all interfaces but lo).",
     "network_tx_bytes"),
    ("dockyard_container_block_read_bytes_total", "counter", "Bytes read from block devices.", "block_read_bytes"),
    ("dockyard_container_block_write_bytes_total", "counter", "Bytes written to block devices.",
     "block_write_bytes"),
    ("dockyard_container_restarts_total", "counter", "Restarts of the replica's container by the engine.",
     "restarts"),
    ("dockyard_container_oom_kills_total", "counter", "Processes of the container killed for lack of memory.",
     "oom_kills"),
)


class RequestMetrics:
    """ASGI middleware: observes each HTTP request's duration under its route template (the
    path with {placeholders}, never the concrete path: no names of tenants in labels)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        recorder = StatusRecorder(send)
        try:
            await self.app(scope, receive, recorder)
        finally:
            API_REQUEST_SECONDS.observe((scope.get("method", ""), route_template(scope), str(recorder.status)),
                                        time.perf_counter() - started)


_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def route_template(scope: dict) -> str:
    """The matched route's path with its {placeholders} and the prefix it was included under
    (routers keep their own paths, so the prefix is recovered from the concrete path)."""
    path = getattr(scope.get("route"), "path", None)
    if not path:
        return "unmatched"
    params = scope.get("path_params") or {}
    concrete = _PARAM.sub(lambda m: str(params.get(m.group(1), m.group(0))), path)
    full = scope.get("path", "")
    prefix = full[: len(full) - len(concrete)] if full.endswith(concrete) else ""
    return prefix + path


def container_metrics_text(usages: list[Any]) -> str:
    lines: list[str] = []
    for name, kind, help_text, attr in CONTAINER_METRICS:
        samples = [(u, getattr(u, attr)) for u in usages if getattr(u, attr) is not None]
        lines += metric_header(name, kind, help_text)
        lines += [sample_line(name, LABELS, (u.tenant, u.project, u.app, str(u.replica)), float(v)) for u, v in samples]
    return "\n".join(lines) + "\n"


@router.get("/metrics", operation_id="prometheusMetrics", response_class=PlainTextResponse,
            summary="Prometheus exposition (text format 0.0.4) of the platform and of the apps the caller may see")
async def prometheus(request: Request, authz: AuthzDep) -> PlainTextResponse:
    provider = getattr(request.app.state, "metrics", None)
    usages: list[Any] = []
    if provider is not None:
        # the same visibility as lists and watches of apps
        visible = await run_in_threadpool(objects.visible_filter, authz, "App")
        usages = [u for u in provider.current() if visible is None or visible(f"{u.tenant}/{u.project}", u.app)]
    body = REGISTRY.render() + container_metrics_text(usages)
    if authz.is_admin:  # what runs on the nodes, of every tenant: admins only, as GET /nodes
        nodes = await run_in_threadpool(request.app.state.platform.nodes)
        body += node_metrics_text(await run_in_threadpool(node_rows, request, nodes, details=True))
    body += "\n".join([*metric_header("dockyard_scrape_containers", "gauge", "Containers in this answer."),
                        sample_line("dockyard_scrape_containers", (), (), len(usages))]) + "\n"
    return PlainTextResponse(body, media_type=CONTENT_TYPE)
