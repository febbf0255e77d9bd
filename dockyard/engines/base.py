"""The engine interface, at the level of a workload: the controller hands a driver the desired
App and gets back what is observed. Drivers import only `dockyard.model`."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from dockyard.model.app import AppSpec


class EngineError(Exception):
    """An engine refused or failed an operation; `permanent` errors won't heal by retrying."""

    def __init__(self, message: str, *, permanent: bool = False, reason: str = "EngineError") -> None:
        super().__init__(message)
        self.permanent = permanent
        self.reason = reason


class EngineUnavailable(EngineError):
    """The engine does not answer (stopped, restarting, unreachable)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=False, reason="EngineUnavailable")


@dataclass(frozen=True)
class WorkloadKey:
    tenant: str
    project: str
    app: str

    @property
    def scope(self) -> str:
        return f"{self.tenant}/{self.project}"


@dataclass(frozen=True)
class MountedFile:
    """A Secret or Config given to every replica as a read-only file (secrets on tmpfs)."""

    name: str
    target: str
    data: bytes
    secret: bool


@dataclass
class DesiredApp:
    key: WorkloadKey
    spec: AppSpec
    template_hash: str
    revision: int
    generation: int
    files: list[MountedFile] = field(default_factory=list)
    # set by the controller: stop the rollout where it is (deadline passed) / create nothing yet
    rollout_stalled: bool = False
    hold_reason: str | None = None
    # (username, password) for pulling the image from Dockyard's registry: an ephemeral, project-
    # scoped pull credential the controller mints per reconcile; None for any other image
    pull_auth: tuple[str, str] | None = None
    # the project asks for an encrypted network between nodes (Project spec.network.encrypted)
    network_encrypted: bool = False


@dataclass
class ObservedContainer:
    name: str
    id: str
    slot: int
    template_hash: str
    revision: int | None
    state: str  # created | running | restarting | exited | dead | paused | removing
    health: str | None  # healthy | unhealthy | starting | None (no healthcheck)
    restarts: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    ip: str | None = None
    started_at: str | None = None
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.health in (None, "healthy")

    @property
    def failing(self) -> bool:
        """Unhealthy, or crashed at least once since it was created."""
        if self.health == "unhealthy":
            return True
        if self.state in ("exited", "dead") and (self.exit_code or 0) != 0:
            return True
        return self.state == "restarting" or (self.restarts > 0 and not self.ready)


@dataclass
class ObservedApp:
    containers: list[ObservedContainer] = field(default_factory=list)
    desired: int = 0
    updated: int = 0          # containers of the desired template
    ready: int = 0            # ready containers of any template
    updated_ready: int = 0    # ready containers of the desired template
    old: int = 0              # containers of another template still present
    converged: bool = False   # exactly `desired` ready containers of the desired template, nothing else
    stalled_reason: str | None = None
    message: str = ""
    actions: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


@dataclass
class LogLine:
    container: str
    slot: int
    stream: str
    text: str
    timestamp: str | None = None


@dataclass(frozen=True)
class RunningContainer:
    """A running container of this installation, for the metrics collector: `pid` is its init
    process as the engine's host sees it (0 when the engine cannot tell)."""

    key: WorkloadKey
    slot: int
    name: str
    id: str
    pid: int
    restarts: int


@dataclass(frozen=True)
class EngineContainer:
    """Any container of this installation, running or not, for the log collector."""

    key: WorkloadKey
    slot: int
    name: str
    id: str
    state: str  # created | running | restarting | paused | exited | dead | removing


# one line of a container's log: (timestamp in ns since the epoch, "stdout" | "stderr", text)
TimedLine = tuple[int, str, str]


@dataclass
class EngineEvent:
    key: WorkloadKey | None
    action: str        # die, start, destroy, health_status, oom, network…
    container: str | None = None
    detail: str = ""
    slot: int | None = None
    exit_code: int | None = None   # of a die
    # a die the driver caused itself (a rollout, a scale-down, a removal): not a crash
    expected: bool = False


@dataclass(frozen=True)
class NodeInfo:
    """One machine of the engine: capacity, state, and this installation's running containers on it."""

    name: str
    status: str  # ready | down | unknown
    engine_version: str = ""
    cpus: int = 0
    memory_total: int = 0
    containers: tuple[str, ...] = ()  # container names
    # Swarm nodes (empty for a single engine): manager | worker; active | pause | drain; for managers
    # leader | reachable | unreachable; the node's labels (sorted (key, value) pairs); its address
    role: str = ""
    availability: str = ""
    manager_status: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    address: str = ""
    id: str = ""
    cluster: str = ""  # set by the cluster router: the Cluster the node belongs to ("local": the server's engine)


@dataclass(frozen=True)
class ImageBuild:
    """What `build_image` builds: the context is a directory on the server's host (sent to the
    engine as a tar; `.dockerignore` honoured). The build's containers get `memory` bytes (no swap
    beyond) and `cpu` cores, join `network`, and the engine never pulls a base image."""

    context: str
    dockerfile: str
    tags: tuple[str, ...]
    build_args: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    memory: int = 512 * 1024 * 1024
    cpu: float = 1.0
    network: str | None = None


@dataclass(frozen=True)
class BuildOutput:
    """One line of a build's output; the last item of a successful build carries `image_id`."""

    line: str = ""
    image_id: str | None = None


class ExecStream(ABC):
    """A process started in a container with a terminal: raw bytes both ways. Blocking."""

    container: str  # the container's name

    @abstractmethod
    def read(self) -> bytes:
        """The next output; b"" once the process has ended or the stream was closed."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send input; silently dropped once the process has ended."""

    @abstractmethod
    def resize(self, cols: int, rows: int) -> None: ...

    @abstractmethod
    def exit_code(self) -> int | None:
        """The process's exit code once it has ended (None if the engine cannot tell)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection and end the process if it still runs. Idempotent."""


class EngineDriver(ABC):
    """What the controllers need from an engine."""

    url: str
    instance: str

    @abstractmethod
    def ping(self) -> None: ...

    @abstractmethod
    def ensure_project(self, tenant: str, project: str, *, encrypted: bool = False) -> str:
        """Create the project's network if missing; return its engine name. `encrypted`: encrypt
        traffic between nodes (Swarm overlay); a single engine's bridge never leaves the host."""

    @abstractmethod
    def remove_project(self, tenant: str, project: str) -> None: ...

    @abstractmethod
    def list_projects(self) -> set[tuple[str, str]]:
        """Projects that have engine objects of this installation (networks, containers)."""

    @abstractmethod
    def list_apps(self) -> set[WorkloadKey]:
        """Apps that have containers of this installation on the engine."""

    @abstractmethod
    def observe_app(self, key: WorkloadKey) -> list[ObservedContainer]: ...

    @abstractmethod
    def reconcile_app(self, desired: DesiredApp,
                      on_drain: Callable[[list[ObservedContainer], list[ObservedContainer]], None] | None = None,
                      ) -> ObservedApp:
        """One convergence step: observe, plan, execute; return what is observed afterwards.

        `on_drain(leaving, observed)` is called with the ready containers about to be stopped
        (and all observed ones) before they are stopped."""

    @abstractmethod
    def remove_app(self, key: WorkloadKey) -> int:
        """Remove all containers of an app; return how many were removed."""

    @abstractmethod
    def logs(self, key: WorkloadKey, *, follow: bool = False, tail: int | None = None,
             since: float | None = None, timestamps: bool = False,
             stop: threading.Event | None = None) -> Iterator[LogLine]: ...

    @abstractmethod
    def events(self, stop: threading.Event) -> Iterator[EngineEvent]:
        """Engine events about this installation's objects, until `stop` is set or the engine goes."""

    def exec(self, key: WorkloadKey, *, slot: int | None, command: list[str], cols: int = 80,
             rows: int = 24) -> ExecStream:
        """Start `command` with a terminal in the running container of replica `slot` (None: the
        lowest running slot). EngineError reason "ReplicaNotFound" when there is none."""
        raise EngineError("this engine driver cannot run commands in containers", permanent=True,
                          reason="ExecUnsupported")

    def running_containers(self, refresh: frozenset[str] = frozenset()) -> list[RunningContainer]:
        """Every running container of this installation. Drivers may remember pids and restart counts
        between calls; ids in `refresh` are looked up again (their process changed)."""
        raise EngineError("this engine driver cannot list containers for metrics", permanent=True,
                          reason="MetricsUnsupported")

    def nodes(self) -> list[NodeInfo]:
        """The engine's nodes with their capacity and this installation's running containers."""
        raise EngineError("this engine driver cannot list nodes", permanent=True, reason="NodesUnsupported")

    def update_node(self, node: str, *, availability: str | None = None,
                    labels: dict[str, str | None] | None = None) -> NodeInfo:
        """Set a node's availability (active | pause | drain) and add/replace labels (a None value
        removes the label); `node` is its hostname or id. EngineError reason "NodeNotFound" (permanent)."""
        raise EngineError("this engine has no node operations (it is a single engine, not a cluster)",
                          permanent=True, reason="NodesUnsupported")

    def join_tokens(self) -> dict[str, str]:
        """{"worker": token, "manager": token, "managerAddress": "host:port"} for adding nodes."""
        raise EngineError("this engine has no join tokens (it is a single engine, not a cluster)",
                          permanent=True, reason="NodesUnsupported")

    def containers(self) -> list[EngineContainer]:
        """Every container of this installation, exited ones included, in one call (log collection)."""
        raise EngineError("this engine driver cannot list containers for logs", permanent=True,
                          reason="LogsUnsupported")

    def container_logs(self, container_id: str, *, since_ns: int | None = None, follow: bool = False,
                       stop: threading.Event | None = None, max_line: int = 16 * 1024,
                       pace: float = 0.0) -> Iterator[TimedLine]:
        """One container's log lines from `since_ns` on (the engine includes lines stamped exactly
        `since_ns`), to its end or, with `follow`, until the container stops or `stop` is set (the
        caller sets `stop` when it is done, which also frees the stream). Lines longer than
        `max_line` bytes are cut to `max_line + 1` bytes, so that the caller can tell and mark them.
        `pace`: after catching up, read at most every `pace` seconds (batches; less CPU per line)."""
        raise EngineError("this engine driver cannot read container logs", permanent=True,
                          reason="LogsUnsupported")

    def build_image(self, build: ImageBuild, stop: threading.Event) -> Iterator[BuildOutput]:
        """Build an image and tag it with every tag; yield its output as it comes, the image id
        last. Raises EngineError reason "BuildFailed" (permanent) with the builder's message when a
        step fails. Setting `stop` ends the build (the engine removes its containers)."""
        raise EngineError("this engine driver cannot build images", permanent=True, reason="BuildUnsupported")

    def push_image(self, ref: str, auth: tuple[str, str] | None, stop: threading.Event | None = None) -> str:
        """Push the image `ref` (REGISTRY/REPO:TAG) and return the manifest digest the registry
        reported. EngineError reason "PushFailed" when the registry refuses."""
        raise EngineError("this engine driver cannot push images", permanent=True, reason="PushUnsupported")

    def pull_image(self, image: str, auth: tuple[str, str] | None = None) -> str:
        """Pull `image` (with a registry credential when given) onto the engine and return the
        image id. EngineError reason "ImagePullFailed" (permanent) when the registry refuses it."""
        raise EngineError("this engine driver cannot pull images", permanent=True, reason="PullUnsupported")

    def has_image(self, image: str) -> bool:
        """Whether the engine holds `image` (by reference; nothing is pulled)."""
        raise EngineError("this engine driver cannot look images up", permanent=True, reason="ImagesUnsupported")

    def summary(self) -> dict[WorkloadKey, list[tuple[str, str]]] | None:
        """(container name, state) of every app's containers in one cheap call, for resyncs;
        None when the driver cannot tell (then every app is reconciled)."""
        return None

    def close(self) -> None:  # noqa: B027 — optional for drivers
        pass
