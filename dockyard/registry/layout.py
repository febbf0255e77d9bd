"""How distribution 2.8's filesystem driver lays out its storage, read directly (no requests, no tokens):
`docker/registry/v2/repositories/NAME/{_manifests/revisions,_manifests/tags,_layers}/…/link` and
`docker/registry/v2/blobs/sha256/XX/HEX/data`. Storage usage and the untagged-manifest sweep both read it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

# a manifest is small; anything larger is not read as one
MAX_MANIFEST = 4 * 1024 * 1024


def v2(storage: Path) -> Path:
    return Path(storage) / "docker" / "registry" / "v2"


def repositories(storage: Path, under: str = "") -> Iterator[tuple[str, Path]]:
    """(name, directory) of every repository in storage whose name starts with `under` (`t/p`)."""
    root = v2(storage) / "repositories"
    for dirpath, dirs, _files in os.walk(root / under if under else root):
        if "_manifests" in dirs or "_layers" in dirs:
            yield os.path.relpath(dirpath, root), Path(dirpath)
        dirs[:] = [d for d in dirs if not d.startswith("_")]


def links(folder: Path) -> list[tuple[str, float]]:
    """(hex digest, mtime of its link file) under a `…/sha256` folder of links."""
    out: list[tuple[str, float]] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return out
    for e in entries:
        try:
            out.append((e.name, os.stat(os.path.join(e.path, "link")).st_mtime))
        except OSError:
            continue  # a link being written or deleted right now
    return out


def revisions(repo_dir: Path) -> list[tuple[str, float]]:
    """The manifests a repository holds: (hex digest, mtime)."""
    return links(repo_dir / "_manifests" / "revisions" / "sha256")


def blob_path(storage: Path, hexdigest: str) -> Path:
    return v2(storage) / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"


def manifest_doc(storage: Path, hexdigest: str) -> dict | None:
    """A manifest blob as JSON, or None when it is missing, too large or not a JSON object."""
    try:
        path = blob_path(storage, hexdigest)
        if path.stat().st_size > MAX_MANIFEST:
            return None
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
