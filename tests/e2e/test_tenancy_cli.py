"""Multi-tenancy as an administrator and two teams use it, through the CLI only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from dockyard_harness import Server  # noqa: E402

pytestmark = pytest.mark.engine


def cli(s: Server, home: Path, *args: str, input: str | None = None, ok: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
    env.update(DOCKYARD_CONFIG=str(home / "config.json"), PATH=f"{BIN}:{env.get('PATH', '')}")
    r = subprocess.run(["dockyard", *args], env=env, input=input, capture_output=True, text=True, timeout=60)
    if ok:
        assert r.returncode == 0, f"dockyard {' '.join(args)}: {r.stdout}{r.stderr}"
    else:
        assert r.returncode != 0, f"dockyard {' '.join(args)} should have failed: {r.stdout}"
        assert len(r.stderr.strip().splitlines()) == 1, "errors are one line"
    return r.stdout + r.stderr


def test_two_teams_admin_quota_secrets_and_audit(server: Server, tmp_path: Path) -> None:
    admin, ann, ben = tmp_path / "admin", tmp_path / "ann", tmp_path / "ben"
    for h in (admin, ann, ben):
        h.mkdir()
    cli(server, admin, "login", server.url, "-u", "admin", "--password-stdin", input="test-password-1\n")
    manifests = tmp_path / "teams.yaml"
    manifests.write_text(
        "kind: Tenant\nmetadata: {name: red}\n---\nkind: Tenant\nmetadata: {name: blue}\n---\n"
        "kind: Project\nmetadata: {name: red/web}\nspec: {quota: {apps: 2, memory: 256Mi}}\n---\n"
        "kind: Project\nmetadata: {name: blue/web}\n")
    cli(server, admin, "apply", "-f", str(manifests))
    cli(server, admin, "create", "user", "ann", "--password-stdin", input="ann-password-1\n")
    cli(server, admin, "create", "user", "ben", "--password-stdin", input="ben-password-1\n")
    assert "ann is now owner of red" in cli(server, admin, "grant", "owner", "--user", "ann", "--tenant", "red")
    cli(server, admin, "grant", "developer", "--user", "ben", "--project", "blue/web")
    users = cli(server, admin, "get", "users")
    assert "ann" in users and "ben" in users

    cli(server, ann, "login", server.url, "-u", "ann", "--password-stdin", input="ann-password-1\n")
    cli(server, ben, "login", server.url, "-u", "ben", "--password-stdin", input="ben-password-1\n")
    # each team sees only its own
    assert [p.split()[0] for p in cli(server, ann, "get", "projects").splitlines()[1:]] == ["red/web"]
    assert [p.split()[0] for p in cli(server, ben, "get", "projects").splitlines()[1:]] == ["blue/web"]
    err = cli(server, ann, "get", "apps", "-p", "blue/web", ok=False)
    assert "not found" in err
    # ann deploys within her quota; the third app is refused with the numbers
    app = ("kind: App\nmetadata: {{name: {n}, project: red/web}}\n"
           "spec: {{image: dockyard/demo:1.0, replicas: 1, resources: {{memory: 64Mi}}}}\n")
    for n in ("a", "b"):
        (tmp_path / f"{n}.yaml").write_text(app.format(n=n))
        cli(server, ann, "apply", "-f", str(tmp_path / f"{n}.yaml"))
    (tmp_path / "c.yaml").write_text(app.format(n="c"))
    err = cli(server, ann, "apply", "-f", str(tmp_path / "c.yaml"), ok=False)
    assert "quota exceeded in project red/web: apps" in err
    quota = cli(server, ann, "get", "quota", "-p", "red/web")
    assert "memory" in quota and "128Mi" in quota and "256Mi" in quota
    # ann cannot raise her own quota nor create tenants
    assert "admin" in cli(server, ann, "apply", "-f", "-", ok=False,
                          input="kind: Project\nmetadata: {name: red/web}\nspec: {quota: {apps: 50}}\n")
    # secrets: write-only, by name
    cli(server, ann, "create", "secret", "token", "--from-literal", "hunter2-xyz", "-p", "red/web")
    secrets = cli(server, ann, "get", "secrets", "-p", "red/web", "-o", "json")
    assert "hunter2-xyz" not in secrets and json.loads(secrets)["items"][0]["spec"]["size"] == 11
    # a project-scoped viewer token for CI
    token = cli(server, ann, "create", "token", "--name", "ci", "--project", "red/web", "--role", "viewer",
                "--expires", "1h").splitlines()[0]
    ci = tmp_path / "ci"
    ci.mkdir()
    (ci / "config.json").write_text(json.dumps({"url": server.url, "token": token}))
    assert "a " in cli(server, ci, "get", "apps", "-p", "red/web")
    assert "needs the developer role" in cli(server, ci, "scale", "app", "a", "--replicas", "2", "-p", "red/web",
                                             ok=False)
    # the audit trail: ann sees her tenant's, the admin verifies the chain
    trail = cli(server, ann, "audit")
    assert "POST /projects/{tenant}/{project}/apps" in trail and "ann" in trail
    assert "intact" in cli(server, admin, "audit", "verify")
    members = cli(server, admin, "get", "members", "-p", "red/web")
    assert "ann" in members and "owner" in members
    cli(server, admin, "revoke", "--user", "ann", "--tenant", "red")
    assert "not found" in cli(server, ann, "get", "apps", "-p", "red/web", ok=False)
