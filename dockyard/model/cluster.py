"""Cluster: an engine (or a Docker Swarm) that projects can be bound to. Cluster-scoped and for
platform admins only. `local` — the server's own engine — is never stored but always exists.

The TLS client key of an endpoint is write-only: the API seals it (`keyCiphertext`, `keyId`, like a
Secret's value) and reads show `key: "(sealed)"`; sending that marker back keeps the stored key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from dockyard.model.meta import API_VERSION, Condition, Metadata, Schema, check_dns_label

LOCAL = "local"  # the server's own engine (`dockyard server --engine`); reserved, never stored
SEALED = "(sealed)"  # what reads show for a TLS key, and what a write sends to keep the stored one
MAX_ENDPOINTS = 7
SEALED_FIELDS = ("key", "keyCiphertext", "keyId", "keySha256")  # a TLS key as stored; reads show none of them
MAX_PEM = 64 * 1024
_PEM = re.compile(r"^\s*-----BEGIN ([A-Z0-9 ]+)-----\r?\n[A-Za-z0-9+/=\s:,.()-]+-----END \1-----\s*$")


def _check_pem(value: str, what: str) -> str:
    """`what` is the block type expected ("CERTIFICATE", or "PRIVATE KEY" which also matches RSA/EC keys)."""
    m = _PEM.match(value)
    if not m or not m.group(1).endswith(what):
        raise ValueError(f"must be a PEM {what.lower()} (-----BEGIN {what}----- … -----END {what}-----)")
    return value


class ClusterTLS(Schema):
    """Client certificate authentication to a `tcp://` endpoint (the engine runs with --tlsverify)."""

    ca: str = Field(max_length=MAX_PEM, description="PEM: the CA that signed the engine's certificate")
    cert: str = Field(max_length=MAX_PEM, description="PEM: the client certificate")
    key: str | None = Field(default=None, max_length=MAX_PEM,
                            description=f"PEM: the client key (write-only; reads show {SEALED!r})")
    # the stored form of the key, set by the server only
    key_ciphertext: str | None = None
    key_id: str | None = None
    key_sha256: str | None = None  # tells a re-sent key from a new one (sealing is not deterministic)

    @field_validator("ca", "cert")
    @classmethod
    def _certificate(cls, v: str) -> str:
        return _check_pem(v, "CERTIFICATE")

    @field_validator("key")
    @classmethod
    def _private_key(cls, v: str | None) -> str | None:
        return v if v is None or v == SEALED else _check_pem(v, "PRIVATE KEY")

    @model_validator(mode="after")
    def _has_key(self) -> ClusterTLS:
        if self.key is None and self.key_ciphertext is None:
            raise ValueError("give ca, cert and key together (key: the client's private key in PEM)")
        return self


class ClusterEndpoint(Schema):
    url: str = Field(max_length=500, description="unix:///path, tcp://host:port (TLS) or ssh://user@host[:port]")
    tls: ClusterTLS | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        check_endpoint_url(v)
        return v

    @model_validator(mode="after")
    def _tls_with_tcp(self) -> ClusterEndpoint:
        if self.tls is not None and not self.url.startswith("tcp://"):
            raise ValueError("tls is for tcp:// endpoints only (unix:// is local, ssh:// has its own keys)")
        return self


def check_endpoint_url(url: str) -> None:
    """Raise ValueError unless `url` is an engine address Dockyard can reach."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"'{url}' is not a valid URL: {e}") from None
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise ValueError(f"'{url}' is not a socket path: write unix:///path/to/docker.sock")
    elif parts.scheme == "tcp":
        if not parts.hostname or port is None or parts.path not in ("", "/") or parts.username:
            raise ValueError(f"'{url}' is not an engine address: write tcp://host:port (e.g. tcp://10.0.0.2:2376)")
    elif parts.scheme == "ssh":
        if not parts.hostname or parts.path not in ("", "/") or parts.password:
            raise ValueError(f"'{url}' is not an SSH address: write ssh://user@host[:port]")
    else:
        raise ValueError(f"'{url}' has an unknown scheme: use unix://, tcp:// or ssh://")


class ClusterSpec(Schema):
    driver: Literal["docker", "swarm"] = "swarm"
    endpoints: list[ClusterEndpoint] = Field(min_length=1, max_length=MAX_ENDPOINTS,
                                             description="tried in order; the next that answers takes over")
    description: str | None = Field(default=None, max_length=2000)
    tenants: list[str] = Field(default_factory=list, max_length=1000,
                               description="the tenants whose projects may use this cluster; empty: every tenant")

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, v: list[str]) -> list[str]:
        for name in v:
            check_dns_label(name)
        dup = next((t for t in v if v.count(t) > 1), None)
        if dup:
            raise ValueError(f"tenant {dup} is given twice")
        return v

    @model_validator(mode="after")
    def _endpoints(self) -> ClusterSpec:
        urls = [e.url for e in self.endpoints]
        dup = next((u for u in urls if urls.count(u) > 1), None)
        if dup:
            raise ValueError(f"endpoint {dup} is given twice")
        if self.driver == "docker" and len(urls) > 1:
            raise ValueError("a docker cluster is one engine: give one endpoint (several are for swarm managers)")
        return self


def event_scope(cluster: str) -> str:
    """The scope of a cluster's own timeline events (its phase, its nodes): those of `local` show in
    every project's timeline (scope ""), another cluster's only in the timelines of its projects."""
    return "" if cluster == LOCAL else f"@{cluster}"


def open_to(spec: dict[str, Any], tenant: str) -> bool:
    """Whether projects of `tenant` may be bound to a cluster with this (stored) spec."""
    tenants = spec.get("tenants") or []
    return not tenants or tenant in tenants


class ClusterCount(Schema):
    total: int = 0
    ready: int | None = None
    reachable: int | None = None


class ClusterStatus(Schema):
    """Written by the server's cluster monitor; reads merge in the live health."""

    phase: Literal["Ready", "Degraded", "Unavailable", "Unknown"] = "Unknown"
    writable: bool | None = None
    active_endpoint: str | None = None
    message: str = ""
    managers: ClusterCount | None = None
    nodes: ClusterCount | None = None
    last_probe: str | None = None
    last_transition_time: str | None = None
    conditions: list[Condition] = Field(default_factory=list)


class Cluster(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["Cluster"] = "Cluster"
    metadata: Metadata
    spec: ClusterSpec
    status: ClusterStatus | None = None


def public_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A stored Cluster spec as reads show it: each sealed TLS key replaced by the SEALED marker."""
    endpoints = []
    for ep in spec.get("endpoints") or []:
        tls = ep.get("tls")
        if tls:
            shown = {k: v for k, v in tls.items() if k not in SEALED_FIELDS}
            ep = {**ep, "tls": {**shown, "key": SEALED}}
        endpoints.append(ep)
    return {**spec, "endpoints": endpoints} if "endpoints" in spec else spec


@dataclass
class ClusterHealth:
    """What a cluster can do now, from a probe (cached briefly by the server's cluster router)."""

    cluster: str
    phase: str                 # Ready | Degraded | Unavailable | Unknown
    writable: bool             # changes can be applied now (an endpoint answers and the swarm has a leader)
    message: str
    active_endpoint: str | None = None
    managers_total: int = 0
    managers_reachable: int = 0
    nodes_total: int = 0
    nodes_ready: int = 0
    # (hostname, ready | down | unknown) of each node as the swarm's leader listed them; empty when no
    # leader could (their states are then not known)
    node_states: tuple[tuple[str, str], ...] = ()

    def status_fields(self) -> dict[str, Any]:
        """The Cluster status fields this health sets (camelCase, as stored and shown)."""
        return {"phase": self.phase, "writable": self.writable, "message": self.message,
                "activeEndpoint": self.active_endpoint,
                "managers": {"total": self.managers_total, "reachable": self.managers_reachable},
                "nodes": {"total": self.nodes_total, "ready": self.nodes_ready}}


# an engine URL (the endpoint's, or one a Docker error quotes) or an IPv4 address with its port
_ADDRESS = re.compile(r"\b(?:tcp|unix|ssh|https?|npipe)://[^\s;,()]*[^\s;,():]|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")


def without_addresses(message: str) -> str:
    """`message` as non-admins may read it (a 503's detail, a timeline event every project shows):
    a cluster's endpoints and its managers' addresses are for platform admins only, who read the
    full message in the Cluster's status."""
    return _ADDRESS.sub("an endpoint", message)


class ClusterError(Exception):
    """A cluster operation that failed, with the HTTP status the API answers: 404 unknown cluster
    or node, 409 not possible on this kind of cluster, 503 the cluster cannot act now."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
