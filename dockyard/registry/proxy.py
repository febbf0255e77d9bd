"""The registry's front door: a small HTTP/1.1 proxy that enforces storage quotas on uploads.

The distribution registry asks its token service who may push, but never how much: a push that
passes a project's storage quota can only be stopped by something that sees the bytes. So clients
reach the registry through this proxy, and the registry itself listens only on a unix socket.

Why it is shaped like this (measured: a 50 MB pull from the bare registry takes about 0.6 s here,
so a proxy that costs 0.1 s would already miss the issue's 0.9x throughput goal):
- Responses are piped back as raw bytes, never parsed: a pull costs one copy per 256 KiB.
- Requests are parsed only as far as HTTP framing needs (request line, headers, Content-Length or
  chunked sizes), and only blob uploads (`POST/PATCH/PUT /v2/NAME/blobs/uploads/…`) are counted.
- The quota is asked once when an upload request starts and then every `RECHECK` bytes; between
  checks the proxy compares a local counter with the allowance it got.

An upload that would pass the quota gets `403` with the registry's own error document
(`{"errors": [{"code": "DENIED", "message": …}]}`), which `docker push` prints as
`denied: storage quota exceeded: …`, and the upload is cut off there, so the bytes are never stored.
Bytes of uploads the registry has not committed yet are kept in a ledger per project, because the
registry's storage (what `StorageUsage` reads) shows them only once the blob is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

PIPE_CHUNK = 256 * 1024
RECHECK = 4 * 1024 * 1024
MAX_HEAD = 64 * 1024
# a committed blob shows in the registry's storage within this time; then the ledger forgets it
COMMIT_SETTLE = 2.0
# how long a refused client may go on sending before the connection is closed
LINGER = 5.0
# an upload session nobody touched for this long was abandoned by its client
ABANDONED = 15 * 60.0

_UPLOAD = re.compile(r"^/v2/(?P<name>[^?]+?)/blobs/uploads/(?P<uuid>[^/?]*)(?:\?(?P<query>.*))?$")


class QuotaPolicy(Protocol):
    def remaining(self, tenant: str, project: str, inflight: int) -> int | None:
        """Bytes the project may still upload on top of `inflight`; None when unlimited."""

    def message(self, tenant: str, project: str, inflight: int, adding: int) -> str:
        """The refusal, in words."""


class UsageCache(Protocol):
    def invalidate(self, tenant: str | None = None, project: str | None = None) -> None: ...


@dataclass
class _Upload:
    bytes: int = 0
    touched: float = field(default_factory=time.monotonic)
    committed_at: float | None = None


class UploadLedger:
    """Bytes of each project's uploads that the registry has not committed to storage yet."""

    def __init__(self, usage: UsageCache | None = None) -> None:
        self.usage = usage
        self._lock = threading.Lock()
        self._uploads: dict[tuple[str, str], dict[str, _Upload]] = {}

    def add(self, tenant: str, project: str, upload: str, n: int) -> None:
        with self._lock:
            u = self._uploads.setdefault((tenant, project), {}).setdefault(upload, _Upload())
            u.bytes += n
            u.touched = time.monotonic()

    def session(self, tenant: str, project: str, upload: str) -> int:
        with self._lock:
            u = self._uploads.get((tenant, project), {}).get(upload)
            return u.bytes if u else 0

    def committed(self, tenant: str, project: str, upload: str) -> None:
        with self._lock:
            u = self._uploads.get((tenant, project), {}).get(upload)
            if u:
                u.committed_at = time.monotonic()

    def cancel(self, tenant: str, project: str, upload: str) -> None:
        with self._lock:
            self._uploads.get((tenant, project), {}).pop(upload, None)

    def project(self, tenant: str, project: str, *, besides: str | None = None) -> int:
        """Uncommitted bytes of the project (without upload `besides`)."""
        now = time.monotonic()
        settled = False
        with self._lock:
            ups = self._uploads.get((tenant, project), {})
            total = 0
            for key, u in list(ups.items()):
                if u.committed_at is not None and now - u.committed_at > COMMIT_SETTLE:
                    del ups[key]
                    settled = True  # in storage now: the usage figure must be read again to show it
                elif now - u.touched > ABANDONED:
                    del ups[key]
                elif key != besides:
                    total += u.bytes
        if settled and self.usage is not None:
            self.usage.invalidate(tenant, project)
        return total


def _split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _denied(message: str, status: int = 403, reason: str = "Forbidden", code: str = "DENIED") -> bytes:
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n"
            f"Docker-Distribution-Api-Version: registry/2.0\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


class _Refused(Exception):
    def __init__(self, response: bytes) -> None:
        super().__init__("refused")
        self.response = response


class RegistryProxy:
    """Listens on `listen` and forwards every connection to the registry's unix socket."""

    def __init__(self, listen: str, upstream: Path, quota: QuotaPolicy | None = None,
                 usage: UsageCache | None = None) -> None:
        self.listen = listen
        self.upstream = Path(upstream)
        self.quota = quota
        self.ledger = UploadLedger(usage)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[asyncio.Task] = set()
        self._seq = 0

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind and serve in a thread of its own; raises OSError here when the address is taken."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                host, port = _split_listen(self.listen)
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._serve, host, port, limit=MAX_HEAD, reuse_address=True))
            except BaseException as e:  # noqa: BLE001 — handed to start()'s caller
                failure.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._shutdown())
                loop.close()

        self._thread = threading.Thread(target=run, name="registry-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        log.info("registry proxy on %s → %s", self.listen, self.upstream)

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)

    def set_upstream(self, sock: Path) -> None:
        """New connections go to `sock`; open ones stay with the registry they started with."""
        self.upstream = Path(sock)

    # --- one connection -------------------------------------------------------------------------

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            up = await _Upstream.connect(self.upstream)
        except OSError as e:
            log.warning("registry proxy: the registry does not answer at %s: %s", self.upstream, e)
            cwriter.write(_denied("the registry is not available right now; try again shortly", 503,
                                  "Service Unavailable", "UNAVAILABLE"))
            await _close(cwriter)
            self._conns.discard(task)
            return
        back = asyncio.create_task(_pipe(up, cwriter))
        try:
            await self._requests(creader, up, back)
        except _Refused as r:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await back
            up.close()
            cwriter.write(r.response)
            await _linger(creader, cwriter)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            # the client or the registry stopped in the middle of a request (or it cannot be framed). The
            # registry may have answered already, before reading the whole body (an early 401 to a push
            # without the right token, say): that answer must still reach the client, so the registry's
            # side is closed for writing and its last answer is awaited, not cut off
            up.shutdown_write()
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
                await asyncio.wait_for(asyncio.shield(back), timeout=LINGER)
        finally:
            # the client has gone (or was refused): nobody reads what the registry would still send
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await back
            up.close()
            await _close(cwriter)
            self._conns.discard(task)

    async def _requests(self, creader: asyncio.StreamReader, uwriter: _Upstream, back: asyncio.Task) -> None:
        while not back.done():
            try:
                first = await creader.readexactly(1)
            except asyncio.IncompleteReadError:
                return  # the client closed between requests
            if not first.isupper():
                # a TLS handshake: dockerd tries https first and moves on to http only when the answer
                # is plain HTTP (waiting for a request head here would cost it a 10 s handshake timeout)
                raise _Refused(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            try:
                head = first + await creader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise _Refused(_denied("request head too large", 431, "Request Header Fields Too Large",
                                       "UNSUPPORTED")) from None
            method, target, headers = _parse_head(head)
            upload = self._upload_of(method, target)
            uwriter.write(head)
            if upload is not None:
                await self._forward_upload(creader, uwriter, method, headers, upload)
            else:
                await _forward_body(creader, uwriter, headers, None)
            await uwriter.drain()

    def _upload_of(self, method: str, target: str) -> tuple[str, str, str, bool] | None:
        """(tenant, project, ledger key, commits) of a blob upload request in a project, else None."""
        if method not in ("POST", "PATCH", "PUT", "DELETE"):
            return None
        # the registry (Go's net/http) routes on the decoded path, absolute-form targets too: read
        # the project the same way, or `acme%2Fshop/web` would be stored past acme/shop's quota
        url = urlsplit(target)
        m = _UPLOAD.match(unquote(url.path) + (f"?{url.query}" if url.query else ""))
        if not m:
            return None
        parts = m.group("name").split("/")
        if len(parts) < 3:
            return None
        query = m.group("query") or ""
        commits = "digest=" in query and method in ("PUT", "POST")
        key = m.group("uuid")
        if not key:
            self._seq += 1
            key = f"new-{self._seq}"
        if method == "DELETE":
            self.ledger.cancel(parts[0], parts[1], key)
            return None
        return parts[0], parts[1], key, commits

    async def _forward_upload(self, creader: asyncio.StreamReader, uwriter: _Upstream, method: str,
                              headers: dict[str, str], upload: tuple[str, str, str, bool]) -> None:
        tenant, project, key, commits = upload
        if self.quota is None:
            await _forward_body(creader, uwriter, headers, None)
            return
        checker = _Allowance(self, tenant, project, key)
        await asyncio.to_thread(checker.refresh)
        if method == "POST" and not headers.get("content-length", "0").strip("0") \
                and "chunked" not in headers.get("transfer-encoding", "") and checker.left is not None \
                and checker.left <= 0:
            # starting an upload with nothing left: say so before the client sends any layer
            raise _Refused(_denied(await asyncio.to_thread(checker.message, 0)))  # reads the store
        await _forward_body(creader, uwriter, headers, checker)
        if checker.refusal is not None:
            # answered only now that the client has sent its whole body: a Go client (dockerd) that is
            # still writing when the answer comes reports its own write error instead of the answer
            raise _Refused(checker.refusal)
        if commits:
            self.ledger.committed(tenant, project, key)


class _Allowance:
    """The quota as one upload request sees it: a local byte counter against a refreshed allowance."""

    def __init__(self, proxy: RegistryProxy, tenant: str, project: str, key: str) -> None:
        self.proxy, self.tenant, self.project, self.key = proxy, tenant, project, key
        self.left: int | None = None
        self.since_check = 0
        self.refusal: bytes | None = None

    def refresh(self) -> None:
        inflight = self.proxy.ledger.project(self.tenant, self.project, besides=self.key)
        assert self.proxy.quota is not None
        self.left = self.proxy.quota.remaining(self.tenant, self.project, inflight)
        self.since_check = 0

    def message(self, adding: int) -> str:
        inflight = self.proxy.ledger.project(self.tenant, self.project, besides=self.key)
        assert self.proxy.quota is not None
        return self.proxy.quota.message(self.tenant, self.project, inflight, adding)

    async def count(self, n: int) -> None:
        if self.refusal is not None:
            return
        self.proxy.ledger.add(self.tenant, self.project, self.key, n)
        self.since_check += n
        if self.since_check >= RECHECK:
            await asyncio.to_thread(self.refresh)
        session = self.proxy.ledger.session(self.tenant, self.project, self.key)
        if self.left is not None and session > self.left:
            # recheck once before refusing: another upload of the project may have been committed
            await asyncio.to_thread(self.refresh)
            if self.left is not None and session > self.left:
                self.proxy.ledger.cancel(self.tenant, self.project, self.key)
                self.refusal = _denied(await asyncio.to_thread(self.message, session))


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head[:-4].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x request line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower() if name.strip().lower() in (
                "transfer-encoding", "content-length") else value.strip()
    return parts[0], parts[1], headers


async def _forward_body(creader: asyncio.StreamReader, uwriter: _Upstream, headers: dict[str, str],
                        counter: _Allowance | None) -> None:
    if "chunked" in headers.get("transfer-encoding", ""):
        while True:
            size_line = await creader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            _send(uwriter, counter, size_line)
            if size == 0:
                while True:  # trailers, up to the empty line
                    line = await creader.readuntil(b"\r\n")
                    _send(uwriter, counter, line)
                    if line == b"\r\n":
                        return
            await _copy(creader, uwriter, size, counter)
            _send(uwriter, counter, await creader.readexactly(2))
    else:
        length = int(headers.get("content-length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        await _copy(creader, uwriter, length, counter)


async def _copy(creader: asyncio.StreamReader, uwriter: _Upstream, n: int,
                counter: _Allowance | None) -> None:
    while n > 0:
        data = await creader.read(min(n, PIPE_CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", n)
        n -= len(data)
        if counter is not None:
            await counter.count(len(data))
        _send(uwriter, counter, data)
        if uwriter.size > 4 * PIPE_CHUNK:
            await uwriter.drain()


def _send(uwriter: _Upstream, counter: _Allowance | None, data: bytes) -> None:
    """Forward to the registry, unless the upload was refused: then the rest of the body is read and
    dropped (the registry's half-received upload is cut off when the refusal is sent)."""
    if counter is None or counter.refusal is None:
        uwriter.write(data)


async def _pipe(up: _Upstream, cwriter: asyncio.StreamWriter) -> None:
    """Registry → client, as raw bytes. When the registry closes, so does the client's connection
    (not when the task is cancelled: a refusal is being written to the client then)."""
    try:
        while True:
            data = await up.recv(PIPE_CHUNK)
            if not data:
                break
            cwriter.write(data)
            await cwriter.drain()
    except (ConnectionError, OSError):
        pass
    if not cwriter.is_closing():
        cwriter.transport.close()


class _Upstream:
    """The connection to the registry, on a plain non-blocking socket rather than an asyncio stream:
    when the registry answers early (a 401 before it read a push's body) and closes, sending the rest
    of the body fails, and an asyncio transport would then drop its read side too, with the answer in
    it — the client saw a bare EOF. Here a failed send fails only that send; the answer is still read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.pending: list[bytes] = []
        self.size = 0

    @classmethod
    async def connect(cls, path: Path) -> _Upstream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, str(path))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def write(self, data: bytes) -> None:
        self.pending.append(data)
        self.size += len(data)

    async def drain(self) -> None:
        if not self.pending:
            return
        data = self.pending[0] if len(self.pending) == 1 else b"".join(self.pending)
        self.pending.clear()
        self.size = 0
        await self.loop.sock_sendall(self.sock, data)

    async def recv(self, n: int) -> bytes:
        return await self.loop.sock_recv(self.sock, n)

    def shutdown_write(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


async def _linger(creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
    """Let a refused client read the refusal. It is usually still sending its layer: closing with its
    bytes unread would make the kernel answer with a reset, and the client would see a broken pipe
    (and retry) instead of the message. So: send the answer, close our side for writing, and read and
    drop what still comes for a few seconds."""
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        await cwriter.drain()
        if cwriter.can_write_eof():
            cwriter.write_eof()
    deadline = time.monotonic() + LINGER
    with contextlib.suppress(ConnectionError, OSError, asyncio.TimeoutError):
        while (left := deadline - time.monotonic()) > 0:
            if not await asyncio.wait_for(creader.read(PIPE_CHUNK), timeout=left):
                break


async def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        if not writer.is_closing():
            await writer.drain()
            writer.close()
        await writer.wait_closed()
