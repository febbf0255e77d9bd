"""LogDrain: forward a project's container logs to a syslog server, an HTTP endpoint or a Loki
push API. The forwarder in `dockyard.logs.drains` reads these; no I/O here (where the URL may point
is decided by `dockyard.admission.egress`, which resolves names)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator

from dockyard.model.meta import API_VERSION, Condition, DnsLabel, Metadata, Schema

# the URL schemes each type speaks; syslog: UDP, TCP or TLS (RFC 5426, 6587, 5425)
SCHEMES: dict[str, frozenset[str]] = {
    "syslog": frozenset({"syslog", "syslog+tcp", "syslog+tls"}),
    "http": frozenset({"http", "https"}),
    "loki": frozenset({"http", "https"}),
}
# labels Dockyard sets itself on every record (Loki stream labels, syslog SD params, HTTP fields)
RESERVED_LABELS = frozenset({"tenant", "project", "app", "replica", "container", "stream", "text", "ts"})
# a name that is at once a Loki label name and a syslog SD-PARAM name (RFC 5424: ≤ 32 characters)
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")  # what HTTP refuses in a request line (a pasted space)
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
# headers the sender sets (framing, body type, destination); a user value would break the request
FIXED_HEADERS = frozenset({"host", "content-type", "content-length", "transfer-encoding", "connection",
                           "content-encoding", "te", "upgrade", "expect"})


def check_headers(v: dict[str, str]) -> dict[str, str]:
    """Extra HTTP request headers a user may give a sender (log drains, webhook notifiers)."""
    for k, val in v.items():
        if not HEADER_NAME.match(k):
            raise ValueError(f"'{k}' is not a valid header name")
        if k.lower() in FIXED_HEADERS:
            raise ValueError(f"header '{k}' is set by the sender")
        if len(val) > 4096 or any(c in val for c in "\r\n\0"):
            raise ValueError(f"header '{k}': values hold at most 4096 characters and no line breaks")
    return v


MAX_LABELS = 16
MAX_URL = 2048


class LogDrainSpec(Schema):
    type: Literal["syslog", "http", "loki"]
    url: str = Field(max_length=MAX_URL, description="syslog://host:514 (UDP), syslog+tcp://, syslog+tls://; "
                     "http(s)://… for http; http(s)://host:3100/loki/api/v1/push for loki")
    apps: list[DnsLabel] = Field(default_factory=list, description="only these apps (default: every app)")
    labels: dict[str, str] = Field(default_factory=dict, description="added to every record")
    headers: dict[str, str] = Field(default_factory=dict, description="http and loki: extra request headers")
    paused: bool = False

    @field_validator("url")
    @classmethod
    def _url_fits_type(cls, v: str, info: ValidationInfo) -> str:
        kind = info.data.get("type")
        if URL_FORBIDDEN.search(v):
            raise ValueError("must not contain spaces or control characters")
        try:
            parts = urlsplit(v)
            port = parts.port
        except ValueError as e:
            raise ValueError(f"is not a valid URL ({e})") from None
        if kind in SCHEMES and parts.scheme.lower() not in SCHEMES[kind]:
            raise ValueError(f"a {kind} drain needs a URL with scheme {' or '.join(sorted(SCHEMES[kind]))}, "
                             f"not '{parts.scheme or '(none)'}'")
        if not parts.hostname:
            raise ValueError("has no host")
        if port == 0:
            raise ValueError("port 0 is not a port")
        if parts.username or parts.password:
            raise ValueError("must not hold a user or password: put credentials in headers")
        if kind == "syslog" and parts.path not in ("", "/"):
            raise ValueError("a syslog URL has no path: write syslog://HOST:PORT")
        return v

    @field_validator("labels")
    @classmethod
    def _label_names(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_LABELS:
            raise ValueError(f"at most {MAX_LABELS} labels")
        for k, val in v.items():
            if not LABEL_NAME.match(k):
                raise ValueError(f"label name '{k}' is invalid: use a letter or '_' and then at most 31 letters, "
                                 "digits or '_' (names Loki and syslog both accept)")
            if k in RESERVED_LABELS:
                raise ValueError(f"label '{k}' is set by Dockyard on every record; choose another name")
            if len(val) > 256 or any(c in val for c in "\r\n\0"):
                raise ValueError(f"label '{k}': values hold at most 256 characters and no line breaks")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if v and info.data.get("type") == "syslog":
            raise ValueError("syslog drains send no HTTP headers")
        return check_headers(v)

    @property
    def schemes(self) -> frozenset[str]:
        return SCHEMES[self.type]


class LogDrainStatus(Schema):
    observed_generation: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    sent_lines: int = 0
    dropped_lines: int = 0   # refused by the destination as malformed (4xx): never retried
    last_sent_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


class LogDrain(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["LogDrain"] = "LogDrain"
    metadata: Metadata
    spec: LogDrainSpec
    status: LogDrainStatus | None = None
