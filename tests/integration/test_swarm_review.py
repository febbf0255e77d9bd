"""Hostile review of the Swarm driver (issue 6), against a real one-node test swarm: the same App runs
the same on one engine and on a Swarm. Swarm expands Go templates ({{.Node.Hostname}} ...) in a
service's environment and mount paths; the docker driver passes them as they are."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from swarm_cluster import DEMO, SwarmCluster
from swarm_fixtures import module_swarm

from dockyard.engines.base import DesiredApp, WorkloadKey
from dockyard.engines.endpoints import Endpoint
from dockyard.engines.swarm import SwarmDriver
from dockyard.model.app import AppSpec, template_hash, template_of

pytestmark = pytest.mark.engine

KEY = WorkloadKey("acme", "tpl", "web")


@pytest.fixture(scope="module")
def swarm() -> Iterator[SwarmCluster]:
    with module_swarm(managers=1, workers=0) as c:
        yield c


def test_environment_values_are_not_swarm_templates(swarm: SwarmCluster) -> None:
    driver = SwarmDriver([Endpoint(swarm.sock("m1"))], instance=f"r{swarm.slot}", name="review")
    try:
        driver.ensure_project(KEY.tenant, KEY.project)
        spec = AppSpec.model_validate({"image": DEMO, "replicas": 1, "env": {
            "NODE": "{{.Node.Hostname}}", "MUSTACHE": "Hello {{name}}!", "PLAIN": "a}}b"}})
        want = DesiredApp(KEY, spec, template_hash(template_of(spec)), 1, 1)

        def running() -> str | None:
            driver.reconcile_app(want)
            ids = swarm.docker("m1", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name="
                               f"dy-r{swarm.slot}-acme-tpl-web").split()
            return ids[0] if ids else None

        cid = swarm.wait_for(running, timeout=60, what="the service's task running")
        env = json.loads(swarm.docker("m1", "inspect", "-f", "{{json .Config.Env}}", str(cid)))
        assert "NODE={{.Node.Hostname}}" in env, env
        assert "MUSTACHE=Hello {{name}}!" in env, env
        assert "PLAIN=a}}b" in env, env
    finally:
        driver.remove_project(KEY.tenant, KEY.project)
        driver.close()
