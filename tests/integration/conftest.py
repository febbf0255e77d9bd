"""Fixtures that run a real `dockyard server` against a real Docker engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from dockyard_harness import Server, engine_available, remove_instance_objects
from peers import docker_cli, gitserver  # noqa: F401 — fixtures of the registry and build tests


@pytest.fixture(scope="session")
def docker_api() -> docker.APIClient:
    if not engine_available():
        pytest.skip("no Docker engine answers at unix:///var/run/docker.sock (run `make engine`)")
    return docker.APIClient(base_url="unix:///var/run/docker.sock", version="1.41", timeout=60)


@pytest.fixture
def server_factory(tmp_path: Path, docker_api: docker.APIClient) -> Iterator:
    made: list[Server] = []

    def make(**kw) -> Server:  # noqa: ANN003
        s = Server(tmp_path / f"server{len(made)}", **kw)
        made.append(s)
        s.start()
        return s

    yield make
    for s in made:
        s.stop()
        try:
            assert_hardened(docker_api if s.engine == "unix:///var/run/docker.sock" else docker.APIClient(
                base_url=s.engine, version="1.41", timeout=30), s.instance)
        except (docker.errors.DockerException, OSError) as e:  # requests' errors are OSErrors
            if s.engine == "unix:///var/run/docker.sock":
                raise AssertionError(f"could not check container hardening: {e}") from e
            # a private engine that the test already took down
        try:
            api = docker_api if s.engine == "unix:///var/run/docker.sock" else docker.APIClient(
                base_url=s.engine, version="1.41", timeout=30)
            remove_instance_objects(api, s.instance)
        except Exception:  # noqa: BLE001 — cleanup of a private engine that is already gone
            pass


@pytest.fixture
def server(server_factory) -> Server:  # noqa: ANN001
    return server_factory()


def assert_hardened(api: docker.APIClient, instance: str) -> None:
    """Every container a test made Dockyard create has limits and no-new-privileges."""
    for c in api.containers(all=True, filters={"label": f"dockyard.instance={instance}"}):
        if "ghost" in c["Names"][0]:
            continue  # the orphan test's hand-made container
        hc = api.inspect_container(c["Id"])["HostConfig"]
        assert hc["Memory"] > 0 and hc["NanoCpus"] > 0 and hc["PidsLimit"] and hc["PidsLimit"] > 0, c["Names"]
        assert "no-new-privileges" in (hc["SecurityOpt"] or []), c["Names"]
        assert not hc["Privileged"], c["Names"]
