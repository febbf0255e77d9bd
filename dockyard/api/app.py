"""The FastAPI application factory. Services are passed in, so tests and the server choose
the store and the engine-backed providers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool

from dockyard import __version__
from dockyard.api import access, apps, audit, problems, resources, system
from dockyard.api.authz import check_path_visibility
from dockyard.api.deps import LogProvider, PlatformInfo
from dockyard.api.limits import LoginThrottle, RequestLimiter
from dockyard.api.problems import Problem, problem_response
from dockyard.store.keyring import KeyRing
from dockyard.store.repository import Store

MAX_BODY = 1024 * 1024  # 1 MiB: manifests and Compose files are far smaller


def create_app(store: Store, *, logs: LogProvider, platform: PlatformInfo, keyring: KeyRing | None = None) -> FastAPI:
    app = FastAPI(title="Dockyard", version=__version__, openapi_url="/api/v1/openapi.json",
                  docs_url="/api/v1/docs", redoc_url=None,
                  description="Multi-tenant container cloud platform API. Every route but /login needs "
                              "`Authorization: Bearer <token>`. Errors are application/problem+json.")
    app.state.store = store
    if store.keyring is None:
        store.keyring = keyring or KeyRing(None)  # tests: an in-memory key ring
    app.state.logs = logs
    app.state.platform = platform
    app.state.limiter = RequestLimiter()
    app.state.login_throttle = LoginThrottle()
    problems.install(app)

    app.middleware("http")(audit.audit_middleware)

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return problem_response(Problem(413, f"request bodies are limited to {MAX_BODY} bytes"), request)
        return await call_next(request)

    @app.get("/healthz", tags=["system"], operation_id="healthz", summary="Liveness and dependencies")
    async def healthz() -> dict:
        try:
            rv = await run_in_threadpool(store.current_rv)
            db = "ok"
        except Exception:  # noqa: BLE001 — report, don't fail the probe's own request
            rv, db = None, "unavailable"
        return {"status": "ok" if db == "ok" else "degraded", "store": db, "resourceVersion": rv,
                "engine": platform.engine_status().get("status"), "leader": platform.leader()}

    for r in (system.router, resources.router, apps.router, access.router, audit.router):
        app.include_router(r, prefix="/api/v1", dependencies=[Depends(check_path_visibility)])
    return app
