"""Images in Dockyard's registry with the real `docker push/pull` against a real `dockyard server`:
browse (digest, size, pushed-by), delete, autoDeploy to exact digests with history and rollback,
retention, garbage collection beside a concurrent pull, and preheat before the first container."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from dockyard_harness import PASSWORD, Server, app_containers, app_manifest, setup_project

pytestmark = pytest.mark.engine


@pytest.fixture
def reg(server_factory, tmp_path: Path) -> Iterator[tuple[Server, dict]]:  # noqa: ANN001
    """A server with project acme/shop and a docker client logged in to its registry as admin."""
    s = server_factory()
    setup_project(s)
    env = {**os.environ, "DOCKER_CONFIG": str(tmp_path / "docker-config")}
    docker_cli(env, "login", "-u", "admin", "--password-stdin", s.registry, input=PASSWORD)
    yield s, env
    # the tags these tests pushed, off the engine (the registry goes with the server's data dir)
    out = docker_cli(env, "images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
    for ref in out:
        if ref.startswith(s.registry + "/"):
            docker_cli(env, "rmi", "-f", ref, check=False)


def docker_cli(env: dict, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=180, env=env, input=input)
    if check and res.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {res.stdout}\n{res.stderr}")
    return res


def push(s: Server, env: dict, source: str, name: str, tag: str) -> str:
    """Tag a local image as NAME:TAG in acme/shop and push it; returns the digest docker reports."""
    ref = f"{s.registry}/acme/shop/{name}:{tag}"
    docker_cli(env, "tag", source, ref)
    out = docker_cli(env, "push", ref).stdout
    digest = next(w for w in out.split() if w.startswith("sha256:"))
    return digest


def tags(s: Server, name: str) -> dict[str, dict]:
    with s.client() as c:
        r = c.get(f"/projects/acme/shop/images/{name}/tags")
        if r.status_code == 404:
            return {}
        r.raise_for_status()
        return {t["tag"]: t for t in r.json()["items"]}


def recorded(s: Server, name: str, tag: str, digest: str) -> bool:
    t = tags(s, name).get(tag)
    return bool(t and t["digest"] == digest and t["pushedBy"])


def test_browse_shows_digest_size_pushed_by_and_delete_removes_the_tag(reg) -> None:  # noqa: ANN001
    s, env = reg
    d1 = push(s, env, "dockyard/demo:1.0", "web", "1.0")
    d2 = push(s, env, "dockyard/demo:2.0", "web", "2.0")
    s.wait_for(lambda: recorded(s, "web", "1.0", d1) and recorded(s, "web", "2.0", d2), what="push events recorded")
    t = tags(s, "web")
    assert t["1.0"]["pushedBy"] == "admin" and t["1.0"]["size"] > 100_000
    assert t["1.0"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    with s.client() as c:
        repos = c.get("/projects/acme/shop/images").json()["items"]
        assert [(r["name"], r["tagCount"]) for r in repos] == [("web", 2)]
        assert repos[0]["size"] == t["1.0"]["size"] + t["2.0"]["size"] and repos[0]["lastPush"]
        events = c.get("/projects/acme/shop/events").json()["items"]
        assert any(e["reason"] == "ImagePushed" and "admin pushed web:2.0" in e["message"] for e in events)
        reg_info = c.get("/projects/acme/shop/registry").json()
        assert reg_info["usage"]["bytes"] > 0

    out = s.cli("images", "-p", "acme/shop").stdout
    assert "web" in out and "2" in out
    out = s.cli("images", "tags", "acme/shop/web").stdout
    assert d1[:19] in out and "admin" in out

    s.cli("images", "delete", "acme/shop/web:1.0")
    assert "1.0" not in tags(s, "web")
    docker_cli(env, "rmi", f"{s.registry}/acme/shop/web:1.0")
    res = docker_cli(env, "pull", f"{s.registry}/acme/shop/web:1.0", check=False)
    assert res.returncode != 0 and "not found" in (res.stderr + res.stdout).lower()
    with s.client() as c:
        events = c.get("/projects/acme/shop/events").json()["items"]
        assert any(e["reason"] == "ImageDeleted" and "admin deleted web:1.0" in e["message"] for e in events)
