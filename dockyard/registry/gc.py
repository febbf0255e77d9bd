"""Garbage collection of the registry's unreferenced blobs, on demand (`POST /registry/gc`) and on
a schedule, one run at a time.

Untagged manifests nothing needs are deleted first (registry/untagged.py: not those an App runs or
its history names, which the registry's own `--delete-untagged` would take). The registry's
`garbage-collect` must not run while anything writes (a push in flight could lose
blobs it just uploaded), so it runs inside `RegistryService.readonly()`: a read-only twin serves
pulls and refuses pushes while the writable instance is stopped. Freed bytes are measured as the
blob store's size before and after.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.registry import layout, untagged
from dockyard.registry.client import RegistryClient, RegistryError
from dockyard.store.repository import Store

if TYPE_CHECKING:
    from dockyard.registry.service import RegistryService

log = logging.getLogger(__name__)


class GcBusy(Exception):
    """A collection is already running."""


@dataclass(frozen=True)
class GcReport:
    freed_bytes: int
    blobs_before: int
    blobs_after: int
    manifests_deleted: int  # untagged ones nothing needed (registry/untagged.py)
    seconds: float
    output_tail: str

    def public(self) -> dict:
        return {"freedBytes": self.freed_bytes, "blobsBefore": self.blobs_before, "blobsAfter": self.blobs_after,
                "untaggedManifestsDeleted": self.manifests_deleted, "seconds": round(self.seconds, 3),
                "output": self.output_tail}


def blob_bytes(storage: Path) -> tuple[int, int]:
    """(bytes, count) of the blobs in the registry's filesystem storage."""
    total = count = 0
    for dirpath, _dirs, files in os.walk(layout.v2(storage) / "blobs"):
        for f in files:
            if f == "data":
                try:
                    total += os.stat(os.path.join(dirpath, f)).st_size
                    count += 1
                except FileNotFoundError:
                    pass
    return total, count


class GarbageCollector:
    def __init__(self, service: RegistryService, store: Store, client: RegistryClient) -> None:
        self.service = service
        self.store = store
        self.client = client
        self._lock = threading.Lock()
        self.last: GcReport | None = None

    def run(self) -> GcReport:
        """Collect now; GcBusy when a collection is running (this one or the scheduled one)."""
        if not self._lock.acquire(blocking=False):
            raise GcBusy("a garbage collection is already running")
        try:
            storage = self.service.settings.storage
            t0 = time.monotonic()
            before, n_before = blob_bytes(storage)
            pruned = self._delete_unneeded_untagged(storage)
            with self.service.readonly():
                output = self.service.garbage_collect(delete_untagged=False)
            after, n_after = blob_bytes(storage)
            if self.service.usage is not None:
                self.service.usage.invalidate()
            tail = "\n".join(output.strip().splitlines()[-5:])
            self.last = GcReport(max(before - after, 0), n_before, n_after, pruned, time.monotonic() - t0, tail)
            log.info("registry garbage collection freed %d bytes (%d → %d blobs) in %.1fs",
                     self.last.freed_bytes, n_before, n_after, self.last.seconds)
            return self.last
        finally:
            self._lock.release()

    def _delete_unneeded_untagged(self, storage: Path) -> int:
        """Delete (through the registry, while it is writable) the untagged manifests no App and no
        revision names; how many went."""
        keep = untagged.pinned_digests(self.store)
        deleted = 0
        for repository, digest in untagged.unneeded(storage, keep):
            if untagged.still_untagged(storage, repository, digest):
                try:
                    deleted += self.client.delete_manifest(repository, digest)
                except RegistryError as e:
                    log.warning("deleting untagged %s@%s failed: %s", repository, digest, e)
        return deleted
