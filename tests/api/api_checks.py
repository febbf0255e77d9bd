"""What the API tests share: a response has the expected status, errors are problem+json with a
detail; a world of two tenants with a viewer and a stranger."""

from __future__ import annotations

from typing import Any

V1 = "/api/v1"
PROBLEM = "application/problem+json"


def ok(r: Any, status: int = 200) -> dict:
    assert r.status_code == status, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    return r.json()


def problem(r: Any, status: int) -> dict:
    assert r.status_code == status, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["detail"]
    return body


def viewer_and_stranger(api: Any, password: str) -> None:
    """Tenants acme and other, each with project shop; user viewer1 a viewer of acme/shop, user
    stranger the owner of other/shop (who must not see acme/shop at all)."""
    for t in ("acme", "other"):
        assert api.post("/api/v1/tenants", json={"kind": "Tenant", "metadata": {"name": t}}).status_code == 201
        assert api.post("/api/v1/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": t}}
                        ).status_code == 201
    for u in ("viewer1", "stranger"):
        assert api.post("/api/v1/users", json={"name": u, "password": password}).status_code == 201
    assert api.post("/api/v1/projects/acme/shop/members", json={"user": "viewer1", "role": "viewer"}).status_code == 201
    assert api.post("/api/v1/projects/other/shop/members", json={"user": "stranger", "role": "owner"}
                    ).status_code == 201
