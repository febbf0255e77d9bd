"""Project: a tenant's unit of isolation; owns apps and gets its own engine network."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dockyard.model.meta import API_VERSION, Condition, Metadata, Schema
from dockyard.model.quota import Defaults, Quota


class ProjectSpec(Schema):
    display_name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    quota: Quota = Field(default_factory=Quota)
    defaults: Defaults = Field(default_factory=Defaults)
    security_policy: Literal["baseline", "restricted", "privileged"] = "baseline"


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
