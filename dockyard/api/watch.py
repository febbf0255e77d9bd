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


# what a feed read gives a stream: SSE messages, the cursor after them, and whether to read again at once
Batch = tuple[list[str], int, bool]


def sse_response(stream: AsyncIterator[str]) -> StreamingResponse:
    """A text/event-stream response that proxies neither cache nor buffer."""
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def follow(request: Request, store: Store, cursor: int, read: Callable[[int], Batch],
                 recheck: Callable[[], None] | None) -> AsyncIterator[str]:
    """The loop every watch runs after its start: `read(cursor)` (blocking) whenever this process
    wrote something or every POLL seconds (other replicas' writes), `recheck()` every RECHECK
    seconds (when it raises, an ERROR event ends the stream: a revoked token or a lost role),
    keep-alives when quiet. Ends when the client goes."""
    last_beat = last_poll = time.monotonic()
    # the first pass checks the caller's rights (a token revoked since the stream's start ends it
    # with an ERROR event, not a broken response)
    last_check = last_poll - RECHECK
    # this process's newest write when the feed was last read: writes that give this stream
    # nothing (other kinds, other projects) move it, and must not wake the stream again and again
    seen = cursor
    while True:
        if await request.is_disconnected():
            return
        now = time.monotonic()
        if recheck is not None and now - last_check >= RECHECK:
            last_check = now
            try:
                await run_in_threadpool(recheck)
            except (Problem, NotFound) as e:
                status = e.status if isinstance(e, Problem) else 404
                yield sse("ERROR", {"type": "ERROR", "status": status, "detail": str(e)})
                return
        if store.last_local_rv > seen or now - last_poll >= POLL:
            last_poll = now
            seen = max(seen, store.last_local_rv)
            try:
                messages, cursor, more = await run_in_threadpool(read, cursor)
            except Gone as e:
                yield sse("ERROR", {"type": "ERROR", "status": 410, "detail": str(e)})
                return
            for m in messages:
                yield m
                last_beat = now
            if more:
                last_poll = 0.0  # read on until the feed has nothing more
                continue
        if now - last_beat >= HEARTBEAT:
            last_beat = now
            yield ": keep-alive\n\n"
        # woken at once by a write of this process; otherwise poll for other replicas' writes
        await store.changed_after(max(cursor, seen), timeout=0.5)


def watch_response(request: Request, store: Store, kind: str, *, since: int | None,
                   matches: Callable[[str, str, dict], bool], selector: Selector | None,
                   initial: Callable[[], tuple[list[dict], int]] | None,
                   revalidate: Revalidate | None = None) -> StreamingResponse:
    """Stream changes of `kind` that `matches(scope, name, object)`; with no `since`, first the
    current objects as ADDED events (like kubectl get -w). `revalidate` re-authorizes the caller
    every second and returns what they may see now (None: everything); when it raises, the
    stream ends with an ERROR event: a revoked token or a lost role stops the stream."""
    visible: Callable[[str, str], bool] | None = None

    def recheck() -> None:
        nonlocal visible
        assert revalidate is not None
        visible = revalidate()

    def read(rv: int) -> Batch:
        changes = store.changes_since(rv, kinds=(kind,))
        out = []
        for ch in changes:
            rv = ch.resource_version
            labels = (ch.object.get("metadata") or {}).get("labels") or {}
            if matches(ch.scope, ch.name, ch.object) and (selector is None or selector.matches(labels)) \
                    and (visible is None or visible(ch.scope, ch.name)):
                out.append(sse(ch.type, {"type": ch.type, "object": ch.object}, rv))
        return out, rv, bool(changes)

    async def stream() -> AsyncIterator[str]:
        rv = since
        if rv is None and initial is not None:
            items, rv = await run_in_threadpool(initial)
            for obj in items:
                yield sse("ADDED", {"type": "ADDED", "object": obj}, rv)
        if rv is None:
            rv = await run_in_threadpool(store.current_rv)
        yield sse("BOOKMARK", {"type": "BOOKMARK", "resourceVersion": str(rv)}, rv)
        async for message in follow(request, store, rv, read, recheck if revalidate is not None else None):
            yield message

    return sse_response(stream())
