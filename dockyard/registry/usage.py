"""How much registry storage each project uses, read from the registry's own storage directory.

The distribution registry keeps, per repository, a link file for every manifest revision
(`_manifests/revisions/sha256/HEX/link`) and for every layer it accepted (`_layers/sha256/HEX/link`);
the bytes live once per digest under `blobs/sha256/XX/HEX/data`. A project's usage is the size of
the distinct blobs its repositories hold:

- every manifest revision and the config and layers it names (so a deleted tag stops counting as
  soon as the registry deletes its manifest, even before garbage collection frees the bytes);
- layers accepted in the last `RECENT_LAYERS` seconds that no manifest names yet — a push in
  progress uploads its layers before its manifest, and they must count against the quota while it
  runs. Older unnamed links are what deleted manifests leave behind (garbage collection removes
  the blob but not the link), so they stop counting.

A blob shared by two repositories of one project counts once; shared by two projects, it counts
in both (each would need it if the other deleted theirs), as quota systems of registries do.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from dockyard.registry import layout

RECENT_LAYERS = 24 * 3600.0


class StorageUsage:
    """Per-project byte counts with a short cache; `invalidate` after a push or a delete."""

    def __init__(self, storage_root: Path, *, ttl: float = 5.0) -> None:
        self.storage = Path(storage_root)
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, int]] = {}
        # digests are immutable: what a manifest names never changes, so it is parsed once
        self._manifests: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def project_bytes(self, tenant: str, project: str) -> int:
        key = (tenant, project)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit and now - hit[0] < self.ttl:
            return hit[1]
        total = self._compute(tenant, project)
        with self._lock:
            self._cache[key] = (now, total)
        return total

    def invalidate(self, tenant: str | None = None, project: str | None = None) -> None:
        with self._lock:
            if tenant is None:
                self._cache.clear()
            else:
                self._cache.pop((tenant, project or ""), None)

    def repositories(self, tenant: str, project: str) -> list[str]:
        """Repository names (`t/p/name…`) that have a directory in storage."""
        return sorted(name for name, _ in layout.repositories(self.storage, f"{tenant}/{project}"))

    def _compute(self, tenant: str, project: str) -> int:
        digests: set[str] = set()
        cutoff = time.time() - RECENT_LAYERS
        for _, repo_dir in layout.repositories(self.storage, f"{tenant}/{project}"):
            for digest, _ in layout.revisions(repo_dir):
                digests.add(digest)
                digests.update(self._named_by(digest))
            for digest, mtime in layout.links(repo_dir / "_layers" / "sha256"):
                if mtime >= cutoff:
                    digests.add(digest)
        return sum(self._blob_size(d) for d in digests)

    def image_size(self, digest: str) -> int | None:
        """Bytes of the image a manifest describes (config and layers; an index: the sum of its
        platform images), read from storage without asking the registry; None when the manifest is
        not in storage (yet) or not readable."""
        doc = layout.manifest_doc(self.storage, digest.removeprefix("sha256:"))
        if doc is None:
            return None
        if isinstance(doc.get("manifests"), list):
            sizes = [self.image_size(str(m.get("digest", ""))) for m in doc["manifests"] if isinstance(m, dict)]
            return sum(x or 0 for x in sizes)
        parts = [doc.get("config") or {}, *(doc.get("layers") or [])]
        return sum(int(p.get("size") or 0) for p in parts if isinstance(p, dict))

    def _blob_size(self, hexdigest: str) -> int:
        try:
            return layout.blob_path(self.storage, hexdigest).stat().st_size
        except OSError:
            return 0  # collected already, or a link to nothing

    def _named_by(self, hexdigest: str) -> tuple[str, ...]:
        """The blobs a manifest names (config and layers; an index's children are manifests of
        their own and are counted through their own revision links)."""
        cached = self._manifests.get(hexdigest)
        if cached is not None:
            return cached
        named: tuple[str, ...] = ()
        doc = layout.manifest_doc(self.storage, hexdigest)
        if doc is not None:
            refs = [doc.get("config") or {}, *(doc.get("layers") or [])]
            named = tuple(r["digest"].split(":", 1)[1] for r in refs
                          if isinstance(r, dict) and str(r.get("digest", "")).startswith("sha256:"))
        self._manifests[hexdigest] = named
        return named
