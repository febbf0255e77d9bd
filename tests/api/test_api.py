"""The HTTP API through FastAPI's TestClient over a real Store (SQLite and PostgreSQL): authentication,
CRUD of tenants/projects/apps, admission errors, optimistic concurrency, merge patch, scale, revisions and
rollback, pagination, label selectors, watch streams and request limits. No engine is involved."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from api_checks import V1, ok, problem

from dockyard.store.repository import Store

APPS = f"{V1}/projects/acme/shop/apps"


# --- helpers --------------------------------------------------------------------------------


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
    op_ids = [op.get("operationId") for p in paths.values() for op in p.values() if isinstance(op, dict)]
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


def test_login_token_works_until_logout(api: Any, admin_credentials: dict[str, str]) -> None:
    body = ok(api.post(f"{V1}/login", json=admin_credentials, headers={"Authorization": ""}))
    assert body["token"].startswith("dy_")
    assert body["user"] == {"name": admin_credentials["username"], "admin": True}
    auth = {"Authorization": f"Bearer {body['token']}"}
    assert ok(api.get(f"{V1}/whoami", headers=auth)) == {"name": admin_credentials["username"], "admin": True}
    assert api.post(f"{V1}/logout", headers=auth).status_code == 204
    problem(api.get(f"{V1}/whoami", headers=auth), 401)
    # the fixture's own session is unaffected
    ok(api.get(f"{V1}/whoami"))


def test_whoami_names_the_logged_in_user(api: Any, admin_credentials: dict[str, str]) -> None:
    assert ok(api.get(f"{V1}/whoami"))["name"] == admin_credentials["username"]


# --- tenants and projects -------------------------------------------------------------------


def test_tenant_crud(api: Any) -> None:
    created = ok(api.post(f"{V1}/tenants", json={"kind": "Tenant", "metadata": {"name": "acme"},
                                                  "spec": {"displayName": "ACME Corp"}}), 201)
    assert created["kind"] == "Tenant"
    assert created["metadata"]["name"] == "acme"
    assert created["metadata"]["generation"] == 1
    assert created["spec"]["displayName"] == "ACME Corp"

    got = ok(api.get(f"{V1}/tenants/acme"))
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    names = [t["metadata"]["name"] for t in ok(api.get(f"{V1}/tenants"))["items"]]
    assert names == ["acme"]

    got["spec"]["displayName"] = "ACME Corporation"
    updated = ok(api.put(f"{V1}/tenants/acme", json=got))
    assert updated["spec"]["displayName"] == "ACME Corporation"
    assert updated["metadata"]["generation"] == 2

    problem(api.post(f"{V1}/tenants", json={"metadata": {"name": "acme"}}), 409)

    deleted = ok(api.delete(f"{V1}/tenants/acme"))
    assert deleted["metadata"]["name"] == "acme"
    problem(api.get(f"{V1}/tenants/acme"), 404)
    problem(api.delete(f"{V1}/tenants/acme"), 404)
    assert ok(api.get(f"{V1}/tenants"))["items"] == []


def test_project_crud(api: Any) -> None:
    ok(api.post(f"{V1}/tenants", json={"metadata": {"name": "acme"}}), 201)
    created = ok(api.post(f"{V1}/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": "acme"},
                                                   "spec": {"description": "the web shop"}}), 201)
    assert created["metadata"]["tenant"] == "acme"
    # the TENANT/PROJECT shorthand names the same kind of object
    ok(api.post(f"{V1}/projects", json={"metadata": {"name": "acme/blog"}}), 201)

    got = ok(api.get(f"{V1}/projects/acme/shop"))
    assert got["spec"]["description"] == "the web shop"
    listed = ok(api.get(f"{V1}/projects", params={"tenant": "acme"}))
    assert [p["metadata"]["name"] for p in listed["items"]] == ["blog", "shop"]

    got["spec"]["description"] = "the new shop"
    assert ok(api.put(f"{V1}/projects/acme/shop", json=got))["spec"]["description"] == "the new shop"
    # the body may not move the object to another tenant
    moved = dict(got, metadata={**got["metadata"], "tenant": "other"})
    errors = problem(api.put(f"{V1}/projects/acme/shop", json=moved), 422)["errors"]
    assert [e["field"] for e in errors] == ["metadata.tenant"]

    ok(api.delete(f"{V1}/projects/acme/shop"))
    problem(api.get(f"{V1}/projects/acme/shop"), 404)
    assert [p["metadata"]["name"] for p in ok(api.get(f"{V1}/projects"))["items"]] == ["blog"]


def test_project_in_missing_tenant_is_404_and_not_stored(api: Any) -> None:
    body = problem(api.post(f"{V1}/projects", json={"metadata": {"name": "shop", "tenant": "ghost"}}), 404)
    assert "ghost" in body["detail"]
    assert ok(api.get(f"{V1}/projects"))["items"] == []


def test_project_without_tenant_is_422(api: Any) -> None:
    errors = problem(api.post(f"{V1}/projects", json={"metadata": {"name": "shop"}}), 422)["errors"]
    assert "metadata.tenant" in [e["field"] for e in errors]


def test_deleting_tenant_with_projects_is_409(project: Any) -> None:
    body = problem(project.delete(f"{V1}/tenants/acme"), 409)
    assert "shop" in body["detail"]
    ok(project.get(f"{V1}/tenants/acme"))
    ok(project.delete(f"{V1}/projects/acme/shop"))
    ok(project.delete(f"{V1}/tenants/acme"))


def test_deleting_project_deletes_its_apps(project: Any) -> None:
    make_project(project, "acme", "blog")
    for name in ("web", "worker"):
        ok(project.post(APPS, json=app_body(name)), 201)
    ok(project.post(f"{V1}/projects/acme/blog/apps", json=app_body("web")), 201)

    ok(project.delete(f"{V1}/projects/acme/shop"))
    problem(project.get(f"{APPS}/web"), 404)
    remaining = ok(project.get(f"{V1}/apps"))["items"]
    assert [(a["metadata"]["project"], a["metadata"]["name"]) for a in remaining] == [("acme/blog", "web")]
    # a new project of the same name starts empty
    make_project(project, "acme", "shop")
    assert ok(project.get(APPS))["items"] == []


# --- apps -----------------------------------------------------------------------------------


def test_app_crud(project: Any) -> None:
    created = ok(project.post(APPS, json=app_body("web", replicas=2, labels={"tier": "web"})), 201)
    assert created["metadata"]["project"] == "acme/shop"
    assert created["metadata"]["labels"] == {"tier": "web"}
    assert created["spec"]["replicas"] == 2
    assert created["spec"]["strategy"]["type"] == "RollingUpdate", "defaults are filled in"

    got = ok(project.get(f"{APPS}/web"))
    assert got["spec"] == created["spec"]
    assert [a["metadata"]["name"] for a in ok(project.get(APPS))["items"]] == ["web"]

    got["spec"]["image"] = "busybox:2"
    replaced = ok(project.put(f"{APPS}/web", json=got))
    assert replaced["spec"]["image"] == "busybox:2"
    assert replaced["metadata"]["generation"] == 2
    assert int(replaced["metadata"]["resourceVersion"]) > int(got["metadata"]["resourceVersion"])

    problem(project.post(APPS, json=app_body("web")), 409)
    problem(project.put(f"{APPS}/ghost", json=app_body("ghost")), 404)

    ok(project.delete(f"{APPS}/web"))
    problem(project.get(f"{APPS}/web"), 404)
    assert ok(project.get(APPS))["items"] == []


def test_app_in_missing_project_is_404(api: Any) -> None:
    ok(api.post(f"{V1}/tenants", json={"metadata": {"name": "acme"}}), 201)
    body = problem(api.post(f"{V1}/projects/acme/nope/apps", json=app_body()), 404)
    assert "acme/nope" in body["detail"]
    assert ok(api.get(f"{V1}/apps"))["items"] == []


def test_app_body_may_not_name_another_project(project: Any) -> None:
    body = app_body()
    body["metadata"]["project"] = "acme/other"
    errors = problem(project.post(APPS, json=body), 422)["errors"]
    assert [e["field"] for e in errors] == ["metadata.project"]


@pytest.mark.parametrize(("body", "field"), [
    (app_body(replicas=-1), "spec.replicas"),
    (app_body(replicas="many"), "spec.replicas"),
    (app_body(resources={"memory": "lots"}), "spec.resources.memory"),
    (app_body(resources={"cpu": "fast"}), "spec.resources.cpu"),
    (app_body(image="UPPER"), "spec.image"),
    (app_body(image="web:"), "spec.image"),
    (app_body(name="Bad_Name"), "metadata.name"),
    (app_body(bogus=True), "spec.bogus"),
    (app_body(ports=[{"containerPort": 70000}]), "spec.ports[0].containerPort"),
    (app_body(env=[{"name": "1BAD", "value": "x"}]), "spec.env[0].name"),
    ({"kind": "App", "metadata": {"name": "web"}}, "spec"),
    ({**app_body(), "extra": 1}, "extra"),
    ({**app_body(), "kind": "Tenant"}, "kind"),
])
def test_invalid_app_is_422_naming_the_field_and_stores_nothing(project: Any, body: dict, field: str) -> None:
    rv_before = ok(project.get(APPS))["metadata"]["resourceVersion"]
    r = project.post(APPS, json=body)
    err = problem(r, 422)
    fields = [e["field"] for e in err["errors"]]
    assert field in fields, fields
    assert all(e["message"] for e in err["errors"])
    listed = ok(project.get(APPS))
    assert listed["items"] == []
    assert listed["metadata"]["resourceVersion"] == rv_before, "a rejected object must not be written"


def test_every_invalid_field_is_reported_at_once(project: Any) -> None:
    body = app_body(image="UPPER", replicas=-1, bogus=1)
    fields = {e["field"] for e in problem(project.post(APPS, json=body), 422)["errors"]}
    assert {"spec.image", "spec.replicas", "spec.bogus"} <= fields


def test_invalid_replace_keeps_the_stored_object(project: Any) -> None:
    before = ok(project.post(APPS, json=app_body()), 201)
    problem(project.put(f"{APPS}/web", json=app_body(resources={"memory": "lots"})), 422)
    after = ok(project.get(f"{APPS}/web"))
    assert after["spec"] == before["spec"]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_non_object_body_is_422(project: Any) -> None:
    problem(project.post(APPS, json=["not", "an", "object"]), 422)
    problem(project.post(APPS, content=b"{not json", headers={"content-type": "application/json"}), 422)


def test_dry_run_returns_the_defaulted_object_and_stores_nothing(project: Any) -> None:
    rv_before = ok(project.get(APPS))["metadata"]["resourceVersion"]
    preview = ok(project.post(APPS, params={"dryRun": "true"}, json=app_body(replicas=2)), 201)
    assert preview["metadata"]["name"] == "web"
    assert preview["spec"]["replicas"] == 2
    assert preview["spec"]["restartPolicy"] == "always"
    strategy = preview["spec"]["strategy"]
    assert (strategy["type"], strategy["maxSurge"], strategy["maxUnavailable"]) == ("RollingUpdate", 1, 0)
    problem(project.get(f"{APPS}/web"), 404)
    listed = ok(project.get(APPS))
    assert listed["items"] == [] and listed["metadata"]["resourceVersion"] == rv_before

    # dry runs of the other writes leave the stored object as it was
    ok(project.post(APPS, json=app_body()), 201)
    patched = ok(project.patch(f"{APPS}/web", params={"dryRun": "true"}, json={"spec": {"replicas": 9}}))
    assert patched["spec"]["replicas"] == 9
    ok(project.delete(f"{APPS}/web", params={"dryRun": "true"}))
    assert ok(project.get(f"{APPS}/web"))["spec"]["replicas"] == 1


def test_replace_with_stale_resource_version_is_409(project: Any) -> None:
    read = ok(project.post(APPS, json=app_body()), 201)
    first = json.loads(json.dumps(read))
    first["spec"]["replicas"] = 2
    ok(project.put(f"{APPS}/web", json=first))

    second = json.loads(json.dumps(read))  # another client still holds the old version
    second["spec"]["replicas"] = 5
    body = problem(project.put(f"{APPS}/web", json=second), 409)
    assert "resourceVersion" in body["detail"]
    assert ok(project.get(f"{APPS}/web"))["spec"]["replicas"] == 2


def test_merge_patch_changes_only_what_it_names(project: Any) -> None:
    ok(project.post(APPS, json=app_body(labels={"tier": "web", "team": "a"}, env={"MODE": "x"})), 201)
    r = project.patch(f"{APPS}/web", content=json.dumps({"spec": {"replicas": 3},
                                                        "metadata": {"labels": {"team": None}}}),
                      headers={"content-type": "application/merge-patch+json"})
    patched = ok(r)
    assert patched["spec"]["replicas"] == 3
    assert patched["spec"]["image"] == "busybox:1"
    assert patched["spec"]["env"] == [{"name": "MODE", "value": "x"}]
    assert patched["metadata"]["labels"] == {"tier": "web"}
    assert ok(project.get(f"{APPS}/web"))["spec"]["replicas"] == 3

    errors = problem(project.patch(f"{APPS}/web", json={"spec": {"replicas": -3}},
                                   headers={"content-type": "application/merge-patch+json"}), 422)["errors"]
    assert [e["field"] for e in errors] == ["spec.replicas"]
    problem(project.patch(f"{APPS}/ghost", json={"spec": {"replicas": 1}}), 404)


def test_merge_patch_with_stale_resource_version_is_409(project: Any) -> None:
    rv = ok(project.post(APPS, json=app_body()), 201)["metadata"]["resourceVersion"]
    ok(project.patch(f"{APPS}/web", json={"spec": {"replicas": 2}}))
    problem(project.patch(f"{APPS}/web", json={"metadata": {"resourceVersion": rv}, "spec": {"replicas": 4}}), 409)
    assert ok(project.get(f"{APPS}/web"))["spec"]["replicas"] == 2


def test_scale(project: Any) -> None:
    ok(project.post(APPS, json=app_body()), 201)
    scaled = ok(project.post(f"{APPS}/web/scale", json={"replicas": 4}))
    assert scaled["spec"]["replicas"] == 4
    assert ok(project.get(f"{APPS}/web"))["spec"]["replicas"] == 4
    problem(project.post(f"{APPS}/web/scale", json={"replicas": -1}), 422)
    problem(project.post(f"{APPS}/ghost/scale", json={"replicas": 1}), 404)


def test_revisions_and_rollback_to_the_previous_image(project: Any) -> None:
    ok(project.post(APPS, json=app_body(image="busybox:1")), 201)
    ok(project.patch(f"{APPS}/web", json={"spec": {"image": "busybox:2"}}))
    ok(project.post(f"{APPS}/web/scale", json={"replicas": 3}))  # scaling is not a revision
    ok(project.patch(f"{APPS}/web", json={"spec": {"image": "busybox:3"}}))

    history = ok(project.get(f"{APPS}/web/revisions"))["items"]
    assert [(h["revision"], h["image"]) for h in history] == [(1, "busybox:1"), (2, "busybox:2"), (3, "busybox:3")]

    rolled = ok(project.post(f"{APPS}/web/rollback"))
    assert rolled["spec"]["image"] == "busybox:2"
    assert rolled["spec"]["replicas"] == 3, "rollback restores the template, not the scale"
    assert rolled["metadata"]["annotations"]["dockyard.io/change-cause"] == "rollback to revision 2"
    assert ok(project.get(f"{APPS}/web"))["spec"]["image"] == "busybox:2"

    to_first = ok(project.post(f"{APPS}/web/rollback", json={"revision": 1}))
    assert to_first["spec"]["image"] == "busybox:1"
    problem(project.post(f"{APPS}/web/rollback", json={"revision": 99}), 404)


def test_rollback_without_an_earlier_revision_is_409(project: Any) -> None:
    ok(project.post(APPS, json=app_body()), 201)
    ok(project.post(f"{APPS}/web/scale", json={"replicas": 2}))
    problem(project.post(f"{APPS}/web/rollback"), 409)
    assert ok(project.get(f"{APPS}/web"))["spec"]["image"] == "busybox:1"


# --- lists ----------------------------------------------------------------------------------


def test_list_pagination_with_continue(project: Any) -> None:
    for i in range(7):
        ok(project.post(APPS, json=app_body(f"app-{i}")), 201)
    seen: list[str] = []
    pages = 0
    params: dict[str, Any] = {"limit": 3}
    while True:
        page = ok(project.get(APPS, params=params))
        pages += 1
        seen += [a["metadata"]["name"] for a in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
        params = {"limit": 3, "continue": token}
        assert pages < 10
    assert pages == 3
    assert seen == [f"app-{i}" for i in range(7)]

    problem(project.get(APPS, params={"limit": 3, "continue": "garbage!"}), 400)
    problem(project.get(APPS, params={"limit": 0}), 400)


def test_label_selector(project: Any) -> None:
    for i in range(6):
        tier = "web" if i % 2 == 0 else "db"
        ok(project.post(APPS, json=app_body(f"app-{i}", labels={"tier": tier, "n": str(i)})), 201)

    def names(selector: str, **extra: Any) -> list[str]:
        page = ok(project.get(APPS, params={"labelSelector": selector, **extra}))
        return [a["metadata"]["name"] for a in page["items"]]

    assert names("tier=web") == ["app-0", "app-2", "app-4"]
    assert names("tier!=web") == ["app-1", "app-3", "app-5"]
    assert names("tier=web,n in (2,3,4)") == ["app-2", "app-4"]
    assert names("n notin (0,1,2,3)") == ["app-4", "app-5"]
    assert names("missing") == []
    assert names("!missing") == [f"app-{i}" for i in range(6)]

    first = ok(project.get(APPS, params={"labelSelector": "tier=web", "limit": 2}))
    assert [a["metadata"]["name"] for a in first["items"]] == ["app-0", "app-2"]
    rest = names("tier=web", limit=2, **{"continue": first["metadata"]["continue"]})
    assert rest == ["app-4"]


@pytest.mark.parametrize("selector", ["tier in web", "a b", "=x", "env in (a,b"])
def test_bad_label_selector_is_400(project: Any, selector: str) -> None:
    body = problem(project.get(APPS, params={"labelSelector": selector}), 400)
    assert "labelSelector" in body["detail"]


# --- watch ----------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_watch_streams_changes_after_a_resource_version(project: Any) -> None:
    make_project(project, "acme", "blog")
    ok(project.post(APPS, json=app_body("web")), 201)
    ok(project.post(f"{V1}/projects/acme/blog/apps", json=app_body("web")), 201)
    since = ok(project.get(APPS))["metadata"]["resourceVersion"]

    # changes after `since`: one in another project (must not appear) and one here
    ok(project.patch(f"{V1}/projects/acme/blog/apps/web", json={"spec": {"replicas": 7}}))
    ok(project.patch(f"{APPS}/web", json={"spec": {"replicas": 3}}))

    with project.stream("GET", APPS, params={"watch": "1", "resourceVersion": since}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)

        event, data = next_event(events)
        assert event == "MODIFIED"
        assert data["type"] == "MODIFIED"
        assert data["object"]["metadata"]["project"] == "acme/shop"
        assert data["object"]["metadata"]["name"] == "web"
        assert data["object"]["spec"]["replicas"] == 3

        # a change made while the stream is open arrives too
        statuses: list[int] = []
        writer = threading.Thread(target=lambda: statuses.append(
            project.patch(f"{APPS}/web", json={"spec": {"replicas": 5}}).status_code))
        writer.start()
        event, data = next_event(events)
        writer.join(10)
        assert statuses == [200]
        assert event == "MODIFIED"
        assert data["object"]["spec"]["replicas"] == 5
        assert int(data["object"]["metadata"]["resourceVersion"]) > int(since)


@pytest.mark.timeout(30)
def test_watch_without_resource_version_starts_with_current_objects(project: Any) -> None:
    ok(project.post(APPS, json=app_body("web", labels={"tier": "web"})), 201)
    ok(project.post(APPS, json=app_body("db", labels={"tier": "db"})), 201)
    with project.stream("GET", APPS, params={"watch": "true", "labelSelector": "tier=web"}) as r:
        events = sse_events(r)
        event, data = next(events)
        assert (event, data["object"]["metadata"]["name"]) == ("ADDED", "web")
        event, data = next(events)
        assert event == "BOOKMARK"


@pytest.mark.timeout(30)
def test_watch_from_a_compacted_resource_version_reports_410(project: Any, store: Store) -> None:
    for i in range(4):
        ok(project.post(APPS, json=app_body(f"app-{i}")), 201)
    store.compact_changes(keep=1)
    with project.stream("GET", APPS, params={"watch": "1", "resourceVersion": "1"}) as r:
        event, data = next_event(sse_events(r))
        assert event == "ERROR"
        assert data["status"] == 410


def test_watch_from_a_resource_version_beyond_64_bits_is_refused_naming_it(project: Any) -> None:
    # it reached the database inside the stream (SQLite: OverflowError) and broke the response
    for url in (APPS, f"{APPS}/web", f"{V1}/apps", f"{V1}/projects/acme/shop/alertrules"):
        body = problem(project.get(url, params={"watch": "1", "resourceVersion": "9" * 30}), 400)
        assert "resourceVersion" in str(body), body


# --- request limits -------------------------------------------------------------------------


def test_body_over_one_mebibyte_is_413(project: Any) -> None:
    big = app_body(env={"BLOB": "x" * (1024 * 1024 + 10)})
    r = project.post(APPS, content=json.dumps(big).encode(), headers={"content-type": "application/json"})
    problem(r, 413)
    assert ok(project.get(APPS))["items"] == []
    # just under the limit is fine (and is then judged on its content)
    small = app_body(env={"BLOB": "x" * 1000})
    ok(project.post(APPS, json=small), 201)


def test_chunked_body_over_one_mebibyte_is_413(project: Any) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(3):
            yield b" " * (1024 * 1024)

    r = project.post(APPS, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_an_app_made_again_under_the_same_name_starts_without_the_old_events(project: Any, store: Store) -> None:
    from dockyard.store.repository import Event

    ok(project.post(APPS, json=app_body("web")), 201)
    store.record_event(Event("acme/shop", "App", "web", "Warning", "ReplicaFailing", "replica 0 exited"))
    assert [e["reason"] for e in ok(project.get(f"{APPS}/web/events"))["items"]] == ["Created", "ReplicaFailing"]
    ok(project.delete(f"{APPS}/web"))
    ok(project.post(APPS, json=app_body("web")), 201)
    assert [e["reason"] for e in ok(project.get(f"{APPS}/web/events"))["items"]] == ["Created"]
    store.record_event(Event("acme/shop", "App", "web", "Normal", "Scaled", "scaled to 1"))
    assert [e["reason"] for e in ok(project.get(f"{APPS}/web/events"))["items"]] == ["Created", "Scaled"]
