"""Build and BuildConfig: an image built from a git repository's Dockerfile on the project's engine,
pushed to the project's repository in Dockyard's registry and optionally rolled out to an App.

A BuildConfig holds the same spec plus its triggers and starts Builds (by hand or from a git
server's push webhook); a Build is one run with its status. Where the git URL may point is decided
by `dockyard.admission.egress` (no I/O here); the runner is `dockyard.builds.runner`."""

from __future__ import annotations

import posixpath
import re
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from dockyard.model.meta import API_VERSION, DnsLabel, Metadata, Schema

GIT_SCHEMES = frozenset({"http", "https", "git"})
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Cancelled")
FINISHED = frozenset({"Succeeded", "Failed", "Cancelled"})
# one repository name component (the distribution grammar), so that the image is TENANT/PROJECT/IMAGE
IMAGE_NAME = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$")
# a git ref name as a user writes it: no option-like start, no revision syntax, no control characters
REF = re.compile(r"^(?!-)(?!.*\.\.)(?!.*@\{)[A-Za-z0-9._/-]{1,200}(?<![./])$")
BUILD_ARG = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
TAG_BAD = re.compile(r"[^A-Za-z0-9_.-]")
MAX_BUILD_ARGS = 64
# set by `POST .../builds/NAME/cancel`; the runner of the leading server acts on it
CANCEL_ANNOTATION = "dockyard.io/cancel-requested"


def ref_tag(ref: str) -> str:
    """The image tag for a git ref: `refs/heads/` dropped, characters a tag may not hold turned
    into '-', at most 128 characters, never starting with '.' or '-' (the distribution grammar)."""
    name = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    tag = TAG_BAD.sub("-", name).lstrip(".-")[:128]
    return tag or "ref"


def check_context_path(value: str, what: str) -> str:
    """A path inside the cloned repository: relative, normalised, never above the checkout."""
    if not value or "\0" in value or "\\" in value:
        raise ValueError(f"{what} must be a relative path")
    if value.startswith("/"):
        raise ValueError(f"{what} must be relative to the repository, not absolute")
    norm = posixpath.normpath(value)
    if norm == ".." or norm.startswith("../"):
        raise ValueError(f"{what} must stay inside the repository (no '..')")
    return norm


class BuildSource(Schema):
    git: str = Field(max_length=2048, description="http(s):// or git:// URL of the repository")
    ref: str = Field(default="main", description="branch or tag to build (or a commit SHA)")
    context_dir: str = Field(default=".", description="the build context, relative to the repository root")

    @field_validator("git")
    @classmethod
    def _git_url(cls, v: str) -> str:
        if any(c in v for c in " \t\r\n\0\x7f"):
            raise ValueError("must not contain spaces or control characters")
        try:
            parts = urlsplit(v)
            port = parts.port
        except ValueError as e:
            raise ValueError(f"is not a valid URL ({e})") from None
        if parts.scheme.lower() not in GIT_SCHEMES:
            raise ValueError(f"scheme '{parts.scheme or '(none)'}' is not allowed: use https://, http:// or git:// "
                             "(file://, ssh and git's ext:: transports are refused)")
        if not parts.hostname:
            raise ValueError("has no host")
        if port == 0:
            raise ValueError("port 0 is not a port")
        if parts.username or parts.password:
            raise ValueError("must not hold a user or password: builds clone public or network-trusted repositories")
        return v

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        if not REF.match(v):
            raise ValueError(f"'{v}' is not a branch, tag or commit name")
        return v

    @field_validator("context_dir")
    @classmethod
    def _context(cls, v: str) -> str:
        return check_context_path(v, "contextDir")


class BuildSpec(Schema):
    source: BuildSource
    dockerfile: str = Field(default="Dockerfile", description="path of the Dockerfile inside the context")
    build_args: dict[str, str] = Field(default_factory=dict)
    image: str = Field(description="repository name in the project: TENANT/PROJECT/IMAGE in Dockyard's registry")
    deploy_to: DnsLabel | None = Field(default=None, description="App whose spec.image is set to the pushed digest")

    @field_validator("dockerfile")
    @classmethod
    def _dockerfile(cls, v: str) -> str:
        return check_context_path(v, "dockerfile")

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if len(v) > 128 or not IMAGE_NAME.match(v):
            raise ValueError(f"'{v}' is not a repository name component: lower-case letters and digits, "
                             "separated by '.', '_', '__' or '-'")
        return v

    @field_validator("build_args")
    @classmethod
    def _args(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > MAX_BUILD_ARGS:
            raise ValueError(f"at most {MAX_BUILD_ARGS} build arguments")
        for k, val in v.items():
            if not BUILD_ARG.match(k):
                raise ValueError(f"'{k}' is not a build argument name")
            if len(val) > 4096 or "\0" in val:
                raise ValueError(f"build argument '{k}': at most 4096 characters")
        return v


class WebhookTrigger(Schema):
    secret: DnsLabel = Field(description="name of a Secret in the project holding the webhook secret")


class BuildTriggers(Schema):
    webhook: WebhookTrigger | None = None


# the BuildSpec fields (a BuildConfigSpec adds triggers and historyLimit)
BUILD_FIELDS = frozenset({"source", "dockerfile", "buildArgs", "image", "deployTo"})


class BuildConfigSpec(BuildSpec):
    triggers: BuildTriggers = Field(default_factory=BuildTriggers)
    history_limit: int = Field(default=10, ge=1, le=100, description="finished Builds kept per config")


class BuildStatus(Schema):
    phase: Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"] = "Pending"
    message: str | None = None
    queue_position: int | None = None
    commit: str | None = None
    tags: list[str] = Field(default_factory=list)
    image_digest: str | None = None
    image: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    build_config: str | None = None


class Build(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["Build"] = "Build"
    metadata: Metadata
    spec: BuildSpec
    status: BuildStatus | None = None


class BuildConfig(Schema):
    api_version: Literal["dockyard/v1"] = API_VERSION
    kind: Literal["BuildConfig"] = "BuildConfig"
    metadata: Metadata
    spec: BuildConfigSpec
    status: dict | None = None
