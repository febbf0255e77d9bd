"""The `swarm_cluster` fixture: one throwaway 3-manager, 2-worker Swarm per test module
(tests/integration/swarm_cluster.py); skipped where nodes cannot be made (not root, no dockerd)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from swarm_cluster import DEMO, SwarmCluster


def skip_unless_nodes_possible(images: tuple[str, ...] = (DEMO,)) -> None:
    """Skip the test unless this machine can run test nodes: root, dockerd, nsenter, and the images on the host engine."""
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("dockerd", "docker", "nsenter", "unshare", "iptables")):
        pytest.skip("test swarm nodes need root, dockerd, nsenter, unshare and iptables")
    for image in images:
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            pytest.skip(f"image {image} is not on the host engine (scripts/ensure-dockerd.sh builds it)")


@pytest.fixture(scope="module")
def swarm_cluster() -> Iterator[SwarmCluster]:
    """A formed swarm m1 m2 m3 (managers, TLS on tcp://10.98.k.i:2376) + w1 w2, with dockyard/demo:1.0 on every
    node; closed (nothing left on the machine) after the module's tests."""
    skip_unless_nodes_possible()
    with SwarmCluster() as cluster:
        yield cluster
