"""Project: a tenant's unit of isolation; owns apps and gets its own engine network."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from dockyard.model.app import Duration
from dockyard.model.cluster import LOCAL
from dockyard.model.meta import API_VERSION, Condition, DnsLabel, Metadata, Schema
from dockyard.model.quantity import parse_duration, parse_memory
from dockyard.model.quota import Defaults, MemQ, Quota


class LogPolicy(Schema):
    """How long and how much of a project's container logs the log store keeps; an absent field takes
    the server's default ($DOCKYARD_LOG_RETENTION, $DOCKYARD_LOG_MAX_SIZE). The oldest chunks go first."""

    retention: Duration | None = None
    max_size: MemQ | None = None

    @field_validator("retention")
    @classmethod
    def _positive_retention(cls, v: str | int | float | None) -> str | int | float | None:
        if v is not None and parse_duration(v) < 60:
            raise ValueError("must be at least 1m")
        return v

    @field_validator("max_size")
    @classmethod
    def _positive_size(cls, v: str | int | None) -> str | int | None:
        if v is not None and parse_memory(v) < 1024 * 1024:
            raise ValueError("must be at least 1Mi")
        return v


class RetentionRule(Schema):
    """Among the tags matching both globs (per repository): keep the `keepLast` most recently pushed
    and those pushed within `keepDays` days; the other matching tags go. Tags no rule matches stay."""

    repositories: str = Field(default="*", min_length=1, max_length=255,
                              description="glob over image names in the project (web, team/*)")
    tags: str = Field(default="*", min_length=1, max_length=128, description="glob over tags (v*, *-rc*)")
    keep_last: int | None = Field(default=None, ge=0, le=100_000)
    keep_days: int | None = Field(default=None, ge=0, le=36_500)

    @model_validator(mode="after")
    def _keeps_something(self) -> RetentionRule:
        if self.keep_last is None and self.keep_days is None:
            raise ValueError("give keepLast, keepDays or both: a rule without either would delete every matching tag")
        return self


class RegistryPolicy(Schema):
    retention: list[RetentionRule] = Field(default_factory=list, max_length=50)


class ProjectNetwork(Schema):
    encrypted: bool = Field(default=False, description="encrypt traffic between nodes (a Swarm overlay's IPsec); "
                                                       "a single engine's network never leaves the host")


class ProjectSpec(Schema):
    display_name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    quota: Quota = Field(default_factory=Quota)
    defaults: Defaults = Field(default_factory=Defaults)
    security_policy: Literal["baseline", "restricted", "privileged"] = "baseline"
    logs: LogPolicy = Field(default_factory=LogPolicy)
    registry: RegistryPolicy = Field(default_factory=RegistryPolicy)
    cluster: DnsLabel = Field(default=LOCAL, description="the Cluster the project's apps run on (local: the "
                                                         "server's own engine); fixed once the project exists")
    network: ProjectNetwork = Field(default_factory=ProjectNetwork)


def project_cluster(spec: dict | None) -> str:
    """The cluster of a stored project's spec (projects made before clusters existed have none: local)."""
    return (spec or {}).get("cluster") or LOCAL


def network_encrypted(spec: dict | None) -> bool:
    """Whether a stored project's spec asks for an encrypted network between nodes."""
    return bool(((spec or {}).get("network") or {}).get("encrypted"))


class ProjectStatus(Schema):
    observed_generation: int | None = None
    network: str | None = None
    conditions: list[Condition] = Field(default_factory=list)


class Project(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["Project"] = "Project"
    metadata: Metadata
    spec: ProjectSpec = Field(default_factory=ProjectSpec)
    status: ProjectStatus | None = None
