"""The web terminal's WebSocket (/apps/NAME/exec) through the real API and store (SQLite and
PostgreSQL), with a fake process in place of the engine: the token in the first message, the
404/403/401 refusals and their close codes, the bridge in both directions, resize, exit codes,
the audit entries, that a session that ends for any reason releases its process and threads, the
limits on input (frame size, bytes in flight) and on open sessions, and that a session's blocking
calls stay out of the thread pool that serves HTTP requests."""

from __future__ import annotations

import json
import queue
import threading
import time
from typing import Any
from urllib.parse import quote

import pytest

from dockyard.api import terminal
from dockyard.api.deps import ExecError

V1 = "/api/v1"
EXEC = "/api/v1/projects/acme/shop/apps/web/exec"
PW = "exec-password-1"


class FakeProcess:
    """A process that answers each input line with "out:<line>"; `exit N` ends it with code N.
    Clearing `reading` makes it stop taking input (writes wait, as on a full terminal); `threads`
    records which thread ran each blocking call."""

    def __init__(self, container: str) -> None:
        self.container = container
        self.output: queue.Queue[bytes] = queue.Queue()
        self.code: int | None = None
        self.sizes: list[tuple[int, int]] = []
        self.closed = threading.Event()
        self.reading = threading.Event()
        self.reading.set()
        self.taken = 0
        self.threads: dict[str, str] = {}
        self.buf = b""

    def read(self) -> bytes:
        return self.output.get()

    def write(self, data: bytes) -> None:
        while not self.reading.wait(0.05):
            if self.closed.is_set():
                return
        self.taken += len(data)
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.startswith(b"exit "):
                self.code = int(line.split()[1])
                self.output.put(b"")
                return
            self.output.put(b"out:" + line + b"\r\n")

    def resize(self, cols: int, rows: int) -> None:
        self.threads["resize"] = threading.current_thread().name
        self.sizes.append((cols, rows))

    def exit_code(self) -> int | None:
        self.threads["exit_code"] = threading.current_thread().name
        return self.code

    def close(self) -> None:
        self.threads["close"] = threading.current_thread().name
        self.closed.set()
        self.output.put(b"")  # a closed connection ends a blocked read


class FakeExec:
    def __init__(self) -> None:
        self.opened: list[dict[str, Any]] = []
        self.processes: list[FakeProcess] = []
        self.fail: ExecError | None = None

    def open_exec(self, tenant: str, project: str, app: str, *, replica: int | None, command: list[str],
                  cols: int, rows: int) -> FakeProcess:
        self.opened.append({"app": f"{tenant}/{project}/{app}", "replica": replica, "command": command,
                            "size": (cols, rows), "thread": threading.current_thread().name})
        if self.fail:
            raise self.fail
        p = FakeProcess(f"dyx_acme_shop_{app}_abc_{replica or 0}")
        p.sizes.append((cols, rows))
        self.processes.append(p)
        return p


def _login(api: Any, name: str) -> str:
    r = api.post(f"{V1}/login", json={"username": name, "password": PW})
    assert r.status_code == 200, r.text
    return r.json()["token"]


@pytest.fixture
def world(api: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """acme/shop with app web; dave develops there, vera views it, olaf is in tenant other.
    Returns their tokens; the API has a FakeExec."""
    monkeypatch.setattr(terminal, "RECHECK", 0.2)
    for t, p in (("acme", "shop"), ("other", "shop")):
        assert api.post(f"{V1}/tenants", json={"kind": "Tenant", "metadata": {"name": t}}).status_code == 201
        assert api.post(f"{V1}/projects", json={"kind": "Project", "metadata": {"name": p, "tenant": t}}
                        ).status_code == 201
    assert api.post(f"{V1}/projects/acme/shop/apps", json={
        "kind": "App", "metadata": {"name": "web"}, "spec": {"image": "dockyard/demo:1.0"}}).status_code == 201
    for user, scope, role in (("dave", "projects/acme/shop", "developer"), ("vera", "projects/acme/shop", "viewer"),
                              ("olaf", "tenants/other", "owner")):
        assert api.post(f"{V1}/users", json={"name": user, "password": PW}).status_code == 201
        assert api.post(f"{V1}/{scope}/members", json={"user": user, "role": role}).status_code == 201
    api.app.state.exec_provider = FakeExec()
    return {u: _login(api, u) for u in ("dave", "vera", "olaf")}


def _next(ws: Any) -> dict:
    """The next message: {"type": "websocket.send", "text"|"bytes"} or {"type": "websocket.close", "code"}."""
    return ws.receive()


def _refusal(api: Any, url: str, hello: Any) -> tuple[dict, int]:
    with api.websocket_connect(url) as ws:
        ws.send_text(hello if isinstance(hello, str) else json.dumps(hello))
        msg = _next(ws)
        assert msg["type"] == "websocket.send", msg
        closing = _next(ws)
        assert closing["type"] == "websocket.close", closing
        return json.loads(msg["text"]), closing["code"]


def _exec_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("dockyard-exec-")]


def _wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _audit(api: Any) -> list[dict]:
    return api.get(f"{V1}/audit", params={"action": "EXEC"}).json()["items"]


def test_developer_runs_a_session_from_input_to_exit(api: Any, world: dict[str, str]) -> None:
    fake: FakeExec = api.app.state.exec_provider
    with api.websocket_connect(EXEC) as ws:
        ws.send_text(json.dumps({"token": world["dave"], "cols": 120, "rows": 40}))
        ws.send_text(json.dumps({"type": "input", "data": "echo hi\n"}))
        assert _next(ws) == {"type": "websocket.send", "bytes": b"out:echo hi\r\n"}
        ws.send_bytes(b"raw bytes\n")
        assert _next(ws)["bytes"] == b"out:raw bytes\r\n"
        ws.send_text(json.dumps({"type": "resize", "cols": 100, "rows": 30}))
        ws.send_text(json.dumps({"type": "input", "data": "exit 3\n"}))
        assert json.loads(_next(ws)["text"]) == {"type": "exit", "code": 3}
        assert _next(ws)["code"] == 1000
    assert [{k: v for k, v in o.items() if k != "thread"} for o in fake.opened] == [
        {"app": "acme/shop/web", "replica": None, "command": ["sh"], "size": (120, 40)}]
    proc = fake.processes[0]
    assert proc.sizes == [(120, 40), (100, 30)]
    assert _wait_until(proc.closed.is_set) and _wait_until(lambda: not _exec_threads()), _exec_threads()
    entries = _audit(api)
    start = next(e for e in entries if e["outcome"] == 101)
    assert start["user"] == "dave" and start["tenant"] == "acme" and start["project"] == "shop"
    assert start["action"] == "EXEC /projects/{tenant}/{project}/apps/{name}/exec"
    assert start["object"] == "/projects/acme/shop/apps/web/exec"
    assert start["detail"] == f"container={proc.container} command=sh"
    end = _wait_until(lambda: any(e["outcome"] == 200 for e in _audit(api)))
    assert end, _audit(api)
    assert "exit code 3" in next(e for e in _audit(api) if e["outcome"] == 200)["detail"]
    assert api.post(f"{V1}/audit/verify").json()["ok"] is True


def test_replica_and_command_are_passed_split_like_shell_words(api: Any, world: dict[str, str]) -> None:
    fake: FakeExec = api.app.state.exec_provider
    with api.websocket_connect(EXEC + "?replica=2&command=" + quote("sh -c 'echo a  b'")) as ws:
        ws.send_text(json.dumps({"token": world["dave"]}))
        ws.send_text(json.dumps({"type": "input", "data": "exit 0\n"}))
        assert json.loads(_next(ws)["text"]) == {"type": "exit", "code": 0}
    assert fake.opened[0]["replica"] == 2
    assert fake.opened[0]["command"] == ["sh", "-c", "echo a  b"]
    assert fake.opened[0]["size"] == (80, 24), "cols and rows default to 80x24"
    assert _audit(api)[0]["detail"] == "container=dyx_acme_shop_web_abc_2 command=sh -c 'echo a  b'"


def test_viewer_is_refused_with_4403_and_nothing_runs(api: Any, world: dict[str, str]) -> None:
    fake: FakeExec = api.app.state.exec_provider
    body, code = _refusal(api, EXEC, {"token": world["vera"]})
    assert code == 4403 and body["type"] == "error" and body["status"] == 403
    assert "developer" in body["message"]
    assert fake.opened == []
    refused = [e for e in _audit(api) if e["user"] == "vera"]
    assert [e["outcome"] for e in refused] == [403]


def test_user_of_another_tenant_gets_4404_like_a_missing_app(api: Any, world: dict[str, str]) -> None:
    fake: FakeExec = api.app.state.exec_provider
    hidden, code = _refusal(api, EXEC, {"token": world["olaf"]})
    assert code == 4404 and hidden["status"] == 404
    missing, code = _refusal(api, "/api/v1/projects/gamma/shop/apps/web/exec", {"token": world["olaf"]})
    assert code == 4404
    assert hidden["message"].replace("acme", "X") == missing["message"].replace("gamma", "X")
    # an app that does not exist in a project one may use is a 404 too
    _, code = _refusal(api, "/api/v1/projects/acme/shop/apps/ghost/exec", {"token": world["dave"]})
    assert code == 4404
    assert fake.opened == []


@pytest.mark.parametrize("hello", [
    {"token": "dy_not-a-real-token"}, {"token": ""}, {"cols": 80}, "not json", '["token"]',
])
def test_invalid_or_missing_token_gets_4401(api: Any, world: dict[str, str], hello: Any) -> None:
    body, code = _refusal(api, EXEC, hello)
    assert code == 4401 and body["status"] == 401 and body["message"]
    assert api.app.state.exec_provider.opened == []


@pytest.mark.parametrize(("query", "hello", "field"), [
    ("?replica=abc", {}, "replica"),
    ("?replica=-1", {}, "replica"),
    ("?command=" + "x" * 257, {}, "command"),
    ("?command=sh%20'unclosed", {}, "command"),
    ("?command=%20%20", {}, "command"),
    ("", {"cols": 0}, "cols"),
    ("", {"rows": "24"}, "rows"),
    ("", {"cols": 5000}, "cols"),
])
def test_bad_parameters_get_4400_naming_the_field(api: Any, world: dict[str, str], query: str, hello: dict,
                                                   field: str) -> None:
    body, code = _refusal(api, EXEC + query, {"token": world["dave"], **hello})
    assert code == 4400 and body["status"] == 400
    assert body["message"].startswith(f"{field}:"), body
    assert api.app.state.exec_provider.opened == []


def test_engine_refusal_is_passed_on(api: Any, world: dict[str, str]) -> None:
    api.app.state.exec_provider.fail = ExecError(404, "app acme/shop/web has no running replica 7")
    body, code = _refusal(api, EXEC + "?replica=7", {"token": world["dave"]})
    assert (code, body["message"]) == (4404, "app acme/shop/web has no running replica 7")


def test_without_an_exec_provider_it_is_4503_and_info_says_so(api: Any, world: dict[str, str]) -> None:
    assert api.get(f"{V1}/info").json()["exec"] is True
    api.app.state.exec_provider = None
    assert api.get(f"{V1}/info").json()["exec"] is False
    _, code = _refusal(api, EXEC, {"token": world["dave"]})
    assert code == 4503


def test_client_leaving_closes_the_process_and_its_threads(api: Any, world: dict[str, str]) -> None:
    fake: FakeExec = api.app.state.exec_provider
    with api.websocket_connect(EXEC) as ws:
        ws.send_text(json.dumps({"token": world["dave"]}))
        ws.send_text(json.dumps({"type": "input", "data": "still here\n"}))
        assert _next(ws)["bytes"] == b"out:still here\r\n"
        assert _exec_threads(), "the session reads and writes in threads of its own"
    assert _wait_until(lambda: bool(fake.processes) and fake.processes[0].closed.is_set())
    assert _wait_until(lambda: not _exec_threads()), _exec_threads()
    assert _wait_until(lambda: any(e["outcome"] == 200 and "client left" in (e["detail"] or "")
                                   for e in _audit(api))), [e["detail"] for e in _audit(api)]


def test_revoked_token_ends_an_open_session(api: Any, world: dict[str, str]) -> None:
    fake: FakeExec = api.app.state.exec_provider
    with api.websocket_connect(EXEC) as ws:
        ws.send_text(json.dumps({"token": world["dave"]}))
        ws.send_text(json.dumps({"type": "input", "data": "x\n"}))
        assert _next(ws)["bytes"] == b"out:x\r\n"
        r = api.post(f"{V1}/logout", headers={"Authorization": f"Bearer {world['dave']}"})
        assert r.status_code == 204
        msg = json.loads(_next(ws)["text"])
        assert msg["type"] == "error" and msg["status"] == 401
        assert _next(ws)["code"] == 4401
    assert _wait_until(fake.processes[0].closed.is_set)


def test_bad_messages_are_answered_and_the_session_goes_on(api: Any, world: dict[str, str]) -> None:
    with api.websocket_connect(EXEC) as ws:
        ws.send_text(json.dumps({"token": world["dave"]}))
        for bad, field in (("{", "messages"), ('{"type": "launch"}', "type"), ('{"type": "input"}', "data"),
                           ('{"type": "resize", "cols": 0, "rows": 5}', "cols")):
            ws.send_text(bad)
            msg = json.loads(_next(ws)["text"])
            assert msg["type"] == "error" and msg["status"] == 400 and msg["message"].startswith(field), msg
        ws.send_text(json.dumps({"type": "input", "data": "exit 0\n"}))
        assert json.loads(_next(ws)["text"]) == {"type": "exit", "code": 0}


# --- limits: input, open sessions; threads --------------------------------------------------------

CHUNK = 64 * 1024


def _unread(ws: Any) -> int:
    """Messages the client sent that the server has not received yet."""
    return ws._receive_tx.statistics().current_buffer_used


def _ended(api: Any, words: str) -> dict | None:
    return next((e for e in _audit(api) if e["outcome"] == 200 and words in (e["detail"] or "")), None)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("too_big", [
    {"bytes": b"y" * (terminal.MAX_INPUT + 1)},
    # counted in bytes (UTF-8), not characters: 32,769 characters are 65,538 bytes
    {"text": json.dumps({"type": "input", "data": "é" * (terminal.MAX_INPUT // 2 + 1)})},
])
def test_an_input_message_over_the_limit_ends_the_session_with_4400(api: Any, world: dict[str, str],
                                                                    too_big: dict) -> None:
    fake: FakeExec = api.app.state.exec_provider
    with api.websocket_connect(EXEC) as ws:
        ws.send_text(json.dumps({"token": world["dave"]}))
        ws.send_bytes(b"x" * (terminal.MAX_INPUT - 1) + b"\n")  # the limit itself is fine
        assert _next(ws)["bytes"] == b"out:" + b"x" * (terminal.MAX_INPUT - 1) + b"\r\n"
        ws.send({"type": "websocket.receive", **too_big})
        msg = json.loads(_next(ws)["text"])
        assert msg["type"] == "error" and msg["status"] == 400, msg
        assert msg["message"].startswith("input:") and str(terminal.MAX_INPUT) in msg["message"], msg
        assert _next(ws)["code"] == 4400
    proc = fake.processes[0]
    assert _wait_until(proc.closed.is_set)
    assert proc.taken == terminal.MAX_INPUT, "nothing of the refused message reaches the process"
    assert _wait_until(lambda: _ended(api, "refused (400: input:")), _audit(api)


@pytest.mark.timeout(30)
def test_input_the_process_does_not_take_is_not_read_beyond_a_mebibyte(api: Any, world: dict[str, str]) -> None:
    """Backpressure: while a MiB is on its way to the process, the server stops reading the socket
    (TCP then holds the client back) instead of buffering what the client sends."""
    fake: FakeExec = api.app.state.exec_provider
    frames = 48  # 3 MiB
    sent = b"".join(bytes([65 + i % 26]) * CHUNK for i in range(frames))
    with api.websocket_connect(EXEC) as ws:
        ws.send_text(json.dumps({"token": world["dave"]}))
        ws.send_text(json.dumps({"type": "input", "data": "hi\n"}))
        assert _next(ws)["bytes"] == b"out:hi\r\n"
        proc = fake.processes[0]
        proc.reading.clear()
        for i in range(frames):
            ws.send_bytes(sent[i * CHUNK:(i + 1) * CHUNK])
        time.sleep(0.5)
        in_server = frames - _unread(ws)
        assert in_server <= terminal.MAX_BUFFERED // CHUNK + 2, f"the server took {in_server} of {frames} frames"
        proc.reading.set()
        assert _wait_until(lambda: proc.taken == 3 + len(sent)), (proc.taken, len(sent))
        assert proc.buf == sent, "all of it arrives, in order"
        ws.send_text(json.dumps({"type": "input", "data": "\nexit 0\n"}))
        assert _next(ws)["bytes"].startswith(b"out:" + sent[:CHUNK])
        assert json.loads(_next(ws)["text"]) == {"type": "exit", "code": 0}
    assert _wait_until(lambda: not _exec_threads()), _exec_threads()


@pytest.mark.timeout(30)
def test_input_a_process_leaves_unread_too_long_is_dropped_and_a_leaving_client_is_seen(
        api: Any, world: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(terminal, "INPUT_STALL", 0.3)
    fake: FakeExec = api.app.state.exec_provider
    with api.websocket_connect(EXEC) as ws:
        ws.send_text(json.dumps({"token": world["dave"]}))
        ws.send_text(json.dumps({"type": "input", "data": "hi\n"}))
        assert _next(ws)["bytes"] == b"out:hi\r\n"
        proc = fake.processes[0]
        proc.reading.clear()  # e.g. `sleep 600` in the foreground
        for _ in range(terminal.MAX_BUFFERED // CHUNK + 4):
            ws.send_bytes(b"z" * CHUNK)
        msg = json.loads(_next(ws)["text"])
        assert msg["type"] == "error" and msg["status"] == 429 and "dropped" in msg["message"], msg
        assert _wait_until(lambda: _unread(ws) == 0), "the server reads on (and drops) instead of stalling"
    # the client left while the process still reads nothing: the session ends all the same
    assert _wait_until(proc.closed.is_set)
    assert _wait_until(lambda: _ended(api, "client left")), _audit(api)
    assert _wait_until(lambda: not _exec_threads()), _exec_threads()


@pytest.mark.timeout(60)
def test_open_sessions_are_limited_per_user_and_in_all(api: Any, world: dict[str, str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKYARD_EXEC_MAX_PER_USER", "2")
    monkeypatch.setenv("DOCKYARD_EXEC_MAX", "3")
    assert api.post(f"{V1}/users", json={"name": "dina", "password": PW}).status_code == 201
    assert api.post(f"{V1}/projects/acme/shop/members", json={"user": "dina", "role": "developer"}).status_code == 201
    dina = _login(api, "dina")
    fake: FakeExec = api.app.state.exec_provider

    def open_session(token: str) -> Any:
        ws = api.websocket_connect(EXEC).__enter__()
        ws.send_text(json.dumps({"token": token}))
        ws.send_text(json.dumps({"type": "input", "data": "up\n"}))
        assert _next(ws)["bytes"] == b"out:up\r\n"
        return ws

    first, second = open_session(world["dave"]), open_session(world["dave"])
    body, code = _refusal(api, EXEC, {"token": world["dave"]})
    assert (code, body["status"]) == (4429, 429)
    assert "2" in body["message"] and "DOCKYARD_EXEC_MAX_PER_USER" in body["message"], body
    third = open_session(dina)  # another user may still open one: 3 in all
    body, code = _refusal(api, EXEC, {"token": dina})
    assert code == 4429 and "3" in body["message"] and "DOCKYARD_EXEC_MAX" in body["message"], body
    assert len(fake.processes) == 3, "a refused session starts nothing"
    assert [e["outcome"] for e in _audit(api) if e["outcome"] == 429] == [429, 429]

    first.__exit__(None, None, None)  # a closed session frees its place
    assert _wait_until(lambda: _ended(api, "client left"))
    again = open_session(world["dave"])
    for ws in (second, third, again):
        ws.__exit__(None, None, None)
    assert _wait_until(lambda: all(p.closed.is_set() for p in fake.processes))


@pytest.mark.parametrize(("variable", "value"), [("DOCKYARD_EXEC_MAX", "0"), ("DOCKYARD_EXEC_MAX_PER_USER", "many")])
def test_a_bad_session_limit_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str,
                                                            value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=variable):
        terminal.ExecSessions.from_env()


@pytest.mark.timeout(30)
def test_blocking_calls_of_a_session_stay_out_of_the_shared_thread_pool(api: Any, world: dict[str, str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting, resizing, the exit code, closing (which may take seconds on an engine) and the
    periodic rights check run in threads of the terminal's own, never in the pool of threads
    that serves every HTTP request: many sessions closing at once cannot starve the API."""
    fake: FakeExec = api.app.state.exec_provider
    cache = api.app.state.store.token_cache
    checks: list[str] = []
    authenticate = cache.authenticate

    def recording(store: Any, token: str) -> Any:
        checks.append(threading.current_thread().name)
        return authenticate(store, token)

    with api.websocket_connect(EXEC) as ws:
        ws.send_text(json.dumps({"token": world["dave"]}))
        ws.send_text(json.dumps({"type": "input", "data": "hi\n"}))
        assert _next(ws)["bytes"] == b"out:hi\r\n"
        monkeypatch.setattr(cache, "authenticate", recording)
        assert _wait_until(lambda: len(checks) >= 2), "rights are re-checked every RECHECK seconds"
        ws.send_text(json.dumps({"type": "resize", "cols": 90, "rows": 20}))
        ws.send_text(json.dumps({"type": "input", "data": "exit 2\n"}))
        assert json.loads(_next(ws)["text"]) == {"type": "exit", "code": 2}
    proc = fake.processes[0]
    assert _wait_until(proc.closed.is_set)
    used = {"open": fake.opened[0]["thread"], **proc.threads, **{f"recheck {i}": t for i, t in enumerate(checks)}}
    assert set(used) >= {"open", "resize", "exit_code", "close", "recheck 0"}
    assert not [call for call, thread in used.items() if thread.startswith("AnyIO worker")], used


@pytest.mark.timeout(30)
def test_a_failing_rights_check_ends_the_session_and_the_audit_says_why(api: Any, world: dict[str, str],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    fake: FakeExec = api.app.state.exec_provider
    with api.websocket_connect(EXEC) as ws:
        ws.send_text(json.dumps({"token": world["dave"]}))
        ws.send_text(json.dumps({"type": "input", "data": "hi\n"}))
        assert _next(ws)["bytes"] == b"out:hi\r\n"

        def broken(store: Any, token: str) -> Any:
            raise OperationalError("SELECT ...", {}, Exception("the database is unreachable"))

        monkeypatch.setattr(api.app.state.store.token_cache, "authenticate", broken)
        msg = json.loads(_next(ws)["text"])
        assert msg["type"] == "error" and msg["status"] == 503, msg
        assert _next(ws)["code"] == 4503
    assert _wait_until(fake.processes[0].closed.is_set)
    monkeypatch.undo()
    entry = _wait_until(lambda: _ended(api, "rights check failed"))
    assert entry, _audit(api)
    detail = _ended(api, "rights check failed")["detail"]
    assert "OperationalError" in detail and "client left" not in detail, detail
