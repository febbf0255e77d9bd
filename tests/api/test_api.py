"""The HTTP API through FastAPI's TestClient over a real Store (SQLite and PostgreSQL): authentication,
CRUD of tenants/projects/apps, admission errors, optimistic concurrency, merge patch, scale, revisions and
rollback, pagination, label selectors, watch streams and request limits. No engine is involved."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from dockyard.store.repository import Store

V1 = "/api/v1"
APPS = f"{V1}/projects/acme/shop/apps"
PROBLEM = "application/problem+json"


# --- helpers --------------------------------------------------------------------------------


def ok(r: Any, status: int = 200) -> dict:
    assert r.status_code == status, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    return r.json()


def problem(r: Any, status: int) -> dict:
    assert r.status_code == status, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["detail"]
    return body


def app_body(name: str = "web", image: str = "busybox:1", labels: dict | None = None, **spec: Any) -> dict:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "dockyard/v1", "kind": "App", "metadata": meta, "spec": {"image": image, **spec}}


def make_project(api: Any, tenant: str = "acme", project: str = "shop") -> None:
    if api.get(f"{V1}/tenants/{tenant}").status_code == 404:
        ok(api.post(f"{V1}/tenants", json={"kind": "Tenant", "metadata": {"name": tenant}}), 201)
    ok(api.post(f"{V1}/projects", json={"kind": "Project", "metadata": {"name": project, "tenant": tenant}}), 201)


@pytest.fixture
def project(api: Any) -> Any:
    """The API client with tenant acme and project acme/shop created."""
    make_project(api)
    return api


def sse_events(response: Any) -> Iterator[tuple[str, dict]]:
    """Yield (event, data) from a server-sent event stream, skipping comments (keep-alives)."""
    event, data = None, []
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if not line:
            if event is not None:
                yield event, json.loads("\n".join(data))
            event, data = None, []
        elif line.startswith("event:"):
            event = line[len("event:"):].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:"):].strip())


def next_event(events: Iterator[tuple[str, dict]], *, skip: tuple[str, ...] = ("BOOKMARK",)) -> tuple[str, dict]:
    for event, data in events:
        if event not in skip:
            return event, data
    raise AssertionError("the watch stream ended")


# --- system routes and authentication -------------------------------------------------------


def test_healthz_needs_no_login(api: Any) -> None:
    body = ok(api.get("/healthz", headers={"Authorization": ""}))
    assert body["status"] == "ok"
    assert body["store"] == "ok"
    assert body["leader"] is True
    assert isinstance(body["resourceVersion"], int)


def test_openapi_document_lists_the_routes(api: Any) -> None:
    doc = ok(api.get(f"{V1}/openapi.json", headers={"Authorization": ""}))
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path, method in [
        (f"{V1}/login", "post"), (f"{V1}/tenants", "post"), (f"{V1}/tenants/{{name}}", "delete"),
        (f"{V1}/projects", "get"), (f"{V1}/projects/{{tenant}}/{{name}}", "put"),
        (f"{V1}/projects/{{tenant}}/{{project}}/apps", "post"),
        (f"{V1}/projects/{{tenant}}/{{project}}/apps/{{name}}", "patch"),
        (f"{V1}/projects/{{tenant}}/{{project}}/apps/{{name}}/scale", "post"),
        (f"{V1}/projects/{{tenant}}/{{project}}/apps/{{name}}/revisions", "get"),
        (f"{V1}/projects/{{tenant}}/{{project}}/apps/{{name}}/rollback", "post"),
        ("/healthz", "get"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} missing from the OpenAPI document"
    op_ids = [op["operationId"] for p in paths.values() for op in p.values()]
    assert len(op_ids) == len(set(op_ids)), "operationIds must be unique for generated clients"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


@pytest.mark.xfail(strict=True, reason=(
    "product bug: dockyard/api/resources.py _body_schema puts the kind's sub-schemas under an inline "
    "'$defs' but points $ref at '#/components/schemas/<Model>', which the document does not define "
    "(e.g. Metadata, AppSpec), so Swagger UI and client generators cannot resolve the request bodies"))
def test_openapi_references_all_resolve(api: Any) -> None:
    doc = ok(api.get(f"{V1}/openapi.json"))
    schemas = doc.get("components", {}).get("schemas", {})
    dangling = sorted({r for r in _refs(doc) if r.removeprefix("#/components/schemas/") not in schemas})
    assert dangling == []


def test_unauthenticated_request_is_401_problem_with_challenge(api: Any) -> None:
    r = api.get(f"{V1}/tenants", headers={"Authorization": ""})
    problem(r, 401)
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_invalid_token_is_401(api: Any) -> None:
    r = api.get(f"{V1}/tenants", headers={"Authorization": "Bearer dy_not-a-real-token"})
    problem(r, 401)
    assert "invalid_token" in r.headers["www-authenticate"]
    problem(api.get(f"{V1}/tenants", headers={"Authorization": "Basic YWRtaW46cHc="}), 401)


def test_wrong_password_and_unknown_user_cannot_log_in(api: Any) -> None:
    wrong = problem(api.post(f"{V1}/login", json={"username": "admin", "password": "nope"}), 401)
    unknown = problem(api.post(f"{V1}/login", json={"username": "nobody", "password": "nope"}), 401)
    assert wrong["detail"] == unknown["detail"], "the answer must not reveal which user names exist"
    problem(api.post(f"{V1}/login", json={"username": "admin"}), 422)


def test_login_token_works_until_logout(api: Any) -> None:
    from tests_conftest_values import ADMIN_PASSWORD  # noqa: F401  (placeholder, replaced below)
