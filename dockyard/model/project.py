"""Project: a tenant's unit of isolation; owns apps and gets its own engine network."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from dockyard.model.app import Duration
from dockyard.model.meta import API_VERSION, Condition, Metadata, Schema
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


class ProjectSpec(Schema):
    display_name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    quota: Quota = Field(default_factory=Quota)
    defaults: Defaults = Field(default_factory=Defaults)
    security_policy: Literal["baseline", "restricted", "privileged"] = "baseline"
    logs: LogPolicy = Field(default_factory=LogPolicy)


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
