"""Nodes on the real engine: `dockyard top nodes` shows the engine's host with the CPU a burner
uses, and the Prometheus exposition has it as dockyard_node_* gauges; an engine that goes down and
comes back is a NodeDown Warning and a NodeUp event in every project's timeline (a private engine)."""

from __future__ import annotations

import docker
import pytest
from dockyard_harness import app_manifest, setup_project
from test_engine_restart import engine  # noqa: F401 — the private engine fixture

BURN = ["sh", "-c", "while :; do :; done"]


@pytest.mark.timeout(180)
def test_top_nodes_shows_the_engine_host_with_the_cpu_a_burner_uses(server_factory, docker_api) -> None:  # noqa: ANN001
    host = docker_api.info()["Name"]
    s = server_factory()
    setup_project(s)
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest(
            "burn", health=False, command=BURN, resources={"cpu": "1", "memory": "32Mi"})).raise_for_status()

        def hot():  # noqa: ANN202
            nodes = c.get("/nodes").json()["items"]
            return nodes if nodes and (nodes[0].get("cpu") or 0) > 50 else None

        nodes = s.wait_for(hot, timeout=60, interval=1, what="the node's CPU to show the burner")
        node = nodes[0]
        assert node["name"] == host and node["status"] == "ready" and node["containers"] == 1
        assert node["cpus"] == docker_api.info()["NCPU"] and node["memoryTotal"] == docker_api.info()["MemTotal"]
        assert 0 < node["memoryUsed"] < 32 * 2**20
        exposition = c.get(s.url + "/metrics").text
        assert f'dockyard_node_containers{{node="{host}"}} 1' in exposition
        assert f'dockyard_node_cpu_percent{{node="{host}"}}' in exposition

    out = s.cli("top", "nodes").stdout
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["CLUSTER", "NODE", "STATUS", "CPUS", "CPU"], out
    row = next(line for line in lines[1:] if line.split()[1] == host).split()
    assert row[0] == "local" and row[2] == "ready" and float(row[4].rstrip("%")) > 50, out


@pytest.mark.engine
@pytest.mark.timeout(180)
def test_engine_down_and_up_are_node_events_in_every_project(server_factory, engine) -> None:  # noqa: ANN001, F811
    s = server_factory(engine=engine.url)
    setup_project(s)
    with s.client() as c:
        c.post("/projects", json={"kind": "Project", "metadata": {"name": "blog", "tenant": "acme"}}).raise_for_status()
        name = docker.APIClient(base_url=engine.url, version="1.41").info()["Name"]
        s.wait_for(lambda: c.get("/nodes").json()["items"][0]["status"] == "ready", timeout=20, what="the node")
        engine.stop()

        def node_event(project: str, reason: str):  # noqa: ANN202
            items = c.get(f"/projects/{project}/events", params={"kind": "Node"}).json()["items"]
            return next((e for e in items if e["reason"] == reason), None)

        down = s.wait_for(lambda: node_event("acme/shop", "NodeDown"), timeout=30, what="a NodeDown event")
        assert down["type"] == "Warning" and down["name"] == name and down["project"] is None
        assert node_event("acme/blog", "NodeDown") is not None
        assert c.get("/nodes").json()["items"][0]["status"] == "down"
        engine.start()
        up = s.wait_for(lambda: node_event("acme/blog", "NodeUp"), timeout=30, what="a NodeUp event")
        assert up["type"] == "Normal" and up["name"] == name
        assert c.get("/nodes").json()["items"][0]["status"] == "ready"
    out = s.cli("events", "-p", "acme/shop", "--kind", "Node").stdout
    assert any(line.split()[1:4] == ["Warning", "NodeDown", f"node/{name}"] for line in out.splitlines()), out
    assert any(line.split()[1:4] == ["Normal", "NodeUp", f"node/{name}"] for line in out.splitlines()), out
