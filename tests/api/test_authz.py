"""Tenant isolation of the API, generated from the route table: a user of tenant `alpha` sends
every operation of the OpenAPI document at tenant `beta`'s objects and must get 404 (invisible,
same as missing) or 403 (function-level: admin only), never success and never a 5xx."""

from __future__ import annotations

import re

import pytest

from dockyard.policy.permissions import permission_table_markdown

PW = "alpha-password-1"


def _login(api, name: str, password: str = PW) -> dict:  # noqa: ANN001
    r = api.post("/api/v1/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _world(api) -> None:  # noqa: ANN001
    for t in ("alpha", "beta"):
        assert api.post("/api/v1/tenants", json={"kind": "Tenant", "metadata": {"name": t}}).status_code == 201
        assert api.post("/api/v1/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": t}}
                        ).status_code == 201
        r = api.post(f"/api/v1/projects/{t}/shop/apps", json={
            "kind": "App", "metadata": {"name": "web"}, "spec": {"image": "dockyard/demo:1.0", "replicas": 0}})
        assert r.status_code == 201, r.text
    for u in ("alice", "bob", "victor"):
        assert api.post("/api/v1/users", json={"name": u, "password": PW}).status_code == 201
    # alice owns tenant alpha; bob develops in beta/shop; victor only views alpha/shop
    assert api.post("/api/v1/tenants/alpha/members", json={"user": "alice", "role": "owner"}).status_code == 201
    assert api.post("/api/v1/projects/beta/shop/members", json={"user": "bob", "role": "developer"}).status_code == 201
    assert api.post("/api/v1/projects/alpha/shop/members", json={"user": "victor", "role": "viewer"}
                    ).status_code == 201


SAMPLE = {"tenant": "beta", "project": "shop", "name": "web", "user": "bob", "token_id": "1"}
BODY = {"kind": "App", "metadata": {"name": "x"}, "spec": {"image": "a", "replicas": 1}}
# the build webhook authenticates with the BuildConfig's secret (401 for strangers; tests/integration/test_builds.py)
# the registry's token service authenticates with HTTP Basic (tests/api/test_registry_api.py)
PUBLIC = {("post", "/api/v1/login"), ("get", "/healthz"), ("post", "/hooks/builds/{tenant}/{project}/{name}"),
          ("get", "/registry/token")}
SELF_SERVICE = {"/api/v1/whoami", "/api/v1/logout", "/api/v1/tokens", "/api/v1/tokens/{token_id}", "/api/v1/info",
                "/api/v1/compose/convert", "/api/v1/users/{name}/password", "/api/v1/preferences"}


def _operations(api) -> list[tuple[str, str]]:  # noqa: ANN001
    ops = []
    for path, item in api.get("/api/v1/openapi.json").json()["paths"].items():
        for method in item:
            if (method, path) not in PUBLIC:
                ops.append((method, path))
    return ops


def test_every_route_hides_another_tenants_objects(api) -> None:  # noqa: ANN001
    _world(api)
    alice = _login(api, "alice")
    ops = _operations(api)
    assert len(ops) > 25, "the route table was read"
    checked = 0
    for method, path in ops:
        if path in SELF_SERVICE:
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: SAMPLE.get(m.group(1), "web"), path)
        if path == "/api/v1/users/{name}":
            url = "/api/v1/users/bob"
        elif path.startswith("/api/v1/tenants/{name}"):
            url = url.replace("/tenants/web", "/tenants/beta")
        elif path.startswith("/api/v1/projects/{tenant}/{name}"):
            url = url.replace("/projects/beta/web", "/projects/beta/shop")
        body = BODY
        if path == "/api/v1/projects":
            body = {"kind": "Project", "metadata": {"name": "x", "tenant": "beta"}}
        kwargs = {"json": body} if method in ("post", "put", "patch") else {}
        r = api.request(method.upper(), url, headers=alice, **kwargs)
        assert r.status_code < 500, (method, url, r.text)
        if "beta" not in url and method == "get" and r.status_code != 403:
            # a collection across tenants: answers, but shows nothing of beta's
            assert r.status_code == 200 and "beta" not in r.text, (url, r.text[:300])
            continue
        assert r.status_code in (403, 404), f"{method.upper()} {url} answered {r.status_code}: {r.text[:200]}"
        if r.status_code == 403:
            # only admin-only functions may say 403 to a stranger; anything of beta's is a 404
            assert "admin" in r.json()["detail"], (method, url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        checked += 1
    assert checked > 20


def test_invisible_is_indistinguishable_from_missing(api) -> None:  # noqa: ANN001
    _world(api)
    alice = _login(api, "alice")
    hidden = api.get("/api/v1/projects/beta/shop/apps/web", headers=alice)
    missing = api.get("/api/v1/projects/gamma/shop/apps/web", headers=alice)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace("beta", "X") == missing.json()["detail"].replace("gamma", "X")
    assert [t["metadata"]["name"] for t in api.get("/api/v1/tenants", headers=alice).json()["items"]] == ["alpha"]
    assert [p["metadata"]["tenant"] for p in api.get("/api/v1/projects", headers=alice).json()["items"]] == ["alpha"]
    assert {a["metadata"]["project"] for a in api.get("/api/v1/apps", headers=alice).json()["items"]} == {"alpha/shop"}


def test_viewer_reads_but_cannot_change(api) -> None:  # noqa: ANN001
    _world(api)
    victor = _login(api, "victor")
    assert api.get("/api/v1/projects/alpha/shop/apps/web", headers=victor).status_code == 200
    r = api.post("/api/v1/projects/alpha/shop/apps/web/scale", json={"replicas": 3}, headers=victor)
    assert r.status_code == 403 and "developer" in r.json()["detail"]
    r = api.delete("/api/v1/projects/alpha/shop/apps/web", headers=victor)
    assert r.status_code == 403
    r = api.post("/api/v1/projects/alpha/shop/members", json={"user": "victor", "role": "owner"}, headers=victor)
    assert r.status_code == 403, "a viewer cannot make themselves owner"


def test_tenant_owner_manages_projects_and_members_but_not_quota_or_privileged(api) -> None:  # noqa: ANN001
    _world(api)
    alice = _login(api, "alice")
    r = api.post("/api/v1/projects", json={"kind": "Project", "metadata": {"name": "blog", "tenant": "alpha"}},
                 headers=alice)
    assert r.status_code == 201
    assert api.post("/api/v1/projects/alpha/blog/members", json={"user": "bob", "role": "viewer"},
                    headers=alice).status_code == 201
    r = api.patch("/api/v1/projects/alpha/blog", json={"spec": {"quota": {"replicas": 1000}}}, headers=alice)
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    r = api.patch("/api/v1/projects/alpha/blog", json={"spec": {"securityPolicy": "privileged"}}, headers=alice)
    assert r.status_code == 403
    r = api.patch("/api/v1/tenants/alpha", json={"spec": {"quota": {"cpu": "64"}}}, headers=alice)
    assert r.status_code == 403
    r = api.post("/api/v1/tenants", json={"kind": "Tenant", "metadata": {"name": "mine"}}, headers=alice)
    assert r.status_code == 403, "only admins create tenants"
    r = api.get("/api/v1/users", headers=alice)
    assert r.status_code == 403
    r = api.post("/api/v1/users", json={"name": "evil", "password": "12345678", "admin": True}, headers=alice)
    assert r.status_code == 403


def test_project_scoped_token_is_limited_to_its_project_and_role(api) -> None:  # noqa: ANN001
    _world(api)
    r = api.post("/api/v1/tokens", json={"name": "ci", "project": "alpha/shop", "role": "viewer", "expires": "1h"})
    assert r.status_code == 201
    tok = {"Authorization": f"Bearer {r.json()['token']}"}
    assert api.get("/api/v1/projects/alpha/shop/apps/web", headers=tok).status_code == 200
    assert api.get("/api/v1/projects/beta/shop/apps/web", headers=tok).status_code == 404
    assert api.post("/api/v1/projects/alpha/shop/apps/web/scale", json={"replicas": 2}, headers=tok).status_code == 403
    assert api.get("/api/v1/users", headers=tok).status_code == 403, "an admin's scoped token is not admin"
    listed = api.get("/api/v1/tokens").json()["items"]
    assert [t["name"] for t in listed if t["kind"] == "api"] == ["ci"]
    assert all("token" not in t for t in listed), "secrets are never listed"
    assert api.delete(f"/api/v1/tokens/{r.json()['id']}").status_code == 200
    assert api.get("/api/v1/projects/alpha/shop/apps/web", headers=tok).status_code == 401


def test_deleted_user_and_tampered_token_get_401(api) -> None:  # noqa: ANN001
    _world(api)
    bob = _login(api, "bob")
    tampered = {"Authorization": bob["Authorization"][:-2] + ("AA" if not bob["Authorization"].endswith("AA") else "BB")}
    assert api.get("/api/v1/whoami", headers=tampered).status_code == 401
    assert api.get("/api/v1/whoami", headers={"Authorization": "Bearer eyJhbGciOiJub25lIn0.e30."}).status_code == 401
    assert api.delete("/api/v1/users/bob").status_code == 200
    assert api.get("/api/v1/whoami", headers=bob).status_code == 401


@pytest.mark.parametrize("role,can_write", [("viewer", False), ("developer", True), ("maintainer", True)])
def test_roles_on_apps(api, role: str, can_write: bool) -> None:  # noqa: ANN001
    _world(api)
    assert api.post("/api/v1/projects/alpha/shop/members", json={"user": "bob", "role": role}).status_code == 201
    bob = _login(api, "bob")
    r = api.post("/api/v1/projects/alpha/shop/apps/web/scale", json={"replicas": 1}, headers=bob)
    assert (r.status_code == 200) is can_write, r.text


def test_security_doc_publishes_the_permission_table() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    assert permission_table_markdown() in doc, "docs/security.md must contain the current permission table"


def test_expired_token_gets_401(api, store) -> None:  # noqa: ANN001
    from datetime import timedelta

    from dockyard.store.users import get_user, issue_token

    issued = issue_token(store, get_user(store, "admin"), kind="api", name="short", ttl=timedelta(seconds=-1))
    r = api.get("/api/v1/whoami", headers={"Authorization": f"Bearer {issued.token}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_open_watch_ends_when_the_token_is_revoked(api) -> None:  # noqa: ANN001
    """A stream checks the caller again every second: logging out (or losing the role) ends it."""
    import json
    import threading

    _world(api)
    bob = _login(api, "bob")
    with api.stream("GET", "/api/v1/projects/beta/shop/apps?watch=1", headers=bob) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        seen: list[dict] = []

        def read() -> None:
            data = None
            for line in lines:
                if line.startswith("data:"):
                    data = json.loads(line[5:])
                    seen.append(data)
                    if data["type"] == "ERROR":
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert api.post("/api/v1/logout", headers=bob).status_code == 204
        api.post("/api/v1/projects/beta/shop/apps", json={
            "kind": "App", "metadata": {"name": "after"}, "spec": {"image": "a", "replicas": 0}})
        reader.join(10)
    assert seen and seen[-1]["type"] == "ERROR" and seen[-1]["status"] == 401


def test_project_token_cannot_read_the_tenant_audit_log(api) -> None:  # noqa: ANN001
    _world(api)
    alice = _login(api, "alice")
    r = api.post("/api/v1/tokens", json={"name": "ci", "project": "alpha/shop", "role": "viewer"}, headers=alice)
    tok = {"Authorization": f"Bearer {r.json()['token']}"}
    assert api.get("/api/v1/audit", headers=tok).status_code == 403
    assert api.get("/api/v1/audit", headers=alice).status_code == 200


def test_project_member_may_see_its_tenant(api) -> None:  # noqa: ANN001
    _world(api)
    victor = _login(api, "victor")
    assert api.get("/api/v1/tenants/alpha", headers=victor).status_code == 200
    assert api.get("/api/v1/tenants/beta", headers=victor).status_code == 404
    r = api.patch("/api/v1/tenants/alpha", json={"spec": {"displayName": "x"}}, headers=victor)
    assert r.status_code == 403
