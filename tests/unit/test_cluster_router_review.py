"""Hostile review of the cluster router (issue 6): a Cluster's driver — with what its endpoint set
learnt (which manager answers, which are down and skipped) and the event streams reading from it —
lives as long as the Cluster's spec, not as long as its status."""

from __future__ import annotations

from pathlib import Path

from test_cluster_router import _setup, store  # noqa: F401 (store: fixture)

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
