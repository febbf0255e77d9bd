"""Hostile review of the cluster router (issue 6): a Cluster's driver — with what its endpoint set
learnt (which manager answers, which are down and skipped) and the event streams reading from it —
lives as long as the Cluster's spec, not as long as its status."""

from __future__ import annotations

from pathlib import Path

from test_cluster_router import FakeDriver, Opener, _setup, store  # noqa: F401 (store: fixture)

from dockyard.clusters.engines import ClusterEngines
from dockyard.store.repository import Store


def test_a_status_write_does_not_reopen_the_driver(store: Store, tmp_path: Path) -> None:  # noqa: F811
    engines, _, opener = _setup(store, tmp_path)
    first = engines.driver("eu")
    store.update_status("Cluster", "", "eu", {"phase": "Degraded", "message": "w1 down"})  # the monitor's write
    store.update_status("Cluster", "", "eu", {"phase": "Ready", "message": "all ready"})
    assert engines.driver("eu") is first and not first.closed, "reopened by a status write"
    store.replace("Cluster", "", "eu", {"driver": "swarm", "endpoints": [{"url": "unix:///elsewhere.sock"}]})
    second = engines.driver("eu")
    assert second is not first and first.closed and second.endpoints[0].url == "unix:///elsewhere.sock"


def test_a_cluster_made_again_under_the_same_name_gets_a_new_driver(store: Store, tmp_path: Path) -> None:  # noqa: F811
    engines, _, opener = _setup(store, tmp_path)
    store.delete("Project", "acme", "oneu")
    first = engines.driver("eu")
    store.delete("Cluster", "", "eu")
    store.create("Cluster", "", "eu", {"driver": "swarm", "endpoints": [{"url": "unix:///new.sock"}]})
    assert engines.driver("eu").endpoints[0].url == "unix:///new.sock"
    assert first.closed


def test_a_slow_cluster_is_probed_once_however_many_ask(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """Writes to a project on a hung cluster all ask its health; each ask must not hold a thread of
    the API's pool for the probe's time (40 concurrent writes would stall every other request)."""
    import threading
    import time

    from dockyard.clusters import engines as engines_module
    from dockyard.model.cluster import ClusterHealth

    engines, _, opener = _setup(store, tmp_path)
    drv = engines.driver("eu")
    probing = {"now": 0, "most": 0, "total": 0}
    lock = threading.Lock()

    def slow_health() -> ClusterHealth:
        with lock:
            probing["now"] += 1
            probing["total"] += 1
            probing["most"] = max(probing["most"], probing["now"])
        time.sleep(1.0)  # a manager that accepts the connection and does not answer
        with lock:
            probing["now"] -= 1
        return ClusterHealth("eu", "Unavailable", False, "no manager endpoint answers")

    drv.health = slow_health  # type: ignore[attr-defined]
    engines.health("eu")  # the first answer, cold: the caller waits for it
    time.sleep(engines_module.HEALTH_TTL + 0.1)  # expired
    took: list[float] = []

    def ask() -> None:
        t0 = time.monotonic()
        assert engines.health("eu").writable is False
        took.append(time.monotonic() - t0)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert probing["most"] == 1, probing
    assert sorted(took)[-2] < 0.2, f"askers waited for the probe: {sorted(took)}"


def _tls_cluster(s: Store, name: str, urls: list[str]) -> None:
    assert s.keyring is not None
    _, sealed = s.keyring.encrypt(b"-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n")
    s.create("Cluster", "", name, {"driver": "swarm", "endpoints": [
        {"url": u, "tls": {"ca": "CA PEM", "cert": "CERT PEM", "keyCiphertext": sealed}} for u in urls]})


def _key_files(tmp_path: Path, name: str) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "clusters" / name).rglob("key.pem"))


def test_the_clear_tls_key_leaves_the_disk_with_its_cluster(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """The router writes each endpoint's key in clear for the Docker client: once the Cluster (or
    the endpoint) is gone, that copy must go too, and one left by a server that was down is swept
    when the router starts."""
    engines, _, _ = _setup(store, tmp_path)
    _tls_cluster(store, "tls", ["tcp://10.0.0.1:2376", "tcp://10.0.0.2:2376"])
    engines.driver("tls")
    assert _key_files(tmp_path, "tls") == ["clusters/tls/0/key.pem", "clusters/tls/1/key.pem"]
    obj = store.get("Cluster", "", "tls")
    store.replace("Cluster", "", "tls", {**obj.spec, "endpoints": obj.spec["endpoints"][1:]})
    engines.driver("tls")
    assert _key_files(tmp_path, "tls") == ["clusters/tls/0/key.pem"], "the removed endpoint's key stays"
    store.delete("Cluster", "", "tls")
    engines.clusters()
    try:
        engines.driver("tls")
    except Exception:  # noqa: BLE001 — ClusterError 404
        pass
    assert not (tmp_path / "clusters" / "tls").exists(), "the deleted cluster's key stays on disk"
    # deleted while this server was not running
    _tls_cluster(store, "gone", ["tcp://10.0.0.3:2376"])
    engines.driver("gone")
    store.delete("Cluster", "", "gone")
    ClusterEngines(store, FakeDriver("local"), data_dir=tmp_path, opener=Opener())
    assert not (tmp_path / "clusters" / "gone").exists()


def test_a_project_made_again_on_another_cluster_is_not_sent_to_the_old_one(store: Store, tmp_path: Path) -> None:  # noqa: F811
    """Moving a project is deleting it and creating it on the other cluster; the same name at once
    must not put its apps on the old cluster (where nothing would ever remove them: the orphan
    collection sees an App of that name in the store)."""
    from test_cluster_router import _desired

    engines, local, opener = _setup(store, tmp_path)
    engines.reconcile_app(_desired("acme", "oneu", "api"))
    assert opener.opened["eu"].calls == ["reconcile acme/oneu/api"]
    store.delete("Project", "acme", "oneu")
    store.create("Project", "acme", "oneu", {"cluster": "local"})
    engines.ensure_project("acme", "oneu")
    engines.reconcile_app(_desired("acme", "oneu", "api"))
    assert opener.opened["eu"].calls == ["reconcile acme/oneu/api"], "sent to the cluster the old project was on"
    assert local.calls[-1] == "reconcile acme/oneu/api"
