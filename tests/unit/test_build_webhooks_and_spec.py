"""Pure parts of builds: webhook authentication (fixed vectors computed with
`printf '%s' BODY | openssl dgst -sha256 -hmac SECRET`), push parsing, the Build spec's checks,
ref → tag, and history pruning."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from dockyard.builds import starts, webhooks
from dockyard.builds.deploy import image_patch
from dockyard.model.build import BuildSpec, ref_tag

BODY = b'{"ref":"refs/heads/main","after":"4b825dc642cb6eb9a060e54bf8d69288fbee4904","commits":[]}'
# openssl dgst -sha256 -hmac s3cret / -hmac other
SIG = "50674415cf4e630f308c0368e6309d71b100c90842533e1e94ae6917182f30d0"
OTHER = "2ce2135bda2f17cbdb3628c526305840ccafee3a1bfe2497469ea4aea188c12f"


def test_hmac_matches_openssl() -> None:
    assert webhooks.hmac_hex(b"s3cret", BODY) == SIG
    assert webhooks.hmac_hex(b"other", BODY) == OTHER


@pytest.mark.parametrize(("headers", "source"), [
    ({"x-gitea-signature": SIG}, "gitea"),
    ({"x-gogs-signature": SIG.upper()}, "gogs"),
    ({"x-hub-signature-256": f"sha256={SIG}"}, "github"),
    ({"x-gitlab-token": "s3cret"}, "gitlab"),
])
def test_each_format_authenticates(headers: dict, source: str) -> None:
    assert webhooks.authenticate(headers, BODY, b"s3cret") == source


@pytest.mark.parametrize("headers", [
    {},
    {"x-gitea-signature": OTHER},
    {"x-gitea-signature": ""},
    {"x-hub-signature-256": SIG},             # without the sha256= prefix
    {"x-hub-signature-256": f"sha256={OTHER}"},
    {"x-hub-signature": "sha1=" + SIG[:40]},  # GitHub's SHA-1 header is not accepted
    {"x-gitlab-token": "S3cret"},
    {"x-gitlab-token": SIG},
    # a right token does not rescue a wrong signature: the first header present decides
    {"x-gitea-signature": OTHER, "x-gitlab-token": "s3cret"},
])
def test_wrong_or_missing_credentials_are_refused(headers: dict) -> None:
    with pytest.raises(webhooks.Unauthenticated):
        webhooks.authenticate(headers, BODY, b"s3cret")


def test_signature_covers_the_exact_body() -> None:
    with pytest.raises(webhooks.Unauthenticated):
        webhooks.authenticate({"x-gitea-signature": SIG}, BODY + b" ", b"s3cret")


def test_push_parsing() -> None:
    p = webhooks.parse_push("gitea", BODY)
    assert p.branch == "main" and p.after == "4b825dc642cb6eb9a060e54bf8d69288fbee4904" and not p.deleted
    gone = webhooks.parse_push("github", b'{"ref":"refs/heads/x","commits":[],"after":"' + b"0" * 40 + b'"}')
    assert gone.deleted and gone.branch == "x"
    tag = b'{"ref":"refs/tags/v1","commits":[],"after":"' + b"a" * 40 + b'"}'
    assert webhooks.parse_push("gitlab", tag).branch is None


@pytest.mark.parametrize(("body", "why"), [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"after":"' + b"a" * 40 + b'"}', "'ref'"),
    (b'{"ref":"main","after":"' + b"a" * 40 + b'"}', "'ref'"),
    (b'{"ref":"refs/heads/main"}', "'after'"),
    (b'{"ref":"refs/heads/main","after":"xyz"}', "'after'"),
    (b'{"ref":"refs/heads/main","after":"' + b"a" * 40 + b'"}', "'commits'"),
    (b'{"ref":"refs/heads/main","commits":{},"after":"' + b"a" * 40 + b'"}', "'commits'"),
])
def test_malformed_pushes(body: bytes, why: str) -> None:
    with pytest.raises(webhooks.Malformed, match=why):
        webhooks.parse_push("gitea", body)


def test_ref_tags() -> None:
    assert ref_tag("main") == "main"
    assert ref_tag("refs/heads/feature/login") == "feature-login"
    assert ref_tag("refs/tags/v1.2.0") == "v1.2.0"
    assert ref_tag(".hidden") == "hidden"
    assert len(ref_tag("x" * 300)) == 128
    assert ref_tag("---") == "ref"


def _spec(**over: object) -> dict:
    spec: dict = {"source": {"git": "https://git.example/acme/shop.git"}, "image": "web"}
    spec.update(over)
    return spec


def test_spec_defaults() -> None:
    s = BuildSpec.model_validate(_spec())
    assert (s.source.ref, s.source.context_dir, s.dockerfile, s.deploy_to) == ("main", ".", "Dockerfile", None)
    assert BuildSpec.model_validate(_spec(dockerfile="./docker/../Dockerfile.prod")).dockerfile == "Dockerfile.prod"


@pytest.mark.parametrize(("spec", "field_name"), [
    (_spec(source={"git": "file:///srv/repo"}), "git"),
    (_spec(source={"git": "ext::sh -c touch% /tmp/x"}), "git"),
    (_spec(source={"git": "ssh://git@host/repo"}), "git"),
    (_spec(source={"git": "https://user:pw@host/repo"}), "git"),
    (_spec(source={"git": "https://host/r", "ref": "--upload-pack=touch"}), "ref"),
    (_spec(source={"git": "https://host/r", "ref": "main..dev"}), "ref"),
    (_spec(source={"git": "https://host/r", "contextDir": "../up"}), "context_dir"),
    (_spec(source={"git": "https://host/r", "contextDir": "/etc"}), "context_dir"),
    (_spec(dockerfile="../Dockerfile"), "dockerfile"),
    (_spec(image="Web"), "image"),
    (_spec(image="acme/web"), "image"),
    (_spec(buildArgs={"1X": "y"}), "build_args"),
])
def test_spec_refusals_name_the_field(spec: dict, field_name: str) -> None:
    with pytest.raises(ValidationError) as e:
        BuildSpec.model_validate(spec)
    assert field_name in str(e.value).replace("contextDir", "context_dir").replace("buildArgs", "build_args")


@dataclass
class FakeBuild:
    name: str
    created_at: datetime
    phase: str
    scope: str = "acme/shop"
    labels: dict = field(default_factory=lambda: {starts.CONFIG_LABEL: "site"})

    @property
    def status(self) -> dict:
        return {"phase": self.phase}


class FakeStore:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete(self, kind: str, scope: str, name: str) -> None:
        self.deleted.append(name)


def test_history_keeps_the_newest_finished_builds() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    builds = [FakeBuild(f"site-{i}", t0 + timedelta(seconds=i), "Succeeded" if i != 3 else "Failed")
              for i in range(1, 6)]
    builds.append(FakeBuild("site-6", t0 + timedelta(seconds=6), "Running"))
    builds.append(FakeBuild("solo", t0, "Succeeded", labels={}))
    store = FakeStore()
    gone = starts.prune_history(store, builds, {("acme/shop", "site"): 2})  # type: ignore[arg-type]
    assert store.deleted == ["site-1", "site-2", "site-3"] and len(gone) == 3
    assert starts.build_number("site-12", "site") == 12 and starts.build_number("other-1", "site") == 0


def test_git_connects_to_the_checked_address() -> None:
    from dockyard.builds.source import _pin, _pinned_url
    from dockyard.policy.egress import Destination

    git = Destination("git", "git.example", 9418, ("10.0.0.5",), True)
    assert _pinned_url("git://git.example/a/b.git", git) == "git://10.0.0.5:9418/a/b.git"
    v6 = Destination("git", "git.example", 9999, ("fd00::1",), True)
    assert _pinned_url("git://git.example:9999/a/b.git", v6) == "git://[fd00::1]:9999/a/b.git"
    https = Destination("https", "git.example", 443, ("192.0.2.7",), False)
    assert _pinned_url("https://git.example/a.git", https) == "https://git.example/a.git"
    # curl keeps the host name (Host header, TLS name) and connects to the address
    assert _pin(https) == ["-c", "http.curloptResolve=git.example:443:192.0.2.7"]
    assert _pin(git) == []


def test_deploy_patch_keeps_a_followed_tag_and_sets_the_digest() -> None:
    target, d = "127.0.0.1:5000/acme/shop/web", "sha256:" + "b" * 64
    tags = ["c" * 40, "main"]
    assert image_patch(f"{target}:main", target, tags, d) == {"imageDigest": d}
    for other in ("dockyard/demo:1.0", f"{target}:v1", f"{target}@sha256:{'a' * 64}", f"{target}2:main", target):
        assert image_patch(other, target, tags, d) == {"image": f"{target}:{'c' * 40}", "imageDigest": d}, other


@pytest.mark.parametrize(("headers", "event"), [
    ({"x-github-event": "ping"}, "ping"),
    ({"x-gitlab-event": "Merge Request Hook"}, "Merge Request Hook"),
    ({"x-gitea-event": "create"}, "create"),
    ({"x-github-event": "push"}, None),
    ({"x-gitea-event": "push", "x-github-event": "push"}, None),
    ({"x-gitlab-event": "Push Hook"}, None),
    ({}, None),
])
def test_non_push_events_are_named(headers: dict, event: str | None) -> None:
    assert webhooks.other_event(headers) == event
