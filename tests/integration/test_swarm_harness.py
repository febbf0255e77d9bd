"""The test Swarm harness itself: five dockerd nodes form a swarm with the right roles, reachable over
TLS; a dnsrr service spreads over them and serves HTTP; a crashed worker's tasks run elsewhere; closing
the cluster leaves nothing on the machine."""

from __future__ import annotations

import time

import pytest
from swarm_cluster import DEMO, SwarmCluster, run
from swarm_fixtures import module_swarm


def running_tasks(c: SwarmCluster, service: str) -> list[tuple[str, str]]:
    """(task name, node) of the service's tasks that are running and meant to."""
    out = c.docker(c.manager_view(), "service", "ps", service, "--filter", "desired-state=running",
                   "--format", "{{.Name}}|{{.Node}}|{{.CurrentState}}")
    rows = [line.split("|") for line in out.splitlines() if line]
    return [(name, node) for name, node, state in rows if state.startswith("Running")]


@pytest.mark.engine
@pytest.mark.timeout(150)
def test_five_nodes_form_a_swarm_spread_a_service_survive_a_worker_crash_and_close_clean() -> None:
    with module_swarm(managers=3, workers=2) as c:  # asserts that closing it leaves nothing behind
        print(f"cluster up in {c.timings['total']:.1f} s ({c.timings})")
        rows = {r["hostname"]: r for r in c.node_table()}
        assert set(rows) == {"m1", "m2", "m3", "w1", "w2"}
        assert all(r["status"] == "Ready" and r["availability"] == "Active" for r in rows.values()), rows
        assert sorted(r["manager"] for r in rows.values()) == ["", "", "Leader", "Reachable", "Reachable"], rows
        assert rows["w1"]["manager"] == rows["w2"]["manager"] == ""
        assert c.leader() in ("m1", "m2", "m3")

        # a manager over tcp:// with the client certificate; without one the TLS handshake is refused
        tls = ["--tlsverify", "--tlscacert", f"{c.tls_dir}/ca.pem", "--tlscert", f"{c.tls_dir}/cert.pem",
               "--tlskey", f"{c.tls_dir}/key.pem"]
        assert run(["docker", "-H", c.tcp_url("m2"), *tls, "info", "--format", "{{.Swarm.ControlAvailable}}"],
                   timeout=20).stdout.strip() == "true"
        assert run(["docker", "-H", c.tcp_url("m2"), "--tls", "info"], check=False, timeout=20).returncode != 0
        assert c.client_tls and c.client_tls[0].startswith("-----BEGIN CERTIFICATE-----")

        c.docker("m1", "service", "create", "--detach", "--no-resolve-image", "--name", "web", "--endpoint-mode", "dnsrr",
                 "--replicas", "4", "--restart-delay", "1s", DEMO)
        tasks = c.wait_for(lambda: (t := running_tasks(c, "web")) and len(t) == 4 and t, timeout=45, what="4 running tasks")
        assert len({node for _, node in tasks}) == 4, tasks  # spread: one per node

        # the task serves HTTP (its own container on its node)
        name, node = tasks[0]
        cid = c.docker(node, "ps", "-q", "--filter", f"name={name}").split()[0]
        assert c.docker(node, "exec", cid, "timeout", "5", "wget", "-qO-", "http://127.0.0.1:8080/").startswith("demo 1.0 on")

        victim = next(node for _, node in tasks if node.startswith("w"))
        t0 = time.monotonic()
        c.kill(victim)
        moved = c.wait_for(lambda: (t := running_tasks(c, "web")) and len(t) == 4 and victim not in {n for _, n in t} and t,
                           timeout=60, what=f"the tasks of crashed {victim} to run elsewhere")
        print(f"tasks of crashed {victim} running elsewhere after {time.monotonic() - t0:.1f} s: {moved}")
        down = next(r for r in c.node_table() if r["hostname"] == victim)
        assert down["status"] == "Down", down
