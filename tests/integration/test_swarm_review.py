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
from dockyard.engines.swarm_spec import service_name
from dockyard.model.app import AppSpec, template_hash, template_of

pytestmark = pytest.mark.engine

KEY = WorkloadKey("acme", "tpl", "web")


@pytest.fixture(scope="module")
def swarm() -> Iterator[SwarmCluster]:
    with module_swarm(managers=1, workers=0) as c:
        yield c


def _task_container(swarm: SwarmCluster, service: str) -> str | None:
    """A container of the service's task on the one node, once there is one."""
    ids = swarm.docker("m1", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").split()
    return ids[0] if ids else None


def test_environment_values_are_not_swarm_templates(swarm: SwarmCluster) -> None:
    driver = SwarmDriver([Endpoint(swarm.sock("m1"))], instance=f"r{swarm.slot}", name="review")
    try:
        driver.ensure_project(KEY.tenant, KEY.project)
        spec = AppSpec.model_validate({"image": DEMO, "replicas": 1, "env": {
            "NODE": "{{.Node.Hostname}}", "MUSTACHE": "Hello {{name}}!", "PLAIN": "a}}b"}})
        want = DesiredApp(KEY, spec, template_hash(template_of(spec)), 1, 1)

        def running() -> str | None:
            driver.reconcile_app(want)
            return _task_container(swarm, service_name(f"r{swarm.slot}", KEY))

        cid = swarm.wait_for(running, timeout=60, what="the service's task running")
        env = json.loads(swarm.docker("m1", "inspect", "-f", "{{json .Config.Env}}", str(cid)))
        assert "NODE={{.Node.Hostname}}" in env, env
        assert "MUSTACHE=Hello {{name}}!" in env, env
        assert "PLAIN=a}}b" in env, env
    finally:
        driver.remove_project(KEY.tenant, KEY.project)
        driver.close()


def test_a_projects_tasks_cannot_reach_another_projects_services(swarm: SwarmCluster) -> None:
    driver = SwarmDriver([Endpoint(swarm.sock("m1"))], instance=f"r{swarm.slot}", name="review")
    keys = [WorkloadKey("acme", "one", "web"), WorkloadKey("globex", "two", "web")]
    spec = AppSpec.model_validate({"image": DEMO, "replicas": 1})
    try:
        for k in keys:
            driver.ensure_project(k.tenant, k.project)
        services = [service_name(f"r{swarm.slot}", k) for k in keys]

        def both_running() -> list[str] | None:
            for k in keys:
                driver.reconcile_app(DesiredApp(k, spec, template_hash(template_of(spec)), 1, 1))
            ids = [_task_container(swarm, s) for s in services]
            return ids if all(ids) else None  # type: ignore[return-value]

        mine, theirs = swarm.wait_for(both_running, timeout=60, what="both services' tasks running")  # type: ignore[misc]
        nets = json.loads(swarm.docker("m1", "inspect", "-f", "{{json .NetworkSettings.Networks}}", theirs))
        their_ip = next(iter(nets.values()))["IPAddress"]
        assert len(nets) == 1, nets

        def fetch(cid: str, url: str) -> int:
            # (busybox wget -T crashes in these images: the time limit is timeout's)
            return swarm.docker("m1", "exec", cid, "timeout", "3", "wget", "-qO", "/dev/null", url, check=False,
                                timeout=30).returncode

        swarm.wait_for(lambda: fetch(theirs, f"http://{their_ip}:8080/") == 0, timeout=30,
                       what="their service answering inside its own project")
        assert fetch(mine, "http://web:8080/") == 0, "an app reaches its own project's app by name"
        assert fetch(mine, f"http://{their_ip}:8080/") != 0, "reached another project's task by IP"
        assert fetch(mine, f"http://{services[1]}:8080/") != 0, "reached another project's service by name"
    finally:
        for k in keys:
            driver.remove_project(k.tenant, k.project)
        driver.close()
