"""The FastAPI application factory. Services are passed in, so tests and the server choose
the store and the engine-backed providers."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool

from dockyard import __version__
from dockyard.api import (
    access,
    alerts,
    apps,
    audit,
    builds,
    dashboard,
    events,
    images,
    logsearch,
    metrics,
    nodes,
    problems,
    registry,
    resources,
    rights,
    system,
    telemetry,
    terminal,
)
from dockyard.api import clusters as cluster_routes
from dockyard.api.authz import check_path_visibility
from dockyard.api.deps import (
    ClusterOps,
    ExecProvider,
    LogProvider,
    LogSearchProvider,
    MetricsProvider,
    PlatformInfo,
)
from dockyard.api.limits import LoginThrottle, RequestLimiter
from dockyard.model.kinds import KINDS
from dockyard.store.keyring import KeyRing
from dockyard.store.repository import Store
from dockyard.store.users import TokenCache

MAX_BODY = 1024 * 1024  # 1 MiB: manifests and Compose files are far smaller


def create_app(store: Store, *, logs: LogProvider, platform: PlatformInfo, keyring: KeyRing | None = None,
               exec_provider: ExecProvider | None = None, metrics_provider: MetricsProvider | None = None,
               log_search: LogSearchProvider | None = None, clusters: ClusterOps | None = None) -> FastAPI:
    """The API over `store`; `exec_provider` (optional) runs the web terminal's commands;
    `metrics_provider` (optional) answers the metrics routes (503 without one); `log_search`
    (optional) answers the stored-log routes (503 without one); `clusters` (optional) answers the
    node operations and join tokens (503 without one; cluster lists then show the stored status,
    `GET /nodes` the platform's, and no write is refused for its cluster)."""
    app = FastAPI(title="Dockyard", version=__version__, openapi_url="/api/v1/openapi.json",
                  docs_url=None, redoc_url=None,  # the docs page is served by dockyard.web, from local files
                  description="Multi-tenant container cloud platform API. Every route but /login needs "
                              "`Authorization: Bearer <token>`. Errors are application/problem+json.")
    app.state.store = store
    if store.token_cache is None:
        store.token_cache = TokenCache()
    if store.keyring is None:
        store.keyring = keyring or KeyRing(None)  # tests: an in-memory key ring
    app.state.logs = logs
    app.state.platform = platform
    app.state.exec_provider = exec_provider
    app.state.metrics = metrics_provider
    app.state.log_search = log_search
    app.state.clusters = clusters
    app.state.registry = None  # the server sets its RegistryService here
    app.state.images = None  # and the image routes' RegistryTools (api/images.py)
    app.state.limiter = RequestLimiter()
    app.state.login_throttle = LoginThrottle()
    problems.install(app)


    @app.get("/healthz", tags=["system"], operation_id="healthz", summary="Liveness and dependencies")
    async def healthz() -> dict:
        try:
            rv = await run_in_threadpool(store.current_rv)
            db = "ok"
        except Exception:  # noqa: BLE001 — report, don't fail the probe's own request
            rv, db = None, "unavailable"
        return {"status": "ok" if db == "ok" else "degraded", "store": db, "resourceVersion": rv,
                "engine": platform.engine_status().get("status"), "leader": platform.leader()}

    for r in (system.router, resources.router, apps.router, dashboard.router, access.router, audit.router,
              rights.router, metrics.router, alerts.router, events.router, nodes.router, logsearch.router, builds.router,
              registry.router, images.router, cluster_routes.router):
        app.include_router(r, prefix="/api/v1", dependencies=[Depends(check_path_visibility)])
    # the registry's token service: docker authenticates there with Basic auth, outside /api/v1
    app.include_router(registry.token_router)
    # and its push/delete notifications, authenticated by the shared notification secret
    app.include_router(images.events_router)
    # git servers' push webhooks authenticate with the BuildConfig's secret, outside /api/v1
    app.include_router(builds.hooks)
    # the terminal authenticates its first message itself: a WebSocket carries no bearer header
    app.include_router(terminal.router, prefix="/api/v1")
    # GET /metrics for Prometheus (bearer token), and the API latency histogram it exposes
    app.include_router(telemetry.router)
    app.add_middleware(telemetry.RequestMetrics)

    def openapi_with_kinds() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            for info in KINDS.values():
                s = info.model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
                schemas.update(s.pop("$defs", {}))
                schemas[info.kind] = s
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi_with_kinds  # type: ignore[method-assign]
    return BodyLimit(audit.AuditTrail(app))  # type: ignore[return-value]


class BodyLimit:
    """Refuses request bodies over MAX_BODY with 413, whether or not they state a Content-Length
    (a chunked body is counted as it arrives)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str):  # noqa: ANN204 — behave like the FastAPI app for tests and tools
        return getattr(self.app, name)

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", ()):
            if k == b"content-length" and (not v.isdigit() or int(v) > MAX_BODY):
                await _send_413(send)
                return
        seen = 0
        started = False
        refused = False

        async def counting_receive():  # noqa: ANN202
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > MAX_BODY:
                    # answer now; the application sees the client gone and stops reading
                    refused = True
                    if not started:
                        await _send_413(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message) -> None:  # noqa: ANN001
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except Exception:
            if not refused:
                raise


async def _send_413(send) -> None:  # noqa: ANN001
    body = json.dumps({"type": "https://dockyard.dev/problems/413", "title": "Request too large", "status": 413,
                       "detail": f"request bodies are limited to {MAX_BODY} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
