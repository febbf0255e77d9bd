"""Dockyard as the registry's token service, with the real clients: `docker login/push/pull`
through the real dockerd and `skopeo copy/inspect/list-tags` against the registry child behind
the proxy. Roles decide (viewer pulls, developer pushes), tenants are isolated, robots are
pull-only or push, and an expired, disabled or deleted robot is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from dockyard_harness import PASSWORD, Server, setup_project
from peers import DEMO, Docker

pytestmark = pytest.mark.skipif(not shutil.which("docker-registry") or not shutil.which("skopeo"),
                                reason="needs Debian's docker-registry and skopeo (scripts/install.sh, WANT_TEST=1)")
def skopeo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, f"{res.args} failed:\n{res.stdout}\n{res.stderr}"
    return res


def refused(res: subprocess.CompletedProcess) -> str:
    assert res.returncode != 0, f"{res.args} should have been refused:\n{res.stdout}"
    return (res.stdout + res.stderr).lower()


def users(s: Server) -> None:
    """Tenants acme and other with a project shop each; viewer1 views acme/shop, dev1 develops
    there, stranger owns other/shop."""
    setup_project(s, "acme", "shop")
    setup_project(s, "other", "shop")
    with s.client() as c:
        for name, scope, role in (("viewer1", "acme/shop", "viewer"), ("dev1", "acme/shop", "developer"),
                                  ("stranger", "other/shop", "owner")):
            c.post("/users", json={"name": name, "password": PASSWORD}).raise_for_status()
            c.post(f"/projects/{scope}/members", json={"user": name, "role": role}).raise_for_status()


def test_docker_login_push_pull_with_password_and_api_token(server_factory, docker_cli: Docker) -> None:  # noqa: ANN001
    s = server_factory()
    setup_project(s)
    reg = s.registry
    with s.client() as c:
        info = c.get("/registry").json()
    assert info == {"enabled": True, "host": reg, "external": False}

    refused(docker_cli.login(reg, "admin", "not-the-password"))
    assert "login succeeded" in ok(docker_cli.login(reg, "admin", PASSWORD)).stdout.lower()
    ref = docker_cli.tag(f"{reg}/acme/shop/demo:1")
    ok(docker_cli("push", ref))
    ok(docker_cli("rmi", ref))
    ok(docker_cli("pull", ref))
    assert docker_cli("image", "inspect", ref).returncode == 0
    ok(docker_cli("logout", reg))

    # an API token works as the password (and only under its own user's name)
    with s.client() as c:
        token = c.post("/tokens", json={"name": "ci", "expires": "1h"}).json()["token"]
    refused(docker_cli.login(reg, "someone-else", token))
    ok(docker_cli.login(reg, "admin", token))
    ok(docker_cli("push", docker_cli.tag(f"{reg}/acme/shop/demo:token")))
    # a project that does not exist has no repositories to push to
    assert "denied" in refused(docker_cli("push", docker_cli.tag(f"{reg}/acme/nothere/demo:1")))

    # the token endpoint answers a wrong password with the registry's 401 and a Basic challenge
    r = httpx.get(f"{s.url}/registry/token", params={"service": "dockyard-registry"}, auth=("admin", "wrong!"))
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic ")
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_skopeo_copy_inspect_list_tags(server_factory) -> None:  # noqa: ANN001
    s = server_factory()
    setup_project(s)
    reg, creds = s.registry, f"admin:{PASSWORD}"
    for tag in ("1", "2"):
        ok(skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds, f"docker-daemon:{DEMO}",
                  f"docker://{reg}/acme/shop/sk:{tag}"))
    inspected = json.loads(ok(skopeo("inspect", "--tls-verify=false", "--creds", creds,
                                     f"docker://{reg}/acme/shop/sk:1")).stdout)
    assert inspected["Name"] == f"{reg}/acme/shop/sk" and inspected["Digest"].startswith("sha256:")
    tags = json.loads(ok(skopeo("list-tags", "--tls-verify=false", "--creds", creds,
                                f"docker://{reg}/acme/shop/sk")).stdout)
    assert sorted(tags["Tags"]) == ["1", "2"]
    # no credentials: the registry refuses, the token service never grants anonymous access
    refused(skopeo("inspect", "--tls-verify=false", "--no-creds", f"docker://{reg}/acme/shop/sk:1"))


def test_roles_and_tenants_decide_pull_and_push(server_factory, docker_cli: Docker) -> None:  # noqa: ANN001
    s = server_factory()
    users(s)
    reg = s.registry
    src = f"docker-daemon:{DEMO}"
    repo = f"docker://{reg}/acme/shop/app"

    def copy(user: str, dest: str) -> subprocess.CompletedProcess:
        return skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"{user}:{PASSWORD}", src, dest)

    def inspect(user: str, ref: str) -> subprocess.CompletedProcess:
        return skopeo("inspect", "--tls-verify=false", "--creds", f"{user}:{PASSWORD}", ref)

    ok(copy("dev1", f"{repo}:1"))                       # a developer pushes
    ok(inspect("viewer1", f"{repo}:1"))                 # a viewer pulls...
    refused(copy("viewer1", f"{repo}:2"))               # ...but does not push
    refused(inspect("stranger", f"{repo}:1"))           # another tenant's owner does not pull...
    refused(copy("stranger", f"{repo}:3"))              # ...nor push
    ok(copy("stranger", f"docker://{reg}/other/shop/app:1"))  # in their own project they do

    # the same with docker: the other tenant's user is denied push and pull
    ok(docker_cli.login(reg, "stranger", PASSWORD))
    refused(docker_cli("push", docker_cli.tag(f"{reg}/acme/shop/app:4")))
    refused(docker_cli("pull", f"{reg}/acme/shop/app:1"))


def robot(s: Server, name: str, access: str, expires: str = "30d") -> tuple[str, str]:
    out = s.cli("robots", "create", name, "-p", "acme/shop", "--access", access, "--expires", expires,
                "-o", "json").stdout
    r = json.loads(out)
    assert r["username"] == f"robot$acme+shop+{name}" and r["secret"].startswith("dyr_")
    return r["username"], r["secret"]


def test_robots_pull_only_push_expired_disabled_deleted(server_factory, docker_cli: Docker) -> None:  # noqa: ANN001
    s = server_factory()
    setup_project(s)
    reg = s.registry
    ref = docker_cli.tag(f"{reg}/acme/shop/demo:1")
    puller, pull_secret = robot(s, "reader", "pull")
    pusher, push_secret = robot(s, "ci", "push")
    short, short_secret = robot(s, "brief", "push", expires="2s")

    ok(docker_cli.login(reg, pusher, push_secret))
    ok(docker_cli("push", ref))                            # a push robot pushes
    ok(docker_cli.login(reg, puller, pull_secret))
    # refused with the registry's words (its early 401 reaches docker through the proxy), nothing stored
    assert "denied" in refused(docker_cli("push", docker_cli.tag(f"{reg}/acme/shop/demo:2")))
    tags = json.loads(ok(skopeo("list-tags", "--tls-verify=false", "--creds", f"{puller}:{pull_secret}",
                                f"docker://{reg}/acme/shop/demo")).stdout)["Tags"]
    assert tags == ["1"]
    ok(docker_cli("rmi", ref))
    ok(docker_cli("pull", ref))                            # a pull robot pulls
    # a robot is a registry login only: the REST API does not know it
    assert httpx.get(f"{s.url}/api/v1/whoami", headers={"Authorization": f"Bearer {pull_secret}"}).status_code == 401

    listing = s.cli("robots", "-p", "acme/shop").stdout
    assert "reader" in listing and "pull" in listing and "admin" in listing
    used = {r["name"]: r for r in json.loads(s.cli("robots", "-p", "acme/shop", "-o", "json").stdout)["items"]}
    assert used["reader"]["lastUsedAt"] and used["ci"]["lastUsedAt"] and not used["brief"]["lastUsedAt"]

    time.sleep(2.5)
    refused(docker_cli.login(reg, short, short_secret))    # expired
    s.cli("robots", "disable", "ci", "-p", "acme/shop")
    refused(docker_cli.login(reg, pusher, push_secret))    # disabled
    s.cli("robots", "enable", "ci", "-p", "acme/shop")
    ok(docker_cli.login(reg, pusher, push_secret))
    s.cli("robots", "delete", "reader", "-p", "acme/shop")
    refused(docker_cli.login(reg, puller, pull_secret))    # deleted
    # the table output's login line names this registry's host, ready to paste
    shown = s.cli("robots", "create", "shown", "-p", "acme/shop").stdout
    assert f"docker login {reg} -u 'robot$acme+shop+shown' --password-stdin" in shown, shown

    # creating and deleting robots is in the audit log, without the secret
    with s.client() as c:
        entries = c.get("/audit", params={"action": "/robots"}).json()["items"]
    details = " ".join(e["detail"] or "" for e in entries)
    assert "robot$acme+shop+reader" in details and "deleted" in details and push_secret not in details


def _registry_pid(s: Server) -> int | None:
    pidfile = s.data_dir / "registry" / "writable.pid"
    try:
        return int(pidfile.read_text())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        return b"State:\tZ" not in Path(f"/proc/{pid}/status").read_bytes()
    except OSError:
        return False


def test_registry_child_is_restarted_and_dies_with_the_server(server_factory) -> None:  # noqa: ANN001
    import os
    import signal

    s = server_factory()
    first = _registry_pid(s)
    assert first and _alive(first)
    os.kill(first, signal.SIGKILL)  # the registry crashes: the supervisor starts another
    s.wait_for(lambda: (_registry_pid(s) or first) != first and httpx.get(f"http://{s.registry}/v2/").status_code == 401,
               timeout=20, what="a new registry process behind the proxy")
    second = _registry_pid(s)
    assert second is not None
    assert s.proc is not None
    os.kill(s.proc.pid, signal.SIGKILL)  # only the server, not its process group: the child must follow
    s.proc.wait(10)
    s.wait_for(lambda: not _alive(second), timeout=10, what="the registry to die with its server")
    # a registry that outlived its server anyway (started by hand here) is ended by the next start
    config = s.data_dir / "registry" / "writable.yml"
    stale = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        (s.data_dir / "registry" / "writable.pid").write_text(f"{stale.pid}\n")
        s.start()
        assert stale.wait(10) is not None
        assert _registry_pid(s) not in (None, stale.pid)
        assert httpx.get(f"http://{s.registry}/v2/").status_code == 401
    finally:
        if stale.poll() is None:
            stale.kill()
