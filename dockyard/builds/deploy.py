"""Rolling a successful build out: the App's `spec.image` becomes the pushed digest, written like
an API write by the user who asked for the build (their rights, the project's defaults, policy and
quota, an App change event, an audit entry) with the change cause "build NAME"."""

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


def deploy(store: Store, *, scope: str, app: str, image: str, build: str, requester: str) -> int:
    """Set App `scope/app`'s image to `image`; return the App's new generation."""
    cause = f"build {build}"
    tenant, _, project = scope.partition("/")
    path = f"/projects/{scope}/apps/{app}"
    outcome, detail = 200, f"{cause}: image {image}"
    try:
        user = get_user(store, requester)
        if user is None:
            outcome = 403
            raise DeployError(f"user '{requester}', who asked for the build, no longer exists")
        patch = {"spec": {"image": image}, "metadata": {"annotations": {CHANGE_CAUSE: cause}}}
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
