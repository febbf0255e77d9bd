"""Untagged manifests that nothing needs any more, found in the registry's storage before garbage
collection deletes them through the registry's API.

A push that moves a tag leaves the old manifest behind, untagged. The registry's own
`garbage-collect --delete-untagged` would delete every such manifest — also the digest an App
runs (`spec.imageDigest`, which stays when its tag moves and autoDeploy is off) and the digests of
its rollout history, which `rollback` restores exactly. So Dockyard collects without that flag and
deletes the untagged manifests itself first, except those an App or a revision names and the
platform manifests of an index that is kept.

Storage layout (distribution 2.8, filesystem driver): `repositories/<name>/_manifests/revisions/
sha256/<hex>/link` per manifest, `_manifests/tags/<tag>/current/link` per tag (the digest it
points to), and the manifests' bytes under `blobs/sha256/<xx>/<hex>/data`.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from dockyard.registry import layout
from dockyard.registry.client import INDEX_TYPES
from dockyard.store.repository import Store


def _read_link(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def tagged(repo_dir: Path) -> set[str]:
    base = repo_dir / "_manifests" / "tags"
    try:
        names = os.listdir(base)
    except OSError:
        return set()
    return {d for t in names if (d := _read_link(base / t / "current" / "link"))}


def children(storage: Path, digest: str) -> list[str]:
    """The platform manifests an index names ([] for an image manifest or an unreadable blob)."""
    doc = layout.manifest_doc(storage, digest.split(":", 1)[-1])
    if doc is None or doc.get("mediaType") not in INDEX_TYPES:
        return []
    return [m["digest"] for m in doc.get("manifests") or [] if isinstance(m, dict) and m.get("digest")]


@dataclass(frozen=True)
class DigestUser:
    """An App that needs a digest: it runs it (`revision` None) or its rollout history names it."""

    scope: str
    app: str
    revision: int | None = None

    def describe(self, scope: str) -> str:
        name = self.app if self.scope == scope else f"{self.scope}/{self.app}"
        return f"App {name}" + (f" revision {self.revision}" if self.revision else "")


def _spec_digests(spec: dict) -> set[str]:
    out = {spec["imageDigest"]} if spec.get("imageDigest") else set()
    image = spec.get("image") or ""
    if "@" in image:
        out.add(image.rsplit("@", 1)[1])
    return out


def digest_users(store: Store, scope: str | None = None) -> dict[str, list[DigestUser]]:
    """Digest → the Apps (of `scope`, or all) that run it or whose rollout history names it (what a
    rollback restores). One revisions read per App: a project's delete check and retention ask
    for their own Apps only, GC for every App."""
    out: dict[str, list[DigestUser]] = defaultdict(list)
    for app in store.list("App", scope=scope)[0]:
        current = _spec_digests(app.spec)
        for d in current:
            out[d].append(DigestUser(app.scope, app.name))
        for rev in store.revisions(app.scope, app.name):
            for d in _spec_digests(rev.template) - current:
                out[d].append(DigestUser(app.scope, app.name, rev.revision))
    return out


def describe_users(users: list[DigestUser], scope: str) -> str:
    """"in use by App web" / "in the rollout history of App web revision 2", as seen from `scope`."""
    running = [u.describe(scope) for u in users if u.revision is None]
    history = [u.describe(scope) for u in users if u.revision is not None]
    parts = (["in use by " + ", ".join(running)] if running else []) + \
        (["in the rollout history of " + ", ".join(history)] if history else [])
    return "; ".join(parts)


def pinned_digests(store: Store) -> set[str]:
    """Digests an App runs or its rollout history names (what a rollback restores)."""
    return set(digest_users(store))


def unneeded(storage: Path, keep: set[str]) -> list[tuple[str, str]]:
    """(repository, digest) of the untagged manifests neither `keep` nor a kept index names."""
    out = []
    for name, repo_dir in layout.repositories(storage):
        present = {f"sha256:{h}" for h, _ in layout.revisions(repo_dir)}
        needed = tagged(repo_dir) | (keep & present)
        for digest in list(needed):
            needed.update(children(storage, digest))
        out += [(name, d) for d in sorted(present - needed)]
    return out


def still_untagged(storage: Path, repository: str, digest: str) -> bool:
    """Read the tags again just before a delete: a push that tagged the digest meanwhile keeps it."""
    return digest not in tagged(layout.v2(storage) / "repositories" / repository)
