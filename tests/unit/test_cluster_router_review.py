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
