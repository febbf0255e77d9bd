"""The Store on both backends: CRUD, optimistic concurrency, the change feed, pagination, revisions,
leases and events. Every test runs on SQLite and on PostgreSQL through the `store` fixture."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from dockyard.store import leases
from dockyard.store.errors import AlreadyExists, Conflict, Gone, NotFound
from dockyard.store.repository import REVISION_HISTORY, Event, Store
from dockyard.store.selectors import parse_selector

SCOPE = "acme/shop"


def app_spec(image: str = "busybox:1", replicas: int = 1, **extra: object) -> dict:
    return {"image": image, "replicas": replicas, **extra}


def run_together(n: int, fn: Callable[[int], object]) -> tuple[list[object], list[BaseException]]:
    """Run fn(0..n-1) in n threads released at the same moment; return results and errors."""
    barrier = threading.Barrier(n)
    results: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        try:
            out = fn(i)
        except BaseException as e:  # noqa: BLE001 — collected and asserted on by the caller
            with lock:
                errors.append(e)
        else:
            with lock:
                results.append(out)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    return results, errors


def list_all(store: Store, kind: str, limit: int, **kw: object) -> list[list[str]]:
    """Follow continue tokens to the end; return the names on each page."""
    pages: list[list[str]] = []
    token = None
    while True:
        items, token, _ = store.list(kind, limit=limit, continue_token=token, **kw)
        pages.append([f"{o.scope}/{o.name}" for o in items])
        if token is None:
            return pages
        assert len(pages) < 50, "continue tokens never end"


# --- create / get / list --------------------------------------------------------------------


def test_create_then_get_and_list(store: Store) -> None:
    created = store.create("App", SCOPE, "web", app_spec(), labels={"tier": "web"})
    assert created.generation == 1 and created.resource_version > 0

    got = store.get("App", SCOPE, "web")
    assert got.uid == created.uid
    assert got.spec == app_spec()
    assert got.labels == {"tier": "web"}
    assert got.resource_version == created.resource_version
    manifest = got.manifest()
    assert manifest["metadata"]["project"] == SCOPE
    assert manifest["metadata"]["resourceVersion"] == str(created.resource_version)

    items, token, rv = store.list("App", scope=SCOPE)
    assert [o.name for o in items] == ["web"]
    assert token is None
    assert rv == store.current_rv() == created.resource_version


def test_get_missing_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get("App", SCOPE, "nope")


def test_duplicate_create_raises_already_exists_and_keeps_original(store: Store) -> None:
    first = store.create("App", SCOPE, "web", app_spec("busybox:1"))
    with pytest.raises(AlreadyExists):
        store.create("App", SCOPE, "web", app_spec("busybox:2"))
    assert store.get("App", SCOPE, "web").spec["image"] == "busybox:1"
    assert store.current_rv() == first.resource_version
    # the same name in another scope is a different object
    store.create("App", "acme/other", "web", app_spec())


def test_dry_run_create_stores_nothing(store: Store) -> None:
    before = store.current_rv()
    obj = store.create("App", SCOPE, "web", app_spec(), dry_run=True)
    assert obj.name == "web"
    with pytest.raises(NotFound):
        store.get("App", SCOPE, "web")
    assert store.current_rv() == before
    assert store.changes_since(0) == []


# --- replace, generation, status ------------------------------------------------------------


def test_replace_with_stale_resource_version_conflicts(store: Store) -> None:
    v1 = store.create("App", SCOPE, "web", app_spec("busybox:1"))
    v2 = store.replace("App", SCOPE, "web", app_spec("busybox:2"), expected_rv=v1.resource_version)
    assert v2.resource_version > v1.resource_version
    with pytest.raises(Conflict):
        store.replace("App", SCOPE, "web", app_spec("busybox:3"), expected_rv=v1.resource_version)
    assert store.get("App", SCOPE, "web").spec["image"] == "busybox:2"
    # the current resourceVersion is accepted
    v3 = store.replace("App", SCOPE, "web", app_spec("busybox:3"), expected_rv=v2.resource_version)
    assert store.get("App", SCOPE, "web").resource_version == v3.resource_version


def test_replace_missing_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.replace("App", SCOPE, "ghost", app_spec())


def test_generation_bumps_only_when_spec_changes(store: Store) -> None:
    v1 = store.create("App", SCOPE, "web", app_spec())
    assert v1.generation == 1

    relabelled = store.replace("App", SCOPE, "web", app_spec(), labels={"tier": "web"})
    assert relabelled.generation == 1
    assert relabelled.resource_version > v1.resource_version
    assert store.get("App", SCOPE, "web").labels == {"tier": "web"}

    respec = store.replace("App", SCOPE, "web", app_spec(replicas=3))
    assert respec.generation == 2

    unchanged = store.replace("App", SCOPE, "web", app_spec(replicas=3))
    assert unchanged.generation == 2
    assert unchanged.resource_version == respec.resource_version, "a no-op replace must not write"
    assert store.get("App", SCOPE, "web").generation == 2


def test_update_status_keeps_generation_and_is_a_noop_when_unchanged(store: Store) -> None:
    v1 = store.create("App", SCOPE, "web", app_spec())
    s1 = store.update_status("App", SCOPE, "web", {"phase": "Running", "readyReplicas": 1})
    assert s1 is not None
    assert s1.generation == 1
    assert s1.resource_version > v1.resource_version
    got = store.get("App", SCOPE, "web")
    assert got.status == {"phase": "Running", "readyReplicas": 1}
    assert got.generation == 1

    rv_before = store.current_rv()
    s2 = store.update_status("App", SCOPE, "web", {"phase": "Running", "readyReplicas": 1})
    assert s2 is not None and s2.resource_version == s1.resource_version
    assert store.current_rv() == rv_before
    assert store.changes_since(rv_before) == []


def test_update_status_of_missing_or_replaced_object_is_ignored(store: Store) -> None:
    assert store.update_status("App", SCOPE, "ghost", {"phase": "Running"}) is None
    old = store.create("App", SCOPE, "web", app_spec())
    store.delete("App", SCOPE, "web")
    store.create("App", SCOPE, "web", app_spec())
    # a controller holding the old uid must not write status onto the new object
    assert store.update_status("App", SCOPE, "web", {"phase": "Stale"}, uid=old.uid) is None
    assert store.get("App", SCOPE, "web").status == {}


def test_status_write_does_not_make_a_spec_writer_conflict(store: Store) -> None:
    v1 = store.create("App", SCOPE, "web", app_spec())
    store.update_status("App", SCOPE, "web", {"phase": "Running"})
    # a client that read the object before the controller wrote status may still apply its change
    v2 = store.replace("App", SCOPE, "web", app_spec(replicas=2), expected_rv=v1.resource_version)
    assert v2.spec["replicas"] == 2
    assert store.get("App", SCOPE, "web").status == {"phase": "Running"}


# --- delete ---------------------------------------------------------------------------------


def test_delete_removes_object_and_records_change(store: Store) -> None:
    store.create("App", SCOPE, "web", app_spec())
    rv = store.current_rv()
    gone = store.delete("App", SCOPE, "web")
    with pytest.raises(NotFound):
        store.get("App", SCOPE, "web")
    changes = store.changes_since(rv)
    assert [(c.type, c.name) for c in changes] == [("DELETED", "web")]
    assert changes[0].resource_version == gone.resource_version
    with pytest.raises(NotFound):
        store.delete("App", SCOPE, "web")


def test_delete_project_with_cascade_removes_its_apps_only(store: Store) -> None:
    store.create("Tenant", "", "acme", {})
    store.create("Project", "acme", "shop", {})
    store.create("Project", "acme", "other", {})
    for name in ("api", "db", "web"):
        store.create("App", "acme/shop", name, app_spec())
    store.create("App", "acme/other", "web", app_spec())
    rv = store.current_rv()

    store.delete("Project", "acme", "shop", cascade=("App",))

    assert store.list("App", scope="acme/shop")[0] == []
    assert [o.name for o in store.list("App", scope="acme/other")[0]] == ["web"]
    assert store.revisions("acme/shop", "web") == []
    assert store.revisions("acme/other", "web") != []
    changes = store.changes_since(rv)
    assert all(c.type == "DELETED" for c in changes)
    assert sorted((c.kind, c.scope, c.name) for c in changes) == [
        ("App", "acme/shop", "api"), ("App", "acme/shop", "db"), ("App", "acme/shop", "web"),
        ("Project", "acme", "shop"),
    ]
    rvs = [c.resource_version for c in changes]
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
    # a watcher of apps alone sees the apps disappear
    assert [c.name for c in store.changes_since(rv, kinds=["App"])] == ["api", "db", "web"]


def test_delete_with_stale_resource_version_conflicts(store: Store) -> None:
    v1 = store.create("App", SCOPE, "web", app_spec())
    store.replace("App", SCOPE, "web", app_spec(replicas=2))
    with pytest.raises(Conflict):
        store.delete("App", SCOPE, "web", expected_rv=v1.resource_version)
    assert store.get("App", SCOPE, "web").spec["replicas"] == 2


# --- change feed ----------------------------------------------------------------------------


def test_change_feed_is_ordered_and_complete(store: Store) -> None:
    start = store.current_rv()
    a = store.create("App", SCOPE, "a", app_spec())
    b = store.create("App", SCOPE, "b", app_spec())
    a2 = store.replace("App", SCOPE, "a", app_spec(replicas=2))
    st = store.update_status("App", SCOPE, "b", {"phase": "Running"})
    d = store.delete("App", SCOPE, "b")

    changes = store.changes_since(start)
    assert [(c.type, c.name) for c in changes] == [
        ("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("MODIFIED", "b"), ("DELETED", "b")]
    assert [c.resource_version for c in changes] == [
        a.resource_version, b.resource_version, a2.resource_version, st.resource_version, d.resource_version]
    assert changes[2].object["spec"]["replicas"] == 2
    assert changes[3].object["status"] == {"phase": "Running"}
    assert changes[2].object["metadata"]["resourceVersion"] == str(a2.resource_version)

    # resuming from the middle returns exactly the rest
    assert [c.resource_version for c in store.changes_since(b.resource_version)] == [
        a2.resource_version, st.resource_version, d.resource_version]
    assert store.changes_since(d.resource_version) == []
    # limit
    assert [c.name for c in store.changes_since(start, limit=2)] == ["a", "b"]


def test_changes_since_filters_by_kind(store: Store) -> None:
    start = store.current_rv()
    store.create("Tenant", "", "acme", {})
    store.create("Project", "acme", "shop", {})
    store.create("App", "acme/shop", "web", app_spec())
    store.create("Project", "acme", "blog", {})

    assert [c.name for c in store.changes_since(start, kinds=["Project"])] == ["shop", "blog"]
    assert [c.kind for c in store.changes_since(start, kinds=["Tenant", "App"])] == ["Tenant", "App"]
    assert len(store.changes_since(start)) == 4


def test_compaction_makes_old_resource_versions_gone(store: Store) -> None:
    start = store.current_rv()
    for i in range(6):
        store.create("App", SCOPE, f"app-{i}", app_spec())
    top = store.current_rv()

    dropped = store.compact_changes(keep=2)
    assert dropped == 4
    with pytest.raises(Gone):
        store.changes_since(start)
    with pytest.raises(Gone):
        store.changes_since(top - 3)
    # from the compaction point on, nothing is missing
    assert [c.name for c in store.changes_since(top - 2)] == ["app-4", "app-5"]
    assert store.changes_since(top) == []
    # new writes keep flowing to watchers that are current
    store.create("App", SCOPE, "late", app_spec())
    assert [c.name for c in store.changes_since(top)] == ["late"]
    # compacting with nothing to drop is harmless
    assert store.compact_changes(keep=100) == 0


# --- pagination and selectors ---------------------------------------------------------------


def _make_apps(store: Store, n: int) -> set[str]:
    names = set()
    for i in range(n):
        scope = ("acme/a", "acme/b", "zeta/c")[i % 3]
        labels = {"tier": "web" if i % 2 == 0 else "db"}
        if i % 5 == 0:
            labels["legacy"] = "true"
        store.create("App", scope, f"app-{i:02d}", app_spec(), labels=labels)
        names.add(f"{scope}/app-{i:02d}")
    return names


def test_pagination_returns_every_object_exactly_once(store: Store) -> None:
    names = _make_apps(store, 25)
    pages = list_all(store, "App", limit=10)
    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [n for p in pages for n in p]
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == names
    assert seen == sorted(seen, key=lambda s: tuple(s.rsplit("/", 1))), "pages are ordered by (scope, name)"


def test_pagination_ending_on_a_page_boundary_has_no_empty_page(store: Store) -> None:
    _make_apps(store, 20)
    assert [len(p) for p in list_all(store, "App", limit=10)] == [10, 10]


def test_objects_created_during_pagination_after_the_cursor_are_included(store: Store) -> None:
    _make_apps(store, 25)
    items, token, _ = store.list("App", limit=10)
    store.create("App", "zeta/c", "zz-new", app_spec())
    rest = []
    while token:
        page, token, _ = store.list("App", limit=10, continue_token=token)
        rest += [o.name for o in page]
    assert "zz-new" in rest
    assert not {o.name for o in items} & set(rest)


def test_label_selector_with_pagination(store: Store) -> None:
    _make_apps(store, 25)
    sel = parse_selector("tier=web")
    pages = list_all(store, "App", limit=5, selector=sel)
    web = [n for p in pages for n in p]
    expected = {f"{('acme/a', 'acme/b', 'zeta/c')[i % 3]}/app-{i:02d}" for i in range(0, 25, 2)}
    assert [len(p) for p in pages] == [5, 5, 3]
    assert len(web) == len(set(web))
    assert set(web) == expected

    sel2 = parse_selector("tier in (web,db),!legacy")
    rest = [n for p in list_all(store, "App", limit=4, selector=sel2) for n in p]
    assert len(rest) == len(set(rest)) == 25 - 5
    assert not any(n.endswith(("app-00", "app-05", "app-10", "app-15", "app-20")) for n in rest)


def test_list_scope_and_prefix_filters(store: Store) -> None:
    _make_apps(store, 9)
    assert len(store.list("App", scope="acme/a")[0]) == 3
    assert len(store.list("App", scope_prefix="acme/")[0]) == 6
    assert [o.name for o in store.list("App", name_contains="app-0")[0]] == [
        "app-00", "app-03", "app-06", "app-01", "app-04", "app-07", "app-02", "app-05", "app-08"]


def test_bad_continue_token_is_rejected(store: Store) -> None:
    with pytest.raises(ValueError):
        store.list("App", limit=5, continue_token="not-a-token")


# --- revisions ------------------------------------------------------------------------------


def test_revision_recorded_only_when_container_template_changes(store: Store) -> None:
    store.create("App", SCOPE, "web", app_spec("busybox:1"))
    assert [r.revision for r in store.revisions(SCOPE, "web")] == [1]

    store.replace("App", SCOPE, "web", app_spec("busybox:1", replicas=5))
    store.replace("App", SCOPE, "web", app_spec("busybox:1", replicas=5, strategy={"maxSurge": 2}))
    assert [r.revision for r in store.revisions(SCOPE, "web")] == [1], "scaling is not a new revision"

    store.replace("App", SCOPE, "web", app_spec("busybox:2", replicas=5),
                  annotations={"dockyard.io/change-cause": "upgrade to 2"})
    revs = store.revisions(SCOPE, "web")
    assert [r.revision for r in revs] == [1, 2]
    assert [r.template["image"] for r in revs] == ["busybox:1", "busybox:2"]
    assert revs[1].change_cause == "upgrade to 2"
    assert "replicas" not in revs[1].template
    assert revs[0].template_hash != revs[1].template_hash

    store.replace("App", SCOPE, "web", app_spec("busybox:2", replicas=5, env={"MODE": "fast"}))
    assert [r.revision for r in store.revisions(SCOPE, "web")] == [1, 2, 3]


def test_change_cause_is_the_one_the_write_gives_not_an_earlier_one(store: Store) -> None:
    cause = "dockyard.io/change-cause"
    store.create("App", SCOPE, "web", app_spec("busybox:1"), annotations={cause: "first deploy"})
    # the annotation is carried along unchanged: it was the cause of an earlier write, not of this one
    store.replace("App", SCOPE, "web", app_spec("busybox:2"), annotations={cause: "first deploy"})
    store.replace("App", SCOPE, "web", app_spec("busybox:3"), change_cause="restart")
    store.replace("App", SCOPE, "web", app_spec("busybox:4"), annotations={cause: "upgrade to 4"})
    store.replace("App", SCOPE, "web", app_spec("busybox:5"))  # annotations kept as they are
    store.replace("App", SCOPE, "web", app_spec("busybox:6"), annotations={cause: "upgrade to 4"},
                  change_cause="rollback to revision 4")
    assert [(r.template["image"], r.change_cause) for r in store.revisions(SCOPE, "web")] == [
        ("busybox:1", "first deploy"), ("busybox:2", ""), ("busybox:3", "restart"), ("busybox:4", "upgrade to 4"),
        ("busybox:5", ""), ("busybox:6", "rollback to revision 4")]
    assert store.get("App", SCOPE, "web").annotations == {cause: "upgrade to 4"}


def test_revision_history_is_pruned_to_the_newest_ten(store: Store) -> None:
    store.create("App", SCOPE, "web", app_spec("busybox:0"))
    for i in range(1, 15):
        store.replace("App", SCOPE, "web", app_spec(f"busybox:{i}"))
    revs = store.revisions(SCOPE, "web")
    assert len(revs) == REVISION_HISTORY == 10
    assert [r.revision for r in revs] == list(range(6, 16))
    assert revs[-1].template["image"] == "busybox:14"


def test_deleting_an_app_forgets_its_revisions(store: Store) -> None:
    store.create("App", SCOPE, "web", app_spec("busybox:1"))
    store.replace("App", SCOPE, "web", app_spec("busybox:2"))
    store.delete("App", SCOPE, "web")
    store.create("App", SCOPE, "web", app_spec("busybox:9"))
    revs = store.revisions(SCOPE, "web")
    assert [(r.revision, r.template["image"]) for r in revs] == [(1, "busybox:9")]


# --- leases ---------------------------------------------------------------------------------


def test_lease_has_one_holder_and_passes_on_after_expiry(store: Store) -> None:
    ttl = 0.5
    assert leases.try_acquire(store, "controllers", "replica-a", ttl)
    assert not leases.try_acquire(store, "controllers", "replica-b", ttl)
    assert leases.holder_of(store, "controllers") == "replica-a"
    assert leases.try_acquire(store, "controllers", "replica-a", ttl), "the holder renews"

    time.sleep(ttl + 0.2)
    assert leases.holder_of(store, "controllers") is None
    assert leases.try_acquire(store, "controllers", "replica-b", 30)
    assert not leases.try_acquire(store, "controllers", "replica-a", 30)
    assert leases.holder_of(store, "controllers") == "replica-b"


def test_released_lease_is_taken_at_once(store: Store) -> None:
    assert leases.try_acquire(store, "controllers", "replica-a", 30)
    leases.release(store, "controllers", "replica-a")
    assert leases.try_acquire(store, "controllers", "replica-b", 30)
    assert leases.holder_of(store, "controllers") == "replica-b"


def test_concurrent_lease_acquisition_has_one_winner(store: Store) -> None:
    results, errors = run_together(10, lambda i: leases.try_acquire(store, "controllers", f"r{i}", 30))
    assert errors == []
    assert sorted(results) == [False] * 9 + [True]


# --- events ---------------------------------------------------------------------------------


def test_repeated_event_is_counted_not_duplicated(store: Store) -> None:
    def ev(reason: str, message: str) -> Event:
        return Event(scope=SCOPE, kind="App", name="web", type="Warning", reason=reason, message=message)

    store.record_event(ev("BackOff", "container web-0 keeps exiting"))
    store.record_event(ev("BackOff", "container web-0 keeps exiting"))
    got = store.list_events(SCOPE, "App", "web")
    assert [(e.reason, e.count) for e in got] == [("BackOff", 2)]

    # also with another event in between (a crash loop alternates); the repeat moves to the end
    store.record_event(ev("Pulled", "pulled busybox:1"))
    store.record_event(ev("BackOff", "container web-0 keeps exiting"))
    got = store.list_events(SCOPE, "App", "web")
    assert [(e.reason, e.count) for e in got] == [("Pulled", 1), ("BackOff", 3)]
    # but not after an hour: then it is new again
    from datetime import timedelta

    from dockyard.store.repository import now

    store.record_event(Event(SCOPE, "App", "web", "Warning", "Pulled", "pulled busybox:1",
                             at=now() + timedelta(hours=2)))
    assert [(e.reason, e.count) for e in store.list_events(SCOPE, "App", "web")] == [
        ("Pulled", 1), ("BackOff", 3), ("Pulled", 1)]
    # events of another app are separate
    assert store.list_events(SCOPE, "App", "db") == []


# --- concurrency ----------------------------------------------------------------------------


def test_concurrent_replaces_with_same_resource_version_have_one_winner(store: Store) -> None:
    v1 = store.create("App", SCOPE, "web", app_spec("busybox:1"))

    def write(i: int) -> int:
        return store.replace("App", SCOPE, "web", app_spec(f"busybox:{100 + i}"),
                             expected_rv=v1.resource_version).resource_version

    results, errors = run_together(20, write)
    assert len(results) == 1, f"{len(results)} writers succeeded with the same resourceVersion"
    assert len(errors) == 19
    assert all(isinstance(e, Conflict) for e in errors), [repr(e) for e in errors if not isinstance(e, Conflict)]
    final = store.get("App", SCOPE, "web")
    assert final.resource_version == results[0]
    assert final.generation == 2
    modified = [c for c in store.changes_since(v1.resource_version) if c.type == "MODIFIED"]
    assert len(modified) == 1
    assert [r.revision for r in store.revisions(SCOPE, "web")] == [1, 2]


def test_concurrent_creates_of_one_name_have_one_winner(store: Store) -> None:
    start = store.current_rv()
    results, errors = run_together(50, lambda i: store.create("App", SCOPE, "web", app_spec(f"busybox:{i}")))
    assert len(results) == 1
    assert len(errors) == 49
    assert all(isinstance(e, AlreadyExists) for e in errors), [repr(e) for e in errors
                                                               if not isinstance(e, AlreadyExists)]
    assert store.get("App", SCOPE, "web").uid == results[0].uid
    assert [c.type for c in store.changes_since(start)] == ["ADDED"]


def test_concurrent_writers_get_distinct_resource_versions(store: Store) -> None:
    start = store.current_rv()
    results, errors = run_together(20, lambda i: store.create("App", SCOPE, f"app-{i}", app_spec()))
    assert errors == []
    rvs = sorted(o.resource_version for o in results)
    assert len(set(rvs)) == 20
    assert [c.resource_version for c in store.changes_since(start)] == rvs


# --- schema --------------------------------------------------------------------------------


def test_migrations_create_exactly_the_tables_the_code_declares(store: Store) -> None:
    """Alembic's autogenerate finds nothing to add: every column of store/tables.py, such as the
    users' preferences (migration 0003), exists on both backends."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from dockyard.store.tables import metadata

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_user_preferences_merge_and_go_with_the_user(store: Store) -> None:
    from dockyard.store.users import create_user, delete_user, get_preferences, update_preferences

    u = create_user(store, "bob", "some-password-1")
    assert get_preferences(store, u.id) == {}
    assert update_preferences(store, u.id, {"language": "zh-CN"}) == {"language": "zh-CN"}
    assert update_preferences(store, u.id, {"theme": "dark"}) == {"language": "zh-CN", "theme": "dark"}
    assert update_preferences(store, u.id, {"language": None}) == {"theme": "dark"}
    assert get_preferences(store, u.id) == {"theme": "dark"}
    assert delete_user(store, "bob")
    again = create_user(store, "bob", "some-password-1")
    assert get_preferences(store, again.id) == {}
