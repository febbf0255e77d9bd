"""The `swarm` driver: an App is a Docker Swarm service; Swarm keeps its replicas.

Dockyard does not schedule across nodes itself: it writes one service per App (spec from
`swarm_spec`), lets Swarm place, restart, update and roll back tasks, and reads the status back
from the service's tasks. A service is updated only when the App's template hash or replica count
differ from what the service carries, so repeating a reconcile never restarts tasks. When Swarm
rolled an update back by itself, the service's PreviousSpec is the failed template: the driver
reports the rollback and does not apply that template again (it would fail again, in a loop).

Calls go through an EndpointSet (several managers, failover); a swarm without a leader answers
every write with EngineUnavailable quickly instead of hanging.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from docker import errors as docker_errors

from dockyard.engines.base import (
    DesiredApp,
    EngineDriver,
    EngineError,
    EngineEvent,
    EngineUnavailable,
    LogLine,
    NodeInfo,
    ObservedApp,
    ObservedContainer,
    WorkloadKey,
)
from dockyard.engines.common import L_APP, L_INSTANCE, L_PROJECT, L_REVISION, L_TENANT, workload_labels
from dockyard.engines.endpoints import CONNECT_TIMEOUT, READ_TIMEOUT, Endpoint, EndpointSet
from dockyard.engines.logframes import abort_stream, decode_frames
from dockyard.engines.swarm_spec import (
    L_TEMPLATE,
    FileObject,
    check_supported,
    file_object_name,
    network_name,
    service_name,
    service_spec,
    spec_hash,
    spec_replicas,
)
from dockyard.model.cluster import ClusterHealth
from dockyard.model.image import parse_image

log = logging.getLogger(__name__)

L_FILE = "dockyard.file"
# set on a service scaled while Swarm's rollback of a template stands: that template, and why it failed
# (a scale is an update, after which the tasks no longer tell which template was rolled back)
L_ROLLED_BACK = "dockyard.rolled-back-template"
L_ROLLED_BACK_WHY = "dockyard.rolled-back-reason"
PROBE_TIMEOUT = 2.0     # seconds for each health probe call
FILE_GRACE = 60.0       # seconds a new secret/config is kept even when no service uses it yet
EVENT_POLL = 1.0        # seconds between task polls in events()
_CREATED = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
_IN_PROGRESS = {"updating", "rollback_started"}


def _map_state(state: str) -> str:
    if state == "running":
        return "running"
    if state in _CREATED:
        return "created"
    return "exited"  # failed, rejected, shutdown, complete, orphaned, remove


def _key_of(labels: dict) -> WorkloadKey | None:
    if all(k in labels for k in (L_TENANT, L_PROJECT, L_APP)):
        return WorkloadKey(labels[L_TENANT], labels[L_PROJECT], labels[L_APP])
    return None


def _task_labels(task: dict) -> dict:
    return (((task.get("Spec") or {}).get("ContainerSpec") or {}).get("Labels")) or {}


def _task_name(service: str, task: dict) -> str:
    return f"{service}.{task.get('Slot') or 0}.{task['ID'][:12]}"


def _explain(e: docker_errors.APIError) -> str:
    return e.explanation if isinstance(e.explanation, str) else str(e)


def _created_at(obj: dict) -> float:
    raw = str(obj.get("CreatedAt") or "")
    try:
        return datetime.fromisoformat(raw[:26].rstrip("Z") + "+00:00").timestamp()
    except ValueError:
        return 0.0


class SwarmDriver(EngineDriver):
    def __init__(self, endpoints: list[Endpoint], *, instance: str, name: str,
                 timeout: float = READ_TIMEOUT) -> None:
        self.instance = instance
        self.name = name
        self.endpoints = EndpointSet(endpoints, name=name, timeout=timeout)
        self._network_ok: dict[str, float] = {}
        # per project (tenant, project): when this driver last wrote one of its services, and when the
        # last sweep of its secrets and configs that left nothing behind began (time.monotonic()). A
        # settled App sweeps only when the first is later, so a project this driver has not swept
        # since it started (written 0.0, swept -1.0) is swept once, and a settled reconcile costs
        # two engine calls, not five
        self._written: dict[tuple[str, str], float] = {}
        self._swept: dict[tuple[str, str], float] = {}

    @property
    def url(self) -> str:  # type: ignore[override]
        """The manager endpoint calls go to first (the one that answered last)."""
        return self.endpoints.active

    # --- calls ------------------------------------------------------------------------------

    def _call(self, fn: Callable[[Any], Any]) -> Any:
        """`fn(client)` with failover; API refusals become EngineError (NotFound stays itself)."""
        try:
            return self.endpoints.call(fn)
        except docker_errors.NotFound:
            raise
        except docker_errors.APIError as e:
            raise EngineError(f"swarm {self.name}: {_explain(e)}") from None

    def _get(self, path: str, params: dict | None = None, timeout: float | None = None) -> Any:
        """A raw GET (JSON) with its own timeout, for probes that must be quick."""
        def get(c: Any) -> Any:
            kw: dict[str, Any] = {"params": params or {}}
            if timeout is not None:
                kw["timeout"] = (min(CONNECT_TIMEOUT, timeout), timeout)
            return c._result(c._get(c._url(path), **kw), True)
        return self._call(get)

    def _filters(self, **labels: str) -> dict[str, list[str]]:
        return {"label": [f"{L_INSTANCE}={self.instance}"] + [f"dockyard.{k}={v}" for k, v in labels.items()]}

    def ping(self) -> None:
        self._call(lambda c: c.ping())

    # --- projects ---------------------------------------------------------------------------

    def ensure_project(self, tenant: str, project: str, *, encrypted: bool = False) -> str:
        name = network_name(self.instance, tenant, project)
        if time.monotonic() - self._network_ok.get(name, -1e9) < 30:
            return name
        found = [n for n in self._call(lambda c: c.networks(names=[name])) if n.get("Name") == name]
        if not found:
            options = {"encrypted": ""} if encrypted else None
            try:
                self._call(lambda c: c.create_network(name, driver="overlay", attachable=True, check_duplicate=True,
                                                      options=options,
                                                      labels=workload_labels(self.instance, tenant, project)))
            except EngineError as e:
                if "already exists" not in str(e):
                    raise
        self._network_ok[name] = time.monotonic()
        return name

    def remove_project(self, tenant: str, project: str) -> None:
        self._network_ok.pop(network_name(self.instance, tenant, project), None)
        for svc in self._services(tenant=tenant, project=project):
            try:
                self._call(lambda c, i=svc["ID"]: c.remove_service(i))
            except docker_errors.NotFound:
                pass  # removed meanwhile
        for net in self._call(lambda c: c.networks(filters=self._filters(tenant=tenant, project=project))):
            try:
                self._call(lambda c, i=net["Id"]: c.remove_network(i))
            except (docker_errors.NotFound, EngineError) as e:
                log.info("swarm %s: network %s not removed yet: %s", self.name, net.get("Name"), e)
        self._remove_unused_files(tenant, project, grace=0.0)
        self._written.pop((tenant, project), None)
        self._swept.pop((tenant, project), None)

    def list_projects(self) -> set[tuple[str, str]]:
        out = set()
        for net in self._call(lambda c: c.networks(filters=self._filters())):
            lb = net.get("Labels") or {}
            if L_TENANT in lb and L_PROJECT in lb:
                out.add((lb[L_TENANT], lb[L_PROJECT]))
        out.update((k.tenant, k.project) for k in self.list_apps())
        return out

    # --- apps -------------------------------------------------------------------------------

    def _services(self, **labels: str) -> list[dict]:
        return self._call(lambda c: c.services(filters=self._filters(**labels)))

    def list_apps(self) -> set[WorkloadKey]:
        return {k for s in self._services() if (k := _key_of(s["Spec"].get("Labels") or {})) is not None}

    def _inspect_service(self, name: str) -> dict | None:
        try:
            return self._call(lambda c: c.inspect_service(name))
        except docker_errors.NotFound:
            return None

    def _tasks(self, filters: dict) -> list[dict]:
        try:
            return self._call(lambda c: c.tasks(filters=filters))
        except docker_errors.NotFound:
            return []

    def observe_app(self, key: WorkloadKey) -> list[ObservedContainer]:
        return _observe(service_name(self.instance, key), self._tasks({"service": [service_name(self.instance, key)]}))

    def summary(self) -> dict[WorkloadKey, list[tuple[str, str]]]:
        apps = {s["ID"]: (s["Spec"]["Name"], key) for s in self._services()
                if (key := _key_of(s["Spec"].get("Labels") or {})) is not None}
        out: dict[WorkloadKey, list[tuple[str, str]]] = {key: [] for _, key in apps.values()}
        if apps:
            for t in self._tasks({"service": list(apps), "desired-state": ["running"]}):
                if (app := apps.get(t.get("ServiceID", ""))) is not None:
                    out[app[1]].append((_task_name(app[0], t), _map_state((t.get("Status") or {}).get("State", ""))))
        return out

    def reconcile_app(self, desired: DesiredApp,
                      on_drain: Callable[[list[ObservedContainer], list[ObservedContainer]], None] | None = None,
                      ) -> ObservedApp:
        """Create or update the App's service when its template or replica count differ; Swarm
        does the rollout (start-first, automatic rollback). `on_drain` is not called: Swarm stops
        old tasks itself, after their replacements run (start-first)."""
        spec = desired.spec
        key = desired.key
        name = service_name(self.instance, key)
        check_supported(spec)
        result = ObservedApp(desired=spec.replicas)
        current = self._inspect_service(name)
        tasks = self._tasks({"service": [name]}) if current is not None else []
        state = str(((current or {}).get("UpdateStatus") or {}).get("State", ""))
        if current is None:
            if desired.hold_reason is None:
                self._create(desired)
                result.actions.append(f"create service {name} with {spec.replicas} replicas")
        else:
            cur = current["Spec"]
            result.stalled_reason = _rolled_back(current, tasks, desired.template_hash)
            if result.stalled_reason is not None and spec_replicas(cur) != spec.replicas:
                # scaling goes on with the template Swarm rolled back to; the failed one stays unapplied
                self._scale_rolled_back(key, current, spec.replicas, desired.template_hash, result.stalled_reason)
                result.actions.append(f"scale service {name} from {spec_replicas(cur)} to {spec.replicas} "
                                      f"(revision {(cur.get('Labels') or {}).get(L_REVISION, '?')}, rolled back to)")
            elif result.stalled_reason is None and (
                    spec_hash(cur) != desired.template_hash or spec_replicas(cur) != spec.replicas):
                self._update(current, desired)
                if spec_hash(cur) != desired.template_hash:
                    result.actions.append(f"update service {name} to revision {desired.revision}")
                else:
                    result.actions.append(f"scale service {name} from {spec_replicas(cur)} to {spec.replicas}")
            elif state in _IN_PROGRESS:
                result.message = f"swarm update {state}: {(current.get('UpdateStatus') or {}).get('Message', '')}"
            elif result.stalled_reason is None and (
                    self._swept.get((key.tenant, key.project), -1.0) < self._written.get((key.tenant, key.project), 0.0)):
                self._remove_unused_files(key.tenant, key.project)
        if result.actions:
            tasks = self._tasks({"service": [name]})
        _summarise(result, _observe(name, tasks), desired.template_hash, spec.replicas,
                   updating=bool(result.actions) or state in _IN_PROGRESS)
        if desired.rollout_stalled and not result.converged and result.stalled_reason is None:
            # Swarm goes on trying (tasks that find no node stay pending); the App says it is stuck
            pending = next((c.error for c in result.containers if c.error), None)
            result.stalled_reason = "the rollout did not complete within its progress deadline" + (
                f" ({pending})" if pending else "")
        return result

    def _body(self, desired: DesiredApp) -> dict:
        net = self.ensure_project(desired.key.tenant, desired.key.project, encrypted=desired.network_encrypted)
        return service_spec(desired, instance=self.instance, network=net, files=self._ensure_files(desired))

    def _auth_header(self, desired: DesiredApp) -> dict[str, str]:
        if desired.pull_auth is None:
            return {}
        user, password = desired.pull_auth
        domain = parse_image(desired.spec.image).domain or ""
        blob = json.dumps({"username": user, "password": password, "serveraddress": domain}).encode()
        return {"X-Registry-Auth": base64.urlsafe_b64encode(blob).decode()}

    def _write_service(self, key: WorkloadKey, body: dict, current: dict | None = None,
                       headers: dict[str, str] | None = None) -> None:
        """Create the service (`current` None) or update `current` at its version. Afterwards, done
        or not, secrets and configs of the project may be unused (no longer referred to, or made for
        a write that failed): the next of its Apps that settles sweeps them."""
        path, params = ("/services/create", None) if current is None else (
            f"/services/{current['ID']}/update", {"version": current["Version"]["Index"]})
        try:
            self._call(lambda c: c._result(c._post_json(c._url(path), data=body, params=params,
                                                        headers=dict(headers or {})), True))
        finally:
            self._written[(key.tenant, key.project)] = time.monotonic()

    def _create(self, desired: DesiredApp) -> None:
        try:
            self._write_service(desired.key, self._body(desired), headers=self._auth_header(desired))
        except EngineError as e:
            if "already exists" not in str(e) and "name conflicts" not in str(e):
                raise
            # made by an earlier step that did not see the answer: the next step compares and updates

    def _update(self, current: dict, desired: DesiredApp) -> None:
        self._write_service(desired.key, self._body(desired), current, self._auth_header(desired))

    def _scale_rolled_back(self, key: WorkloadKey, current: dict, replicas: int, failed_hash: str, why: str) -> None:
        body = json.loads(json.dumps(current["Spec"]))
        body["Mode"] = {"Replicated": {"Replicas": replicas}}
        body["Labels"] = {**(body.get("Labels") or {}), L_ROLLED_BACK: failed_hash, L_ROLLED_BACK_WHY: why[:2000]}
        self._write_service(key, body, current)

    def remove_app(self, key: WorkloadKey) -> int:
        name = service_name(self.instance, key)
        running = [c for c in self.observe_app(key) if c.state != "exited"]
        try:
            self._call(lambda c: c.remove_service(name))
        except docker_errors.NotFound:
            return 0
        self._remove_unused_files(key.tenant, key.project)
        return max(len(running), 1)

    # --- secrets and configs ----------------------------------------------------------------

    def _ensure_files(self, desired: DesiredApp) -> list[FileObject]:
        """The Swarm secret/config of every file, made when missing (content-addressed names)."""
        if not desired.files:
            return []
        key = desired.key
        flt = self._filters(tenant=key.tenant, project=key.project)
        have = {o["Spec"]["Name"]: o["ID"] for kind in ("secrets", "configs")
                for o in self._call(lambda c, k=kind: getattr(c, k)(filters=flt))}
        out = []
        for f in desired.files:
            name = file_object_name(self.instance, key, f)
            oid = have.get(name)
            if oid is None:
                labels = {**workload_labels(self.instance, key.tenant, key.project), L_FILE: f.name}
                make = (lambda c, n=name, d=f.data, lb=labels: c.create_secret(n, d, labels=lb)) if f.secret else \
                    (lambda c, n=name, d=f.data, lb=labels: c.create_config(n, d, labels=lb))
                try:
                    oid = self._call(make)["ID"]
                except EngineError as e:
                    if "already exists" not in str(e) and "AlreadyExists" not in str(e):
                        raise
                    kind = "secrets" if f.secret else "configs"
                    oid = next(o["ID"] for o in self._call(lambda c, k=kind: getattr(c, k)(filters={"name": [name]}))
                               if o["Spec"]["Name"] == name)
                have[name] = oid
            out.append(FileObject(f, oid, name))
        return out

    def _remove_unused_files(self, tenant: str, project: str, grace: float = FILE_GRACE) -> None:
        """Remove the project's secrets and configs that no service of it refers to (in its spec or
        its previous spec, which a rollback returns to). Ones made less than `grace` seconds ago
        stay: a service about to be created may be about to use them. When nothing stays that is
        unused, the project counts as swept until this driver writes one of its services again."""
        started = time.monotonic()
        complete = True
        flt = self._filters(tenant=tenant, project=project)
        used: set[str] = set()
        for s in self._call(lambda c: c.services(filters=flt)):
            for spec in (s.get("Spec"), s.get("PreviousSpec")):
                cs = ((spec or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
                used.update(r.get("SecretID", "") for r in cs.get("Secrets") or [])
                used.update(r.get("ConfigID", "") for r in cs.get("Configs") or [])
        now = time.time()
        for kind, remove in (("secrets", "remove_secret"), ("configs", "remove_config")):
            for o in self._call(lambda c, k=kind: getattr(c, k)(filters=flt)):
                if o["ID"] in used:
                    continue
                if now - _created_at(o) < grace:
                    complete = False
                    continue
                try:
                    self._call(lambda c, r=remove, i=o["ID"]: getattr(c, r)(i))
                except docker_errors.NotFound:
                    pass
                except EngineError as e:
                    complete = False
                    log.debug("swarm %s: %s %s kept: %s", self.name, kind, o["Spec"]["Name"], e)
        if complete:
            self._swept[(tenant, project)] = started

    # --- logs and events --------------------------------------------------------------------

    def logs(self, key: WorkloadKey, *, follow: bool = False, tail: int | None = None,
             since: float | None = None, timestamps: bool = False,
             stop: threading.Event | None = None) -> Iterator[LogLine]:
        name = service_name(self.instance, key)
        slots = {t["ID"]: (t.get("Slot") or 0) for t in self._tasks({"service": [name]})}
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "timestamps": 1, "details": 1, "follow": int(follow),
                                  "tail": "all" if tail is None else str(tail)}
        if since is not None:
            params["since"] = str(int(since))
        try:
            res = self._call(lambda c: _checked(c, c._get(c._url("/services/{0}/logs", name), params=params,
                                                          stream=True, timeout=(CONNECT_TIMEOUT, None))))
        except docker_errors.NotFound:
            return
        done = threading.Event()
        if stop is not None:
            threading.Thread(target=lambda: (_wait_either(stop, done), abort_stream(res)), daemon=True,
                             name="swarm-logs-closer").start()
        try:
            for ts, stream, text in decode_frames(res.iter_content(chunk_size=None, decode_unicode=False)):
                details, _, message = text.partition(" ")
                task = next((p.split("=", 1)[1] for p in details.split(",") if p.startswith("com.docker.swarm.task.id=")),
                            "")
                slot = slots.get(task, 0)
                stamp = datetime.fromtimestamp(ts / 1e9, UTC).isoformat().replace("+00:00", "Z") if timestamps else None
                yield LogLine(container=_task_name(name, {"ID": task, "Slot": slot}), slot=slot, stream=stream,
                              text=message, timestamp=stamp)
        except Exception as e:  # noqa: BLE001 — the stream was aborted by `stop`, or the manager went
            if stop is None or not stop.is_set():
                raise EngineUnavailable(f"log stream of service {name} ended: {type(e).__name__}") from None
        finally:
            done.set()
            res.close()

    def events(self, stop: threading.Event) -> Iterator[EngineEvent]:
        """Polls tasks and nodes every EVENT_POLL seconds: one event per task whose state changed
        (a task that failed is a "die" with its exit code), and per node that went up or down."""
        seen_tasks: dict[str, str] | None = None
        seen_nodes: dict[str, str] | None = None
        while not stop.is_set():
            services = {s["ID"]: s for s in self._services()}
            tasks = self._tasks({"service": list(services)}) if services else []
            nodes = {n["ID"]: (n.get("Description") or {}).get("Hostname", n["ID"]) + " " +
                     (n.get("Status") or {}).get("State", "unknown") for n in self._call(lambda c: c.nodes())}
            now_tasks = {t["ID"]: (t.get("Status") or {}).get("State", "") for t in tasks}
            if seen_tasks is not None:
                for t in tasks:
                    state = now_tasks[t["ID"]]
                    if seen_tasks.get(t["ID"]) == state:
                        continue
                    yield _task_event(services.get(t.get("ServiceID", "")), t, state)
            if seen_nodes is not None:
                for nid, what in nodes.items():
                    if seen_nodes.get(nid) != what:
                        yield EngineEvent(key=None, action="node", detail=f"node {what}")
            seen_tasks, seen_nodes = now_tasks, nodes
            stop.wait(EVENT_POLL)

    # --- nodes ------------------------------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        raw = self._call(lambda c: c.nodes())
        services = {s["ID"]: s["Spec"]["Name"] for s in self._services()}
        on: dict[str, list[str]] = {}
        if services:
            for t in self._tasks({"service": list(services), "desired-state": ["running"]}):
                if (t.get("Status") or {}).get("State") == "running" and t.get("ServiceID") in services:
                    on.setdefault(t.get("NodeID", ""), []).append(_task_name(services[t["ServiceID"]], t))
        return [_node_info(n, tuple(sorted(on.get(n["ID"], [])))) for n in raw]

    def _find_node(self, node: str) -> dict:
        for n in self._call(lambda c: c.nodes()):
            if node in (n["ID"], (n.get("Description") or {}).get("Hostname")):
                return n
        raise EngineError(f"swarm {self.name} has no node {node}", permanent=True, reason="NodeNotFound")

    def update_node(self, node: str, *, availability: str | None = None,
                    labels: dict[str, str | None] | None = None) -> NodeInfo:
        if availability is not None and availability not in ("active", "pause", "drain"):
            raise EngineError(f"availability must be active, pause or drain, not {availability!r}", permanent=True)
        for attempt in range(3):
            n = self._find_node(node)
            spec = dict(n["Spec"])
            if availability is not None:
                spec["Availability"] = availability
            if labels:
                merged = dict(spec.get("Labels") or {})
                for k, v in labels.items():
                    if v is None:
                        merged.pop(k, None)
                    else:
                        merged[k] = v
                spec["Labels"] = merged
            try:
                self._call(lambda c, i=n["ID"], v=n["Version"]["Index"], s=spec: c.update_node(i, v, s))
                break
            except EngineError as e:
                if "out of sequence" not in str(e) or attempt == 2:
                    raise  # another writer changed the node meanwhile: read it again and retry
        return next(i for i in self.nodes() if i.id == n["ID"])

    def join_tokens(self) -> dict[str, str]:
        tokens = self._call(lambda c: c.inspect_swarm()).get("JoinTokens") or {}
        leader = next((n for n in self._call(lambda c: c.nodes())
                       if (n.get("ManagerStatus") or {}).get("Leader")), None)
        address = ((leader or {}).get("ManagerStatus") or {}).get("Addr", "")
        return {"worker": tokens.get("Worker", ""), "manager": tokens.get("Manager", ""), "managerAddress": address}

    # --- health -----------------------------------------------------------------------------

    def health(self) -> ClusterHealth:
        """Whether the cluster answers and has a leader, with manager and node counts; every call
        has a PROBE_TIMEOUT budget."""
        try:
            info = self._get("/info", timeout=PROBE_TIMEOUT)
        except EngineError as e:
            return self._leaderless_health(e)  # a follower holds /info too while the managers elect a leader
        sw = info.get("Swarm") or {}
        active = self.endpoints.active
        if sw.get("LocalNodeState") != "active":
            return ClusterHealth(self.name, "Unavailable", False,
                                 f"{active} is not part of an active swarm ({sw.get('LocalNodeState') or 'inactive'})",
                                 active_endpoint=active)
        try:
            raw = self._get("/nodes", timeout=PROBE_TIMEOUT)
        except EngineError as e:
            return self._leaderless_health(e)
        managers = [n for n in raw if n.get("ManagerStatus")]
        reachable = sum(1 for n in managers if n["ManagerStatus"].get("Reachability") == "reachable")
        states = tuple((i.name, i.status) for i in (_node_info(n, ()) for n in raw))
        ready = sum(1 for _, state in states if state == "ready")
        counts = {"active_endpoint": self.endpoints.active, "managers_total": len(managers),
                  "managers_reachable": reachable, "nodes_total": len(raw), "nodes_ready": ready, "node_states": states}
        if reachable * 2 <= len(managers) or not any(n["ManagerStatus"].get("Leader") for n in managers):
            # what the manager still remembers, moments before it notices it lost its quorum
            return ClusterHealth(self.name, "Unavailable", False,
                                 f"the swarm has no leader: {len(managers) - reachable} of {len(managers)} managers "
                                 "are unreachable", **counts)
        phase = "Ready" if reachable == len(managers) and ready == len(raw) else "Degraded"
        return ClusterHealth(self.name, phase, True,
                             f"{reachable}/{len(managers)} managers reachable, {ready}/{len(raw)} nodes ready", **counts)

    def _leaderless_health(self, error: EngineError) -> ClusterHealth:
        """No manager served a swarm call (`error`): none answers at all, or the swarm has no leader.
        While a majority of the manager endpoints answer a ping, that is an election (a leader died):
        changes are accepted and applied once it is over, in seconds. Otherwise the quorum is lost and
        nothing can be applied."""
        eps = self.endpoints.endpoints
        with ThreadPoolExecutor(max_workers=len(eps)) as pool:
            alive = sum(pool.map(self.endpoints.alive, range(len(eps))))
        counts = {"active_endpoint": self.endpoints.active, "managers_total": len(eps), "managers_reachable": alive}
        if not alive:
            return ClusterHealth(self.name, "Unavailable", False, str(error), **counts)
        if alive * 2 > len(eps):
            return ClusterHealth(self.name, "Degraded", True,
                                 f"the swarm is electing a leader ({alive} of {len(eps)} manager endpoints answer): "
                                 "changes are applied once it has one", **counts)
        return ClusterHealth(self.name, "Unavailable", False,
                             f"the swarm has no leader: {alive} of {len(eps)} manager endpoints answer and a majority "
                             f"({len(eps) // 2 + 1}) must be up; start a manager again (or, if the others are lost "
                             "for good, run `docker swarm init --force-new-cluster` on a survivor)", **counts)

    def close(self) -> None:
        self.endpoints.close()


def _checked(c: Any, res: Any) -> Any:
    c._raise_for_status(res)
    return res


def _wait_either(a: threading.Event, b: threading.Event) -> None:
    while not a.wait(0.5):
        if b.is_set():
            return


def _observe(service: str, tasks: list[dict]) -> list[ObservedContainer]:
    """One ObservedContainer per task Swarm wants running; a slot's earlier failed tasks of the
    same template count as its restarts, the last one's error explains them."""
    failed: dict[tuple[int, str], list[dict]] = {}
    for t in tasks:
        st = t.get("Status") or {}
        if t.get("DesiredState") != "running" and st.get("State") in ("failed", "rejected"):
            failed.setdefault((t.get("Slot") or 0, _task_labels(t).get(L_TEMPLATE, "")), []).append(t)
    out = []
    for t in tasks:
        if t.get("DesiredState") != "running":
            continue
        st = t.get("Status") or {}
        lb = _task_labels(t)
        slot = t.get("Slot") or 0
        h = lb.get(L_TEMPLATE, "")
        earlier = sorted(failed.get((slot, h), []), key=lambda x: x.get("UpdatedAt", ""))
        state = _map_state(st.get("State", ""))
        code = (st.get("ContainerStatus") or {}).get("ExitCode")
        error = st.get("Err") or (earlier[-1].get("Status", {}).get("Err") if earlier else None) or (
            st.get("Message") if state == "created" and st.get("State") == "pending" else None)
        ip = next((a.split("/")[0] for att in t.get("NetworksAttachments") or []
                   for a in att.get("Addresses") or [] if (att.get("Network") or {}).get("Spec", {}).get("Name")
                   != "ingress"), None)
        out.append(ObservedContainer(
            name=_task_name(service, t), id=t["ID"], slot=slot, template_hash=h,
            revision=int(lb[L_REVISION]) if str(lb.get(L_REVISION, "")).isdigit() else None,
            state=state, health=None, restarts=len(earlier),
            exit_code=code if state == "exited" else None, ip=ip,
            started_at=st.get("Timestamp") if state == "running" else None, error=error or None))
    return out


def _rolled_back(service: dict, tasks: list[dict], desired_hash: str) -> str | None:
    """Why the service runs another template than `desired_hash` because Swarm rolled the update
    to `desired_hash` back (None if it did not). After a rollback the spec is the old one again
    and PreviousSpec is gone; the tasks tell which template was rolled out last: the newest task
    of a template other than the running one. A template asked for after the rollback has no
    tasks yet, so it is applied."""
    upd = service.get("UpdateStatus") or {}
    running = spec_hash(service["Spec"])
    labels = service["Spec"].get("Labels") or {}
    if labels.get(L_ROLLED_BACK) == desired_hash and running != desired_hash:
        return labels.get(L_ROLLED_BACK_WHY) or "rolled back automatically"
    if not str(upd.get("State", "")).startswith("rollback") or running == desired_hash:
        return None
    others = [t for t in tasks if _task_labels(t).get(L_TEMPLATE, "") != running]
    if not others or _task_labels(max(others, key=lambda t: t.get("CreatedAt", ""))).get(L_TEMPLATE) != desired_hash:
        return None
    errors = [t for t in sorted(others, key=lambda t: t.get("UpdatedAt", ""), reverse=True)
              if (t.get("Status") or {}).get("Err") and _task_labels(t).get(L_TEMPLATE) == desired_hash]
    why = upd.get("Message") or "a new task failed"
    if errors:
        why = f"{why}: {errors[0]['Status']['Err']}"
    revision = (service["Spec"].get("Labels") or {}).get(L_REVISION, "?")
    return f"rolled back automatically: {why}; running revision {revision}"


def _summarise(result: ObservedApp, containers: list[ObservedContainer], template_hash: str, replicas: int,
               *, updating: bool) -> None:
    new = [c for c in containers if c.template_hash == template_hash]
    result.containers = sorted(containers, key=lambda c: (c.template_hash != template_hash, c.slot))
    result.updated = len(new)
    result.updated_ready = sum(1 for c in new if c.ready)
    result.ready = sum(1 for c in containers if c.ready)
    result.old = len(containers) - len(new)
    result.converged = (not updating and result.stalled_reason is None and result.updated_ready == replicas
                        and len(containers) == replicas)
    if not result.message:
        result.message = f"{result.updated_ready}/{replicas} tasks running"


def _task_event(service: dict | None, t: dict, state: str) -> EngineEvent:
    labels = (service or {}).get("Spec", {}).get("Labels") or {}
    key = _key_of(labels)
    name = _task_name((service or {}).get("Spec", {}).get("Name", "?"), t)
    slot = t.get("Slot")
    if state in ("failed", "rejected"):
        code = ((t.get("Status") or {}).get("ContainerStatus") or {}).get("ExitCode")
        return EngineEvent(key=key, action="die", container=name, detail=f"task {state}", slot=slot,
                           exit_code=code if code is not None else -1)
    # a shutdown or complete task was stopped by Swarm (an update, a scale-down, a drain): no crash
    return EngineEvent(key=key, action="task", container=name, detail=f"task {state}", slot=slot,
                       expected=state in ("shutdown", "complete"))


def _node_info(n: dict, containers: tuple[str, ...]) -> NodeInfo:
    desc = n.get("Description") or {}
    res = desc.get("Resources") or {}
    spec = n.get("Spec") or {}
    ms = n.get("ManagerStatus") or {}
    state = (n.get("Status") or {}).get("State", "unknown")
    return NodeInfo(
        name=desc.get("Hostname", n["ID"]), status=state if state in ("ready", "down") else
        ("down" if state == "disconnected" else "unknown"),
        engine_version=(desc.get("Engine") or {}).get("EngineVersion", ""),
        cpus=int((res.get("NanoCPUs") or 0) / 1e9), memory_total=int(res.get("MemoryBytes") or 0),
        containers=containers, role=spec.get("Role", ""), availability=spec.get("Availability", ""),
        manager_status=("leader" if ms.get("Leader") else ms.get("Reachability", "")) if ms else "",
        labels=tuple(sorted((spec.get("Labels") or {}).items())), address=(n.get("Status") or {}).get("Addr", ""),
        id=n["ID"])
