"""Tenant: an organisation unit that owns projects."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from dockyard.model.meta import API_VERSION, Metadata, Schema
from dockyard.model.quota import Quota


class TenantSpec(Schema):
    display_name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    quota: Quota = Field(default_factory=Quota)


class TenantStatus(Schema):
    projects: int = 0


class Tenant(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["Tenant"] = "Tenant"
    metadata: Metadata
    spec: TenantSpec = Field(default_factory=TenantSpec)
    status: TenantStatus | None = None
