"""ClusterEngines routes each project's work to its cluster's driver and keeps a cluster that does not
answer from holding up the others (fake drivers; the real ones are exercised in tests/integration)."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.clusters.engines import ClusterEngines
from dockyard.engines.base import (
    DesiredApp,
    EngineDriver,
    EngineError,
    EngineEvent,
    EngineUnavailable,
    NodeInfo,
    ObservedApp,
    WorkloadKey,
)
from dockyard.model.app import AppSpec
from dockyard.model.cluster import ClusterError
from dockyard.store.keyring import KeyRing
from dockyard.store.repository import Store


class FakeDriver(EngineDriver):
    def __init__(self, name: str, apps: set[WorkloadKey] = frozenset(), events: list[EngineEvent] = ()) -> None:
        self.url = f"fake://{name}"
        self.instance = "i1"
        self.name = name
        self.apps = set(apps)
        self.down = False
        self.calls: list[str] = []
        self.closed = False
        self._events = list(events)
        self.endpoints: list = []

    def _check(self) -> None:
        if self.down:
            raise EngineUnavailable(f"{self.name} is down")

    def ping(self) -> None:
        self._check()

    def ensure_project(self, tenant: str, project: str, *, encrypted: bool = False) -> str:
        self._check()
        self.calls.append(f"ensure {tenant}/{project} encrypted={encrypted}")
        return f"net-{self.name}"

    def remove_project(self, tenant: str, project: str) -> None:
        self._check()
        self.calls.append(f"remove_project {tenant}/{project}")

    def list_projects(self) -> set[tuple[str, str]]:
        self._check()
        return {(k.tenant, k.project) for k in self.apps}

    def list_apps(self) -> set[WorkloadKey]:
        self._check()
        return set(self.apps)

    def observe_app(self, key: WorkloadKey) -> list:
        return []

    def reconcile_app(self, desired: DesiredApp, on_drain=None) -> ObservedApp:  # noqa: ANN001
        self._check()
        self.calls.append(f"reconcile {desired.key.scope}/{desired.key.app}")
        return ObservedApp(converged=True)

    def remove_app(self, key: WorkloadKey) -> int:
        self._check()
        self.calls.append(f"remove_app {key.scope}/{key.app}")
        return 1 if key in self.apps else 0

    def logs(self, key: WorkloadKey, **kwargs: object) -> Iterator:
        return iter(())

    def events(self, stop: threading.Event) -> Iterator[EngineEvent]:
        self._check()
        yield from self._events
        while not stop.wait(0.05):
            self._check()

    def nodes(self) -> list[NodeInfo]:
        self._check()
        return [NodeInfo(f"{self.name}-n1", "ready", role="manager")]

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'd.db'}")
    s.migrate()
    s.keyring = KeyRing(tmp_path / "keys.json")
    yield s
    s.close()


class Opener:
    def __init__(self) -> None:
        self.opened: dict[str, FakeDriver] = {}

    def __call__(self, driver: str, endpoints: list, *, instance: str, name: str) -> FakeDriver:
        d = FakeDriver(name)
        d.endpoints = endpoints
        self.opened[name] = d
        return d


def _desired(tenant: str, project: str, app: str) -> DesiredApp:
    return DesiredApp(WorkloadKey(tenant, project, app), AppSpec(image="dockyard/demo:1.0"), "h", 1, 1)


def _setup(store: Store, tmp_path: Path) -> tuple[ClusterEngines, FakeDriver, Opener]:
    store.create("Tenant", "", "acme", {})
    store.create("Cluster", "", "eu", {"driver": "swarm", "endpoints": [{"url": "unix:///nowhere.sock"}]})
    store.create("Project", "acme", "onlocal", {})
    store.create("Project", "acme", "oneu", {"cluster": "eu"})
    local = FakeDriver("local", apps={WorkloadKey("acme", "onlocal", "web")})
    opener = Opener()
    return ClusterEngines(store, local, data_dir=tmp_path, opener=opener), local, opener


def test_each_project_is_reconciled_on_its_own_cluster(store: Store, tmp_path: Path) -> None:
    engines, local, opener = _setup(store, tmp_path)
    engines.reconcile_app(_desired("acme", "onlocal", "web"))
    engines.reconcile_app(_desired("acme", "oneu", "api"))
    assert engines.ensure_project("acme", "oneu", encrypted=True) == "net-eu"
    assert local.calls == ["reconcile acme/onlocal/web"]
    assert opener.opened["eu"].calls == ["reconcile acme/oneu/api", "ensure acme/oneu encrypted=True"]


def test_a_cluster_that_does_not_answer_is_left_out_of_unions_but_the_local_engine_is_not(
        store: Store, tmp_path: Path) -> None:
    engines, local, opener = _setup(store, tmp_path)
    engines.driver("eu").apps = {WorkloadKey("acme", "oneu", "api")}
    assert engines.list_apps() == {WorkloadKey("acme", "onlocal", "web"), WorkloadKey("acme", "oneu", "api")}
    opener.opened["eu"].down = True
    assert engines.list_apps() == {WorkloadKey("acme", "onlocal", "web")}
    local.down = True
    with pytest.raises(EngineUnavailable):
        engines.list_apps()


def test_work_for_a_cluster_that_is_down_fails_only_there(store: Store, tmp_path: Path) -> None:
    engines, local, opener = _setup(store, tmp_path)
    engines.driver("eu").down = True
    with pytest.raises(EngineUnavailable):
        engines.reconcile_app(_desired("acme", "oneu", "api"))
    assert engines.reconcile_app(_desired("acme", "onlocal", "web")).converged
    assert engines.health("eu").writable is False or engines.health("eu").phase != "Ready"


def test_the_driver_is_reopened_when_the_cluster_changes_and_unknown_clusters_are_404(
        store: Store, tmp_path: Path) -> None:
    engines, _, opener = _setup(store, tmp_path)
    first = engines.driver("eu")
    assert engines.driver("eu") is first
    cur = store.get("Cluster", "", "eu")
    store.replace("Cluster", "", "eu", {**cur.spec, "endpoints": [{"url": "unix:///a.sock"}, {"url": "unix:///b.sock"}]})
    second = engines.driver("eu")
    assert second is not first and first.closed
    assert [e.url for e in second.endpoints] == ["unix:///a.sock", "unix:///b.sock"]
    with pytest.raises(ClusterError) as e:
        engines.driver("nope")
    assert e.value.status == 404


def test_tls_material_is_written_for_the_driver_readable_by_the_owner_only(store: Store, tmp_path: Path) -> None:
    engines, _, opener = _setup(store, tmp_path)
    assert store.keyring is not None
    _, sealed = store.keyring.encrypt(b"-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n")
    store.create("Cluster", "", "tls", {"driver": "swarm", "endpoints": [{"url": "tcp://10.0.0.1:2376", "tls": {
        "ca": "CA PEM", "cert": "CERT PEM", "keyCiphertext": sealed}}]})
    ep = engines.driver("tls").endpoints[0]
    ca, cert, key = (Path(p) for p in ep.tls)
    assert ca.read_text() == "CA PEM" and cert.read_text() == "CERT PEM"
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_deleted_projects_objects_are_removed_wherever_they_are(store: Store, tmp_path: Path) -> None:
    engines, local, opener = _setup(store, tmp_path)
    gone = WorkloadKey("acme", "deleted", "old")
    engines.driver("eu").apps = {gone}
    assert engines.remove_app(gone) == 1
    assert "remove_app acme/deleted/old" in local.calls


def test_events_merge_every_cluster_and_a_broken_cluster_stream_does_not_end_them(
        store: Store, tmp_path: Path) -> None:
    engines, local, opener = _setup(store, tmp_path)
    local._events = [EngineEvent(WorkloadKey("acme", "onlocal", "web"), "die")]
    store.create("App", "acme/oneu", "api", {"image": "dockyard/demo:1.0"})
    stop = threading.Event()
    seen: list[tuple[str, str]] = []
    stream = engines.events(stop)
    deadline = time.monotonic() + 10
    for ev in stream:
        seen.append((ev.key.scope + "/" + ev.key.app, ev.action))
        if ("acme/oneu/api", "resync") in seen and ("acme/onlocal/web", "die") in seen:
            break
        assert time.monotonic() < deadline
    opener.opened["eu"].down = True  # its pump backs off and retries; the merged stream goes on
    local.down = True
    with pytest.raises(EngineError):
        next(stream)
    stop.set()


def test_a_cluster_whose_endpoint_is_no_engine_is_skipped_and_unavailable(store: Store, tmp_path: Path) -> None:
    # an endpoint that answers HTTP but is no Docker engine raises the SDK's own errors (404s), not
    # EngineErrors: the local engine's work and the health answer must not break on them
    engines, local, opener = _setup(store, tmp_path)

    def not_an_engine(*args: object) -> None:
        raise LookupError("404 Client Error: Not Found")

    eu = engines.driver("eu")
    eu.list_apps = not_an_engine  # type: ignore[method-assign]
    eu.health = not_an_engine  # type: ignore[attr-defined]
    assert engines.list_apps() == {WorkloadKey("acme", "onlocal", "web")}
    h = engines.health("eu")
    assert h.phase == "Unavailable" and not h.writable and "404" in h.message
