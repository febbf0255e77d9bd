"""Rolling a successful build out: the App's `spec.imageDigest` becomes the pushed digest, written
like an API write by the user who asked for the build (their rights, the project's defaults, policy
and quota, an App change event, an audit entry) with the change cause "build NAME".

The shape is the one autoDeploy writes (`registry/autodeploy.py`): a tag reference in `spec.image`
and the digest beside it. An App that follows one of the tags the build pushed (`web:main`) keeps
its image; any other App is pointed at the build's commit tag. Writing `image@digest` instead left
an `imageDigest` resolved from an earlier tag beside it, and revisions named two digests."""

from __future__ import annotations

from dockyard.admission import InvalidObject
from dockyard.api import objects
from dockyard.api.authz import Authorizer
from dockyard.api.problems import Problem
from dockyard.store import audit
from dockyard.store.errors import StoreError
from dockyard.store.repository import CHANGE_CAUSE, Store, now
from dockyard.store.users import get_user


class DeployError(Exception):
    """The App could not be changed; the message says why."""


def image_patch(current_image: str, target: str, tags: list[str], digest: str) -> dict:
    """The spec patch that runs `target@digest`, pushed as `target:TAG` for each of `tags` (the
    commit's tag first)."""
    repo, sep, tag = current_image.rpartition(":")
    if "@" not in current_image and sep and "/" not in tag and repo == target and tag in tags:
        return {"imageDigest": digest}
    return {"image": f"{target}:{tags[0]}", "imageDigest": digest}


def deploy(store: Store, *, scope: str, app: str, target: str, tags: list[str], digest: str, build: str,
           requester: str) -> int:
    """Roll App `scope/app` to `target@digest`; return the App's new generation."""
    cause = f"build {build}"
    image = f"{target}@{digest}"
    tenant, _, project = scope.partition("/")
    path = f"/projects/{scope}/apps/{app}"
    outcome, detail = 200, f"{cause}: image {image}"
    try:
        user = get_user(store, requester)
        if user is None:
            outcome = 403
            raise DeployError(f"user '{requester}', who asked for the build, no longer exists")
        try:
            current = store.get("App", scope, app).spec.get("image", "")
        except StoreError:
            current = ""  # the patch below says it is gone, with the usual outcome
        patch = {"spec": image_patch(current, target, tags, digest), "metadata": {"annotations": {CHANGE_CAUSE: cause}}}
        try:
            obj = objects.patch(store, Authorizer(store, user), "App", patch, scope=scope, name=app, dry_run=False,
                                change_cause=cause)
        except Problem as e:
            outcome = e.status
            raise DeployError(f"deploying to app '{app}' failed: {e.detail}") from None
        except InvalidObject as e:
            outcome = 422
            raise DeployError(f"deploying to app '{app}' failed: {e}") from None
        except StoreError as e:
            outcome = 404 if "not found" in str(e) else 409
            raise DeployError(f"deploying to app '{app}' failed: {e}") from None
        return int(obj["metadata"]["generation"])
    except DeployError as e:
        detail = str(e)
        raise
    finally:
        audit.append(store, audit.AuditEntry(
            at=now(), user=requester, source="build", method="PATCH", path=f"/api/v1{path}",
            action="PATCH /projects/{tenant}/{project}/apps/{name}", tenant=tenant, project=project, object=path,
            outcome=outcome, detail=detail))
