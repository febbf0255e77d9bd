"""The engine restarts under a running server: the server reconnects and converges."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dockyard_harness import app_manifest, get_app, setup_project
from private_engine import PrivateEngine

pytestmark = pytest.mark.engine


@pytest.fixture
def engine(tmp_path_factory: pytest.TempPathFactory, docker_api) -> PrivateEngine:  # noqa: ANN001
    if os.geteuid() != 0:
        pytest.skip("a private engine needs root (network namespaces)")
    root = Path(tmp_path_factory.mktemp("engines"))
    e = PrivateEngine(f"e{os.getpid() % 10000}", root)
    e.create()
    try:
        e.load_image("dockyard/demo:1.0")
        yield e
    finally:
        e.destroy()


def test_server_reconnects_and_converges_after_dockerd_restart(server_factory, engine) -> None:  # noqa: ANN001
    s = server_factory(engine=engine.url)
    setup_project(s)
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest("web", replicas=2, health=False)).raise_for_status()

    def ready(n: int):  # noqa: ANN202
        st = get_app(s, "web").get("status") or {}
        return st.get("phase") == "Ready" and st.get("readyReplicas") == n

    s.wait_for(lambda: ready(2), timeout=60, what="2 ready replicas on the private engine")
    engine.stop()  # dockerd goes away; its containers stop with it
    with s.client() as c:
        assert c.get("/projects/acme/shop/apps/web").status_code == 200, "the API keeps answering"
        # a change made while the engine is away is applied when it returns
        c.post("/projects/acme/shop/apps/web/scale", json={"replicas": 3}).raise_for_status()
        s.wait_for(lambda: c.get("/info").json()["engine"]["status"] == "unavailable", timeout=20,
                   what="the server to notice the engine is gone")
    engine.start()
    s.wait_for(lambda: ready(3), timeout=60, what="3 ready replicas after the engine returned")
    import docker

    api = docker.APIClient(base_url=engine.url, version="1.41")
    found = api.containers(filters={"label": f"dockyard.instance={s.instance}"})
    assert sorted(int(x["Labels"]["dockyard.slot"]) for x in found) == [0, 1, 2]
