"""Decoding of the Docker engine's log stream (`GET /containers/ID/logs?timestamps=1`) into
timestamped lines, without the SDK: the SDK's log reader drops which stream a line came from and
sends `since` with microsecond precision at best, and the log collector needs both.

The stream (for containers without a TTY, which Dockyard never gives one) is a sequence of frames:
an 8-byte header (stream id: 1 stdout, 2 stderr; 3 bytes padding; big-endian uint32 size) and the
payload. With timestamps each line starts with an RFC 3339 time in UTC with up to 9 fraction digits
("2026-11-27T11:17:00.123456789Z ") — trailing zeros trimmed, so the fraction has any length.

Memory is bounded: a line is kept up to `max_line + 1` bytes (the rest until its newline is
dropped), so a container writing without newlines cannot grow a buffer.
"""

from __future__ import annotations

import calendar
import socket
from collections.abc import Iterable, Iterator
from typing import Any

STREAM_NAMES = {1: "stdout", 2: "stderr"}
_HOURS: dict[bytes, int] = {}


def parse_timestamp_ns(stamp: bytes) -> int | None:
    """ns since the epoch of an RFC 3339 UTC time such as b"2026-11-27T11:17:00.5Z", or None."""
    if len(stamp) < 20 or stamp[-1:] != b"Z" or stamp[10:11] != b"T":
        return None
    hour = stamp[:13]
    base = _HOURS.get(hour)
    try:
        if base is None:
            base = calendar.timegm((int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]), int(stamp[11:13]), 0, 0))
            if len(_HOURS) > 1000:
                _HOURS.clear()
            _HOURS[hour] = base
        seconds = base + int(stamp[14:16]) * 60 + int(stamp[17:19])
        frac = stamp[20:-1] if stamp[19:20] == b"." else b""
        ns = int(frac.ljust(9, b"0")[:9]) if frac else 0
    except ValueError:
        return None
    return seconds * 1_000_000_000 + ns


class FrameDecoder:
    """Feeds on the raw bytes of a multiplexed log stream; yields (ts_ns, stream, text) per line.
    A line without a parsable timestamp gets the previous line's (0 for the first)."""

    def __init__(self, max_line: int = 16 * 1024) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._partial: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self._dropping: dict[int, bool] = {1: False, 2: False}
        self._last_ts = 0

    def feed(self, data: bytes) -> Iterator[tuple[int, str, str]]:
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= 8:
            size = int.from_bytes(buf[pos + 4:pos + 8], "big")
            if n - pos - 8 < size:
                break
            stream = buf[pos]
            payload = bytes(buf[pos + 8:pos + 8 + size])
            pos += 8 + size
            yield from self._payload(stream if stream in (1, 2) else 1, payload)
        del buf[:pos]

    def _payload(self, stream: int, payload: bytes) -> Iterator[tuple[int, str, str]]:
        pieces = payload.split(b"\n")
        partial = self._partial[stream]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if not self._dropping[stream]:
                room = self.max_line + 64 - len(partial)   # 64: room for the timestamp prefix
                partial += piece[:room] if room > 0 else b""
                if len(piece) > room:
                    self._dropping[stream] = True
            if last:
                break
            yield self._line(stream, bytes(partial))
            partial.clear()
            self._dropping[stream] = False

    def _line(self, stream: int, raw: bytes) -> tuple[int, str, str]:
        stamp, sep, rest = raw.partition(b" ")
        ts = parse_timestamp_ns(stamp) if sep else None
        if ts is None:
            rest = raw
            ts = self._last_ts
        self._last_ts = ts
        if rest.endswith(b"\r"):
            rest = rest[:-1]
        if len(rest) > self.max_line:
            rest = rest[:self.max_line + 1]
        return ts, STREAM_NAMES[stream], rest.decode("utf-8", "replace")

    def finish(self) -> Iterator[tuple[int, str, str]]:
        """The last lines that had no newline when the stream ended."""
        for stream, partial in self._partial.items():
            if partial:
                yield self._line(stream, bytes(partial))
                partial.clear()


def decode_frames(chunks: Iterable[bytes], max_line: int = 16 * 1024) -> Iterator[tuple[int, str, str]]:
    """Every line of a whole multiplexed stream given as byte chunks."""
    dec = FrameDecoder(max_line)
    for chunk in chunks:
        yield from dec.feed(chunk)
    yield from dec.finish()


class ChunkedBody:
    """Decodes an HTTP/1.1 chunked body fed as raw bytes (the log stream read straight from the
    connection's buffer: urllib3's own chunk reader costs more per line than the rest of collection)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._left = 0          # bytes of the current chunk still to come
        self._trailer = False   # the CRLF after a chunk's data is due
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The body bytes in `data` (with what was held back from before)."""
        buf = self._buf
        buf += data
        out = bytearray()
        pos = 0
        while not self.done:
            if self._left:
                take = min(self._left, len(buf) - pos)
                if take <= 0:
                    break
                out += buf[pos:pos + take]
                pos += take
                self._left -= take
                if self._left == 0:
                    self._trailer = True
                continue
            if self._trailer:
                if len(buf) - pos < 2:
                    break
                pos += 2
                self._trailer = False
            end = buf.find(b"\r\n", pos)
            if end < 0:
                break
            size = int(bytes(buf[pos:end]).split(b";", 1)[0] or b"0", 16)
            pos = end + 2
            if size == 0:
                self.done = True
            self._left = size
        del buf[:pos]
        return bytes(out)


def abort_stream(res: Any) -> None:
    """End a streaming response that another thread is reading. Closing it is not enough: the
    reader holds the buffered reader's lock inside recv(), so close() waits for the next log line
    (forever, for a quiet container); shutting the socket down wakes the reader first."""
    fp = getattr(getattr(res.raw, "_fp", None), "fp", None)
    raw = getattr(fp, "raw", None)
    sock = getattr(raw, "_sock", None) or getattr(raw, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed
    res.close()
