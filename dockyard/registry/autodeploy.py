"""Auto-deploy: an App with `autoDeploy: true` whose image names a tag in its project's repository
rolls out the digest that tag points to after a push.

The roll-out is an ordinary spec write: `spec.imageDigest` changes, the store records a new
revision with the change cause "push of TAG by USER", and the App's reconciler performs a normal
rolling update. Writing the digest (not just reconciling) is what makes history and rollback exact.
Both the push notification (registry/events.py) and the controllers' periodic check
(controllers/images.py, for a notification that never arrived) call `roll_out_digest`; it does
nothing when the App already runs that digest, so a repeat or a race between them is harmless.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from dockyard.registry.settings import RegistrySettings
from dockyard.store.errors import Conflict, NotFound
from dockyard.store.repository import Event, Store, StoredObject

log = logging.getLogger(__name__)
PUSH_CAUSE = "push of "


@dataclass(frozen=True)
class ImageTarget:
    """The repository and tag an App's image names in its own project's registry space."""

    repository: str  # tenant/project/name
    tag: str


def image_target(settings: RegistrySettings | None, scope: str, image: str) -> ImageTarget | None:
    """Where `image` lives in Dockyard's registry when it is in the App's own project (whose pull
    credential the engine gets); None for any other image."""
    if settings is None:
        return None
    found = settings.image_project(image)
    if found is None:
        return None
    tenant, project, name, tag = found
    if f"{tenant}/{project}" != scope:
        return None
    return ImageTarget(f"{tenant}/{project}/{name}", tag or "latest")


def image_keys(settings: RegistrySettings | None, scope: str, image: str) -> list[tuple[str, str]]:
    """What an App's image names in its own project's repositories: (repository, tag) for
    `repo:tag`, (repository, digest) for `repo@sha256:…` (a build's deploy), both for
    `repo:tag@sha256:…`; [] for any other image. A tag never contains ':', a digest always does."""
    target = image_target(settings, scope, image)
    if target is None:
        return []
    ref, _, digest = image.partition("@")
    keys = [(target.repository, digest)] if digest else []
    tagged = ":" in ref.rsplit("/", 1)[-1]
    return keys + [(target.repository, target.tag)] if tagged or not digest else keys


def apps_by_image(store: Store, settings: RegistrySettings | None, scope: str) -> dict[tuple[str, str], list[str]]:
    """The names of the scope's Apps under each key `image_keys` gives their image: (repository,
    tag) for Apps naming a tag, (repository, digest) for Apps naming a digest."""
    out: dict[tuple[str, str], list[str]] = {}
    for app in store.list("App", scope=scope)[0]:
        for key in image_keys(settings, scope, app.spec.get("image", "")):
            out.setdefault(key, []).append(app.name)
    return out


def push_cause(tag: str, actor: str) -> str:
    return f"{PUSH_CAUSE}{tag} by {actor or 'unknown'}"


def followed_tag(settings: RegistrySettings | None, app: StoredObject) -> ImageTarget | None:
    """The tag an App with autoDeploy on follows: its image's, when that is a tag (not a digest)
    of its own project's repository; None when it follows none."""
    image = app.spec.get("image", "")
    if not app.spec.get("autoDeploy") or "@" in image:
        return None
    return image_target(settings, app.scope, image)


def apps_following(store: Store, settings: RegistrySettings | None, repository: str, tag: str) -> list[StoredObject]:
    """Apps of the repository's project with autoDeploy on whose image is repository:tag."""
    scope = "/".join(repository.split("/", 2)[:2])
    return [app for app in store.list("App", scope=scope)[0]
            if followed_tag(settings, app) == ImageTarget(repository, tag)]


def roll_out_digest(store: Store, app: StoredObject, digest: str, cause: str) -> bool:
    """Write `digest` into the App's spec (a new revision with `cause`); False when it already
    runs it, or the App changed or went meanwhile (its own reconcile resolves the tag again)."""
    if app.spec.get("imageDigest") == digest:
        return False
    spec = {**app.spec, "imageDigest": digest}
    try:
        store.replace("App", app.scope, app.name, spec, expected_rv=app.resource_version, change_cause=cause)
    except (Conflict, NotFound):
        return False
    history = store.revisions(app.scope, app.name)
    revision = history[-1].revision if history else "?"
    store.record_event(Event(app.scope, "App", app.name, "Normal", "Deployed",
                             f"revision {revision} by autoDeploy ({cause}): image {app.spec['image']}@{digest}"))
    log.info("app %s/%s: %s rolls out %s", app.scope, app.name, cause, digest)
    return True

