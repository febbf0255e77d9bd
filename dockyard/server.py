"""`dockyard server`: wires the store, the engine, the controllers and the API together."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from dockyard import web
from dockyard.alerts.evaluator import AlertEvaluator, public_url
from dockyard.api.app import create_app
from dockyard.api.deps import ExecError, ExecSession, LogRecord
from dockyard.api.terminal import ExecSessions
from dockyard.builds.runner import BuildRunner
from dockyard.clusters.engines import ClusterEngines
from dockyard.clusters.monitor import ClusterMonitor
from dockyard.clusters.ops import ClusterOperations
from dockyard.controllers.manager import ControllerManager
from dockyard.engines import EngineDriver, EngineError, EngineUnavailable, open_engine
from dockyard.engines.base import WorkloadKey
from dockyard.logs.drains import DrainForwarder
from dockyard.logs.service import open_logs
from dockyard.metrics.collector import Collector, Target
from dockyard.metrics.registry import REGISTRY, CallbackGauge
from dockyard.metrics.service import MetricsService
from dockyard.metrics.tsdb import MetricsStore
from dockyard.registry.service import RegistryService, open_registry
from dockyard.registry.settings import DEFAULT_LISTEN as DEFAULT_REGISTRY_LISTEN
from dockyard.registry.wiring import open_images
from dockyard.store.keyring import KeyRing
from dockyard.store.repository import Store
from dockyard.store.users import create_user, user_count

log = logging.getLogger("dockyard")
# the largest WebSocket message uvicorn takes (its default is 16 MiB), for every client, also one that
# has not authenticated yet; the terminal's input messages carry at most 64 KiB
WS_MAX_SIZE = 256 * 1024
# no per-message compression (uvicorn's default is on): a frame of a few hundred bytes on the wire can
# inflate to 256 KiB in the server, so TCP's backpressure would no longer bound what a client makes
# it hold (measured: a session flooding compressible input lifted RSS from 115 to 300 MB); terminal
# traffic is small anyway
WS_COMPRESSION = False


@dataclass
class ServerConfig:
    listen: str = "127.0.0.1:8080"
    data_dir: Path = Path(".dockyard")
    engine_url: str = "unix:///var/run/docker.sock"
    database_url: str | None = None
    workers: int = 4
    resync: float = 30.0
    registry_listen: str | None = DEFAULT_REGISTRY_LISTEN  # None: no registry of our own
    registry_url: str | None = None                        # an external registry (we are its token service)

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'dockyard.db').resolve()}"


class EngineLogs:
    """The API's LogProvider, backed by the engine driver."""

    def __init__(self, engine: EngineDriver) -> None:
        self.engine = engine

    def app_logs(self, tenant: str, project: str, app: str, *, follow: bool, tail: int | None,
                 since: float | None, timestamps: bool, stop: threading.Event) -> Iterator[LogRecord]:
        try:
            for line in self.engine.logs(WorkloadKey(tenant, project, app), follow=follow, tail=tail, since=since,
                                         timestamps=timestamps, stop=stop):
                yield LogRecord(replica=line.slot, container=line.container, text=line.text, timestamp=line.timestamp)
        except EngineError as e:
            yield LogRecord(replica=-1, container="", text=f"(logs unavailable: {e})")


class EngineExec:
    """The API's ExecProvider, backed by the engine driver: engine errors become ExecErrors."""

    def __init__(self, engine: EngineDriver) -> None:
        self.engine = engine

    def open_exec(self, tenant: str, project: str, app: str, *, replica: int | None, command: list[str],
                  cols: int, rows: int) -> ExecSession:
        try:
            return self.engine.exec(WorkloadKey(tenant, project, app), slot=replica, command=command, cols=cols,
                                    rows=rows)
        except EngineUnavailable as e:
            raise ExecError(503, str(e)) from None
        except EngineError as e:
            status = {"ReplicaNotFound": 404, "ExecUnsupported": 501}.get(e.reason, 502)
            raise ExecError(status, str(e)) from None


class EngineContainers:
    """The metrics collector's ContainerSource, backed by the engine driver."""

    def __init__(self, engine: EngineDriver) -> None:
        self.engine = engine

    def running_containers(self, refresh: frozenset[str] = frozenset()) -> list[Target]:
        return [Target(c.key.tenant, c.key.project, c.key.app, c.slot, c.name, c.id, c.pid, c.restarts)
                for c in self.engine.running_containers(refresh)]


def open_metrics(config: ServerConfig, engine: EngineDriver) -> Collector | None:
    """The collector over <data-dir>/metrics.db; None (and an error in the log) when the file cannot
    be opened: the platform runs on without metrics."""
    try:
        return Collector(MetricsStore(config.data_dir / "metrics.db"), EngineContainers(engine))
    except Exception as e:  # noqa: BLE001 — sqlite3 errors, a full or read-only disk
        log.error("metrics are off: cannot open %s: %s", config.data_dir / "metrics.db", e)
        return None


class Platform:
    def __init__(self, engine: EngineDriver, manager: ControllerManager) -> None:
        self.engine = engine
        self.manager = manager

    def engine_status(self) -> dict:
        return {"url": self.engine.url, "status": "ok" if self.manager.engine_ok.is_set() else "unavailable"}

    def leader(self) -> bool:
        return self.manager.leading.is_set()

    def nodes(self) -> list:
        return self.manager.nodes()


def ensure_admin(store: Store, data_dir: Path) -> None:
    """On first start, create user admin with $DOCKYARD_ADMIN_PASSWORD or a generated password."""
    if user_count(store) > 0:
        return
    password = os.environ.get("DOCKYARD_ADMIN_PASSWORD")
    generated = not password
    if generated:
        password = secrets.token_urlsafe(18)
    create_user(store, "admin", password, is_admin=True)
    if generated:
        # printed once; also kept readable by root only, so that `make up` can show it again
        secret_file = data_dir / "admin-password"
        secret_file.write_text(password + "\n")
        secret_file.chmod(0o600)
        print(f"\n  Created user 'admin' with password: {password}\n  (also in {secret_file}, mode 0600)\n",
              flush=True)
    else:
        print("  Created user 'admin' with the password from $DOCKYARD_ADMIN_PASSWORD", flush=True)


def _server_id(data_dir: Path) -> str:
    """This server's identity for the controller lease, kept in its data dir across restarts."""
    f = data_dir / "server-id"
    if not f.exists():
        f.write_text(f"{socket.gethostname()}-{secrets.token_hex(4)}\n")
    return f.read_text().strip()


def build(config: ServerConfig) -> tuple[object, Store, ControllerManager, EngineDriver]:
    exec_sessions = ExecSessions.from_env()  # first: a bad DOCKYARD_EXEC_MAX* stops the start, naming it
    config.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(config.data_dir, 0o700)
    store = Store(config.store_url)
    store.migrate()
    store.keyring = KeyRing(config.data_dir / "secret-keys.json")
    instance = store.setting("instance", lambda: secrets.token_hex(3))
    ensure_admin(store, config.data_dir)
    # the server's own engine is the cluster "local"; stored Clusters add theirs, routed per project
    engine = ClusterEngines(store, open_engine(config.engine_url, instance=instance), data_dir=config.data_dir)
    server_id = _server_id(config.data_dir)
    manager = ControllerManager(store, engine, workers=config.workers, resync=config.resync, identity=server_id)
    collector = open_metrics(config, engine)
    log_collector = open_logs(config.data_dir, engine, store, manager.leading.is_set)
    REGISTRY.register(CallbackGauge("dockyard_workqueue_depth", "Keys waiting in the controllers' work queue.", (),
                                    lambda: [((), manager.queue.depth())]))
    metrics = MetricsService(collector) if collector else None
    app = create_app(store, logs=EngineLogs(engine), platform=Platform(engine, manager),
                     exec_provider=EngineExec(engine), log_search=log_collector.store if log_collector else None,
                     metrics_provider=metrics, clusters=ClusterOperations(engine, manager.nodes))
    app.state.exec_sessions = exec_sessions
    # cluster health in the Clusters' status and node down/up events, written by the leader
    app.state.cluster_monitor = ClusterMonitor(store, engine, leading=manager.leading.is_set)
    app.state.registry = open_registry(config.data_dir, store, api_listen=config.listen,
                                       listen=config.registry_listen, external_url=config.registry_url)
    # image routes, push events, autoDeploy/digests/preheat in the controllers, retention and GC
    app.state.images, app.state.registry_maintenance = open_images(app.state.registry, store, engine, manager)
    app.state.metrics_collector = collector
    app.state.log_collector = log_collector
    # log drains forward what the collector stores; their cursors live in the same logs.db
    app.state.log_drains = DrainForwarder.over(store, log_collector.store, log_collector.store.path,
                                               manager.leading.is_set) if log_collector else None
    # alerts read this server's metrics; they act only while it leads, like the controllers
    app.state.alerts = AlertEvaluator(store, metrics, leading=manager.leading.is_set,
                                      public_url=public_url(f"http://{config.listen}"))
    # builds run on the lease holder, like the controllers, and push to the server's registry
    app.state.build_data_dir = config.data_dir
    app.state.builds = BuildRunner(store, engine, config.data_dir, leading=manager.leading.is_set,
                                   registry=app.state.registry)
    web.mount(app)
    return app, store, manager, engine


def _exit_after_shutdown(signum: int, frame: object) -> None:
    # uvicorn answers SIGTERM with a graceful shutdown and then raises the signal again; exiting
    # through SystemExit (instead of dying of it) lets run()'s `finally` stop the controllers and
    # flush the metrics heads
    raise SystemExit(128 + signum)


def run(config: ServerConfig) -> None:
    logging.basicConfig(level=os.environ.get("DOCKYARD_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app, store, manager, engine = build(config)
    host, _, port = config.listen.rpartition(":")
    registry: RegistryService | None = app.state.registry
    if registry is not None:
        registry.start()  # first: a taken --registry-listen address stops the start here, saying so
    manager.start()
    app.state.cluster_monitor.start()
    signal.signal(signal.SIGTERM, _exit_after_shutdown)
    collector = app.state.metrics_collector
    if collector is not None:
        collector.start()
    if app.state.log_collector is not None:
        app.state.log_collector.start()
        app.state.log_drains.start()
    app.state.alerts.start()
    if app.state.registry_maintenance is not None:
        app.state.registry_maintenance.start()
    app.state.builds.start()
    log.info("Dockyard listening on http://%s:%s (engine %s, store %s)", host, port, config.engine_url,
             config.store_url.split("@")[-1])
    try:
        uvicorn.run(app, host=host.strip("[]") or "127.0.0.1", port=int(port), log_level="warning",
                    access_log=False, timeout_graceful_shutdown=3, ws_max_size=WS_MAX_SIZE,
                    ws_per_message_deflate=WS_COMPRESSION)
    finally:
        app.state.exec_sessions.shutdown()  # the last sessions' clean-ups end their processes
        app.state.builds.stop()  # running builds end Cancelled, their work directories removed
        if app.state.registry_maintenance is not None:
            app.state.registry_maintenance.stop()
        if registry is not None:  # after its users: a push the builds wait out still reaches it
            registry.stop()  # in-flight registry requests drain (http.draintimeout)
        app.state.alerts.stop()
        if collector is not None:
            collector.stop()  # flushes the heads: a clean stop loses no samples
            collector.store.close()
        if app.state.log_collector is not None:
            app.state.log_drains.stop()
            app.state.log_collector.stop()  # writes every line read: a clean stop loses none
            app.state.log_collector.store.close()
        app.state.cluster_monitor.stop()
        manager.stop()
        engine.close()
        store.close()
