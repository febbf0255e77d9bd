"""The events timeline over the real API and store (SQLite and PostgreSQL), no engine: what the API
write paths record (created, deployed, scaled, rolled back, restarted, quota refused), filters,
paging backwards, cursors, the SSE watch (new events, counted repeats, resuming with Last-Event-ID),
visibility (404 for other tenants' viewers, cluster events in every project), and GET /nodes."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from api_checks import V1, ok, problem
from test_api import app_body, make_project, next_event, sse_events

from dockyard.store.repository import Event, Store, now

EVENTS = f"{V1}/projects/acme/shop/events"
APPS = f"{V1}/projects/acme/shop/apps"
PW = "viewer-password-1"


@pytest.fixture
def project(api: Any) -> Any:
    make_project(api)
    return api


def _login(api: Any, name: str) -> dict:
    ok(api.post(f"{V1}/users", json={"name": name, "password": PW}), 201)
    r = api.post(f"{V1}/login", json={"username": name, "password": PW})
    return {"Authorization": f"Bearer {ok(r)['token']}"}


def _reasons(api: Any, **params: Any) -> list[str]:
    return [e["reason"] for e in ok(api.get(EVENTS, params=params))["items"]]


def test_api_writes_record_who_deployed_scaled_rolled_back_and_restarted(project: Any) -> None:
    ok(project.post(APPS, json=app_body("web", image="dockyard/demo:1.0")), 201)
    ok(project.patch(f"{APPS}/web", json={"spec": {"image": "dockyard/demo:2.0"}}))
    ok(project.post(f"{APPS}/web/scale", json={"replicas": 3}))
    ok(project.post(f"{APPS}/web/rollback", json={}))
    ok(project.post(f"{APPS}/web/restart"))
    ok(project.patch(f"{APPS}/web", json={"metadata": {"labels": {"tier": "web"}}}))  # no new revision: no event
    items = ok(project.get(EVENTS))["items"]
    assert [e["reason"] for e in items] == ["Created", "Deployed", "Scaled", "RolledBack", "Restarted"]
    assert all(e["type"] == "Normal" and (e["kind"], e["name"], e["project"]) == ("App", "web", "acme/shop")
               for e in items)
    created, deployed, scaled, rolled, restarted = (e["message"] for e in items)
    assert "admin" in created and "dockyard/demo:1.0" in created
    assert deployed == "revision 2 by admin: image dockyard/demo:2.0"
    assert scaled == "scaled from 1 to 3 replicas by admin"
    assert rolled.startswith("admin rolled back to revision 1 ") and "dockyard/demo:1.0" in rolled
    assert restarted.startswith("admin restarted every replica")
    cursors = [int(e["resourceVersion"]) for e in items]
    assert cursors == sorted(cursors) and len({e["id"] for e in items}) == 5
    # the app's own events route shows them too
    assert [e["reason"] for e in ok(project.get(f"{APPS}/web/events"))["items"]][:2] == ["Created", "Deployed"]


def test_a_quota_refusal_is_a_warning_in_the_project_and_stores_nothing(project: Any) -> None:
    ok(project.patch(f"{V1}/projects/acme/shop", json={"spec": {"quota": {"replicas": 2}}}))
    body = problem(project.post(APPS, json=app_body("big", replicas=3)), 403)
    assert "replicas" in body["detail"]
    problem(project.post(APPS, json=app_body("big", replicas=3)), 403)
    assert project.get(f"{APPS}/big").status_code == 404
    problem(project.post(APPS, params={"dryRun": "true"}, json=app_body("big", replicas=5)), 403)
    items = ok(project.get(EVENTS, params={"type": "Warning"}))["items"]
    assert len(items) == 1, items  # the dry run only asked
    e = items[0]
    assert (e["reason"], e["kind"], e["name"], e["count"]) == ("QuotaExceeded", "App", "big", 2)
    assert "admin asked for app big with 3 replica(s)" in e["message"]
    assert e["message"].endswith("this change requests 3, 2 of 2 remaining"), e["message"]  # the limit that refused


def test_cluster_events_show_in_every_project_and_other_projects_do_not(project: Any, store: Store) -> None:
    make_project(project, "acme", "blog")
    store.record_event(Event("acme/blog", "App", "web", "Warning", "Crashed", "replica 0 exited with code 3"))
    store.record_event(Event("", "Node", "host-1", "Warning", "NodeDown", "the engine at unix:// does not answer"))
    store.record_event(Event("acme/shop", "App", "web", "Normal", "Created", "created"))
    items = ok(project.get(EVENTS))["items"]
    assert [(e["reason"], e["project"]) for e in items] == [("NodeDown", None), ("Created", "acme/shop")]
    blog = ok(project.get(f"{V1}/projects/acme/blog/events"))["items"]
    assert [e["reason"] for e in blog] == ["Crashed", "NodeDown"]


def _made_days_ago(store: Store, days: int = 1) -> None:
    """Backdate acme/shop, so that events from before `since` can belong to it."""
    from sqlalchemy import and_, update

    from dockyard.store.tables import resources

    with store.tx() as conn:
        conn.execute(update(resources).where(and_(resources.c.kind == "Project", resources.c.name == "shop"))
                     .values(created_at=now() - timedelta(days=days)))


def test_filters(project: Any, store: Store) -> None:
    _made_days_ago(store)
    old = now() - timedelta(hours=3)
    store.record_event(Event("acme/shop", "App", "web", "Warning", "Crashed", "replica 0 exited with code 3", at=old))
    store.record_event(Event("acme/shop", "App", "db", "Warning", "OOMKilled", "replica 0: killed"))
    store.record_event(Event("acme/shop", "AlertRule", "hot", "Warning", "AlertFiring", "cpu > 80"))
    store.record_event(Event("acme/shop", "App", "web", "Normal", "Scaled", "scaled from 1 to 2 replicas by admin"))
    assert _reasons(project, app="web") == ["Crashed", "Scaled"]
    assert _reasons(project, kind="AlertRule") == ["AlertFiring"]
    assert _reasons(project, type="Warning") == ["Crashed", "OOMKilled", "AlertFiring"]
    assert _reasons(project, reason="OOMKilled") == ["OOMKilled"]
    assert _reasons(project, since="1h") == ["OOMKilled", "AlertFiring", "Scaled"]
    stamp = (now() - timedelta(hours=4)).isoformat().replace("+00:00", "Z")
    assert _reasons(project, since=stamp, type="Warning", app="web") == ["Crashed"]
    # unix seconds are a time, not a duration (1.7e9 seconds ago would be everything)
    assert _reasons(project, since=str(int((now() - timedelta(hours=2)).timestamp()))) == [
        "OOMKilled", "AlertFiring", "Scaled"]
    for params, field in (({"type": "Error"}, "type"), ({"since": "yesterday"}, "since"),
                          ({"after": "x"}, "after"), ({"before": "-"}, "before"),
                          ({"app": "web", "kind": "AlertRule"}, "kind")):
        body = problem(project.get(EVENTS, params=params), 400)
        assert body["errors"][0]["field"] == field, body
    assert "limit" in problem(project.get(EVENTS, params={"limit": 0}), 400)["detail"]
    # a cursor beyond 64 bits is no cursor (the database cannot hold it): 400, not a 500
    for param in ("after", "before"):
        body = problem(project.get(EVENTS, params={param: str(2**63)}), 400)
        assert body["errors"][0]["field"] == param, body
    body = problem(project.get(EVENTS, params={"watch": 1}, headers={"Last-Event-ID": "9" * 30}), 400)
    assert body["errors"][0]["field"] == "Last-Event-ID", body
    # times far off (beyond what a date holds) are clamped like the log search's: everything or nothing
    assert _reasons(project, since="99999999999d") == ["Crashed", "OOMKilled", "AlertFiring", "Scaled"]
    assert _reasons(project, since="0001-01-01T00:00:00+14:00") == ["Crashed", "OOMKilled", "AlertFiring", "Scaled"]
    assert _reasons(project, since="1e300") == []
    assert _reasons(project, since="9999-12-31T23:59:59-14:00") == []


def test_paging_backwards_and_reading_forwards_from_a_cursor(project: Any, store: Store) -> None:
    for i in range(5):
        store.record_event(Event("acme/shop", "App", f"app-{i}", "Normal", "Created", f"number {i}"))
    page = ok(project.get(EVENTS, params={"limit": 2}))
    assert [e["name"] for e in page["items"]] == ["app-3", "app-4"]
    page2 = ok(project.get(EVENTS, params={"limit": 2, "before": page["nextBefore"]}))
    assert [e["name"] for e in page2["items"]] == ["app-1", "app-2"]
    page3 = ok(project.get(EVENTS, params={"limit": 2, "before": page2["nextBefore"]}))
    assert [e["name"] for e in page3["items"]] == ["app-0"] and "nextBefore" not in page3
    first = page3["items"][0]["resourceVersion"]
    after = ok(project.get(EVENTS, params={"after": first, "limit": 3}))
    assert [e["name"] for e in after["items"]] == ["app-1", "app-2", "app-3"]
    assert int(page["resourceVersion"]) >= int(page["items"][-1]["resourceVersion"])


def test_a_repeat_is_counted_and_moves_the_cursor(project: Any, store: Store) -> None:
    ev = Event("acme/shop", "App", "web", "Warning", "Crashed", "replica 0 exited with code 3")
    store.record_event(ev)
    first = ok(project.get(EVENTS))["items"][0]
    store.record_event(Event("acme/shop", "App", "web", "Warning", "Crashed", "replica 0 exited with code 3"))
    again = ok(project.get(EVENTS))["items"]
    assert len(again) == 1 and again[0]["id"] == first["id"] and again[0]["count"] == 2
    assert int(again[0]["resourceVersion"]) > int(first["resourceVersion"])
    assert again[0]["firstSeen"] == first["firstSeen"]
    assert ok(project.get(EVENTS, params={"after": first["resourceVersion"]}))["items"][0]["count"] == 2


@pytest.mark.timeout(30)
def test_watch_streams_new_events_and_repeats_and_resumes(project: Any, store: Store) -> None:
    store.record_event(Event("acme/shop", "App", "web", "Normal", "Created", "created"))
    cursor = ok(project.get(EVENTS))["resourceVersion"]
    with project.stream("GET", EVENTS, params={"watch": "1", "resourceVersion": cursor, "type": "Warning"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r)

        def later() -> None:
            store.record_event(Event("acme/blog", "App", "web", "Warning", "Crashed", "elsewhere"))
            store.record_event(Event("acme/shop", "App", "web", "Normal", "Scaled", "not a warning"))
            store.record_event(Event("acme/shop", "App", "web", "Warning", "Crashed", "exited with code 3"))

        writer = threading.Thread(target=later)
        writer.start()
        kind, data = next_event(events)
        writer.join(10)
        assert kind == "ADDED" and data["object"]["reason"] == "Crashed" and data["object"]["count"] == 1
        # the same again is counted on the same event, which the stream delivers once more
        store.record_event(Event("acme/shop", "App", "web", "Warning", "Crashed", "exited with code 3"))
        kind, data2 = next_event(events)
        assert kind == "MODIFIED" and data2["object"]["id"] == data["object"]["id"] and data2["object"]["count"] == 2
    # resume after the first one with Last-Event-ID, as an EventSource does
    with project.stream("GET", EVENTS, params={"watch": "1", "type": "Warning"},
                        headers={"Last-Event-ID": data["object"]["resourceVersion"]}) as r:
        kind, data3 = next_event(sse_events(r))
        assert kind == "MODIFIED" and data3["object"]["count"] == 2


@pytest.mark.timeout(30)
def test_watch_without_a_cursor_starts_with_the_newest_events(project: Any, store: Store) -> None:
    for i in range(3):
        store.record_event(Event("acme/shop", "App", "web", "Normal", "Scaled", f"step {i}"))
    with project.stream("GET", EVENTS, params={"watch": "1", "limit": 2}) as r:
        events = sse_events(r)
        assert [next(events)[1]["object"]["message"] for _ in range(2)] == ["step 1", "step 2"]
        kind, data = next(events)
        assert kind == "BOOKMARK" and int(data["resourceVersion"]) > 0


def test_viewers_read_the_timeline_and_other_tenants_get_404(project: Any, store: Store) -> None:
    make_project(project, "other", "shop")
    store.record_event(Event("acme/shop", "App", "web", "Warning", "Crashed", "secret-ish detail"))
    viewer = _login(project, "victor")
    ok(project.post(f"{V1}/projects/acme/shop/members", json={"user": "victor", "role": "viewer"}), 201)
    assert _reasons_as(project, viewer, EVENTS) == ["Crashed"]
    stranger = _login(project, "sam")
    ok(project.post(f"{V1}/projects/other/shop/members", json={"user": "sam", "role": "owner"}), 201)
    for params in ({}, {"watch": "1"}):
        body = problem(project.get(EVENTS, params=params, headers=stranger), 404)
        assert "acme/shop" in body["detail"]
    problem(project.get(f"{V1}/projects/acme/nope/events"), 404)
    problem(project.get(EVENTS, headers={"Authorization": "Bearer nope"}), 401)


def _reasons_as(api: Any, headers: dict, url: str) -> list[str]:
    return [e["reason"] for e in ok(api.get(url, headers=headers))["items"]]


def test_nodes_capacity_for_everyone_details_for_admins(project: Any) -> None:
    admin_view = ok(project.get(f"{V1}/nodes"))["items"]
    assert admin_view[0]["name"] == "node-1" and admin_view[0]["status"] == "ready"
    assert admin_view[0]["cpus"] == 4 and admin_view[0]["memoryTotal"] == 8 * 2**30
    assert admin_view[0]["engineVersion"] == "99.0" and admin_view[0]["containers"] == 0
    assert admin_view[0]["memoryUsed"] == 0 and admin_view[0]["cpu"] is None
    user = _login(project, "una")
    plain = ok(project.get(f"{V1}/nodes", headers=user))["items"][0]
    assert plain["cpus"] == 4 and "engineVersion" not in plain and "containers" not in plain and "cpu" not in plain
    problem(project.get(f"{V1}/nodes", headers={"Authorization": "Bearer nope"}), 401)
    exposition = project.get("/metrics").text
    assert 'dockyard_node_cpus{node="node-1"} 4' in exposition and 'dockyard_node_up{node="node-1"} 1' in exposition
    assert "dockyard_node_" not in project.get("/metrics", headers=user).text


def test_a_project_made_again_under_the_same_name_starts_without_the_old_events(project: Any, store: Store) -> None:
    store.record_event(Event("acme/shop", "App", "web", "Warning", "Crashed", "from the first project"))
    ok(project.delete(f"{V1}/projects/acme/shop"))
    make_project(project)
    assert ok(project.get(EVENTS))["items"] == []
