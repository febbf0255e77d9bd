"""The registry token service and the robots API through the real API and store (no registry
process: the tokens' claims are what is checked here; tests/integration/test_registry_auth.py
shows the registry and docker accepting them)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from api_checks import viewer_and_stranger

from dockyard.registry.service import RegistryService
from dockyard.registry.settings import RegistrySettings

PW = "some-password-1"


@pytest.fixture
def registry(api, store, tmp_path: Path) -> RegistryService:  # noqa: ANN001
    """A token service for an external registry (no child process), attached to the API."""
    settings = RegistrySettings(listen=None, root=tmp_path / "registry", api_url="http://testserver",
                                external_url="https://registry.example")
    service = RegistryService(settings, store)
    api.app.state.registry = service
    api.app.state.login_throttle.delay = 0.0
    return service


def token_access(api, user: str, password: str, *scopes: str) -> list[dict]:  # noqa: ANN001
    r = api.get("/registry/token", params={"service": "dockyard-registry", "scope": list(scopes)},
                auth=(user, password), headers={"Authorization": ""})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300 and body["issued_at"].endswith("Z")
    claims = body["token"].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["access"]


def actions(api, user: str, password: str, scope: str) -> list[str]:  # noqa: ANN001
    return token_access(api, user, password, scope)[0]["actions"]


PUSH = "repository:acme/shop/web:pull,push,delete"


def test_grants_follow_roles_tenants_and_projects(api, registry) -> None:  # noqa: ANN001
    viewer_and_stranger(api, PW)
    assert actions(api, "viewer1", PW, PUSH) == ["pull"]
    assert actions(api, "stranger", PW, PUSH) == []
    assert actions(api, "stranger", PW, "repository:other/shop/web:pull,push") == ["pull", "push"]
    assert actions(api, "admin", "correct-horse-battery-staple", PUSH) == ["delete", "pull", "push"]
    # a project that does not exist has no repositories, not even for admins
    assert actions(api, "admin", "correct-horse-battery-staple", "repository:acme/nothere/web:pull") == []
    # the catalog is for admins only; docker login asks for no scope at all
    assert actions(api, "viewer1", PW, "registry:catalog:*") == []
    assert actions(api, "admin", "correct-horse-battery-staple", "registry:catalog:*") == ["*"]
    assert token_access(api, "viewer1", PW) == []


def test_api_tokens_keep_their_project_and_role_cap(api, registry) -> None:  # noqa: ANN001
    viewer_and_stranger(api, PW)
    scoped = api.post("/api/v1/tokens", json={"name": "ci", "project": "acme/shop", "role": "viewer"}).json()["token"]
    assert actions(api, "admin", scoped, PUSH) == ["pull"]
    assert actions(api, "admin", scoped, "repository:other/shop/web:pull") == []
    assert api.get("/registry/token", auth=("viewer1", scoped), headers={"Authorization": ""}).status_code == 401


def test_robots_and_ephemeral_credentials(api, registry) -> None:  # noqa: ANN001
    viewer_and_stranger(api, PW)
    r = api.post("/api/v1/tenants/acme/projects/shop/robots", json={"name": "ci", "access": "pull", "expires": None})
    assert r.status_code == 201, r.text
    robot = r.json()
    assert robot["username"] == "robot$acme+shop+ci" and robot["expiresAt"] is None
    assert actions(api, robot["username"], robot["secret"], PUSH) == ["pull"]
    assert actions(api, robot["username"], robot["secret"], "repository:other/shop/web:pull") == []
    listed = api.get("/api/v1/tenants/acme/projects/shop/robots").json()["items"]
    assert "secret" not in listed[0] and listed[0]["lastUsedAt"] and listed[0]["createdBy"] == "admin"

    # a project deleted and made again does not inherit the old project's robots: they went with it
    assert api.delete("/api/v1/projects/acme/shop").status_code in (200, 202)
    assert api.post("/api/v1/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": "acme"}}
                    ).status_code == 201
    assert api.get("/registry/token", params={"scope": PUSH}, auth=(robot["username"], robot["secret"]),
                   headers={"Authorization": ""}).status_code == 401

    user, password = registry.credential("acme", "shop", ("pull", "push"), ttl=60, repository="acme/shop/web")
    assert actions(api, user, password, PUSH) == ["pull", "push"]
    assert actions(api, user, password, "repository:acme/shop/api:pull") == []
    assert api.get("/registry/token", auth=(user, password[:-3] + "AAA"), headers={"Authorization": ""}
                   ).status_code == 401


def test_robots_api_refuses_bad_input_and_the_wrong_people(api, registry) -> None:  # noqa: ANN001
    viewer_and_stranger(api, PW)
    path = "/api/v1/tenants/acme/projects/shop/robots"
    bad = api.post(path, json={"name": "ci", "access": "everything"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["errors"][0]["field"] == "access"
    bad = api.post(path, json={"name": "ci", "expires": "soon"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "expires"
    assert api.post(path, json={"name": "ci"}).status_code == 201
    assert api.post(path, json={"name": "ci"}).status_code == 409
    for user, status in (("viewer1", 403), ("stranger", 404)):
        token = api.post("/api/v1/login", json={"username": user, "password": PW}).json()["token"]
        assert api.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == status
        assert api.delete(path + "/ci", headers={"Authorization": f"Bearer {token}"}).status_code == status
    assert api.patch(path + "/ci", json={"disabled": True}).json()["disabled"] is True
    assert api.delete(path + "/nope").status_code == 404
    assert api.delete(path + "/ci").json() == {"name": "ci", "deleted": True}


def test_wrong_credentials_get_the_registry_401_and_then_429(api, registry) -> None:  # noqa: ANN001
    viewer_and_stranger(api, PW)
    r = api.get("/registry/token", headers={"Authorization": ""})
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="Dockyard registry"'
    for _ in range(10):
        r = api.get("/registry/token", auth=("viewer1", "wrong-password"), headers={"Authorization": ""})
        assert r.status_code == 401 and r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    r = api.get("/registry/token", auth=("viewer1", PW), headers={"Authorization": ""})
    assert r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert api.get("/api/v1/registry").json() == {"enabled": True, "host": "registry.example", "external": True}
