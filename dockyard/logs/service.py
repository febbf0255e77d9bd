"""Opening the log store and its collector for the server."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

from dockyard.engines.base import EngineDriver
from dockyard.logs import retention
from dockyard.logs.collector import LogCollector
from dockyard.logs.store import LogStore
from dockyard.store.repository import Store

log = logging.getLogger(__name__)


def open_logs(data_dir: Path, engine: EngineDriver, store: Store, leading: Callable[[], bool]) -> LogCollector | None:
    """The collector over <data-dir>/logs.db, sweeping by each project's limits. Raises ValueError
    naming the variable when $DOCKYARD_LOG_RETENTION or $DOCKYARD_LOG_MAX_SIZE is malformed (the
    server does not start); None, with an error in the log, when the file cannot be opened — the
    platform then runs on without stored logs (live logs still work)."""
    defaults = retention.default_limits(os.environ)
    path = data_dir / "logs.db"
    try:
        logs = LogStore(path)
    except Exception as e:  # noqa: BLE001 — sqlite3 errors, a full or read-only disk
        log.error("log search is off: cannot open %s: %s", path, e)
        return None
    policies = functools.partial(retention.project_limits, store, defaults)
    return LogCollector(logs, engine, leading=leading, sweeper=lambda s: retention.sweep(s, policies))
