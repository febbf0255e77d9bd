"""Timeline events for what users change through the API: an App created, a new revision (a deploy,
a rollback, a restart), a scale, and a write the quota refused — each naming who did it.

They are recorded here, where the user is known, and only here (the reconciler records what it
does to replicas, not why). A write is recorded after it committed; a refused one after its
transaction was rolled back, so the refusal is kept while the write is not.
"""

from __future__ import annotations

from dockyard.model.app import AppSpec, template_hash, template_of
from dockyard.store.repository import Event, Store, StoredObject

ROLLBACK_CAUSE = "rollback to revision "  # api/apps.py writes these causes; app_changed reads them
RESTART_CAUSE = "restart"


def _template(spec: dict) -> str:
    return template_hash(template_of(AppSpec.model_validate(spec)))


def app_created(store: Store, user: str, obj: StoredObject) -> None:
    spec = obj.spec
    store.record_event(Event(obj.scope, "App", obj.name, "Normal", "Created",
                             f"created by {user}: image {spec.get('image')}, {spec.get('replicas', 1)} replica(s)"))


def app_changed(store: Store, user: str, before: StoredObject, after: StoredObject, change_cause: str | None) -> None:
    """A deploy, rollback or restart when the container template changed, and a scale when the
    number of replicas did (an `apply` may do both)."""
    if _template(before.spec) != _template(after.spec):
        history = store.revisions(after.scope, after.name)
        revision = history[-1].revision if history else "?"
        image = after.spec.get("image")
        cause = change_cause or ""
        if cause.startswith(ROLLBACK_CAUSE):
            reason, message = "RolledBack", f"{user} rolled back to revision {cause[len(ROLLBACK_CAUSE):]} " \
                                            f"(now revision {revision}, image {image})"
        elif cause == RESTART_CAUSE:
            reason, message = "Restarted", f"{user} restarted every replica (revision {revision})"
        else:
            reason, message = "Deployed", f"revision {revision} by {user}: image {image}"
        store.record_event(Event(after.scope, "App", after.name, "Normal", reason, message))
    old, new = before.spec.get("replicas", 1), after.spec.get("replicas", 1)
    if old != new:
        store.record_event(Event(after.scope, "App", after.name, "Normal", "Scaled",
                                 f"scaled from {old} to {new} replicas by {user}"))


def quota_refused(store: Store, user: str, scope: str, name: str, spec: dict, detail: str) -> None:
    """A Warning in the project: what was asked (the App's replicas and limits) and which limit refused it."""
    res = spec.get("resources") or {}
    asked = f"{spec.get('replicas', 1)} replica(s) of cpu {res.get('cpu', '-')}, memory {res.get('memory', '-')}"
    store.record_event(Event(scope, "App", name, "Warning", "QuotaExceeded",
                             f"{user} asked for app {name} with {asked}: {detail}"))
