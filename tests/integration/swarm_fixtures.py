"""What a module's Swarm tests build their fixtures from: `module_swarm`, a throwaway test Swarm of
the size the module needs (tests/integration/swarm_cluster.py), and `module_server`, a real server on
the host engine; both skip where they cannot be made (not root, no dockerd, no local engine)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import docker
import pytest
from dockyard_harness import Server, engine_available, remove_instance_objects
from swarm_cluster import DEMO, SwarmCluster, leftovers


def skip_unless_nodes_possible(images: tuple[str, ...] = (DEMO,)) -> None:
    """Skip the test unless this machine can run test nodes: root, dockerd, nsenter, and the images on the host engine."""
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("dockerd", "docker", "nsenter", "unshare", "iptables")):
        pytest.skip("test swarm nodes need root, dockerd, nsenter, unshare and iptables")
    for image in images:
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            pytest.skip(f"image {image} is not on the host engine (scripts/ensure-dockerd.sh builds it)")


@contextmanager
def module_swarm(managers: int = 3, workers: int = 2, images: tuple[str, ...] = (DEMO,)) -> Iterator[SwarmCluster]:
    """A test swarm for a module's own fixture (skipped where nodes cannot be made), checked to leave
    nothing behind once closed."""
    skip_unless_nodes_possible(images)
    with SwarmCluster(managers=managers, workers=workers, images=images) as cluster:
        slot = cluster.slot
        yield cluster
    assert leftovers(slot) == [], "the test swarm left things behind"


@contextmanager
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A `dockyard server` on the host engine for a module's swarm tests (skipped without one); stopped
    after, and what it left on the host engine (its local projects' containers, networks) removed."""
    if not engine_available():
        pytest.skip("no local Docker engine (run `make engine`)")
    server = Server(tmp_path_factory.mktemp("dockyard"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        remove_instance_objects(docker.APIClient(base_url="unix:///var/run/docker.sock", version="1.41"),
                                server.instance)
