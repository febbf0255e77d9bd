"""Build logs: one file per Build, `<data>/builds/logs/<uid>.log`, appended by the runner and read
(or followed while the build runs) by the API. Files, not the log store: a build's output belongs
to no container, and a finished build's log is read whole."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

MAX_LOG = 16 * 1024 * 1024   # a build that prints more keeps its first 16 MiB and a note
FOLLOW_POLL = 0.25


def logs_dir(data_dir: Path) -> Path:
    return data_dir / "builds" / "logs"


def log_path(data_dir: Path, uid: str) -> Path:
    return logs_dir(data_dir) / f"{uid}.log"


class BuildLogWriter:
    """Appends time-stamped lines to one build's log, flushed at once (readers follow the file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 — closed by close()
        self._size = path.stat().st_size
        self._lock = threading.Lock()
        self._full = False

    def __call__(self, line: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        text = f"{stamp} {line.rstrip()}\n"
        with self._lock:
            if self._f.closed or self._full:
                return
            if self._size + len(text) > MAX_LOG:
                self._full = True
                text = f"{stamp} (log cut here: a build log keeps at most {MAX_LOG // (1024 * 1024)} MiB)\n"
            self._f.write(text)
            self._f.flush()
            self._size += len(text)

    def close(self) -> None:
        with self._lock:
            self._f.close()


def read_log(path: Path, *, follow: bool, finished: Callable[[], bool], stop: threading.Event) -> Iterator[bytes]:
    """The log's bytes from the start; with `follow`, what is appended until `finished()` says the
    build is over (then what is left) or `stop` is set. A log not written yet reads as empty."""
    offset = 0
    while True:
        done = finished() if follow else True  # asked before reading: nothing written after it is lost
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                while chunk := f.read(65536):
                    offset += len(chunk)
                    yield chunk
        except FileNotFoundError:
            pass
        if done or stop.wait(FOLLOW_POLL):
            return


def remove_logs_except(data_dir: Path, uids: set[str]) -> int:
    """Delete the logs of Builds that no longer exist; return how many went."""
    gone = 0
    d = logs_dir(data_dir)
    if not d.is_dir():
        return 0
    for entry in os.scandir(d):
        if entry.name.endswith(".log") and entry.name[:-4] not in uids:
            try:
                os.unlink(entry.path)
                gone += 1
            except OSError:
                pass
    return gone
