"""Secret and Config: files for containers. Secret values are write-only and encrypted at rest;
reads show a hash and the size. Config contents are readable."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import Field, model_validator

from dockyard.model.meta import API_VERSION, Metadata, Schema

MAX_FILE = 512 * 1024


class SecretSpec(Schema):
    value: str | None = Field(default=None, description="the value (write-only)")
    value_base64: str | None = Field(default=None, description="the value, base64 (write-only)")
    # what reads show instead of the value
    sha256: str | None = None
    size: int | None = None

    @model_validator(mode="after")
    def _one_value(self) -> SecretSpec:
        if self.value is not None and self.value_base64 is not None:
            raise ValueError("give value or valueBase64, not both")
        if self.value_base64 is not None:
            try:
                base64.b64decode(self.value_base64, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("valueBase64 is not valid base64") from None
        if len(self.plain() or b"") > MAX_FILE:
            raise ValueError(f"a secret holds at most {MAX_FILE // 1024} KiB")
        return self

    def plain(self) -> bytes | None:
        if self.value is not None:
            return self.value.encode()
        if self.value_base64 is not None:
            return base64.b64decode(self.value_base64)
        return None


class Secret(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["Secret"] = "Secret"
    metadata: Metadata
    spec: SecretSpec = Field(default_factory=SecretSpec)
    status: dict | None = None


class ConfigSpec(Schema):
    data: str = Field(default="", max_length=MAX_FILE)


class Config(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["Config"] = "Config"
    metadata: Metadata
    spec: ConfigSpec = Field(default_factory=ConfigSpec)
    status: dict | None = None
