"""ClusterEngines: one EngineDriver over every engine this installation manages.

The server's own engine is the cluster `local`; each stored Cluster adds a driver (Swarm, or another
single engine) opened from its spec and reopened when the spec changes. Every call about one project
goes to the driver of that project's `spec.cluster`; calls about the whole installation (orphans,
resync summaries, metrics, logs) are unions over the engines that answer. A cluster that does not
answer is skipped in those, so a Swarm going down never holds up the local engine's projects: only
`ping()` and the local engine's event stream speak for the installation as a whole.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from dockyard.engines import open_cluster
from dockyard.engines.base import (
    BuildOutput,
    DesiredApp,
    EngineContainer,
    EngineDriver,
    EngineError,
    EngineEvent,
    EngineUnavailable,
    ExecStream,
    ImageBuild,
    LogLine,
    NodeInfo,
    ObservedApp,
    ObservedContainer,
    RunningContainer,
    TimedLine,
    WorkloadKey,
)
from dockyard.engines.endpoints import Endpoint
from dockyard.model.cluster import LOCAL, ClusterError, ClusterHealth
from dockyard.model.project import project_cluster
from dockyard.registry.tokens import write_private
from dockyard.store.errors import NotFound
from dockyard.store.repository import Store

log = logging.getLogger(__name__)

HEALTH_TTL = 2.0        # seconds a cluster's health answer is reused (the API's write check asks often)
COLD_PROBE_WAIT = 5.0   # seconds a caller waits for another's first probe of a cluster (one takes ≤ 3 s)
PROJECT_TTL = 5.0       # seconds a project's cluster is remembered (spec.cluster never changes)
CLUSTER_SCAN = 3.0      # seconds between looks for added or removed clusters in the event stream
BACKOFF_MAX = 5.0


class _End:
    """Put on the event queue when the local engine's stream ends: `error` is why."""

    def __init__(self, error: EngineError | None) -> None:
        self.error = error


class ClusterEngines(EngineDriver):
    def __init__(self, store: Store, local: EngineDriver, *, data_dir: Path,
                 opener: Callable[..., EngineDriver] = open_cluster) -> None:
        self.store = store
        self.local = local
        self.url = local.url
        self.instance = local.instance
        self.data_dir = data_dir
        self._opener = opener
        self._lock = threading.Lock()
        # cluster → ((uid, generation) opened, driver): the spec's version, not the resourceVersion,
        # which every status write of the monitor moves (a reopen forgets which managers are down)
        self._drivers: dict[str, tuple[tuple[str, int], EngineDriver]] = {}
        self._health: dict[str, tuple[float, ClusterHealth]] = {}
        self._probing: dict[str, threading.Event] = {}  # cluster → set when its running probe ends
        self._projects: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._known_nodes: dict[str, list[NodeInfo]] = {}
        self._sweep_tls()

    # --- which engine ---------------------------------------------------------------------

    def cluster_of(self, tenant: str, project: str, *, fresh: bool = False) -> str | None:
        """The project's cluster; None when the project does not exist (any more). `fresh`: read
        now, for calls that make or remove things — a project deleted and made again on another
        cluster under the same name must not have its apps put on the old one for PROJECT_TTL."""
        now = time.monotonic()
        hit = self._projects.get((tenant, project))
        if hit is not None and now - hit[0] < PROJECT_TTL and not fresh:
            return hit[1]
        try:
            obj = self.store.get("Project", tenant, project)
            cluster: str | None = project_cluster(obj.spec)
        except NotFound:
            cluster = None
        self._projects[(tenant, project)] = (now, cluster)
        return cluster

    def clusters(self) -> list[str]:
        """`local` and every stored Cluster's name; the drivers of deleted ones are closed (and their
        TLS files removed) on the way."""
        names = sorted(o.name for o in self.store.list("Cluster")[0])
        with self._lock:
            held = set(self._drivers) - set(names)
        for name in held:
            try:
                self.store.get("Cluster", "", name)  # made since the list was read
            except NotFound:
                self._forget(name)
        return [LOCAL] + names

    def _tls_dir(self, cluster: str) -> Path:
        return self.data_dir / "clusters" / cluster

    def _sweep_tls(self) -> None:
        """Remove the TLS files of clusters no longer stored (deleted while this server was down):
        they hold the client keys in clear."""
        root = self.data_dir / "clusters"
        if not root.is_dir():
            return
        stored = {o.name for o in self.store.list("Cluster")[0]}
        for d in root.iterdir():
            if d.name not in stored:
                shutil.rmtree(d, ignore_errors=True)

    def driver(self, cluster: str) -> EngineDriver:
        """The driver of `cluster`, opened (again) when its spec changed. ClusterError 404 when unknown."""
        if cluster == LOCAL:
            return self.local
        try:
            obj = self.store.get("Cluster", "", cluster)
        except NotFound:
            self._forget(cluster)
            raise ClusterError(404, f"cluster {cluster} does not exist") from None
        with self._lock:
            held = self._drivers.get(cluster)
            if held is not None and held[0] == (obj.uid, obj.generation):
                return held[1]
            endpoints = self._endpoints(cluster, obj.spec)
            drv = self._opener(obj.spec.get("driver", "swarm"), endpoints, instance=self.instance, name=cluster)
            self._drivers[cluster] = ((obj.uid, obj.generation), drv)
            self._health.pop(cluster, None)
        if held is not None:
            held[1].close()
        return drv

    def _forget(self, cluster: str) -> None:
        with self._lock:
            held = self._drivers.pop(cluster, None)
            self._health.pop(cluster, None)
        if held is not None:
            held[1].close()
        shutil.rmtree(self._tls_dir(cluster), ignore_errors=True)  # the client keys, in clear

    def _endpoints(self, cluster: str, spec: dict) -> list[Endpoint]:
        """The spec's endpoints; TLS material goes to files (0600) under <data>/clusters/NAME/."""
        out = []
        written = set()
        for i, ep in enumerate(spec.get("endpoints") or []):
            tls = ep.get("tls")
            paths = None
            if tls:
                d = self._tls_dir(cluster) / str(i)
                written.add(d.name)
                d.mkdir(parents=True, exist_ok=True)
                key = tls.get("keyCiphertext")
                if key is None or self.store.keyring is None:
                    raise ClusterError(503, f"cluster {cluster}: the TLS key of endpoint {ep['url']} cannot be read")
                files = {"ca.pem": tls["ca"].encode(), "cert.pem": tls["cert"].encode(),
                         "key.pem": self.store.keyring.decrypt(key)}
                for fname, data in files.items():
                    write_private(d / fname, data)
                paths = (str(d / "ca.pem"), str(d / "cert.pem"), str(d / "key.pem"))
            out.append(Endpoint(ep["url"], tls=paths))
        if self._tls_dir(cluster).is_dir():
            for old in self._tls_dir(cluster).iterdir():  # endpoints removed from the spec
                if old.name not in written:
                    shutil.rmtree(old, ignore_errors=True)
        return out

    def _for_project(self, tenant: str, project: str, *, fresh: bool = False) -> EngineDriver:
        cluster = self.cluster_of(tenant, project, fresh=fresh)
        if cluster is None or cluster == LOCAL:
            return self.local
        try:
            return self.driver(cluster)
        except ClusterError as e:
            raise EngineError(str(e), permanent=True, reason="ClusterNotFound") from None

    def _opened(self) -> list[tuple[str, EngineDriver]]:
        """(name, driver) of every stored cluster that can be opened now, local first."""
        out: list[tuple[str, EngineDriver]] = [(LOCAL, self.local)]
        for name in self.clusters()[1:]:
            try:
                out.append((name, self.driver(name)))
            except (ClusterError, EngineError) as e:
                log.debug("cluster %s skipped: %s", name, e)
        return out

    def _union(self, call: Callable[[EngineDriver], Any]) -> list[Any]:
        """`call` on every engine; the local engine's errors propagate (as with one engine), another
        cluster's are skipped, whatever they are (an endpoint that is no Docker engine answers 404s):
        it must not stop the local projects' orphan collection or resync."""
        results = []
        for name, drv in self._opened():
            try:
                results.append(call(drv))
            except Exception as e:  # noqa: BLE001 — see above
                if name == LOCAL:
                    raise
                log.log(logging.DEBUG if isinstance(e, EngineError) else logging.WARNING,
                        "cluster %s skipped: %s", name, e)
        return results

    # --- health -----------------------------------------------------------------------------

    def health(self, cluster: str) -> ClusterHealth:
        """Whether `cluster` answers and can apply changes; answers are reused for HEALTH_TTL seconds.
        One caller probes at a time: the others get the last answer meanwhile (or, before the first,
        wait for it), so a cluster that does not answer holds one thread, not one per API write."""
        now = time.monotonic()
        hit = self._health.get(cluster)
        if hit is not None and now - hit[0] < HEALTH_TTL:
            return hit[1]
        with self._lock:
            flight = self._probing.get(cluster)
            if flight is None:
                self._probing[cluster] = threading.Event()
        if flight is not None:
            if hit is None:
                flight.wait(COLD_PROBE_WAIT)
                hit = self._health.get(cluster)
            if hit is not None:
                return hit[1]
            return self._probe(cluster)  # the other probe failed or is stuck: ask ourselves
        try:
            return self._probe(cluster)
        finally:
            with self._lock:
                self._probing.pop(cluster).set()

    def _probe(self, cluster: str) -> ClusterHealth:
        drv = self.driver(cluster)  # ClusterError 404 for an unknown one
        probe = getattr(drv, "health", None)
        if probe is not None:
            try:
                h = probe()
            except Exception as e:  # noqa: BLE001 — e.g. an endpoint that is no Docker engine (404s)
                h = ClusterHealth(cluster, "Unavailable", False, f"{type(e).__name__}: {e}")
        else:
            h = _single_engine_health(cluster, drv)
        self._health[cluster] = (time.monotonic(), h)
        return h

    def cluster_nodes(self, cluster: str) -> list[NodeInfo]:
        """The nodes of one cluster, each marked with it; the last known ones, marked down, while it does
        not answer."""
        drv = self.driver(cluster)
        try:
            nodes = [replace(n, cluster=cluster) for n in drv.nodes()]
        except Exception as e:  # noqa: BLE001 — as in _union: another cluster's failure of any kind
            if isinstance(e, EngineError) and e.reason == "NodesUnsupported":
                return []
            return [replace(n, status="down", containers=()) for n in self._known_nodes.get(cluster, [])]
        self._known_nodes[cluster] = nodes
        return nodes

    # --- EngineDriver: the installation as a whole --------------------------------------------

    def ping(self) -> None:
        self.local.ping()

    def nodes(self) -> list[NodeInfo]:
        """The local engine's nodes (the other clusters' come from cluster_nodes)."""
        return [replace(n, cluster=LOCAL) for n in self.local.nodes()]

    def list_projects(self) -> set[tuple[str, str]]:
        return set().union(*self._union(lambda d: d.list_projects()))

    def list_apps(self) -> set[WorkloadKey]:
        return set().union(*self._union(lambda d: d.list_apps()))

    def summary(self) -> dict[WorkloadKey, list[tuple[str, str]]] | None:
        merged: dict[WorkloadKey, list[tuple[str, str]]] = {}
        for part in self._union(lambda d: d.summary()):
            if part is None:
                return None
            merged.update(part)
        return merged

    def running_containers(self, refresh: frozenset[str] = frozenset()) -> list[RunningContainer]:
        return [c for part in self._union(lambda d: _or_empty(d.running_containers, refresh)) for c in part]

    def containers(self) -> list[EngineContainer]:
        return [c for part in self._union(lambda d: _or_empty(d.containers)) for c in part]

    def container_logs(self, container_id: str, **kwargs: Any) -> Iterator[TimedLine]:
        # container ids come from containers(), which only the local engine answers today
        return self.local.container_logs(container_id, **kwargs)

    def events(self, stop: threading.Event) -> Iterator[EngineEvent]:
        """The local engine's events and every cluster's, merged. Ends (raising) when the local engine's
        stream ends; a cluster's stream that breaks is reopened in the background with a backoff, and
        its apps are reported once it is back, so that they converge on what happened meanwhile."""
        q: queue.Queue[EngineEvent | _End] = queue.Queue()
        inner = threading.Event()
        pumps: dict[str, threading.Event] = {}

        def local_pump() -> None:
            try:
                for ev in self.local.events(inner):
                    q.put(ev)
                q.put(_End(None))
            except EngineError as e:
                q.put(_End(e))

        threading.Thread(target=local_pump, name="events-local", daemon=True).start()
        scanned = 0.0
        try:
            while not stop.is_set():
                if time.monotonic() - scanned > CLUSTER_SCAN:
                    scanned = time.monotonic()
                    self._scan_pumps(pumps, q)
                try:
                    item = q.get(timeout=0.5)
                except queue.Empty:
                    continue
                if isinstance(item, _End):
                    if stop.is_set():
                        return
                    raise item.error or EngineUnavailable("event stream closed")
                yield item
        finally:
            inner.set()
            for gone in pumps.values():
                gone.set()

    def _scan_pumps(self, pumps: dict[str, threading.Event], q: queue.Queue[EngineEvent | _End]) -> None:
        try:
            names = set(self.clusters()[1:])
        except Exception:  # noqa: BLE001 — a store hiccup: look again next time
            return
        for name in list(pumps):
            if name not in names:
                pumps.pop(name).set()
        for name in names - set(pumps):
            gone = threading.Event()
            pumps[name] = gone
            threading.Thread(target=self._cluster_pump, args=(name, gone, q), name=f"events-{name}",
                             daemon=True).start()

    def _cluster_pump(self, name: str, gone: threading.Event, q: queue.Queue[EngineEvent | _End]) -> None:
        """One cluster's events until `gone` is set (the cluster was deleted, or events() ended)."""
        backoff = 0.5
        while not gone.is_set():
            try:
                drv = self.driver(name)
                drv.ping()
                for key in self._apps_on(name):
                    q.put(EngineEvent(key, "resync", detail=f"cluster {name} answers"))
                backoff = 0.5
                for ev in drv.events(gone):
                    q.put(ev)
            except (EngineError, ClusterError) as e:
                log.debug("cluster %s events: %s", name, e)
            gone.wait(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    def _apps_on(self, cluster: str) -> list[WorkloadKey]:
        projects = {(p.scope, p.name) for p in self.store.list("Project")[0]
                    if project_cluster(p.spec) == cluster}
        out = []
        for a in self.store.list("App")[0]:
            tenant, project = a.scope.split("/", 1)
            if (tenant, project) in projects:
                out.append(WorkloadKey(tenant, project, a.name))
        return out

    # --- EngineDriver: one project -----------------------------------------------------------

    def ensure_project(self, tenant: str, project: str, *, encrypted: bool = False) -> str:
        return self._for_project(tenant, project, fresh=True).ensure_project(tenant, project, encrypted=encrypted)

    def remove_project(self, tenant: str, project: str) -> None:
        if self.cluster_of(tenant, project, fresh=True) is not None:
            self._for_project(tenant, project).remove_project(tenant, project)
            return
        # gone from the store: its cluster is unknown now, so remove it wherever it still is
        self._union(lambda d: d.remove_project(tenant, project))

    def observe_app(self, key: WorkloadKey) -> list[ObservedContainer]:
        return self._for_project(key.tenant, key.project).observe_app(key)

    def reconcile_app(self, desired: DesiredApp,
                      on_drain: Callable[[list[ObservedContainer], list[ObservedContainer]], None] | None = None,
                      ) -> ObservedApp:
        return self._for_project(desired.key.tenant, desired.key.project, fresh=True).reconcile_app(
            desired, on_drain=on_drain)

    def remove_app(self, key: WorkloadKey) -> int:
        if self.cluster_of(key.tenant, key.project, fresh=True) is not None:
            return self._for_project(key.tenant, key.project).remove_app(key)
        return sum(self._union(lambda d: d.remove_app(key)))

    def logs(self, key: WorkloadKey, **kwargs: Any) -> Iterator[LogLine]:
        return self._for_project(key.tenant, key.project).logs(key, **kwargs)

    def exec(self, key: WorkloadKey, *, slot: int | None, command: list[str], cols: int = 80,
             rows: int = 24) -> ExecStream:
        return self._for_project(key.tenant, key.project).exec(key, slot=slot, command=command, cols=cols, rows=rows)

    # --- images and builds: the server's own engine -------------------------------------------

    def build_image(self, build: ImageBuild, stop: threading.Event) -> Iterator[BuildOutput]:
        project = build.labels.get("dockyard.build.project", "")
        tenant, _, name = project.partition("/")
        if build.network and name and self.cluster_of(tenant, name) not in (None, LOCAL):
            # the project's network is on another cluster: the build on this engine gets none
            build = replace(build, network="none")
        return self.local.build_image(build, stop)

    def push_image(self, ref: str, auth: tuple[str, str] | None, stop: threading.Event | None = None) -> str:
        return self.local.push_image(ref, auth, stop)

    def pull_image(self, image: str, auth: tuple[str, str] | None = None) -> str:
        return self.local.pull_image(image, auth)

    def has_image(self, image: str) -> bool:
        return self.local.has_image(image)

    def close(self) -> None:
        with self._lock:
            drivers = [d for _, d in self._drivers.values()]
            self._drivers.clear()
        for d in drivers:
            d.close()
        self.local.close()


def _single_engine_health(cluster: str, drv: EngineDriver) -> ClusterHealth:
    try:
        drv.ping()
    except EngineError as e:
        return ClusterHealth(cluster, "Unavailable", False, f"the engine at {drv.url} does not answer: {e}",
                             nodes_total=1)
    return ClusterHealth(cluster, "Ready", True, f"the engine at {drv.url} answers", active_endpoint=drv.url,
                         nodes_total=1, nodes_ready=1)


def _or_empty(call: Callable[..., list], *args: Any) -> list:
    """A driver that cannot list (a Swarm: its containers are on other machines) adds nothing."""
    try:
        return call(*args)
    except EngineError as e:
        if e.permanent:
            return []
        raise

