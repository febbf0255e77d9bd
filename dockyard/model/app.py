"""App: a replicated workload — the unit that users deploy, scale and roll out."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from dockyard.model.image import parse_image
from dockyard.model.meta import API_VERSION, Condition, DnsLabel, Metadata, Schema
from dockyard.model.quantity import parse_cpu, parse_duration, parse_memory

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
RUNTIME_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def _check_image(v: str) -> str:
    ref = parse_image(v)
    if ref.domain is None and ref.path == "sha256":
        # the engine reads `sha256:HEX` as an image ID (or a prefix of one), whoever's image it is
        raise ValueError(f"'{v}' names an image by its ID: name it by repository and tag or digest")
    return v


def _check_memory(v: str | int) -> str | int:
    n = parse_memory(v)
    if n and n < 6 * 1024 * 1024:
        raise ValueError("must be at least 6Mi: the engine refuses smaller memory limits")
    return v


def _check_cpu(v: str | int | float) -> str | int | float:
    if parse_cpu(v) <= 0:
        raise ValueError("must be more than 0")
    return v


def _check_duration(v: str | int | float) -> str | int | float:
    parse_duration(v)
    return v


def _check_timestamp(v: str) -> str:
    try:
        datetime.fromisoformat(v)
    except ValueError:
        raise ValueError(f"'{v}' is not an ISO 8601 date and time (example: 2024-05-01T12:00:00Z)") from None
    return v


Memory = Annotated[str | int, AfterValidator(_check_memory)]
Cpu = Annotated[str | int | float, AfterValidator(_check_cpu)]
Duration = Annotated[str | int | float, AfterValidator(_check_duration)]
Port = Annotated[int, Field(ge=1, le=65535)]


class EnvVar(Schema):
    name: str
    value: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not ENV_NAME.match(v):
            raise ValueError(f"'{v}' is not a valid environment variable name")
        return v


def _env_from_mapping(v: object) -> object:
    # users write env as a mapping more often than as a list; both are accepted
    if isinstance(v, dict):
        return [{"name": k, "value": "" if val is None else str(val)} for k, val in v.items()]
    return v


class PortSpec(Schema):
    container_port: Port
    protocol: Literal["tcp", "udp"] = "tcp"
    name: DnsLabel | None = None


class ResourceAmounts(Schema):
    cpu: Cpu | None = None
    memory: Memory | None = None


class Resources(Schema):
    """`{cpu, memory}` is shorthand for limits; `requests` and `limits` may be given apart."""

    cpu: Cpu | None = None
    memory: Memory | None = None
    pids: int | None = Field(default=None, ge=16, le=1_000_000, description="process limit")
    requests: ResourceAmounts | None = None
    limits: ResourceAmounts | None = None

    def limit_cpu(self) -> float | None:
        v = (self.limits.cpu if self.limits and self.limits.cpu is not None else self.cpu)
        return parse_cpu(v) if v is not None else None

    def limit_memory(self) -> int | None:
        v = (self.limits.memory if self.limits and self.limits.memory is not None else self.memory)
        return parse_memory(v) if v is not None else None

    def request_cpu(self) -> float | None:
        if self.requests and self.requests.cpu is not None:
            return parse_cpu(self.requests.cpu)
        return self.limit_cpu()

    def request_memory(self) -> int | None:
        if self.requests and self.requests.memory is not None:
            return parse_memory(self.requests.memory)
        return self.limit_memory()

    @model_validator(mode="after")
    def _requests_within_limits(self) -> Resources:
        for what, req, lim in (("cpu", self.request_cpu(), self.limit_cpu()),
                               ("memory", self.request_memory(), self.limit_memory())):
            if req is not None and lim is not None and req > lim:
                raise ValueError(f"requests.{what} must not exceed the {what} limit")
        return self


class ExecCheck(Schema):
    command: list[str] = Field(min_length=1)


class HttpCheck(Schema):
    path: str = "/"
    port: Port

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/") or any(c in v for c in " '\"\\`$;&|<>\n"):
            raise ValueError("must be an absolute URL path without spaces, quotes or shell characters")
        return v


class TcpCheck(Schema):
    port: Port


class FileRef(Schema):
    """A Secret or Config of the project, mounted as a file (secrets: /run/secrets/NAME on tmpfs)."""

    name: DnsLabel
    target: str | None = Field(default=None, description="file path in the container")

    @field_validator("target")
    @classmethod
    def _abs(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("/") or ".." in v.split("/")):
            raise ValueError("must be an absolute path without '..'")
        return v


class Healthcheck(Schema):
    exec: ExecCheck | None = None
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    interval: Duration = "10s"
    timeout: Duration = "5s"
    retries: int = Field(default=3, ge=1, le=100)
    start_period: Duration = "0s"

    @model_validator(mode="after")
    def _one_kind(self) -> Healthcheck:
        kinds = [k for k in ("exec", "http", "tcp") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of exec, http or tcp")
        if parse_duration(self.interval) < 1:
            raise ValueError("interval must be at least 1s")
        return self


class VolumeMount(Schema):
    name: DnsLabel
    mount_path: str
    read_only: bool = False
    host_path: str | None = Field(default=None, description="bind a host path (privileged projects only)")

    @field_validator("mount_path")
    @classmethod
    def _abs(cls, v: str) -> str:
        if not v.startswith("/") or v == "/":
            raise ValueError("must be an absolute path other than /")
        return v


CAPABILITY = re.compile(r"^(CAP_)?[A-Z_]{2,32}$")


class Capabilities(Schema):
    add: list[str] = Field(default_factory=list)
    drop: list[str] = Field(default_factory=list)

    @field_validator("add", "drop")
    @classmethod
    def _caps(cls, v: list[str]) -> list[str]:
        out = []
        for c in v:
            if not CAPABILITY.match(c):
                raise ValueError(f"'{c}' is not a capability name (examples: NET_BIND_SERVICE, ALL)")
            out.append(c.removeprefix("CAP_"))
        return out


class SecurityContext(Schema):
    """What the container may do on the host. The project's security policy decides what is allowed."""

    privileged: bool = False
    host_network: bool = False
    host_pid: bool = False
    host_ipc: bool = False
    host_uts: bool = False
    capabilities: Capabilities = Field(default_factory=Capabilities)
    seccomp_profile: Literal["default", "unconfined"] = "default"
    apparmor_profile: str = Field(default="default", max_length=100)
    sysctls: dict[str, str] = Field(default_factory=dict)
    devices: list[str] = Field(default_factory=list)
    read_only_root_filesystem: bool = False
    run_as_non_root: bool = False


# Swarm placement constraints Dockyard accepts: node attributes and node/engine labels, == or !=
CONSTRAINT = re.compile(r"^(node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[A-Za-z0-9_.-]+)"
                        r"|engine\.labels\.[A-Za-z0-9_.-]+)\s*(==|!=)\s*[A-Za-z0-9_.:-]+$")
SPREAD = re.compile(r"^node\.labels\.[A-Za-z0-9_.-]+$")


def _check_constraint(v: str) -> str:
    if not CONSTRAINT.match(v):
        raise ValueError(f"'{v}' is not a placement constraint: write ATTRIBUTE==VALUE or ATTRIBUTE!=VALUE with "
                         "node.id, node.hostname, node.role, node.platform.os, node.platform.arch, node.labels.KEY "
                         "or engine.labels.KEY (e.g. node.labels.zone==a)")
    return v


def _check_spread(v: str) -> str:
    if not SPREAD.match(v):
        raise ValueError(f"'{v}' is not a spread preference: write node.labels.KEY (e.g. node.labels.zone)")
    return v


class Placement(Schema):
    """Where a cluster may run the replicas. A single engine has one node and ignores it, so the same
    manifest runs on both."""

    constraints: list[Annotated[str, AfterValidator(_check_constraint)]] = Field(default_factory=list, max_length=20)
    spread: list[Annotated[str, AfterValidator(_check_spread)]] = Field(
        default_factory=list, max_length=5, description="spread replicas evenly over the values of these node labels")
    max_replicas_per_node: int | None = Field(default=None, ge=1, le=1000)

    def is_empty(self) -> bool:
        return not self.constraints and not self.spread and self.max_replicas_per_node is None


IntOrPercent = Annotated[int | str, Field()]


class Strategy(Schema):
    type: Literal["RollingUpdate", "Recreate"] = "RollingUpdate"
    max_surge: IntOrPercent = 1
    max_unavailable: IntOrPercent = 0
    progress_deadline_seconds: int = Field(default=120, ge=5, le=3600)

    @field_validator("max_surge", "max_unavailable")
    @classmethod
    def _int_or_percent(cls, v: int | str) -> int | str:
        if isinstance(v, int):
            if v < 0:
                raise ValueError("must not be negative")
            return v
        if not re.match(r"^\d{1,3}%$", v) or int(v[:-1]) > 100:
            raise ValueError("must be a non-negative integer or a percentage such as 25%")
        return v

    def resolve(self, replicas: int) -> tuple[int, int]:
        """maxSurge and maxUnavailable as counts; surge rounds up, unavailable down (as Kubernetes)."""
        def count(v: int | str, up: bool) -> int:
            if isinstance(v, int):
                return v
            p = int(v[:-1]) * replicas
            return -(-p // 100) if up else p // 100
        surge, unavailable = count(self.max_surge, True), count(self.max_unavailable, False)
        if surge == 0 and unavailable == 0:
            unavailable = 1 if replicas > 0 else 0
        return surge, unavailable

    @model_validator(mode="after")
    def _not_both_zero(self) -> Strategy:
        if self.type == "RollingUpdate" and self.max_surge in (0, "0%") and self.max_unavailable in (0, "0%"):
            raise ValueError("maxSurge and maxUnavailable cannot both be 0: the rollout could never progress")
        return self


class AppSpec(Schema):
    image: Annotated[str, AfterValidator(_check_image)]
    command: list[str] | None = None
    args: list[str] | None = None
    env: Annotated[list[EnvVar], BeforeValidator(_env_from_mapping)] = Field(default_factory=list)
    ports: list[PortSpec] = Field(default_factory=list)
    replicas: int = Field(default=1, ge=0, le=1000)
    resources: Resources = Field(default_factory=Resources)
    healthcheck: Healthcheck | None = None
    restart_policy: Literal["always", "on-failure", "never"] = "always"
    volumes: list[VolumeMount] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    runtime: str = "runc"
    user: str | None = None
    working_dir: str | None = None
    depends_on: list[DnsLabel] = Field(default_factory=list)
    strategy: Strategy = Field(default_factory=Strategy)
    security_context: SecurityContext = Field(default_factory=SecurityContext)
    # part of the template: a change rolls out. None when empty, so Apps that never set it keep their hash
    placement: Placement | None = None
    secrets: list[FileRef] = Field(default_factory=list)
    configs: list[FileRef] = Field(default_factory=list)
    # part of the template: setting it (POST .../restart) changes the template hash, so every
    # replica is replaced by a rolling update, as `kubectl rollout restart` does
    restarted_at: Annotated[str, Field(max_length=40), AfterValidator(_check_timestamp)] | None = Field(
        default=None, description="when a restart was asked for (ISO 8601); changing it replaces every replica")
    # for an image in Dockyard's registry: the digest its tag pointed to when this template was
    # deployed. The controller fills it in; replicas run `image@imageDigest`, and a revision records
    # it, so history and rollback are exact (docs/architecture.md "Images, events, retention, GC")
    image_digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")] | None = Field(
        default=None, description="the image's digest (set by Dockyard for images in its registry)")
    auto_deploy: bool = Field(default=False, description="roll out a new digest when the image's tag is pushed "
                                                         "to Dockyard's registry")

    @field_validator("runtime")
    @classmethod
    def _runtime(cls, v: str) -> str:
        if not RUNTIME_NAME.match(v):
            raise ValueError(f"'{v}' is not a runtime name (examples: runc, crun)")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if k.startswith("dockyard.") or k.startswith("com.docker."):
                raise ValueError(f"label '{k}' is reserved: keys starting with dockyard. or com.docker. are set by the platform")
        return v

    @field_validator("placement")
    @classmethod
    def _placement(cls, v: Placement | None) -> Placement | None:
        return None if v is None or v.is_empty() else v

    @field_validator("env")
    @classmethod
    def _unique_env(cls, v: list[EnvVar]) -> list[EnvVar]:
        seen = set()
        for e in v:
            if e.name in seen:
                raise ValueError(f"variable '{e.name}' is given twice")
            seen.add(e.name)
        return v

    @field_validator("volumes")
    @classmethod
    def _unique_mounts(cls, v: list[VolumeMount]) -> list[VolumeMount]:
        paths = [m.mount_path for m in v]
        dup = {p for p in paths if paths.count(p) > 1}
        if dup:
            raise ValueError(f"mount path {sorted(dup)[0]} is used twice")
        return v


# Fields that do not change what runs in a container: changing them never recreates one.
NON_TEMPLATE_FIELDS = ("replicas", "strategy", "depends_on", "auto_deploy")


def template_of(spec: AppSpec) -> dict:
    """The part of an App's spec that defines its containers (what a revision records)."""
    data = spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    for f in NON_TEMPLATE_FIELDS:
        data.pop(_camel(f), None)
    return data


def without_restart(template: dict) -> dict:
    """A template without its restart marker: what the containers are configured to be. Rollbacks
    compare and restore this, so that a restart is never mistaken for (or undone as) a change."""
    return {k: v for k, v in template.items() if k != "restartedAt"}


def run_image(spec: AppSpec) -> str:
    """The reference replicas are created from: `image@imageDigest` once a digest is known (a
    reference that already names a digest is used as it is). A bare name gets its implied
    `:latest` spelled out: the engine looks a bare name it does not have up as a prefix of image
    IDs, and `image: 3bfc76` would run whichever image on the shared engine has that ID."""
    if spec.image_digest and "@" not in spec.image:
        return f"{spec.image}@{spec.image_digest}"
    ref = parse_image(spec.image)
    if ref.tag is None and ref.digest is None:
        return f"{spec.image}:latest"
    return spec.image


def keep_image_digest(current: dict, new: dict) -> dict:
    """A write that leaves the template as it was (an `apply` of the same manifest, which does not
    carry the digest Dockyard filled in) keeps the digest, so nothing rolls; a write that changes
    the template without giving a digest drops it, and the controller resolves the tag again. A
    write that changes the image but carries the current digest along (a merge patch of
    `spec.image` keeps every field it does not name) drops it too: it is the old image's digest."""
    if new.get("image") != current.get("image") and new.get("imageDigest") == current.get("imageDigest"):
        return {k: v for k, v in new.items() if k != "imageDigest"}
    if new.get("imageDigest") or not current.get("imageDigest"):
        return new
    def bare(spec: dict) -> dict:
        return {k: v for k, v in template_of(AppSpec.model_validate(spec)).items() if k != "imageDigest"}
    if bare(current) == bare(new):
        return {**new, "imageDigest": current["imageDigest"]}
    return new


def template_hash(template: dict) -> str:
    """A short stable hash of a template; containers carry it as a label to find drift."""
    blob = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class ContainerStatus(Schema):
    name: str
    id: str
    slot: int
    revision: int | None = None
    state: str
    health: str | None = None
    ready: bool = False
    restarts: int = 0
    ip: str | None = None
    started_at: str | None = None
    exit_code: int | None = None
    message: str | None = None


class AppStatus(Schema):
    observed_generation: int | None = None
    revision: int | None = None
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    phase: str = "Pending"
    conditions: list[Condition] = Field(default_factory=list)
    containers: list[ContainerStatus] = Field(default_factory=list)


APP_STATES = ("ready", "progressing", "degraded", "failed")


def app_state(status: dict) -> str:
    """An App's state in one word, for tables and counts: Ready → ready; Degraded → degraded;
    Stalled or Failed → failed; anything else (Pending, Progressing, no status yet) →
    progressing. The dashboard's app page applies the same rule to watch events
    (web/static/js/pages/app.js:stateOf; tests/unit/test_web_assets.py keeps the two equal)."""
    phase = (status or {}).get("phase")
    if phase == "Ready":
        return "ready"
    if phase == "Degraded":
        return "degraded"
    if phase in ("Stalled", "Failed"):
        return "failed"
    return "progressing"


class App(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["App"] = "App"
    metadata: Metadata
    spec: AppSpec
    status: AppStatus | None = None
