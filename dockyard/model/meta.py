"""Metadata, status and conditions shared by every kind."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

API_VERSION = "dockyard/v1"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


class Schema(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)

    def dump(self) -> dict:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def check_dns_label(value: str) -> str:
    if not DNS_LABEL.match(value):
        raise ValueError(
            f"'{value}' is not a valid name: use at most 63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def check_labels(value: dict[str, str]) -> dict[str, str]:
    for k, v in value.items():
        if not LABEL_KEY.match(k):
            raise ValueError(f"label key '{k}' is invalid")
        if not isinstance(v, str) or not LABEL_VALUE.match(v):
            raise ValueError(f"label '{k}' has an invalid value '{v}' (at most 63 letters, digits, '-', '_', '.')")
    return value


DnsLabel = Annotated[str, AfterValidator(check_dns_label)]
Labels = Annotated[dict[str, str], AfterValidator(check_labels)]


class Metadata(Schema):
    name: DnsLabel
    tenant: DnsLabel | None = None       # set on Projects
    project: str | None = None           # "tenant/project", set on project-scoped kinds
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None


class Condition(Schema):
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""
    last_transition_time: datetime | None = None


def check_project_ref(value: str) -> str:
    parts = value.split("/")
    if len(parts) != 2:
        raise ValueError(f"'{value}' is not a project: write it as TENANT/PROJECT, e.g. acme/shop")
    for p in parts:
        check_dns_label(p)
    return value


ProjectRef = Annotated[str, AfterValidator(check_project_ref)]
