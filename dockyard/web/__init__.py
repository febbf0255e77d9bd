"""The web dashboard: a static single-page application served at `/`. It talks to the server
only through the REST API, its watch streams and the exec WebSocket, with the same bearer
token as the CLI, so it adds no second way in. Third-party front-end code (xterm.js, js-yaml)
comes from npm, pinned in `package-lock.json`, installed by `make install`, and is served from
here: nothing is fetched from a CDN."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
STATIC = HERE / "static"
# the vendored files the dashboard may load, by the name it asks for
VENDOR = {
    "xterm.js": "@xterm/xterm/lib/xterm.js",
    "xterm.css": "@xterm/xterm/css/xterm.css",
    "addon-fit.js": "@xterm/addon-fit/lib/addon-fit.js",
    "js-yaml.mjs": "js-yaml/dist/js-yaml.mjs",
    "swagger-ui-bundle.js": "swagger-ui-dist/swagger-ui-bundle.js",
    "swagger-ui.css": "swagger-ui-dist/swagger-ui.css",
}
TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".json": "application/json; charset=utf-8", ".html": "text/html; charset=utf-8"}
# scripts only from this server; xterm.js sets styles at run time, hence 'unsafe-inline' for styles
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "X-Frame-Options": "DENY"}


def node_modules() -> Path:
    return Path(os.environ.get("DOCKYARD_WEB_MODULES", HERE / "node_modules"))


def vendor_missing() -> list[str]:
    """The vendored files that are not installed (run `make install`)."""
    return [name for name, rel in VENDOR.items() if not (node_modules() / rel).is_file()]


def _file(path: Path, *, cache: str) -> FileResponse:
    return FileResponse(path, media_type=TYPES.get(path.suffix, "application/octet-stream"),
                        headers={**HEADERS, "Cache-Control": cache})


def mount(app: Any) -> None:
    """Add the dashboard's routes to the application create_app made (outside /api/v1, not in OpenAPI)."""
    missing = vendor_missing()
    if missing:
        log.warning("dashboard: %s not installed under %s; the terminal and YAML editing will not work "
                    "(run `make install`, which runs npm ci in dockyard/web)", ", ".join(missing), node_modules())

    @app.get("/api/v1/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        # Swagger UI from the pinned npm package, not the CDN FastAPI would use by default
        return get_swagger_ui_html(openapi_url="/api/v1/openapi.json", title="Dockyard API",
                                   swagger_js_url="/ui/vendor/swagger-ui-bundle.js",
                                   swagger_css_url="/ui/vendor/swagger-ui.css", swagger_favicon_url="data:,")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return _file(STATIC / "index.html", cache="no-cache")

    @app.get("/ui/vendor/{name}", include_in_schema=False)
    def vendor(name: str) -> Response:
        rel = VENDOR.get(name)
        if rel is None:
            raise HTTPException(404, f"no vendored file {name}")
        path = node_modules() / rel
        if not path.is_file():
            raise HTTPException(404, f"{name} is not installed: run `make install` (npm ci in dockyard/web)")
        return _file(path, cache="public, max-age=3600")

    @app.get("/ui/{path:path}", include_in_schema=False)
    def asset(path: str) -> FileResponse:
        try:
            target = (STATIC / path).resolve()
        except (ValueError, OSError):  # a NUL byte or a path the OS refuses: no such file
            raise HTTPException(404, "no such file") from None
        if not target.is_relative_to(STATIC.resolve()) or not target.is_file():
            raise HTTPException(404, f"no file {path}")
        # no-cache: the browser revalidates (cheap 304s) so an upgraded server never mixes versions
        return _file(target, cache="no-cache")
