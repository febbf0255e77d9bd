"""Admission of the URLs an object makes the platform send to (log drains, notifiers).

One place for the rule of `dockyard.policy.egress` as it applies to a write: the URL is checked with
the *writer's* rights, and the object's `PRIVATE_ANNOTATION` is set or cleared here, never taken
from the manifest (a user cannot mark their own object as admin-approved). Senders then allow a
loopback or private destination only to objects that carry the annotation, re-checking at send time.

Kinds with destinations are listed in `DESTINATIONS`, one function `spec → [SpecDestination]` each
(LogDrain: `spec.url`; Notifier: `spec.url`, or `spec.smtp.host` for email; Build and
BuildConfig: `spec.source.git`, cloned by the build runner); `api/objects.py` calls
`admit_destinations` on every create, replace and patch, so a new kind needs only its entry here.
Senders re-check with `allowed_at_send` (or `policy.egress.check_url`, allow_private = the annotation).

Outcomes, both naming the field (e.g. `spec.url`):
- link-local / metadata / reserved / wrong scheme → `InvalidObject` (422), for everyone;
- loopback or private written by a non-admin → `DestinationForbidden` (403), unless the object already
  carries the annotation and that very URL is unchanged (a maintainer may still pause an admin's
  drain or change its labels without the admin's mark being lost)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from dockyard.admission import FieldError, InvalidObject
from dockyard.model.alerts import NotifierSpec
from dockyard.model.build import BUILD_FIELDS, GIT_SCHEMES, BuildSpec
from dockyard.model.logdrain import LogDrainSpec
from dockyard.policy.egress import PRIVATE_ANNOTATION, Destination, EgressRefused, Resolver, check_url, system_resolve


@dataclass(frozen=True)
class SpecDestination:
    field: str                 # where the URL is in the manifest, e.g. "spec.url"
    url: str
    schemes: frozenset[str]


class DestinationForbidden(Exception):
    """A loopback or private destination written by someone who is not a platform admin."""

    def __init__(self, kind: str, errors: list[FieldError]) -> None:
        self.kind = kind
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


def _log_drain(spec: dict) -> list[SpecDestination]:
    try:
        s = LogDrainSpec.model_validate(spec)
    except ValidationError:
        return []  # admission has validated the spec already; nothing to check otherwise
    return [SpecDestination("spec.url", s.url, s.schemes)]


def _notifier(spec: dict) -> list[SpecDestination]:
    """A chat or webhook notifier posts to spec.url; an email notifier connects to spec.smtp.host."""
    try:
        s = NotifierSpec.model_validate(spec)
    except ValidationError:
        return []
    if s.smtp is not None:
        host = f"[{s.smtp.host}]" if ":" in s.smtp.host else s.smtp.host
        return [SpecDestination("spec.smtp.host", f"smtp://{host}:{s.smtp.port}", frozenset({"smtp"}))]
    return [SpecDestination("spec.url", s.url, frozenset({"http", "https"}))] if s.url else []


def _build(spec: dict) -> list[SpecDestination]:
    """A Build or BuildConfig clones spec.source.git on the server host."""
    try:
        s = BuildSpec.model_validate({k: v for k, v in spec.items() if k in BUILD_FIELDS})
    except ValidationError:
        return []
    return [SpecDestination("spec.source.git", s.source.git, GIT_SCHEMES)]


DESTINATIONS: dict[str, Callable[[dict], list[SpecDestination]]] = {
    "LogDrain": _log_drain,
    "Notifier": _notifier,
    "Build": _build,
    "BuildConfig": _build,
}


def admit_destinations(kind: str, spec: dict, annotations: dict[str, str], *, is_admin: bool,
                       previous: tuple[dict, dict[str, str]] | None = None,
                       resolve: Resolver | None = None) -> dict[str, str]:
    """Check every destination of an object of `kind` being written and return the annotations
    to store. `previous` is the stored (spec, annotations), for a replace or patch.

    Host names are not resolved here by default: a write must not make the server query DNS for
    any name a user types, and what a name resolves to can change anyway. Literal addresses,
    `localhost` and metadata names are judged now; names are judged on every send, where a name
    that leads to a private address is refused unless an admin wrote the object."""
    find = DESTINATIONS.get(kind)
    if find is None:
        return annotations
    out = {k: v for k, v in annotations.items() if k != PRIVATE_ANNOTATION}
    kept = {d.url for d in find(previous[0])} if previous and PRIVATE_ANNOTATION in previous[1] else set()
    invalid: list[FieldError] = []
    forbidden: list[FieldError] = []
    private = False
    for d in find(spec):
        try:
            dest = check_url(d.url, schemes=d.schemes, allow_private=True, resolve=resolve)
        except EgressRefused as e:
            invalid.append(FieldError(d.field, str(e)))
            continue
        if not dest.private and dest.addresses:
            continue  # a public address
        if is_admin or d.url in kept:
            private = True  # also for an admin's host name: it may lead to an internal service
            continue
        if not dest.private:
            continue  # a name, not resolved here: senders refuse it if it leads somewhere private
        try:
            check_url(d.url, schemes=d.schemes, allow_private=False, resolve=resolve)
        except EgressRefused as e:
            forbidden.append(FieldError(d.field, str(e)))
    if invalid:
        raise InvalidObject(kind, invalid + forbidden)
    if forbidden:
        raise DestinationForbidden(kind, forbidden)
    if private:
        out[PRIVATE_ANNOTATION] = "true"
    return out


def allowed_at_send(url: str, schemes: frozenset[str], annotations: dict[str, str],
                    resolve: Resolver = system_resolve) -> Destination:
    """The destination a sender may connect to now (names are resolved again: DNS can change since
    admission), or EgressRefused. Private addresses only for objects carrying the annotation."""
    return check_url(url, schemes=schemes, allow_private=PRIVATE_ANNOTATION in annotations, resolve=resolve)
