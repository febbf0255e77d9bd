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

Limits, so that one client cannot make the server hold much: an input message carries at most
MAX_INPUT bytes (a larger one ends the session with 4400); while MAX_BUFFERED bytes of input are
on their way to the process, the server reads nothing more from the socket (TCP then holds the
client back), and once the process has taken none of it for INPUT_STALL seconds, further input
is dropped with an error message, as a terminal nobody reads would. A user has at most
DOCKYARD_EXEC_MAX_PER_USER sessions open (default 8), the server DOCKYARD_EXEC_MAX (default 128);
beyond that a new one is refused with 4429.

The process's output is read, and its input written, by two threads of the session's own. The
session's other blocking calls (start, resize, exit code, and close, which ends the process and
may take seconds) and the periodic rights check run in small thread pools of the terminal's own,
never in the pool that serves HTTP requests: many sessions ending at once cannot starve the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import queue
import shlex
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, WebSocket
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
RECHECK = 2.0                # seconds between checks of the caller's token and rights
MAX_COMMAND = 256
MAX_INPUT = 64 * 1024        # bytes of input in one message: a binary frame, or a text message's data as UTF-8
MAX_BUFFERED = 1024 * 1024   # bytes of input on their way to the process before the server stops reading
INPUT_STALL = 30.0           # seconds a process may leave its input unread before more input is dropped
MAX_SIZE = 1000              # columns or rows
OUTPUT_CREDITS = 64          # output chunks on their way to the client before the reader waits
MAX_PER_USER = 8             # open sessions of one user (DOCKYARD_EXEC_MAX_PER_USER)
MAX_SESSIONS = 128           # open sessions of the server (DOCKYARD_EXEC_MAX)
ENGINE_THREADS = 8           # for the sessions' engine calls: start, resize, exit code, close
RIGHTS_THREADS = 2           # for the periodic rights checks (a query or two each)
_ids = itertools.count(1)
T = TypeVar("T")


class Refusal(Exception):
    """Why a session is refused or ended: `status` for the client; `cause`, when given, is what
    the audit log records instead of the message (the client need not see a server's error)."""

    def __init__(self, status: int, message: str, *, cause: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.cause = cause


class ClientGone(Exception):
    pass


class ExecSessions:
    """The server's open terminal sessions, counted per user and in all, and the threads their
    blocking calls run in: pools of their own rather than the one shared with HTTP requests, so
    that many sessions closing at once (each close may take seconds on an engine) cannot starve
    the API."""

    def __init__(self, *, per_user: int = MAX_PER_USER, total: int = MAX_SESSIONS) -> None:
        self.per_user = per_user
        self.total = total
        self._of_user: Counter[str] = Counter()
        self._open = 0
        self._lock = threading.Lock()
        self._engine = ThreadPoolExecutor(ENGINE_THREADS, thread_name_prefix="dockyard-terminal-engine")
        self._rights = ThreadPoolExecutor(RIGHTS_THREADS, thread_name_prefix="dockyard-terminal-rights")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ExecSessions:
        """Limits from DOCKYARD_EXEC_MAX_PER_USER and DOCKYARD_EXEC_MAX (unset: the defaults);
        ValueError naming the variable whose value is not a whole number from 1."""

        def limit(name: str, default: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) < 1:
                raise ValueError(f"{name}: must be a whole number of sessions, at least 1 (it is {raw!r})")
            return int(raw)

        return cls(per_user=limit("DOCKYARD_EXEC_MAX_PER_USER", MAX_PER_USER),
                   total=limit("DOCKYARD_EXEC_MAX", MAX_SESSIONS))

    def reserve(self, user: str) -> None:
        """Count a new session of `user`, or raise Refusal 429 at a limit. Checking and counting
        are one step: two sessions opened at once cannot both take the last place."""
        with self._lock:
            if self._open >= self.total:
                raise Refusal(429, f"the server has {self.total} terminal sessions open, its limit "
                                   "(DOCKYARD_EXEC_MAX); try again later")
            if self._of_user[user] >= self.per_user:
                raise Refusal(429, f"you have {self.per_user} terminal sessions open, the limit per user "
                                   "(DOCKYARD_EXEC_MAX_PER_USER); close one first")
            self._of_user[user] += 1
            self._open += 1

    def release(self, user: str) -> None:
        """Give back the place of a session of `user` that has ended (and been cleaned up)."""
        with self._lock:
            self._of_user[user] -= 1
            if self._of_user[user] <= 0:
                del self._of_user[user]
            self._open -= 1

    async def start(self, user: str, open_session: Callable[[], ExecSession]) -> ExecSession:
        """Reserve a place for a session of `user` and open it in the engine threads. When the
        waiting task is cancelled meanwhile, the session is closed as soon as it is open."""
        self.reserve(user)
        opening = self._engine.submit(open_session)
        waiting = asyncio.wrap_future(opening)
        try:
            return await asyncio.shield(waiting)
        except asyncio.CancelledError:
            def orphaned(_: Future) -> None:
                with contextlib.suppress(RuntimeError):  # the server is stopping: the engine threads are gone
                    self._engine.submit(self._close_orphan, opening, user)

            waiting.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
            opening.add_done_callback(orphaned)
            raise
        except BaseException:
            self.release(user)
            raise

    def _close_orphan(self, opening: Future, user: str) -> None:
        try:
            if opening.exception() is None:
                opening.result().close()
        except Exception:  # noqa: BLE001 — nobody waits for this one any more
            log.exception("exec: closing a session whose client went while it started failed")
        finally:
            self.release(user)

    async def finish(self, clean_up: Callable[[], None]) -> None:
        """Run a session's clean-up in the engine threads to its end, also when the waiting task
        is cancelled (asyncio's own cancellation, which an anyio shield does not hold off)."""
        await asyncio.shield(asyncio.wrap_future(self._engine.submit(clean_up)))

    async def engine_call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking engine call of a session in the terminal's engine threads."""
        return await asyncio.get_running_loop().run_in_executor(self._engine, fn, *args)

    async def rights_call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a session's rights check in the terminal's own threads."""
        return await asyncio.get_running_loop().run_in_executor(self._rights, fn, *args)

    def shutdown(self) -> None:
        """Let the clean-ups still queued finish (they end processes), then stop the threads."""
        self._engine.shutdown(wait=True)
        self._rights.shutdown(wait=True)


def sessions_of(app: FastAPI) -> ExecSessions:
    """The app's ExecSessions: the server sets it at start-up from the environment; an app
    without one (tests) gets one on first use."""
    sessions = getattr(app.state, "exec_sessions", None)
    if sessions is None:
        sessions = app.state.exec_sessions = ExecSessions.from_env()
    return sessions


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


@contextlib.contextmanager
def _refusing() -> Iterator[None]:
    """The HTTP checks' NotFound and Problem, as the Refusal that ends the session."""
    try:
        yield
    except NotFound as e:
        raise Refusal(404, str(e)) from None
    except Problem as e:
        raise Refusal(e.status, e.detail) from None


def _authorize(ws: WebSocket, user: User, tenant: str, project: str, name: str) -> None:
    """Whether `user` may run commands in the App: 404 when it is invisible or missing, 403 when
    the role is too small (blocking)."""
    store: Store = ws.app.state.store
    with _refusing():
        authz = Authorizer(store, user)
        if not authz.is_admin:
            check_visible(store, authz, tenant, project)
        authz.require("app.exec", tenant=tenant, project=project, missing=f"app '{tenant}/{project}/{name}' not found")
        store.get("App", f"{tenant}/{project}", name)


def _recheck(ws: WebSocket, token: str, tenant: str, project: str, name: str) -> None:
    """Whether the caller of `token` still may run commands in the App (blocking). Cheaper than
    the first check, as it runs every RECHECK seconds per session: the token goes through the
    token cache and the role through one query of the caller's bindings; the project and the App
    are not looked up again (deleting them ends their containers, and so the session)."""
    user = _authenticate(ws, token)
    with _refusing():
        Authorizer(ws.app.state.store, user).require("app.exec", tenant=tenant, project=project,
                                                     missing=f"app '{tenant}/{project}/{name}' not found")


def _limit(ws: WebSocket, user: User) -> None:
    with _refusing():
        ws.app.state.limiter.check(f"token:{user.token_id}")


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

    def append(self, outcome: int, detail: str) -> None:
        """Write an entry now (blocking)."""
        entry = audit.AuditEntry(at=now(), user=self.user, source=self.source, method="GET", path=self.path,
                                 action=f"EXEC {PATH}", tenant=self.tenant, project=self.project,
                                 object=self.path.removeprefix("/api/v1"), outcome=outcome, detail=detail)
        try:
            audit.append(self.store, entry)
        except Exception:  # noqa: BLE001 — like the HTTP audit trail: never turn a session into an error
            log.exception("could not write an audit entry for exec %s", self.path)

    async def write(self, outcome: int, detail: str) -> None:
        await run_in_threadpool(self.append, outcome, detail)


@router.websocket(PATH, name="execApp")
async def exec_app(ws: WebSocket, tenant: str, project: str, name: str) -> None:
    await ws.accept()
    trail = _Audit(ws, tenant, project)
    sessions = sessions_of(ws.app)
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
            session = await sessions.start(user.name, lambda: provider.open_exec(
                tenant, project, name, replica=replica, command=command, cols=cols, rows=rows))
        except ExecError as e:
            raise Refusal(e.status, str(e)) from None
        except Refusal:
            raise
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
    threads: list[threading.Thread] = []
    try:
        await trail.write(101, what)
        ended = await _bridge(ws, session, sessions, lambda: _recheck(ws, token, tenant, project, name), threads)
    finally:
        detail = f"{what} ended after {time.monotonic() - started:.1f}s: {ended}"

        def clean_up() -> None:
            try:
                session.close()  # ends the process if it still runs; unblocks the reader
                for t in threads:
                    t.join(5)
                    if t.is_alive():
                        log.warning("exec: thread %s did not end", t.name)
            except Exception:  # noqa: BLE001 — the engine failed; the place and the record are still due
                log.exception("exec: closing %s failed", what)
            finally:
                sessions.release(user.name)
                trail.append(200, detail)

        # also when this task is cancelled: the process must not outlive the session unrecorded
        await sessions.finish(clean_up)


class _InputBuffer:
    """Input on its way to the process: at most MAX_BUFFERED bytes, queued or being written.
    The receiving side waits for room (and so reads nothing more from the WebSocket) instead of
    buffering more; the writer thread gives the bytes back as the process takes them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._pending = 0  # touched on the event loop only
        self._room = asyncio.Event()

    async def put(self, data: bytes, timeout: float) -> bool:
        """Queue `data` once it fits; False, and nothing queued, when the process has taken none
        of its input for `timeout` seconds (0: queue only if it fits now)."""
        while self._pending and self._pending + len(data) > MAX_BUFFERED:
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), timeout)
            except TimeoutError:
                return False
        self._pending += len(data)
        self._items.put(data)
        return True

    def get(self) -> bytes | None:
        """The next input for the process, or None at the end (blocking: the writer thread)."""
        return self._items.get()

    def taken(self, n: int) -> None:
        """The process took `n` bytes (called by the writer thread)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._release, n)

    def _release(self, n: int) -> None:
        self._pending -= n
        self._room.set()

    def end(self) -> None:
        self._items.put(None)


async def _bridge(ws: WebSocket, session: ExecSession, sessions: ExecSessions, recheck: Callable[[], None],
                  threads: list[threading.Thread]) -> str:
    """Copy output to the client and input to the process until one side ends; say how it ended.
    Its two threads are added to `threads`; the caller closes the session, which ends them."""
    loop = asyncio.get_running_loop()
    output: asyncio.Queue[bytes | None] = asyncio.Queue()
    credits = threading.Semaphore(OUTPUT_CREDITS)
    inputs = _InputBuffer(loop)
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
        while (data := inputs.get()) is not None and not stop.is_set():
            try:
                session.write(data)
            except Exception:  # noqa: BLE001 — the process is gone; the reader sees the end
                return
            finally:
                inputs.taken(len(data))

    tasks: list[asyncio.Task] = []
    try:
        for target, role in ((read_output, "output"), (write_input, "input")):
            threads.append(threading.Thread(target=target, name=f"dockyard-exec-{n}-{role}", daemon=True))
            threads[-1].start()

        async def send_output() -> str:
            while True:
                data = await output.get()
                if data is None:
                    return "exited"
                await ws.send_bytes(data)
                credits.release()

        async def receive_input() -> str | Refusal:
            dropping = False  # input is being dropped: take it only if it fits at once
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return "client left"
                data = msg.get("bytes")
                if data is None:
                    data, problem = await _handle_message(session, sessions, msg.get("text") or "")
                    if problem:
                        await ws.send_json({"type": "error", "status": 400, "message": problem})
                    if data is None:
                        continue
                if len(data) > MAX_INPUT:
                    return Refusal(400, f"input: at most {MAX_INPUT} bytes in one message; send more in parts")
                if await inputs.put(data, 0 if dropping else INPUT_STALL):
                    dropping = False
                elif not dropping:
                    dropping = True
                    await ws.send_json({"type": "error", "status": 429, "message":
                                        f"input dropped: the process has not read its input for {INPUT_STALL:g} s"})

        async def watch_rights() -> Refusal:
            while True:
                await asyncio.sleep(RECHECK)
                try:
                    await sessions.rights_call(recheck)
                except Refusal as r:
                    return r
                except Exception as e:  # noqa: BLE001 — e.g. the database: rights unknown, so the session ends
                    log.exception("exec session %d: checking the caller's rights failed", n)
                    return Refusal(503, "the server could not check your rights again; the session ends "
                                        "(see the server log)",
                                   cause=f"rights check failed ({type(e).__name__}: {str(e)[:300]})")

        tasks = [asyncio.create_task(send_output()), asyncio.create_task(receive_input()),
                 asyncio.create_task(watch_rights())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        first = next(t for t in tasks if t.done())  # in this order: output that ended wins
        try:
            outcome = first.result()
        except Exception:  # noqa: BLE001 — a failed send or receive: the client is gone
            log.debug("exec session %d: the connection failed", n, exc_info=True)
            return "client left"
        if isinstance(outcome, Refusal):
            await _refuse(ws, outcome.status, outcome.message)
            return outcome.cause or f"refused ({outcome.status}: {outcome.message})"
        if outcome == "exited":
            code = await sessions.engine_call(session.exit_code)
            with contextlib.suppress(Exception):
                await ws.send_json({"type": "exit", "code": -1 if code is None else code})
                await ws.close(code=1000)
            return f"exit code {code}"
        return outcome
    finally:
        # nothing awaited here: a cancellation arriving now must not replace how the session ended
        for task in tasks:
            task.cancel()
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning
        stop.set()
        inputs.end()


async def _handle_message(session: ExecSession, sessions: ExecSessions, text: str) -> tuple[bytes | None, str | None]:
    """Apply one client text message: the input it carries (or None), and a description of what
    is wrong with it (or None)."""
    try:
        msg = json.loads(text)
    except ValueError:
        return None, 'messages are JSON: {"type": "input", "data": "..."} or {"type": "resize", "cols": N, "rows": N}'
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind == "input":
        data = msg.get("data")
        if not isinstance(data, str):
            return None, "data: must be a string"
        return data.encode(errors="replace"), None
    if kind == "resize":
        try:
            cols, rows = _size(msg, "cols", 0), _size(msg, "rows", 0)
        except Refusal as r:
            return None, r.message
        try:
            await sessions.engine_call(session.resize, cols, rows)
        except Exception:  # noqa: BLE001 — a lost resize is cosmetic; the session goes on
            log.warning("exec: resize failed", exc_info=True)
        return None, None
    return None, "type: must be input or resize"
