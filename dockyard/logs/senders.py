"""What a log drain puts on the wire: the record formats (pure functions, unit-tested) and the
transports that send a batch of log entries to one destination.

Formats
- syslog: RFC 5424 messages `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] BOM MSG`,
  facility user, severity err for stderr and info for stdout, APP-NAME `tenant.project.app` (cut
  to 48 characters), PROCID the replica, MSGID the stream, structured data `dockyard@32473` (32473 is
  the example enterprise number of RFC 5612: Dockyard has none of its own) with the source and the
  drain's labels. UDP: one datagram per message (RFC 5426); TCP and TLS: octet-counting framing
  `LEN SP MSG` (RFC 6587 3.4.1, RFC 5425).
- http: `application/x-ndjson`, one JSON object per line.
- loki: Loki's JSON push body, one stream per (app, replica, stream), values sorted by time.

Transports connect to the address the egress check returned (`connect_to()` is called for each
new connection), never to a name resolved again by a library: what was checked is what is used."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from dockyard.policy.egress import Destination, open_pinned_http

if TYPE_CHECKING:
    from dockyard.logs.store import LogEntry

SD_ID = "dockyard@32473"
UTF8_BOM = b"\xef\xbb\xbf"
FACILITY_USER = 1
SEVERITY = {"stderr": 3, "stdout": 6}   # err, info
MAX_DATAGRAM = 8192                       # one UDP message at most (RFC 5426 asks receivers for 2048+)
TIMEOUT = 10.0                            # connect, write and response, per request
RECONNECT_AFTER = 60.0                    # re-resolve and re-check the destination this often


class SendError(Exception):
    """A batch was not delivered. `retry`: try the same batch again later (the destination is
    down or refused for now); otherwise the destination refused the content and a retry would
    fail the same way. `too_large`: send it in smaller pieces."""

    def __init__(self, message: str, *, retry: bool = True, too_large: bool = False) -> None:
        super().__init__(message)
        self.retry = retry
        self.too_large = too_large


class Sender(Protocol):
    def send(self, entries: Sequence[LogEntry]) -> None: ...

    def close(self) -> None: ...


# --- formats --------------------------------------------------------------------------------

def time_ns(ts: float) -> int:
    return int(round(ts * 1e9))


def rfc3339(ts: float, digits: int) -> str:
    """UTC time with `digits` fractional digits (9 for ns; RFC 5424 allows at most 6)."""
    ns = time_ns(ts)
    whole = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ns % 1_000_000_000:09d}"[:digits]
    return f"{whole}.{frac}Z" if digits else f"{whole}Z"


def _ascii_token(text: str, limit: int) -> str:
    """A syslog header field: printable US-ASCII without spaces, at most `limit`, '-' when empty."""
    out = "".join(c if 33 <= ord(c) <= 126 else "_" for c in text)[:limit]
    return out or "-"


def _sd_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


class SyslogFormat:
    """RFC 5424 messages for one drain. What is fixed per source (priority, host, app, replica,
    stream, structured data) is built once per source, the seconds of the timestamp once per second:
    formatting is most of a syslog drain's CPU."""

    def __init__(self, labels: dict[str, str], hostname: str) -> None:
        self.labels = labels
        self.hostname = _ascii_token(hostname, 255)
        self._heads: dict[tuple, tuple[bytes, bytes]] = {}
        self._second: tuple[int, str] = (-1, "")

    def _head(self, e: LogEntry) -> tuple[bytes, bytes]:
        key = (e.tenant, e.project, e.app, e.replica, e.container, e.stream)
        head = self._heads.get(key)
        if head is None:
            if len(self._heads) >= 4096:
                self._heads.clear()
            pri = FACILITY_USER * 8 + SEVERITY.get(e.stream, 6)
            params = {"tenant": e.tenant, "project": e.project, "app": e.app, "replica": str(e.replica),
                      "container": e.container, **self.labels}
            sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
            rest = (f" {self.hostname} {_ascii_token(f'{e.tenant}.{e.project}.{e.app}', 48)} "
                    f"{_ascii_token(str(e.replica), 128)} {_ascii_token(e.stream, 32)} {sd} ")
            head = self._heads[key] = (f"<{pri}>1 ".encode(), rest.encode() + UTF8_BOM)
        return head

    def _timestamp(self, ts: float) -> bytes:
        ns = time_ns(ts)
        sec = ns // 1_000_000_000
        if sec != self._second[0]:
            self._second = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        return f"{self._second[1]}.{ns % 1_000_000_000 // 1000:06d}Z".encode()

    def message(self, e: LogEntry) -> bytes:
        """One message, without framing."""
        pri, rest = self._head(e)
        return pri + self._timestamp(e.ts) + rest + e.text.encode("utf-8", "replace")


def syslog_message(e: LogEntry, labels: dict[str, str], hostname: str) -> bytes:
    """One RFC 5424 message (without framing)."""
    return SyslogFormat(labels, hostname).message(e)


def octet_frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: the message's length in bytes, a space, the message."""
    return str(len(message)).encode() + b" " + message


def cut_datagram(message: bytes, limit: int = MAX_DATAGRAM) -> bytes:
    """At most `limit` bytes, not ending inside a UTF-8 character."""
    if len(message) <= limit:
        return message
    cut = message[:limit]
    while cut and (cut[-1] & 0xC0) == 0x80:
        cut = cut[:-1]
    if cut and cut[-1] >= 0xC0:
        cut = cut[:-1]
    return cut


def ndjson_body(entries: Iterable[LogEntry], labels: dict[str, str]) -> bytes:
    """The http drain's body: one JSON object per line, each ending in a newline."""
    lines = [json.dumps({"ts": rfc3339(e.ts, 9), "tenant": e.tenant, "project": e.project, "app": e.app,
                         "replica": e.replica, "container": e.container, "stream": e.stream, "text": e.text,
                         "labels": labels}, ensure_ascii=False, separators=(",", ":"))
             for e in entries]
    return ("\n".join(lines) + "\n").encode()


StreamKey = tuple[str, str, str, int, str]   # tenant, project, app, replica, stream


def loki_body(entries: Iterable[LogEntry], labels: dict[str, str], newest: dict[StreamKey, int]) -> bytes:
    """Loki's push body. Values of a stream are sorted by time; Loki before 2.4 (and later ones with
    unordered writes off) refuses an entry older than the newest it has of the stream, so a line
    older than what this drain already sent on its stream is sent with that newest time. `newest`
    is the sender's memory of that, updated here."""
    streams: dict[StreamKey, list[tuple[int, str]]] = {}
    for e in entries:
        streams.setdefault((e.tenant, e.project, e.app, e.replica, e.stream), []).append((time_ns(e.ts), e.text))
    out = []
    for key, values in streams.items():
        values.sort(key=lambda v: v[0])
        floor = newest.get(key, 0)
        fixed = [[str(max(ns, floor)), text] for ns, text in values]
        newest[key] = max(floor, values[-1][0])
        tenant, project, app, replica, stream = key
        out.append({"stream": {"tenant": tenant, "project": project, "app": app, "replica": str(replica),
                               "stream": stream, **labels}, "values": fixed})
    return json.dumps({"streams": out}, ensure_ascii=False, separators=(",", ":")).encode()


# --- transports -----------------------------------------------------------------------------

def _connection_error(what: str, e: BaseException) -> SendError:
    return SendError(f"{what}: {e.strerror or e}" if isinstance(e, OSError) and e.strerror else f"{what}: {e}")


class SyslogSender:
    """RFC 5424 over UDP (a datagram per line), TCP or TLS (octet-counted, one stream)."""

    def __init__(self, url: str, connect_to: Callable[[], Destination], labels: dict[str, str], hostname: str,
                 *, timeout: float = TIMEOUT, tls_context: ssl.SSLContext | None = None) -> None:
        self.scheme = urlsplit(url).scheme.lower()
        self.connect_to = connect_to
        self.format = SyslogFormat(labels, hostname)
        self.timeout = timeout
        self.tls_context = tls_context
        self.sock: socket.socket | None = None
        self.opened = 0.0

    def _open(self) -> socket.socket:
        dest = self.connect_to()
        address = dest.addresses[0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        if self.scheme == "syslog":
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.settimeout(self.timeout)
            sock.connect((address, dest.port))   # connected: an ICMP "port unreachable" shows on a later send
            return sock
        sock = socket.create_connection((address, dest.port), timeout=self.timeout)
        if self.scheme == "syslog+tls":
            ctx = self.tls_context or ssl.create_default_context()
            sock = ctx.wrap_socket(sock, server_hostname=dest.host)
        return sock

    def _peer_closed(self, sock: socket.socket) -> bool:
        """Whether a stream's peer has gone (EOF or reset) since the last send. Checked before each
        batch: TCP would otherwise take a batch into the kernel's buffer and lose it when the reset
        arrives. A syslog server sends us nothing we need (TLS session tickets at most): read and drop."""
        try:
            sock.setblocking(False)
            while True:
                if not sock.recv(4096):
                    return True
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except OSError:
            return True
        finally:
            sock.settimeout(self.timeout)

    def send(self, entries: Sequence[LogEntry]) -> None:
        if self.sock is not None and (time.monotonic() - self.opened > RECONNECT_AFTER or
                                      (self.scheme != "syslog" and self._peer_closed(self.sock))):
            self.close()
        messages = [self.format.message(e) for e in entries]
        try:
            if self.sock is None:
                self.sock = self._open()
                self.opened = time.monotonic()
            if self.scheme == "syslog":
                for m in messages:
                    self.sock.send(cut_datagram(m))
            else:
                self.sock.sendall(b"".join(octet_frame(m) for m in messages))
        except (OSError, ssl.SSLError) as e:
            self.close()
            raise _connection_error("syslog", e) from None

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


# statuses after which the same batch will be refused again: it is dropped and counted
_REFUSED_CONTENT = frozenset({400, 415, 422})


class HttpSender:
    """POST a batch as one request; a 2xx answer is the acknowledgement the cursor waits for."""

    def __init__(self, url: str, connect_to: Callable[[], Destination], headers: dict[str, str],
                 content_type: str, body: Callable[[Sequence[LogEntry]], bytes], *, timeout: float = TIMEOUT,
                 tls_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.connect_to = connect_to
        self.headers = {**headers, "Content-Type": content_type, "User-Agent": "dockyard-log-drain"}
        self.body = body
        self.timeout = timeout
        self.tls_context = tls_context
        self.conn: http.client.HTTPConnection | None = None
        self.opened = 0.0

    def _post(self, payload: bytes) -> http.client.HTTPResponse:
        if self.conn is None or time.monotonic() - self.opened > RECONNECT_AFTER:
            self.close()
            self.conn = open_pinned_http(self.scheme, self.connect_to(), self.timeout, self.tls_context)
            self.opened = time.monotonic()
        self.conn.request("POST", self.target, body=payload, headers=self.headers)
        return self.conn.getresponse()

    def send(self, entries: Sequence[LogEntry]) -> None:
        payload = self.body(entries)
        reused = self.conn is not None
        try:
            try:
                resp = self._post(payload)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                self.close()   # a kept-alive connection the server had closed: once more, on a new one
                resp = self._post(payload)
            detail = resp.read(2048).decode("utf-8", "replace").strip()
            if resp.will_close:
                self.close()
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            self.close()
            raise _connection_error(f"{self.scheme}", e) from None
        if 200 <= resp.status < 300:
            return
        message = f"HTTP {resp.status} {resp.reason}" + (f": {detail[:300]}" if detail else "")
        if resp.status == 413:
            raise SendError(message, retry=False, too_large=True)
        raise SendError(message, retry=resp.status not in _REFUSED_CONTENT)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
