"""Git push webhooks: who sent it (Gitea/Gogs, GitHub, GitLab), whether it carries the right secret,
and which branch it pushed. Pure functions; the route is `api/builds.py`.

Authentication, by the header present:
- Gitea / Gogs: `X-Gitea-Signature` / `X-Gogs-Signature` = hex HMAC-SHA256 of the body;
- GitHub: `X-Hub-Signature-256` = `sha256=` + hex HMAC-SHA256 of the body;
- GitLab: `X-Gitlab-Token` = the secret itself.
Every comparison is constant-time. A push body must be a JSON object with `ref`, `after` and a
`commits` list (Gitea, GitHub and GitLab all send them); a branch deletion has `after` = forty zeros."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
ZERO = re.compile(r"^0+$")


class Unauthenticated(Exception):
    """No signature or token, or a wrong one (HTTP 401)."""


class Malformed(Exception):
    """Not a push event Dockyard understands (HTTP 400)."""


@dataclass(frozen=True)
class Push:
    source: str     # gitea, gogs, github, gitlab
    ref: str        # refs/heads/main
    after: str      # the pushed commit
    deleted: bool

    @property
    def branch(self) -> str | None:
        return self.ref.removeprefix("refs/heads/") if self.ref.startswith("refs/heads/") else None


def hmac_hex(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def authenticate(headers: Mapping[str, str], body: bytes, secret: bytes) -> str:
    """The sender's format when the request carries a valid signature or token for `secret`;
    Unauthenticated otherwise. `headers` must look names up case-insensitively."""
    expected = hmac_hex(secret, body)
    for header, source in (("x-gitea-signature", "gitea"), ("x-gogs-signature", "gogs")):
        given = headers.get(header)
        if given is not None:
            if hmac.compare_digest(given.strip().lower().encode(), expected.encode()):
                return source
            raise Unauthenticated(f"{header} does not match the body")
    given = headers.get("x-hub-signature-256")
    if given is not None:
        if hmac.compare_digest(given.strip().lower().encode(), f"sha256={expected}".encode()):
            return "github"
        raise Unauthenticated("X-Hub-Signature-256 does not match the body")
    given = headers.get("x-gitlab-token")
    if given is not None:
        if hmac.compare_digest(given.encode(), secret):
            return "gitlab"
        raise Unauthenticated("X-Gitlab-Token is wrong")
    raise Unauthenticated("no X-Gitea-Signature, X-Gogs-Signature, X-Hub-Signature-256 or X-Gitlab-Token header")


EVENT_HEADERS = ("x-github-event", "x-gitea-event", "x-gogs-event", "x-gitlab-event")
PUSH_EVENTS = {"push", "push hook"}  # GitHub/Gitea/Gogs, GitLab


def other_event(headers: Mapping[str, str]) -> str | None:
    """The event's name when the sender says it is not a push (GitHub's `ping` right after the hook
    is made, a tag push, a merge request…), so that it is answered 200 and ignored rather than 400;
    None for a push or a request that names no event (then the body decides)."""
    for header in EVENT_HEADERS:
        event = headers.get(header)
        if event is not None and event.strip().lower() not in PUSH_EVENTS:
            return event.strip()[:100]
    return None


def parse_push(source: str, body: bytes) -> Push:
    """The push in an authenticated body, or Malformed naming what is missing."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("the body is not JSON") from None
    if not isinstance(data, dict):
        raise Malformed("the body is not a JSON object")
    ref, after = data.get("ref"), data.get("after")
    if not isinstance(ref, str) or not ref.startswith("refs/"):
        raise Malformed("'ref' is missing or not a git ref (refs/heads/BRANCH)")
    if not isinstance(after, str) or not SHA.match(after.lower()):
        raise Malformed("'after' is missing or not a commit SHA")
    if not isinstance(data.get("commits"), list):
        raise Malformed("'commits' is missing or not a list")
    return Push(source, ref, after.lower(), bool(ZERO.match(after)))
