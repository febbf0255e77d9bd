"""Storage usage per project, read from a registry storage tree laid out as distribution 2.8 lays it
out (the integration tests check the same figures against the real registry)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from dockyard.registry.proxy import COMMIT_SETTLE, UploadLedger
from dockyard.registry.usage import RECENT_LAYERS, StorageUsage


def _blob(root: Path, data: bytes) -> str:
    hexd = hashlib.sha256(data).hexdigest()
    d = root / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd
    d.mkdir(parents=True, exist_ok=True)
    (d / "data").write_bytes(data)
    return hexd


def _link(root: Path, repo: str, kind: str, hexd: str, age: float = 0.0) -> Path:
    d = root / "docker/registry/v2/repositories" / repo / kind / "sha256" / hexd
    d.mkdir(parents=True, exist_ok=True)
    link = d / "link"
    link.write_text(f"sha256:{hexd}")
    if age:
        t = time.time() - age
        os.utime(link, (t, t))
    return link


def _image(root: Path, repo: str, *layers: bytes) -> tuple[str, int]:
    """Push an image (layers, a config, a manifest) into `repo`; returns (manifest hex, bytes)."""
    config = json.dumps({"repo": repo, "layers": len(layers)}).encode()
    refs = [{"digest": "sha256:" + _blob(root, x), "size": len(x)} for x in layers]
    for r in refs:
        _link(root, repo, "_layers", r["digest"][7:])
    c = _blob(root, config)
    _link(root, repo, "_layers", c)
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": f"sha256:{c}", "size": len(config)},
                           "layers": refs}).encode()
    m = _blob(root, manifest)
    _link(root, repo, "_manifests/revisions", m)
    return m, len(manifest) + len(config) + sum(len(x) for x in layers)


def test_manifests_and_what_they_name_count_once_per_project(tmp_path: Path) -> None:
    usage = StorageUsage(tmp_path, ttl=0)
    base = os.urandom(1000)
    _, a = _image(tmp_path, "acme/shop/web", base, os.urandom(300))
    _, b = _image(tmp_path, "acme/shop/api", base, os.urandom(200))  # shares `base` with web
    _image(tmp_path, "acme/other/web", os.urandom(5000))
    assert usage.project_bytes("acme", "shop") == a + b - len(base)
    assert usage.repositories("acme", "shop") == ["acme/shop/api", "acme/shop/web"]
    assert usage.project_bytes("nobody", "here") == 0


def test_a_deleted_manifest_stops_counting_but_a_push_in_progress_counts(tmp_path: Path) -> None:
    usage = StorageUsage(tmp_path, ttl=0)
    m, total = _image(tmp_path, "acme/shop/web", os.urandom(4000))
    assert usage.project_bytes("acme", "shop") == total
    # the tag is deleted: the manifest's revision link goes; its layer links stay behind (as in 2.8)
    (tmp_path / f"docker/registry/v2/repositories/acme/shop/web/_manifests/revisions/sha256/{m}/link").unlink()
    for link in (tmp_path / "docker/registry/v2/repositories/acme/shop/web/_layers/sha256").rglob("link"):
        t = time.time() - RECENT_LAYERS - 60
        os.utime(link, (t, t))
    assert usage.project_bytes("acme", "shop") == 0
    # a layer uploaded a moment ago, no manifest yet: a push in progress, it counts
    fresh = _blob(tmp_path, os.urandom(700))
    _link(tmp_path, "acme/shop/web", "_layers", fresh)
    assert usage.project_bytes("acme", "shop") == 700


def test_a_collected_blob_counts_nothing_and_the_cache_holds_until_invalidated(tmp_path: Path) -> None:
    usage = StorageUsage(tmp_path, ttl=3600)
    layer = os.urandom(900)
    _, total = _image(tmp_path, "acme/shop/web", layer)
    assert usage.project_bytes("acme", "shop") == total
    hexd = hashlib.sha256(layer).hexdigest()
    (tmp_path / "docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data").unlink()
    assert usage.project_bytes("acme", "shop") == total  # cached
    usage.invalidate("acme", "shop")
    assert usage.project_bytes("acme", "shop") == total - len(layer)


def test_the_upload_ledger_forgets_committed_uploads_once_storage_shows_them(tmp_path: Path) -> None:
    usage = StorageUsage(tmp_path, ttl=3600)
    ledger = UploadLedger(usage)
    ledger.add("acme", "shop", "u1", 500)
    ledger.add("acme", "shop", "u2", 300)
    ledger.add("acme", "other", "u3", 100)
    assert ledger.project("acme", "shop") == 800
    assert ledger.project("acme", "shop", besides="u1") == 300
    assert usage.project_bytes("acme", "shop") == 0  # cached 0 from now on
    _image(tmp_path, "acme/shop/web", os.urandom(500))
    ledger.committed("acme", "shop", "u1")
    ledger._uploads[("acme", "shop")]["u1"].committed_at -= COMMIT_SETTLE + 1  # as if committed a while ago
    assert ledger.project("acme", "shop") == 300  # u1 left the ledger ...
    assert usage.project_bytes("acme", "shop") > 500  # ... and storage was read again to show it
    ledger.cancel("acme", "shop", "u2")
    assert ledger.project("acme", "shop") == 0
    assert ledger.project("acme", "other") == 100


def test_image_size_from_storage_for_an_image_and_an_index(tmp_path: Path) -> None:
    usage = StorageUsage(tmp_path)
    a, a_total = _image(tmp_path, "acme/shop/web", os.urandom(1000))
    b, b_total = _image(tmp_path, "acme/shop/web", os.urandom(2000))
    manifest_a = (tmp_path / f"docker/registry/v2/blobs/sha256/{a[:2]}/{a}/data").stat().st_size
    manifest_b = (tmp_path / f"docker/registry/v2/blobs/sha256/{b[:2]}/{b}/data").stat().st_size
    assert usage.image_size(f"sha256:{a}") == a_total - manifest_a  # config + layers
    index = _blob(tmp_path, json.dumps({"schemaVersion": 2, "manifests": [
        {"digest": f"sha256:{a}"}, {"digest": f"sha256:{b}"}]}).encode())
    assert usage.image_size(f"sha256:{index}") == a_total - manifest_a + b_total - manifest_b
    assert usage.image_size("sha256:" + "0" * 64) is None
