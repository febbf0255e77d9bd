"""Quotas and default limits of tenants and projects."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from dockyard.model.meta import Schema
from dockyard.model.quantity import parse_cpu, parse_memory


def _cpu(v: str | int | float) -> str | int | float:
    parse_cpu(v)
    return v


def _mem(v: str | int) -> str | int:
    parse_memory(v)
    return v


CpuQ = Annotated[str | int | float, AfterValidator(_cpu)]
MemQ = Annotated[str | int, AfterValidator(_mem)]


class Quota(Schema):
    """Hard limits; an absent field is unlimited. cpu and memory count limits × replicas."""

    cpu: CpuQ | None = None
    memory: MemQ | None = None
    replicas: int | None = Field(default=None, ge=0)
    apps: int | None = Field(default=None, ge=0)
    volumes: int | None = Field(default=None, ge=0)
    storage: MemQ | None = None


class Defaults(Schema):
    """Limits given to containers that state none."""

    cpu: CpuQ | None = None
    memory: MemQ | None = None
    pids: int | None = Field(default=None, ge=16, le=1_000_000)
