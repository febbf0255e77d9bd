"""Watch streams as server-sent events: every change after a resourceVersion, in order."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api.problems import Problem
from dockyard.store.errors import Gone, NotFound
from dockyard.store.repository import Store
from dockyard.store.selectors import Selector

HEARTBEAT = 15.0
POLL = 1.0  # other replicas' writes are found by polling; this replica's wake us at once


def sse(event: str, data: dict, rv: int | None = None) -> str:
    """One server-sent event; `rv` becomes its id, which a client resumes from."""
    head = f"id: {rv}\n" if rv is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


Revalidate = Callable[[], Callable[[str, str], bool] | None]
RECHECK = 1.0  # how often an open stream re-checks the caller's token and rights


def watch_response(request: Request, store: Store, kind: str, *, since: int | None,
                   matches: Callable[[str, str, dict], bool], selector: Selector | None,
                   initial: Callable[[], tuple[list[dict], int]] | None,
                   revalidate: Revalidate | None = None) -> StreamingResponse:
    """Stream changes of `kind` that `matches(scope, name, object)`; with no `since`, first the
    current objects as ADDED events (like kubectl get -w). `revalidate` re-authorizes the caller
    every second and returns what they may see now (None: everything); when it raises, the
    stream ends with an ERROR event: a revoked token or a lost role stops the stream."""

    async def stream() -> AsyncIterator[str]:
        rv = since
        if rv is None and initial is not None:
            items, rv = await run_in_threadpool(initial)
            for obj in items:
                yield sse("ADDED", {"type": "ADDED", "object": obj}, rv)
        if rv is None:
            rv = await run_in_threadpool(store.current_rv)
        yield sse("BOOKMARK", {"type": "BOOKMARK", "resourceVersion": str(rv)}, rv)
        last_beat = last_poll = time.monotonic()
        # the loop's first pass checks the caller's rights (a token revoked since the initial
        # list ends the stream with an ERROR event, not a broken response)
        last_check = last_poll - RECHECK
        visible = None
        # this process's newest write when the feed was last read: writes of other kinds (and
        # events) move it without giving this stream a change, and must not wake it again and again
        seen = rv
        while True:
            if await request.is_disconnected():
                return
            now = time.monotonic()
            if revalidate is not None and now - last_check >= RECHECK:
                last_check = now
                try:
                    visible = await run_in_threadpool(revalidate)
                except (Problem, NotFound) as e:
                    status = e.status if isinstance(e, Problem) else 404
                    yield sse("ERROR", {"type": "ERROR", "status": status, "detail": str(e)})
                    return
            if store.last_local_rv > seen or now - last_poll >= POLL:
                last_poll = now
                seen = max(seen, store.last_local_rv)
                try:
                    changes = await run_in_threadpool(store.changes_since, rv, kinds=(kind,))
                except Gone as e:
                    yield sse("ERROR", {"type": "ERROR", "status": 410, "detail": str(e)})
                    return
                for ch in changes:
                    rv = ch.resource_version
                    labels = (ch.object.get("metadata") or {}).get("labels") or {}
                    if matches(ch.scope, ch.name, ch.object) and (selector is None or selector.matches(labels)) \
                            and (visible is None or visible(ch.scope, ch.name)):
                        yield sse(ch.type, {"type": ch.type, "object": ch.object}, rv)
                        last_beat = now
                if changes:
                    last_poll = 0.0  # read on until the feed has nothing more
                    continue
            if now - last_beat >= HEARTBEAT:
                last_beat = now
                yield ": keep-alive\n\n"
            # woken at once by a write of this process; otherwise poll for other replicas' writes
            await store.changed_after(max(rv, seen), timeout=0.5)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
