"""The Swarm driver's pure parts: App → ServiceSpec, names, rollback detection from tasks, and
the endpoint failover (with fake clients: which endpoint is used, skipped, given up on)."""

import pytest
import requests
from docker import errors as docker_errors

from dockyard.engines.base import DesiredApp, EngineError, EngineUnavailable, MountedFile, WorkloadKey
from dockyard.engines.common import DEFAULT_PIDS_LIMIT
from dockyard.engines.endpoints import RETRY_AFTER, Endpoint, EndpointSet
from dockyard.engines.swarm import SwarmDriver, _observe, _rolled_back
from dockyard.engines.swarm_spec import (
    L_TEMPLATE,
    FileObject,
    file_object_name,
    network_name,
    service_name,
    service_spec,
)
from dockyard.model.app import AppSpec

KEY = WorkloadKey("acme", "shop", "web")


def desired(**spec: object) -> DesiredApp:
    return DesiredApp(KEY, AppSpec.model_validate({"image": "dockyard/demo:1.0", **spec}), "abc123", 4, 9)


def render(**spec: object) -> dict:
    return service_spec(desired(**spec), instance="i1", network="dy-i1-acme-shop", files=[])


def test_names_fit_and_stay_unique_when_cut() -> None:
    assert service_name("i1", KEY) == "dy-i1-acme-shop-web"
    long_a = WorkloadKey("t" * 30, "p" * 30, "app-a")
    long_b = WorkloadKey("t" * 30, "p" * 30, "app-b")
    a, b = service_name("i1", long_a), service_name("i1", long_b)
    assert len(a) <= 63 and len(b) <= 63 and a != b
    assert a == service_name("i1", long_a)  # stable
    assert len(network_name("i1", "t" * 40, "p" * 40)) <= 63


def test_file_objects_are_named_by_content() -> None:
    one = file_object_name("i1", KEY, MountedFile("db-pass", "/run/secrets/db-pass", b"a", True))
    two = file_object_name("i1", KEY, MountedFile("db-pass", "/run/secrets/db-pass", b"b", True))
    assert one != two and one.startswith("dy-i1-acme-shop-db-pass-")
    long = file_object_name("i1", WorkloadKey("t" * 30, "p" * 30, "a"), MountedFile("n" * 60, "/x", b"a", False))
    assert len(long) <= 64


def test_labels_replicas_network_and_dnsrr() -> None:
    s = render(replicas=3, labels={"team": "blue"})
    assert s["Name"] == "dy-i1-acme-shop-web"
    for labels in (s["Labels"], s["TaskTemplate"]["ContainerSpec"]["Labels"]):
        assert labels["dockyard.instance"] == "i1" and labels["dockyard.tenant"] == "acme"
        assert labels["dockyard.project"] == "shop" and labels["dockyard.app"] == "web"
        assert labels[L_TEMPLATE] == "abc123" and labels["dockyard.revision"] == "4" and labels["team"] == "blue"
    assert s["Mode"] == {"Replicated": {"Replicas": 3}}
    assert s["EndpointSpec"] == {"Mode": "dnsrr"}
    assert s["TaskTemplate"]["Networks"] == [{"Target": "dy-i1-acme-shop", "Aliases": ["web"]}]
    assert s["TaskTemplate"]["ContainerSpec"]["Hostname"] == "web-{{.Task.Slot}}"


def test_resources_become_limits_and_reservations() -> None:
    s = render(resources={"limits": {"cpu": "1.5", "memory": "256Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"},
                          "pids": 200})
    res = s["TaskTemplate"]["Resources"]
    assert res["Limits"] == {"NanoCPUs": 1_500_000_000, "MemoryBytes": 256 << 20, "Pids": 200}
    assert res["Reservations"] == {"NanoCPUs": 250_000_000, "MemoryBytes": 64 << 20}


def test_policy_defaults_hold_without_settings() -> None:
    s = render()
    assert s["TaskTemplate"]["Resources"]["Limits"] == {"Pids": DEFAULT_PIDS_LIMIT}
    assert s["TaskTemplate"]["LogDriver"]["Name"] == "json-file"
    assert s["TaskTemplate"]["LogDriver"]["Options"]["max-size"] == "10m"
    assert s["TaskTemplate"]["RestartPolicy"]["Condition"] == "any"


def test_restart_policy_mapping() -> None:
    assert render(restartPolicy="never")["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    assert render(restartPolicy="on-failure")["TaskTemplate"]["RestartPolicy"]["Condition"] == "on-failure"


def test_rolling_update_is_start_first_with_automatic_rollback() -> None:
    s = render(replicas=4, strategy={"maxSurge": 2})
    assert s["UpdateConfig"]["Order"] == "start-first" and s["UpdateConfig"]["Parallelism"] == 2
    assert s["UpdateConfig"]["FailureAction"] == "rollback" and s["UpdateConfig"]["MaxFailureRatio"] == 0
    assert 5e9 <= s["UpdateConfig"]["Monitor"] <= 10e9
    assert s["RollbackConfig"]["Order"] == "start-first" and s["RollbackConfig"]["FailureAction"] == "pause"
    r = render(replicas=4, strategy={"type": "Recreate"})
    assert r["UpdateConfig"]["Order"] == "stop-first" and r["UpdateConfig"]["Parallelism"] == 0
    assert render(replicas=4, strategy={"maxSurge": 0, "maxUnavailable": 1})["UpdateConfig"]["Parallelism"] == 1


def test_healthcheck_command_args_user_and_security() -> None:
    s = render(command=["/bin/sh"], args=["-c", "sleep 1"], user="1000", workingDir="/srv",
               healthcheck={"http": {"port": 8080, "path": "/healthz"}, "interval": "2s", "retries": 4},
               securityContext={"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
                                "readOnlyRootFilesystem": True, "sysctls": {"net.core.somaxconn": "1024"}})
    cs = s["TaskTemplate"]["ContainerSpec"]
    assert cs["Command"] == ["/bin/sh"] and cs["Args"] == ["-c", "sleep 1"]
    assert cs["User"] == "1000" and cs["Dir"] == "/srv"
    assert cs["Healthcheck"]["Test"][0] == "CMD-SHELL" and "/healthz" in cs["Healthcheck"]["Test"][1]
    assert cs["Healthcheck"]["Interval"] == 2_000_000_000 and cs["Healthcheck"]["Retries"] == 4
    assert cs["CapabilityAdd"] == ["CAP_NET_ADMIN"] and cs["CapabilityDrop"] == ["ALL"]
    assert cs["ReadOnly"] is True and cs["Sysctls"] == {"net.core.somaxconn": "1024"}
    assert {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 64 << 20}} in cs["Mounts"]


def test_volumes_secrets_configs_and_placement() -> None:
    d = desired(volumes=[{"name": "data", "mountPath": "/data"}])
    secret = MountedFile("db-pass", "/run/secrets/db-pass", b"x", True)
    config = MountedFile("conf", "/etc/app.conf", b"y", False)
    s = service_spec(d, instance="i1", network="n", files=[FileObject(secret, "sid", "sname"),
                                                           FileObject(config, "cid", "cname")])
    cs = s["TaskTemplate"]["ContainerSpec"]
    vol = cs["Mounts"][0]
    assert vol["Type"] == "volume" and vol["Source"] == "dy-i1-acme-shop-data" and vol["Target"] == "/data"
    assert vol["VolumeOptions"]["DriverConfig"]["Name"] == "local"
    assert cs["Secrets"] == [{"File": {"Name": "/run/secrets/db-pass", "UID": "0", "GID": "0", "Mode": 0o444},
                              "SecretID": "sid", "SecretName": "sname"}]
    assert cs["Configs"][0]["ConfigID"] == "cid" and cs["Configs"][0]["File"]["Name"] == "/etc/app.conf"
    placed = render(placement={"constraints": ["node.role==worker", "node.labels.zone!=c"],
                               "spread": ["node.labels.zone"], "maxReplicasPerNode": 2})
    assert placed["TaskTemplate"]["Placement"] == {
        "Constraints": ["node.role==worker", "node.labels.zone!=c"],
        "Preferences": [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}], "MaxReplicas": 2}
    assert render()["TaskTemplate"]["Placement"] == {}


@pytest.mark.parametrize(("sc", "field"), [
    ({"privileged": True}, "securityContext.privileged"),
    ({"hostNetwork": True}, "securityContext.hostNetwork"),
    ({"devices": ["/dev/fuse"]}, "securityContext.devices"),
    ({"seccompProfile": "unconfined"}, "securityContext.seccompProfile"),
])
def test_what_swarm_cannot_do_is_refused_naming_the_field(sc: dict, field: str) -> None:
    with pytest.raises(EngineError) as e:
        render(securityContext=sc)
    assert e.value.permanent and f"spec.{field}" in str(e.value)


def test_another_runtime_is_refused() -> None:
    with pytest.raises(EngineError, match="spec.runtime"):
        render(runtime="crun")


# --- rollback detection and task status ------------------------------------------------------


def task(tid: str, h: str, created: str, desired: str = "shutdown", state: str = "shutdown", slot: int = 1,
         err: str | None = None) -> dict:
    st = {"State": state, **({"Err": err} if err else {})}
    return {"ID": tid, "Slot": slot, "CreatedAt": created, "UpdatedAt": created, "DesiredState": desired,
            "Status": st, "Spec": {"ContainerSpec": {"Labels": {L_TEMPLATE: h, "dockyard.revision": "1"}}}}


def svc(h: str, state: str) -> dict:
    return {"Spec": {"Labels": {L_TEMPLATE: h, "dockyard.revision": "3"}},
            "UpdateStatus": {"State": state, "Message": "rollback completed"}}


def test_a_rolled_back_template_is_recognised_from_the_newest_other_task() -> None:
    tasks = [task("a", "old", "2026-01-01T00:00:01Z", "running", "running"),
             task("b", "bad", "2026-01-01T00:00:05Z", state="failed", err="task: non-zero exit (1)")]
    why = _rolled_back(svc("old", "rollback_completed"), tasks, "bad")
    assert why is not None and why.startswith("rolled back automatically: ")
    assert "non-zero exit (1)" in why and why.endswith("running revision 3")


def test_a_template_asked_for_after_the_rollback_is_applied() -> None:
    tasks = [task("a", "old", "2026-01-01T00:00:01Z", "running", "running"),
             task("b", "bad", "2026-01-01T00:00:05Z", state="failed"),
             task("c", "older", "2026-01-01T00:00:00Z")]
    assert _rolled_back(svc("old", "rollback_completed"), tasks, "fixed") is None
    assert _rolled_back(svc("old", "rollback_completed"), tasks, "older") is None  # not the failed one
    assert _rolled_back(svc("old", "completed"), tasks, "bad") is None             # no rollback happened
    assert _rolled_back(svc("bad", "rollback_completed"), tasks, "bad") is None    # already running it


def test_tasks_become_containers_with_restarts_from_failed_ones() -> None:
    tasks = [task("t1aaaaaaaaaaaaaa", "h", "2026-01-01T00:00:03Z", "running", "running"),
             task("t0", "h", "2026-01-01T00:00:01Z", state="failed", err="task: non-zero exit (2)"),
             task("t2", "h", "2026-01-01T00:00:03Z", "running", "pending", slot=2),
             task("t3", "h", "2026-01-01T00:00:02Z", "shutdown", "shutdown", slot=3)]
    tasks[0]["NetworksAttachments"] = [{"Network": {"Spec": {"Name": "n"}}, "Addresses": ["10.0.1.5/24"]}]
    out = {c.slot: c for c in _observe("svc", tasks)}
    assert set(out) == {1, 2}
    assert out[1].name == "svc.1.t1aaaaaaaaaa" and out[1].state == "running" and out[1].ready
    assert out[1].restarts == 1 and out[1].error == "task: non-zero exit (2)" and out[1].ip == "10.0.1.5"
    assert out[2].state == "created" and not out[2].ready


# --- endpoint failover --------------------------------------------------------------------


class FakeClient:
    def __init__(self, url: str, behaviour: dict[str, object]) -> None:
        self.url = url
        self.behaviour = behaviour

    def run(self) -> str:
        what = self.behaviour.get(self.url)
        if isinstance(what, BaseException):
            raise what
        return self.url


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def fake_set(behaviour: dict[str, object], clock: Clock, n: int = 3) -> tuple[EndpointSet, list[str]]:
    opened: list[str] = []

    def opener(ep: Endpoint, _timeout: float) -> FakeClient:
        opened.append(ep.url)
        return FakeClient(ep.url, behaviour)
    eps = [Endpoint(f"tcp://m{i}:2376") for i in range(1, n + 1)]
    return EndpointSet(eps, name="eu", opener=opener, clock=clock), opened


def no_leader() -> docker_errors.APIError:
    resp = requests.Response()
    resp.status_code = 503
    return docker_errors.APIError("503", resp, explanation="rpc error: code = Unknown desc = The swarm does not "
                                                          "have a leader. It's possible that too few managers are online.")


def test_failover_moves_to_the_next_endpoint_and_stays_there() -> None:
    clock = Clock()
    behaviour: dict[str, object] = {"tcp://m1:2376": requests.exceptions.ConnectionError("refused")}
    es, opened = fake_set(behaviour, clock)
    assert es.call(lambda c: c.run()) == "tcp://m2:2376"
    assert es.active == "tcp://m2:2376"
    assert es.call(lambda c: c.run()) == "tcp://m2:2376"
    assert opened.count("tcp://m1:2376") == 1  # not tried again while marked down


def test_a_down_endpoint_is_retried_after_a_while() -> None:
    clock = Clock()
    behaviour: dict[str, object] = {"tcp://m1:2376": requests.exceptions.ReadTimeout("slow")}
    es, _ = fake_set(behaviour, clock)
    es.call(lambda c: c.run())
    behaviour.clear()
    behaviour["tcp://m2:2376"] = requests.exceptions.ConnectionError("gone")
    clock.now += RETRY_AFTER + 0.1
    assert es.call(lambda c: c.run()) == "tcp://m3:2376"  # m2 (active) failed; m3 next in the ring
    behaviour["tcp://m3:2376"] = requests.exceptions.ConnectionError("gone")
    assert es.call(lambda c: c.run()) == "tcp://m1:2376"  # m1 came back


def test_every_endpoint_unreachable_is_engine_unavailable() -> None:
    clock = Clock()
    down = requests.exceptions.ConnectionError("refused")
    es, _ = fake_set({f"tcp://m{i}:2376": down for i in (1, 2, 3)}, clock)
    with pytest.raises(EngineUnavailable, match="no manager endpoint answers"):
        es.call(lambda c: c.run())


def test_no_leader_anywhere_is_engine_unavailable_naming_the_cause() -> None:
    clock = Clock()
    down = requests.exceptions.ConnectionError("refused")
    es, _ = fake_set({"tcp://m1:2376": down, "tcp://m2:2376": down, "tcp://m3:2376": no_leader()}, clock)
    with pytest.raises(EngineUnavailable) as e:
        es.call(lambda c: c.run())
    assert "swarm eu has no leader" in str(e.value) and "2 of 3" in str(e.value)


def test_no_leader_on_one_manager_tries_the_others() -> None:
    es, _ = fake_set({"tcp://m1:2376": no_leader()}, Clock())
    assert es.call(lambda c: c.run()) == "tcp://m2:2376"


def test_other_api_errors_are_the_calls_own() -> None:
    resp = requests.Response()
    resp.status_code = 404
    es, _ = fake_set({"tcp://m1:2376": docker_errors.NotFound("no such service", resp)}, Clock())
    with pytest.raises(docker_errors.NotFound):
        es.call(lambda c: c.run())
    assert es.active == "tcp://m1:2376"


class PingingClient(FakeClient):
    """Answers /_ping, as a manager does that holds swarm calls after losing its quorum."""

    def _url(self, path: str) -> str:
        return path

    def _get(self, path: str, timeout: object = None) -> requests.Response:
        r = requests.Response()
        r.status_code = 200
        return r


def test_a_manager_that_holds_calls_but_answers_ping_is_leaderless_not_down() -> None:
    clock = Clock()
    behaviour: dict[str, object] = {"tcp://m1:2376": requests.exceptions.ConnectionError("refused"),
                                    "tcp://m2:2376": requests.exceptions.ReadTimeout("held")}
    opened: list[str] = []

    def opener(ep: Endpoint, _timeout: float) -> FakeClient:
        opened.append(ep.url)
        return PingingClient(ep.url, behaviour) if ep.url.endswith("m2:2376") else FakeClient(ep.url, behaviour)
    es = EndpointSet([Endpoint("tcp://m1:2376"), Endpoint("tcp://m2:2376")], name="eu", opener=opener, clock=clock)
    with pytest.raises(EngineUnavailable, match="swarm eu has no leader: 1 of 2 .*m2:2376: swarm calls time out"):
        es.call(lambda c: c.run())
    tried = len(opened)
    with pytest.raises(EngineUnavailable, match="has no leader"):
        es.call(lambda c: c.run())  # both skipped for a while: fails at once, nothing tried
    assert len(opened) == tried
    clock.now += RETRY_AFTER + 0.1
    behaviour.clear()
    assert es.call(lambda c: c.run()) == "tcp://m1:2376"


# --- the sweep of unused secrets and configs -------------------------------------------------


class FakeManager:
    """Just enough of a manager for reconciles of one settled service: which calls are made."""

    def __init__(self, h: str) -> None:
        self.calls: list[str] = []
        self.replicas = 1
        self.h = h
        self.objects = [{"ID": "s-used", "Spec": {"Name": "used"}, "CreatedAt": "2020-01-01T00:00:00Z"},
                        {"ID": "s-old", "Spec": {"Name": "old"}, "CreatedAt": "2020-01-01T00:00:00Z"}]

    def _spec(self) -> dict:
        return {"Name": "dy-i1-acme-shop-web", "Labels": {L_TEMPLATE: self.h, "dockyard.revision": "1"},
                "Mode": {"Replicated": {"Replicas": self.replicas}},
                "TaskTemplate": {"ContainerSpec": {"Secrets": [{"SecretID": "s-used"}]}}}

    def inspect_service(self, name: str) -> dict:
        self.calls.append("inspect_service")
        return {"ID": "svc", "Version": {"Index": 7}, "Spec": self._spec(), "UpdateStatus": {"State": "completed"}}

    def tasks(self, filters: dict) -> list[dict]:
        self.calls.append("tasks")
        return [task(f"t{i}", self.h, "2026-01-01T00:00:01Z", "running", "running", slot=i)
                for i in range(1, self.replicas + 1)]

    def services(self, filters: dict) -> list[dict]:
        self.calls.append("services")
        return [{"ID": "svc", "Spec": self._spec()}]

    def secrets(self, filters: dict) -> list[dict]:
        self.calls.append("secrets")
        return list(self.objects)

    def configs(self, filters: dict) -> list[dict]:
        self.calls.append("configs")
        return []

    def remove_secret(self, sid: str) -> None:
        self.calls.append(f"remove_secret {sid}")
        self.objects = [s for s in self.objects if s["ID"] != sid]

    def networks(self, names: list[str]) -> list[dict]:
        return [{"Name": n} for n in names]

    def _url(self, path: str) -> str:
        return path

    def _post_json(self, url: str, data: dict, params: dict | None, headers: dict) -> str:
        self.calls.append(f"POST {url}")
        self.replicas = data["Mode"]["Replicated"]["Replicas"]
        return url

    def _result(self, res: str, json: bool) -> dict:
        return {}


def test_unused_files_are_swept_once_after_a_change_not_on_every_settled_reconcile() -> None:
    want = desired()
    fake = FakeManager(want.template_hash)
    d = SwarmDriver([Endpoint("tcp://m1:2376")], instance="i1", name="eu")
    d.endpoints = EndpointSet([Endpoint("tcp://m1:2376")], name="eu", opener=lambda ep, t: fake)
    assert d.reconcile_app(want).converged  # the first settle since the driver started sweeps
    assert "remove_secret s-old" in fake.calls and "secrets" in fake.calls
    fake.calls.clear()
    assert d.reconcile_app(want).converged  # nothing written since: two calls
    assert fake.calls == ["inspect_service", "tasks"]
    scaled = desired(replicas=2)
    o = d.reconcile_app(DesiredApp(KEY, scaled.spec, want.template_hash, 4, 9))
    assert o.actions and "POST /services/svc/update" in fake.calls
    fake.calls.clear()
    fake.objects.append({"ID": "s-new", "Spec": {"Name": "new"}, "CreatedAt": "2999-01-01T00:00:00Z"})
    assert d.reconcile_app(DesiredApp(KEY, scaled.spec, want.template_hash, 4, 9)).converged
    assert "secrets" in fake.calls and not any(c.startswith("remove") for c in fake.calls)  # made moments ago
    fake.calls.clear()
    d.reconcile_app(DesiredApp(KEY, scaled.spec, want.template_hash, 4, 9))
    assert "secrets" in fake.calls  # what it kept keeps the project unswept
