"""Errors as RFC 9457 `application/problem+json`, mapped in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dockyard.admission import FieldError, InvalidObject, field_path
from dockyard.store.errors import AlreadyExists, Conflict, Gone, NotFound

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 410: "Gone", 413: "Request too large", 415: "Unsupported media type",
          422: "Invalid object", 429: "Too many requests", 500: "Internal error", 503: "Unavailable"}


class Problem(Exception):
    def __init__(self, status: int, detail: str, *, errors: list[FieldError] | None = None,
                 headers: dict[str, str] | None = None, title: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.headers = headers
        self.title = title or TITLES.get(status, "Error")


def problem_response(p: Problem, request: Request | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": f"https://dockyard.dev/problems/{p.status}", "title": p.title,
                            "status": p.status, "detail": p.detail}
    if request is not None:
        body["instance"] = request.url.path
    if p.errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in p.errors]
    return JSONResponse(body, status_code=p.status, media_type=PROBLEM, headers=p.headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(InvalidObject)
    async def _invalid(request: Request, exc: InvalidObject) -> JSONResponse:
        return problem_response(Problem(422, f"invalid {exc.kind}: {exc}", errors=exc.errors,
                                        title=f"Invalid {exc.kind}"), request)

    @app.exception_handler(NotFound)
    async def _nf(request: Request, exc: NotFound) -> JSONResponse:
        return problem_response(Problem(404, str(exc)), request)

    @app.exception_handler(AlreadyExists)
    async def _ae(request: Request, exc: AlreadyExists) -> JSONResponse:
        return problem_response(Problem(409, str(exc), title="Already exists"), request)

    @app.exception_handler(Conflict)
    async def _cf(request: Request, exc: Conflict) -> JSONResponse:
        return problem_response(Problem(409, str(exc)), request)

    @app.exception_handler(Gone)
    async def _gone(request: Request, exc: Gone) -> JSONResponse:
        return problem_response(Problem(410, str(exc)), request)

    @app.exception_handler(RequestValidationError)
    async def _rve(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            loc = tuple(e.get("loc", ()))
            where = loc[0] if loc else ""
            path = field_path(loc[1:]) if where == "body" else f"{where} parameter {field_path(loc[1:])}"
            msg = "is required" if e.get("type") == "missing" else str(e.get("msg", "")).removeprefix("Value error, ")
            errors.append(FieldError(path, msg))
        status = 422 if any(str(e.get("loc", ("",))[0]) == "body" for e in exc.errors()) else 400
        return problem_response(Problem(status, "; ".join(f"{e.field}: {e.message}" for e in errors),
                                        errors=errors), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(Problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None)),
                                request)

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        # never a stack trace in a response; the log has it
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(Problem(500, "the server failed to handle this request; see the server log"),
                                request)
