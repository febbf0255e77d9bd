"""Search and export of stored container logs: `GET /projects/T/P/logs` (a whole project, or one app
with `app=`), as JSON or streamed NDJSON. The app logs route (`apps.py`) searches through the same
helpers when it is given `grep`."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from dockyard.api.authz import AuthzDep
from dockyard.api.deps import LogEntryView, LogSearchView, StoreDep, log_search_provider
from dockyard.api.metrics import bad_param, parse_time

router = APIRouter(prefix="/projects/{tenant}/{project}", tags=["logs"])

MAX_GREP = 1000
MAX_JSON_LIMIT = 10_000
MAX_EXPORT_LIMIT = 1_000_000
_RELATIVE = re.compile(r"(\d+(\.\d+)?(ms|s|m|h|d))+")
WHEN_DOC = "how far back (1h, 30m, 2d) or a time: RFC 3339 (2026-11-27T09:00:00Z) or unix seconds"

GrepQ = Annotated[str | None, Query(max_length=MAX_GREP, description="a literal text the line contains "
                                                                     "(ASCII letters in any case)")]
WhenQ = Annotated[str | None, Query(max_length=64, description=WHEN_DOC)]


def parse_when(value: str | None, param: str, now: float | None = None) -> float | None:
    """Unix seconds from `1h`/`30m` (that long ago), `-1h`, `now`, RFC 3339 or unix seconds; a 400
    naming `param` otherwise."""
    if value is None or value.strip() == "":
        return None
    now = time.time() if now is None else now
    v = value.strip()
    if _RELATIVE.fullmatch(v):
        v = "-" + v
    return parse_time(v, now, now, param)


def check_search(grep: str | None, since: str | None, until: str | None,
                 born: datetime | None = None) -> tuple[float | None, float | None]:
    """Validated search arguments: (since, until) as unix seconds. `born`: when the project or app
    was created — one deleted and made again under the same name does not see its predecessor's
    lines (they go at the next retention sweep)."""
    if grep is not None and ("\n" in grep or "\r" in grep):
        raise bad_param("grep", "must be a single line")
    lo, hi = parse_when(since, "since"), parse_when(until, "until")
    if lo is not None and hi is not None and lo > hi:
        raise bad_param("since", "must not be after 'until'")
    if born is not None:
        floor = (born if born.tzinfo else born.replace(tzinfo=UTC)).timestamp()
        lo = floor if lo is None else max(lo, floor)
    return lo, hi


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def entry_json(e: LogEntryView) -> dict[str, Any]:
    return {"ts": rfc3339(e.ts), "app": e.app, "replica": e.replica, "container": e.container,
            "stream": e.stream, "text": e.text}


def search(request: Request, scope: str, *, app: str | None, grep: str | None, since: str | None,
           until: str | None, limit: int, born: datetime | None = None) -> LogSearchView:
    """Search the store (503 when it is off)."""
    lo, hi = check_search(grep, since, until, born)
    provider = log_search_provider(request)
    try:
        return provider.search(scope, app=app, grep=grep or None, since=lo, until=hi, limit=limit)
    except ValueError as e:
        raise bad_param("grep", str(e)) from None


def export(request: Request, scope: str, *, app: str | None, grep: str | None, since: str | None,
           until: str | None, limit: int, born: datetime | None = None) -> Iterator[LogEntryView]:
    lo, hi = check_search(grep, since, until, born)
    provider = log_search_provider(request)
    return provider.export(scope, app=app, grep=grep or None, since=lo, until=hi, limit=limit)


def batched(lines: Iterable[str], size: int = 512) -> Iterator[bytes]:
    """Lines joined into larger writes: one write per line would cost more than the search."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


@router.get("/logs", operation_id="searchProjectLogs",
            summary="Search the project's stored container logs (across replicas and replaced containers)",
            responses={200: {"content": {"application/json": {}, "application/x-ndjson": {}}}})
def project_logs(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str,
                 app: Annotated[str | None, Query(max_length=63, description="only this app")] = None,
                 grep: GrepQ = None, since: WhenQ = None, until: WhenQ = None,
                 limit: Annotated[int | None, Query(ge=1, le=MAX_EXPORT_LIMIT,
                                                    description="newest lines to return (json: default 1000, "
                                                                f"at most {MAX_JSON_LIMIT}; ndjson: at most "
                                                                f"{MAX_EXPORT_LIMIT})")] = None,
                 format: Annotated[str, Query(pattern="^(json|ndjson)$")] = "json") -> Any:
    """JSON: `{"items": [{ts, app, replica, container, stream, text}], "truncated"}` newest last.
    NDJSON: the same objects, one per line, streamed as a download (an export)."""
    authz.require("app.logs", tenant=tenant, project=project)
    # 404 for a project that does not exist (admins pass the path check)
    born = store.get("Project", tenant, project).created_at
    scope = f"{tenant}/{project}"
    if format == "ndjson":
        entries = export(request, scope, app=app, grep=grep, since=since, until=until,
                         limit=limit or MAX_EXPORT_LIMIT, born=born)
        name = f"{tenant}-{project}{'-' + app if app else ''}-logs.ndjson"
        return StreamingResponse(batched(json.dumps(entry_json(e)) + "\n" for e in entries),
                                 media_type="application/x-ndjson",
                                 headers={"Content-Disposition": f'attachment; filename="{name}"'})
    if limit is not None and limit > MAX_JSON_LIMIT:
        raise bad_param("limit", f"must be at most {MAX_JSON_LIMIT} with format=json (use format=ndjson to export more)")
    found = search(request, scope, app=app, grep=grep, since=since, until=until, limit=limit or 1000, born=born)
    return {"items": [entry_json(e) for e in found.items], "truncated": found.truncated}
