"""The quota proxy finds the project of an upload in the request's path; the registry decodes
that path before routing. A name spelled with percent-escapes (`acme%2Fshop/x`, `%61cme/shop/x`)
reaches the same repository, so it must count against the same project's quota."""

from __future__ import annotations

import hashlib
import os
import shutil

import httpx
import pytest
from dockyard_harness import PASSWORD, Server, setup_project

pytestmark = pytest.mark.skipif(not shutil.which("docker-registry"),
                                reason="needs Debian's docker-registry (scripts/install.sh)")
MiB = 1024 * 1024


def _token(s: Server, repository: str) -> str:
    r = httpx.get(f"{s.url}/registry/token", params={"service": "dockyard-registry",
                                                      "scope": f"repository:{repository}:pull,push"},
                  auth=("admin", PASSWORD))
    r.raise_for_status()
    return r.json()["token"]


def _upload(s: Server, path_name: str, token: str, data: bytes) -> int:
    """A monolithic blob upload (POST, then PUT with the digest) under `path_name`; the first
    status that is not a step forward."""
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=f"http://{s.registry}", headers=h, timeout=30) as c:
        r = c.post(f"/v2/{path_name}/blobs/uploads/")
        if r.status_code != 202:
            return r.status_code
        # the registry answers with the plain name; a client may keep spelling it its own way
        location = r.headers["location"].replace("/v2/acme/shop/web/", f"/v2/{path_name}/")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        sep = "&" if "?" in location else "?"
        r = c.put(f"{location}{sep}digest={digest}", content=data,
                  headers={"Content-Type": "application/octet-stream"})
        return r.status_code


@pytest.mark.parametrize("spelled", ["acme%2Fshop/web", "%61cme/shop/web", "acme/sho%70/web"])
def test_escaped_repository_names_count_against_the_projects_quota(server: Server, spelled: str) -> None:
    setup_project(server, "acme", "shop")
    with server.client() as c:
        c.patch("/projects/acme/shop", json={"spec": {"quota": {"storage": "1Mi"}}}).raise_for_status()
    token = _token(server, "acme/shop/web")
    data = os.urandom(3 * MiB)
    assert _upload(server, "acme/shop/web", token, data) == 403  # plainly spelled: refused
    assert _upload(server, spelled, token, data) == 403, "an escaped name went past the quota"
