"""The web terminal: a WebSocket that runs a command in one of an App's containers.

Browsers cannot set an Authorization header on a WebSocket, so the client's first message
carries the bearer token: `{"token": "...", "cols": 80, "rows": 24}`. It is checked exactly like
a bearer token (token cache, `app.exec`, 404 for what the caller may not see, 403 for a role that
is too small). A refusal is a text message `{"type": "error", "status": S, "message": "..."}` and
the close code 4000 + S (4400, 4401, 4403, 4404, 4429, 4503, ...).

Then: server → client binary frames are raw terminal output; client → server text messages are
`{"type": "input", "data": "..."}` and `{"type": "resize", "cols": N, "rows": N}` (binary frames
are taken as raw input). When the process exits the server sends `{"type": "exit", "code": N}`
(-1 when the engine cannot tell) and closes with 1000. The caller's token and rights are checked
again every few seconds; once they are gone the session ends like a refusal.

Query: `replica` (a slot number; default the lowest running one) and `command` (default `sh`;
at most 256 characters, split like a POSIX shell would split words, but run without a shell:
`sh -c '...'` gives one).

The process's output is read, and its input written, by two threads of the session's own, so
the event loop never blocks on the engine; closing the session ends both and the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import queue
import shlex
import threading
import time
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from dockyard.api.authz import Authorizer, check_visible
from dockyard.api.deps import ExecError, ExecSession
from dockyard.api.problems import TITLES, Problem
from dockyard.store import audit
from dockyard.store.errors import NotFound
from dockyard.store.repository import Store, now
from dockyard.store.users import User

log = logging.getLogger(__name__)
router = APIRouter()
PATH = "/projects/{tenant}/{project}/apps/{name}/exec"
HELLO_TIMEOUT = 10.0
RECHECK = 2.0          # seconds between checks of the caller's token and rights
MAX_COMMAND = 256
MAX_INPUT = 64 * 1024  # characters of one input message
MAX_SIZE = 1000        # columns or rows
OUTPUT_CREDITS = 64    # output chunks on their way to the client before the reader waits
_ids = itertools.count(1)


class Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    pass


@dataclass
class Hello:
    token: str
    cols: int
    rows: int


def _size(data: dict, key: str, default: int) -> int:
    v = data.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SIZE:
        raise Refusal(400, f"{key}: must be a whole number from 1 to {MAX_SIZE}")
    return v


async def _receive_hello(ws: WebSocket) -> tuple[str, dict]:
    try:
        msg = await asyncio.wait_for(ws.receive(), HELLO_TIMEOUT)
    except TimeoutError:
        raise Refusal(401, f'send {{"token": "..."}} as the first message, within {HELLO_TIMEOUT:.0f} s') from None
    if msg["type"] == "websocket.disconnect":
        raise ClientGone
    text = msg.get("text")
    try:
        data = json.loads(text) if text is not None else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise Refusal(401, 'the first message must be the JSON text {"token": "...", "cols": 80, "rows": 24}')
    token = data.get("token")
    if not isinstance(token, str) or not token or len(token) > 1000:
        raise Refusal(401, "token: the first message carries no bearer token; log in first")
    return token, data


def _authenticate(ws: WebSocket, token: str) -> User:
    """The caller of a valid token, exactly as for a bearer header (blocking)."""
    store: Store = ws.app.state.store
    user = store.token_cache.authenticate(store, token)
    if user is None:
        raise Refusal(401, "the token is invalid, expired or revoked; log in again")
    return user


def _authorize(ws: WebSocket, user: User, tenant: str, project: str, name: str) -> None:
    """Whether `user` may run commands in the App: 404 when it is invisible or missing, 403 when
    the role is too small (blocking)."""
    store: Store = ws.app.state.store
    try:
        authz = Authorizer(store, user)
        if not authz.is_admin:
            check_visible(store, authz, tenant, project)
        authz.require("app.exec", tenant=tenant, project=project, missing=f"app '{tenant}/{project}/{name}' not found")
        store.get("App", f"{tenant}/{project}", name)
    except NotFound as e:
        raise Refusal(404, str(e)) from None
    except Problem as e:
        raise Refusal(e.status, e.detail) from None


def _limit(ws: WebSocket, user: User) -> None:
    try:
        ws.app.state.limiter.check(f"token:{user.token_id}")
    except Problem as e:
        raise Refusal(e.status, e.detail) from None


def _query(ws: WebSocket) -> tuple[int | None, list[str]]:
    raw = ws.query_params.get("replica")
    replica = None
    if raw not in (None, ""):
        if not raw.isdigit() or int(raw) > 100_000:
            raise Refusal(400, "replica: must be the slot number of a replica (0, 1, ...)")
        replica = int(raw)
    text = ws.query_params.get("command") or "sh"
    if len(text) > MAX_COMMAND:
        raise Refusal(400, f"command: at most {MAX_COMMAND} characters")
    try:
        command = shlex.split(text)
    except ValueError as e:
        raise Refusal(400, f"command: {e}") from None
    if not command:
        raise Refusal(400, "command: is empty")
    return replica, command


async def _refuse(ws: WebSocket, status: int, message: str) -> None:
    with contextlib.suppress(Exception):  # the client may be gone already
        await ws.send_json({"type": "error", "status": status, "message": message})
        await ws.close(code=4000 + status, reason=TITLES.get(status, "Error"))


class _Audit:
    """The session's audit entries: one when it starts (or is refused), one when it ends."""

    def __init__(self, ws: WebSocket, tenant: str, project: str) -> None:
        self.store: Store = ws.app.state.store
        self.user = "(anonymous)"
        self.source = ws.client.host if ws.client else ""
        self.path = ws.url.path
        self.tenant, self.project = tenant, project

    async def write(self, outcome: int, detail: str) -> None:
        entry = audit.AuditEntry(at=now(), user=self.user, source=self.source, method="GET", path=self.path,
                                 action=f"EXEC {PATH}", tenant=self.tenant, project=self.project,
                                 object=self.path.removeprefix("/api/v1"), outcome=outcome, detail=detail)
        try:
            await run_in_threadpool(audit.append, self.store, entry)
        except Exception:  # noqa: BLE001 — like the HTTP audit trail: never turn a session into an error
            log.exception("could not write an audit entry for exec %s", self.path)


@router.websocket(PATH, name="execApp")
async def exec_app(ws: WebSocket, tenant: str, project: str, name: str) -> None:
    await ws.accept()
    trail = _Audit(ws, tenant, project)
    try:
        token, hello = await _receive_hello(ws)
        user = await run_in_threadpool(_authenticate, ws, token)
        trail.user = user.name
        _limit(ws, user)
        await run_in_threadpool(_authorize, ws, user, tenant, project, name)
        cols, rows = _size(hello, "cols", 80), _size(hello, "rows", 24)
        replica, command = _query(ws)
        provider = ws.app.state.exec_provider
        if provider is None:
            raise Refusal(503, "this server cannot run commands in containers (no exec provider)")
        try:
            session = await run_in_threadpool(provider.open_exec, tenant, project, name, replica=replica,
                                              command=command, cols=cols, rows=rows)
        except ExecError as e:
            raise Refusal(e.status, str(e)) from None
        except Exception:  # noqa: BLE001 — answered like any request the server failed
            log.exception("exec: could not start %s in %s/%s/%s", command, tenant, project, name)
            raise Refusal(500, "the server failed to start the session; see the server log") from None
    except ClientGone:
        return
    except Refusal as r:
        await trail.write(r.status, r.message)
        await _refuse(ws, r.status, r.message)
        return
    what = f"container={session.container} command={shlex.join(command)}"
    started = time.monotonic()
    ended = "cancelled (the server is stopping)"
    try:
        await trail.write(101, what)
        ended = await _bridge(ws, session, lambda: _authorize(ws, _authenticate(ws, token), tenant, project, name))
    finally:
        # also when this task is cancelled: the process must not outlive the session unrecorded
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(session.close)
            await trail.write(200, f"{what} ended after {time.monotonic() - started:.1f}s: {ended}")


async def _bridge(ws: WebSocket, session: ExecSession, recheck: Any) -> str:
    """Copy output to the client and input to the process until one side ends; say how it ended."""
    loop = asyncio.get_running_loop()
    output: asyncio.Queue[bytes | None] = asyncio.Queue()
    credits = threading.Semaphore(OUTPUT_CREDITS)
    inputs: queue.Queue[bytes | None] = queue.Queue(maxsize=1024)
    stop = threading.Event()
    n = next(_ids)

    def read_output() -> None:
        try:
            while not stop.is_set():
                data = session.read()
                if not data:
                    break
                while not credits.acquire(timeout=0.5):  # the client reads slowly: wait for it
                    if stop.is_set():
                        return
                loop.call_soon_threadsafe(output.put_nowait, data)
        except Exception:  # noqa: BLE001 — an engine failure ends the session like an exit
            log.exception("exec session %d: reading output failed", n)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(output.put_nowait, None)

    def write_input() -> None:
        while not stop.is_set():
            data = inputs.get()
            if data is None:
                return
            try:
                session.write(data)
            except Exception:  # noqa: BLE001 — the process is gone; the reader sees the end
                return

    threads = [threading.Thread(target=read_output, name=f"dockyard-exec-{n}-output", daemon=True),
               threading.Thread(target=write_input, name=f"dockyard-exec-{n}-input", daemon=True)]
    for t in threads:
        t.start()

    async def send_output() -> str:
        while True:
            data = await output.get()
            if data is None:
                return "exited"
            await ws.send_bytes(data)
            credits.release()

    async def receive_input() -> str:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return "client left"
            if msg.get("bytes") is not None:
                _put(inputs, msg["bytes"])
                continue
            problem = await _handle_message(session, inputs, msg.get("text") or "")
            if problem:
                await ws.send_json({"type": "error", "status": 400, "message": problem})

    async def watch_rights() -> Refusal:
        while True:
            await asyncio.sleep(RECHECK)
            try:
                await run_in_threadpool(recheck)
            except Refusal as r:
                return r

    tasks = [asyncio.create_task(send_output()), asyncio.create_task(receive_input()),
             asyncio.create_task(watch_rights())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        first = next(t for t in tasks if t.done())  # in this order: output that ended wins
        try:
            outcome = first.result()
        except Exception:  # noqa: BLE001 — a failed send or receive: the client is gone
            return "client left"
        if isinstance(outcome, Refusal):
            await _refuse(ws, outcome.status, outcome.message)
            return f"refused ({outcome.status}: {outcome.message})"
        if outcome == "exited":
            code = await run_in_threadpool(session.exit_code)
            with contextlib.suppress(Exception):
                await ws.send_json({"type": "exit", "code": -1 if code is None else code})
                await ws.close(code=1000)
            return f"exit code {code}"
        return outcome
    finally:
        for t in tasks:
            t.cancel()
        stop.set()
        _put(inputs, None, force=True)
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(session.close)  # unblocks the reader
            await run_in_threadpool(lambda: [t.join(5) for t in threads])


async def _handle_message(session: ExecSession, inputs: queue.Queue, text: str) -> str | None:
    """Apply one client message; a description of what is wrong with it, or None."""
    try:
        msg = json.loads(text)
    except ValueError:
        return 'messages are JSON: {"type": "input", "data": "..."} or {"type": "resize", "cols": N, "rows": N}'
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind == "input":
        data = msg.get("data")
        if not isinstance(data, str) or len(data) > MAX_INPUT:
            return f"data: must be a string of at most {MAX_INPUT} characters"
        _put(inputs, data.encode())
        return None
    if kind == "resize":
        try:
            cols, rows = _size(msg, "cols", 0), _size(msg, "rows", 0)
        except Refusal as r:
            return r.message
        try:
            await run_in_threadpool(session.resize, cols, rows)
        except Exception:  # noqa: BLE001 — a lost resize is cosmetic; the session goes on
            log.warning("exec: resize failed", exc_info=True)
        return None
    return "type: must be input or resize"


def _put(inputs: queue.Queue, data: bytes | None, *, force: bool = False) -> None:
    """Queue input for the process; input the process does not read is dropped, as a full
    terminal would. `force` makes room (for the end marker)."""
    while True:
        try:
            inputs.put_nowait(data)
            return
        except queue.Full:
            if not force:
                return
            with contextlib.suppress(queue.Empty):
                inputs.get_nowait()
