"""The API routes the web dashboard reads, through the real API and store (SQLite and PostgreSQL):
the app summary table (rows, counts, filters, sorting, paging), the overview, restart (and how
rollback treats it), per-user preferences and paging through the audit log."""

from __future__ import annotations

from typing import Any

import pytest
from api_checks import V1, ok, problem

from dockyard.store.repository import Store

APPS = f"{V1}/projects/acme/shop/apps"
SUMMARIES = f"{V1}/projects/acme/shop/appsummaries"
PW = "dashboard-password-1"


def make_project(api: Any, tenant: str, project: str, **spec: Any) -> None:
    if api.get(f"{V1}/tenants/{tenant}").status_code == 404:
        ok(api.post(f"{V1}/tenants", json={"kind": "Tenant", "metadata": {"name": tenant}}), 201)
    ok(api.post(f"{V1}/projects", json={"kind": "Project", "metadata": {"name": project, "tenant": tenant},
                                        "spec": spec}), 201)


def make_app(api: Any, name: str, project: str = "acme/shop", **spec: Any) -> dict:
    return ok(api.post(f"{V1}/projects/{project}/apps", json={
        "kind": "App", "metadata": {"name": name}, "spec": {"image": "dockyard/demo:1.0", **spec}}), 201)


def status(phase: str | None, ready: int = 0, restarts: tuple[int, ...] = (), message: str = "",
           revision: int | None = 1) -> dict:
    """An App status as the reconciler writes it."""
    if phase is None:
        return {}
    return {"phase": phase, "readyReplicas": ready, "revision": revision,
            "conditions": [{"type": "Available", "status": "False", "reason": "x", "message": "not this one"},
                           {"type": "Ready", "status": "True" if phase == "Ready" else "False",
                            "reason": "r", "message": message}],
            "containers": [{"name": f"c{i}", "id": "x", "slot": i, "state": "running", "restarts": n}
                           for i, n in enumerate(restarts)]}


def login(api: Any, name: str) -> dict[str, str]:
    r = ok(api.post(f"{V1}/login", json={"username": name, "password": PW}))
    return {"Authorization": f"Bearer {r['token']}"}


def add_user(api: Any, name: str, scope: str | None = None, role: str | None = None) -> dict[str, str]:
    ok(api.post(f"{V1}/users", json={"name": name, "password": PW}), 201)
    if scope:
        ok(api.post(f"{V1}/{scope}/members", json={"user": name, "role": role}), 201)
    return login(api, name)


# the apps of `shop` below: name → (status, replicas)
SHOP = {
    "api": (status("Ready", ready=2, restarts=(1, 2), message="2/2 replicas ready", revision=3), 2),
    "web": (status("Degraded", ready=1, restarts=(5,), message="replica 0 is unhealthy"), 2),
    "worker": (status("Stalled", restarts=(0,), message="new replica failed its health check"), 1),
    "cron": (status("Failed", message="image x is not on the engine"), 1),
    "db": (status(None), 1),
    "web-admin": (status("Progressing", ready=0, message="0/1 replicas ready"), 1),
}


@pytest.fixture
def shop(api: Any, store: Store) -> Any:
    make_project(api, "acme", "shop")
    for name, (st, replicas) in SHOP.items():
        make_app(api, name, replicas=replicas)
        if st:
            store.update_status("App", "acme/shop", name, st)
    return api


def names(body: dict) -> list[str]:
    return [r["name"] for r in body["items"]]


# --- app summaries ---------------------------------------------------------------------------


def test_summary_rows_carry_what_the_table_shows(shop: Any, store: Store) -> None:
    body = ok(shop.get(SUMMARIES))
    assert body["total"] == 6
    assert body["counts"] == {"ready": 1, "progressing": 2, "degraded": 1, "failed": 2}
    assert body["resourceVersion"] == str(store.current_rv())
    rows = {r["name"]: r for r in body["items"]}
    created = ok(shop.get(f"{APPS}/api"))["metadata"]["createdAt"]
    assert rows["api"] == {"name": "api", "image": "dockyard/demo:1.0", "replicas": 2, "readyReplicas": 2,
                           "state": "ready", "phase": "Ready", "message": "2/2 replicas ready",
                           "createdAt": created, "restarts": 3, "revision": 3}
    assert (rows["web"]["state"], rows["web"]["restarts"], rows["web"]["message"]) == \
        ("degraded", 5, "replica 0 is unhealthy")
    assert rows["worker"]["state"] == rows["cron"]["state"] == "failed"
    assert rows["db"] == {**rows["db"], "state": "progressing", "phase": "Pending", "message": "", "readyReplicas": 0,
                          "restarts": 0, "revision": None}
    assert rows["web-admin"]["state"] == "progressing"


def test_name_filter_applies_before_counts_and_state_filter_after(shop: Any) -> None:
    body = ok(shop.get(SUMMARIES, params={"name": "web"}))
    assert names(body) == ["web", "web-admin"] and body["total"] == 2
    assert body["counts"] == {"ready": 0, "progressing": 1, "degraded": 1, "failed": 0}
    body = ok(shop.get(SUMMARIES, params={"name": "web", "state": "degraded"}))
    assert names(body) == ["web"] and body["total"] == 1
    assert body["counts"] == {"ready": 0, "progressing": 1, "degraded": 1, "failed": 0}, "counts ignore the state filter"
    body = ok(shop.get(SUMMARIES, params={"state": "failed"}))
    assert names(body) == ["cron", "worker"] and body["total"] == 2
    body = ok(shop.get(SUMMARIES, params={"name": "%"}))
    assert body["total"] == 0 and body["items"] == [], "the filter is a plain substring, not a pattern"


@pytest.mark.parametrize(("sort", "expected"), [
    ("name", ["api", "cron", "db", "web", "web-admin", "worker"]),
    ("-name", ["worker", "web-admin", "web", "db", "cron", "api"]),
    ("age", ["web-admin", "db", "cron", "worker", "web", "api"]),   # youngest first
    ("-age", ["api", "web", "worker", "cron", "db", "web-admin"]),
    ("state", ["api", "db", "web-admin", "web", "cron", "worker"]),  # ready < progressing < degraded < failed
    ("-state", ["cron", "worker", "web", "db", "web-admin", "api"]),  # ties stay in name order
    ("restarts", ["cron", "db", "web-admin", "worker", "api", "web"]),
    ("-restarts", ["web", "api", "cron", "db", "web-admin", "worker"]),
    ("ready", ["cron", "db", "web-admin", "worker", "web", "api"]),
    ("-ready", ["api", "web", "cron", "db", "web-admin", "worker"]),
])
def test_sorting(shop: Any, sort: str, expected: list[str]) -> None:
    assert names(ok(shop.get(SUMMARIES, params={"sort": sort}))) == expected


def test_paging_with_offset_and_limit(shop: Any) -> None:
    first = ok(shop.get(SUMMARIES, params={"limit": 4}))
    second = ok(shop.get(SUMMARIES, params={"limit": 4, "offset": 4}))
    assert names(first) + names(second) == ["api", "cron", "db", "web", "web-admin", "worker"]
    assert first["total"] == second["total"] == 6
    beyond = ok(shop.get(SUMMARIES, params={"offset": 50}))
    assert beyond["items"] == [] and beyond["total"] == 6
    assert len(ok(shop.get(SUMMARIES))["items"]) == 6, "the default page (50) holds them all"


@pytest.mark.parametrize(("params", "field"), [
    ({"sort": "size"}, "sort"), ({"state": "running"}, "state"), ({"limit": 0}, "limit"), ({"limit": 501}, "limit"),
    ({"offset": -1}, "offset"), ({"name": "x" * 64}, "name"), ({"limit": "ten"}, "limit"),
])
def test_bad_query_is_400_naming_the_parameter(shop: Any, params: dict, field: str) -> None:
    body = problem(shop.get(SUMMARIES, params=params), 400)
    assert [e["field"] for e in body["errors"]] == [f"query parameter {field}"]
    assert body["errors"][0]["message"]


def test_summaries_follow_project_visibility(shop: Any) -> None:
    make_project(shop, "other", "shop")
    viewer = add_user(shop, "vera", "projects/acme/shop", "viewer")
    stranger = add_user(shop, "olaf", "tenants/other", "owner")
    assert ok(shop.get(SUMMARIES, headers=viewer))["total"] == 6
    hidden = problem(shop.get(SUMMARIES, headers=stranger), 404)
    missing = problem(shop.get(f"{V1}/projects/gamma/shop/appsummaries", headers=stranger), 404)
    assert hidden["detail"].replace("acme", "X") == missing["detail"].replace("gamma", "X")
    problem(shop.get(f"{V1}/projects/acme/nope/appsummaries"), 404)  # an admin asking for a missing project
    problem(shop.get(SUMMARIES, headers={"Authorization": ""}), 401)


# --- overview ----------------------------------------------------------------------------------


def test_overview_counts_states_and_reserved_resources_of_visible_projects(shop: Any) -> None:
    make_project(shop, "acme", "blog", quota={"cpu": "4", "memory": "2Gi"})
    make_app(shop, "site", "acme/blog", replicas=3, resources={"cpu": "500m", "memory": "128Mi"})
    make_project(shop, "other", "empty")
    body = ok(shop.get(f"{V1}/overview"))
    assert body["engine"] == {"status": "ok", "engine": "fake"} and body["leader"] is True
    assert body["totals"] == {"ready": 1, "progressing": 3, "degraded": 1, "failed": 2}
    by_name = {f"{p['tenant']}/{p['project']}": p for p in body["projects"]}
    assert list(by_name) == ["acme/blog", "acme/shop", "other/empty"]
    assert by_name["acme/blog"] == {"tenant": "acme", "project": "blog", "appCount": 1,
                                    "apps": {"ready": 0, "progressing": 1, "degraded": 0, "failed": 0},
                                    "cpu": {"used": "1.5", "hard": "4"}, "memory": {"used": "384Mi", "hard": "2Gi"}}
    assert by_name["other/empty"]["appCount"] == 0 and by_name["other/empty"]["cpu"] == {"used": "0", "hard": None}
    shop_row = by_name["acme/shop"]
    assert shop_row["appCount"] == 6 and shop_row["apps"] == ok(shop.get(SUMMARIES))["counts"]
    quota = ok(shop.get(f"{V1}/projects/acme/shop/quota"))["project"]["resources"]
    assert shop_row["cpu"] == quota["cpu"] and shop_row["memory"] == quota["memory"]

    # a member of one project sees that project only
    dev = add_user(shop, "dave", "projects/acme/blog", "developer")
    mine = ok(shop.get(f"{V1}/overview", headers=dev))
    assert [(p["tenant"], p["project"]) for p in mine["projects"]] == [("acme", "blog")]
    assert mine["totals"] == {"ready": 0, "progressing": 1, "degraded": 0, "failed": 0}
    # a tenant member sees every project of the tenant, and nothing else
    owner = add_user(shop, "olga", "tenants/other", "owner")
    theirs = ok(shop.get(f"{V1}/overview", headers=owner))
    assert [(p["tenant"], p["project"]) for p in theirs["projects"]] == [("other", "empty")]
    assert sum(theirs["totals"].values()) == 0
    problem(shop.get(f"{V1}/overview", headers={"Authorization": ""}), 401)


# --- restart -----------------------------------------------------------------------------------


def test_restart_changes_the_template_and_records_a_revision(api: Any) -> None:
    make_project(api, "acme", "shop")
    created = make_app(api, "web", replicas=3)
    assert "restartedAt" not in created["spec"]
    restarted = ok(api.post(f"{APPS}/web/restart"))
    stamp = restarted["spec"]["restartedAt"]
    assert stamp.endswith("Z") and stamp[:4].isdigit()
    assert restarted["spec"]["replicas"] == 3 and restarted["spec"]["image"] == "dockyard/demo:1.0"
    assert restarted["metadata"]["annotations"]["dockyard.io/change-cause"] == "restart"
    assert restarted["metadata"]["generation"] == created["metadata"]["generation"] + 1
    history = ok(api.get(f"{APPS}/web/revisions"))["items"]
    assert [(h["revision"], h["changeCause"]) for h in history] == [(1, ""), (2, "restart")]
    assert history[1]["template"]["restartedAt"] == stamp
    again = ok(api.post(f"{APPS}/web/restart"))
    assert again["spec"]["restartedAt"] > stamp
    assert len(ok(api.get(f"{APPS}/web/revisions"))["items"]) == 3, "every restart rolls the replicas again"
    problem(api.post(f"{APPS}/ghost/restart"), 404)
    errors = problem(api.patch(f"{APPS}/web", json={"spec": {"restartedAt": "yesterday"}}), 422)["errors"]
    assert [e["field"] for e in errors] == ["spec.restartedAt"]


def test_restart_needs_app_write(api: Any) -> None:
    make_project(api, "acme", "shop")
    make_app(api, "web")
    viewer = add_user(api, "vera", "projects/acme/shop", "viewer")
    r = api.post(f"{APPS}/web/restart", headers=viewer)
    assert problem(r, 403)["detail"].find("developer") >= 0
    dev = add_user(api, "dave", "projects/acme/shop", "developer")
    ok(api.post(f"{APPS}/web/restart", headers=dev))


def test_rollback_skips_restarts_and_keeps_the_restart_marker(api: Any) -> None:
    make_project(api, "acme", "shop")
    make_app(api, "web")
    ok(api.patch(f"{APPS}/web", json={"spec": {"image": "dockyard/demo:2.0"}}))
    stamp = ok(api.post(f"{APPS}/web/restart"))["spec"]["restartedAt"]
    # undo goes back to the previous configuration (1.0), not to "2.0 before the restart"
    rolled = ok(api.post(f"{APPS}/web/rollback"))
    assert rolled["spec"]["image"] == "dockyard/demo:1.0"
    assert rolled["spec"]["restartedAt"] == stamp, "a rollback neither undoes a restart nor counts as one"
    history = ok(api.get(f"{APPS}/web/revisions"))["items"]
    assert [h["image"] for h in history] == ["dockyard/demo:1.0", "dockyard/demo:2.0", "dockyard/demo:2.0",
                                             "dockyard/demo:1.0"]
    # an explicit revision is restored even when it holds only a restart's change: revision 2
    # (2.0) changes the image back from 1.0 to 2.0, and keeps the restart marker as it is
    current = ok(api.post(f"{APPS}/web/rollback", json={"revision": 2}))
    assert current["spec"]["image"] == "dockyard/demo:2.0" and current["spec"]["restartedAt"] == stamp
    before = len(ok(api.get(f"{APPS}/web/revisions"))["items"])
    # revision 3 (2.0 with the restart) is now the current configuration: nothing to do
    same = ok(api.post(f"{APPS}/web/rollback", json={"revision": 3}))
    assert same["spec"] == current["spec"]
    assert len(ok(api.get(f"{APPS}/web/revisions"))["items"]) == before, "no new revision, no new containers"


def causes(api: Any) -> list[tuple[str, str]]:
    return [(h["image"], h["changeCause"]) for h in ok(api.get(f"{APPS}/web/revisions"))["items"]]


def test_a_change_cause_belongs_to_the_write_that_gave_it(api: Any) -> None:
    """A restart's or a rollback's cause stays on the App's annotation, but a later change of the
    template is not recorded as a restart or a rollback; a cause a write sets itself is."""
    make_project(api, "acme", "shop")
    make_app(api, "web")
    ok(api.post(f"{APPS}/web/restart"))
    ok(api.patch(f"{APPS}/web", json={"spec": {"image": "dockyard/demo:2.0"}}))
    assert causes(api)[-2:] == [("dockyard/demo:1.0", "restart"), ("dockyard/demo:2.0", "")]

    rolled = ok(api.post(f"{APPS}/web/rollback"))
    assert rolled["metadata"]["annotations"]["dockyard.io/change-cause"] == "rollback to revision 2"
    ok(api.patch(f"{APPS}/web", json={"spec": {"image": "dockyard/demo:3.0"}}))
    assert causes(api)[-2:] == [("dockyard/demo:1.0", "rollback to revision 2"), ("dockyard/demo:3.0", "")]

    # a whole manifest sent back (as the dashboard's editor does) carries the old annotation unchanged
    manifest = ok(api.get(f"{APPS}/web"))
    manifest["spec"]["image"] = "dockyard/demo:4.0"
    ok(api.put(f"{APPS}/web", json=manifest))
    assert causes(api)[-1] == ("dockyard/demo:4.0", "")

    # a cause the write sets is recorded, also when it repeats an earlier restart's or rollback's
    ok(api.patch(f"{APPS}/web", json={"spec": {"image": "dockyard/demo:5.0"},
                                       "metadata": {"annotations": {"dockyard.io/change-cause": "release 5"}}}))
    ok(api.post(f"{APPS}/web/restart"))
    ok(api.post(f"{APPS}/web/restart"))
    assert causes(api)[-3:] == [("dockyard/demo:5.0", "release 5"), ("dockyard/demo:5.0", "restart"),
                                ("dockyard/demo:5.0", "restart")]
    ok(api.post(f"{APPS}/web/rollback", json={"revision": 5}))
    ok(api.post(f"{APPS}/web/rollback", json={"revision": 6}))
    assert causes(api)[-2:] == [("dockyard/demo:3.0", "rollback to revision 5"),
                                ("dockyard/demo:4.0", "rollback to revision 6")]


# --- preferences -------------------------------------------------------------------------------


def test_preferences_default_change_and_stay_per_user(api: Any) -> None:
    assert ok(api.get(f"{V1}/preferences")) == {"language": "en", "theme": "system"}
    assert ok(api.put(f"{V1}/preferences", json={"language": "zh-CN"})) == {"language": "zh-CN", "theme": "system"}
    assert ok(api.put(f"{V1}/preferences", json={"theme": "dark"})) == {"language": "zh-CN", "theme": "dark"}
    assert ok(api.put(f"{V1}/preferences", json={})) == {"language": "zh-CN", "theme": "dark"}
    bob = add_user(api, "bob")
    assert ok(api.get(f"{V1}/preferences", headers=bob)) == {"language": "en", "theme": "system"}
    assert ok(api.put(f"{V1}/preferences", json={"theme": "light"}, headers=bob))["theme"] == "light"
    assert ok(api.get(f"{V1}/preferences")) == {"language": "zh-CN", "theme": "dark"}, "each user has their own"
    # null returns a field to its default
    assert ok(api.put(f"{V1}/preferences", json={"language": None})) == {"language": "en", "theme": "dark"}
    # a new session of the same user finds them
    again = login(api, "bob")
    assert ok(api.get(f"{V1}/preferences", headers=again))["theme"] == "light"
    problem(api.get(f"{V1}/preferences", headers={"Authorization": ""}), 401)


@pytest.mark.parametrize(("body", "field"), [
    ({"language": "fr"}, "language"), ({"theme": "blue"}, "theme"), ({"fontSize": 14}, "fontSize"),
    ({"theme": 1}, "theme"),
])
def test_invalid_preferences_are_422_naming_the_field(api: Any, body: dict, field: str) -> None:
    errors = problem(api.put(f"{V1}/preferences", json=body), 422)["errors"]
    assert [e["field"] for e in errors] == [field] and errors[0]["message"]
    assert ok(api.get(f"{V1}/preferences")) == {"language": "en", "theme": "system"}


def test_deleted_users_preferences_are_gone(api: Any) -> None:
    bob = add_user(api, "bob")
    ok(api.put(f"{V1}/preferences", json={"language": "zh-CN", "theme": "dark"}, headers=bob))
    ok(api.delete(f"{V1}/users/bob"))
    bob = add_user(api, "bob")
    assert ok(api.get(f"{V1}/preferences", headers=bob)) == {"language": "en", "theme": "system"}


# --- audit paging ------------------------------------------------------------------------------


def test_audit_pages_backwards_with_before_and_filters_by_action(api: Any) -> None:
    make_project(api, "acme", "shop")
    make_app(api, "web")
    for _ in range(5):
        ok(api.post(f"{APPS}/web/restart"))
    everything = ok(api.get(f"{V1}/audit", params={"limit": 1000}))
    ids = [e["id"] for e in everything["items"]]
    assert ids == sorted(ids) and everything["nextBefore"] is None, "oldest first within a page"

    seen: list[int] = []
    params: dict[str, Any] = {"limit": 3}
    pages = 0
    while True:
        page = ok(api.get(f"{V1}/audit", params=params))
        pages += 1
        seen = [e["id"] for e in page["items"]] + seen
        if page["nextBefore"] is None:
            break
        assert page["nextBefore"] == page["items"][0]["id"]
        params = {"limit": 3, "before": page["nextBefore"]}
        assert pages < 20
    assert seen == ids and pages == -(-len(ids) // 3)

    restarts = ok(api.get(f"{V1}/audit", params={"action": "/restart"}))["items"]
    assert len(restarts) == 5 and {e["action"] for e in restarts} == {"POST /projects/{tenant}/{project}/apps/{name}/restart"}
    older = ok(api.get(f"{V1}/audit", params={"action": "restart", "before": restarts[2]["id"]}))["items"]
    assert [e["id"] for e in older] == [e["id"] for e in restarts[:2]]
    assert ok(api.get(f"{V1}/audit", params={"action": "%"}))["items"] == [], "a substring, not a pattern"
    assert [e["field"] for e in problem(api.get(f"{V1}/audit", params={"before": 0}), 400)["errors"]] == \
        ["query parameter before"]
