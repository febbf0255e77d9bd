"""A project's storage quota (`spec.quota.storage`) holds for registry pushes through a real Dockyard
server: `docker push` of an image that does not fit is refused with a message that says so, nothing of
it is stored, the usage shows in the project's quota report, and raising the quota lets it through."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from dockyard_harness import PASSWORD, Server, setup_project
from peers import Docker
from test_registry_auth import ok, refused

from dockyard.model.quantity import parse_memory

pytestmark = pytest.mark.skipif(not shutil.which("docker-registry"),
                                reason="needs Debian's docker-registry (scripts/install.sh)")
MiB = 1024 * 1024


def _storage(s: Server) -> dict:
    with s.client() as c:
        r = c.get("/projects/acme/shop/quota")
        r.raise_for_status()
        return r.json()["project"]["resources"]["storage"]


def test_push_past_the_storage_quota_is_refused_until_the_quota_is_raised(
        server: Server, docker_cli: Docker, tmp_path: Path) -> None:
    setup_project(server, "acme", "shop")
    with server.client() as c:
        c.patch("/projects/acme/shop", json={"spec": {"quota": {"storage": "6Mi"}}}).raise_for_status()
    ok(docker_cli.login(server.registry, "admin", PASSWORD))
    small = docker_cli.build(f"{server.registry}/acme/shop/small:1", tmp_path / "small", 2 * MiB)
    big = docker_cli.build(f"{server.registry}/acme/shop/big:1", tmp_path / "big", 8 * MiB)

    ok(docker_cli("push", small))
    used = _storage(server)
    assert used["hard"] == "6Mi"
    # for people, and still a quantity: "2.0Mi" beside "6Mi", not the raw byte count
    assert re.fullmatch(r"\d+\.\dMi", used["used"]) and 2 * MiB <= parse_memory(used["used"]) < 6 * MiB, used
    row = next(line.split() for line in server.cli("get", "quota", "-p", "acme/shop").stdout.splitlines()
               if line.startswith("project ") and " storage " in line)
    assert row[-2:] == [used["used"], "6Mi"], row

    out = refused(docker_cli("push", big))
    assert "storage quota exceeded" in out and "acme/shop" in out and "spec.quota.storage" in out, out
    after = _storage(server)
    assert after["used"] == used["used"], "a refused push must not leave bytes that count"
    assert docker_cli("pull", big.replace(":1", ":does-not-exist")).returncode != 0

    with server.client() as c:
        c.patch("/projects/acme/shop", json={"spec": {"quota": {"storage": "20Mi"}}}).raise_for_status()
    time.sleep(2.5)  # quota limits are read again at most every 2 s per project
    ok(docker_cli("push", big))
    ok(docker_cli("rmi", big))
    ok(docker_cli("pull", big))
    final = _storage(server)
    assert final["hard"] == "20Mi" and final["used"] != used["used"]
