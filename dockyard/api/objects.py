"""The object operations behind every resource route: admit, check parents, store, shape the
response. Routers stay thin and call these."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import Connection

from dockyard.admission import Admitted, FieldError, InvalidObject, admit
from dockyard.api.problems import Problem
from dockyard.model.kinds import KINDS
from dockyard.store.errors import Conflict, NotFound
from dockyard.store.repository import Store, StoredObject
from dockyard.store.selectors import parse_selector

MAX_PAGE = 1000


def _parent_check(store: Store, kind: str) -> Any:
    scope_kind = KINDS[kind].scope

    def check(conn: Connection, obj: StoredObject) -> None:
        if scope_kind == "tenant" and not store.exists(conn, "Tenant", "", obj.scope):
            raise NotFound(f"tenant '{obj.scope}' not found; create it first")
        if scope_kind == "project":
            tenant, project = obj.scope.split("/", 1)
            if not store.exists(conn, "Project", tenant, project):
                raise NotFound(f"project '{obj.scope}' not found; create it first")

    return check


def create(store: Store, kind: str, body: Any, *, scope: str | None, dry_run: bool) -> dict:
    a = admit(kind, body, scope=scope)
    obj = store.create(kind, a.scope, a.name, a.spec, labels=a.labels, annotations=a.annotations,
                       dry_run=dry_run, check=_parent_check(store, kind))
    return obj.manifest()


def replace(store: Store, kind: str, body: Any, *, scope: str, name: str, dry_run: bool) -> dict:
    a = admit(kind, body, scope=scope, name=name)
    return _replace(store, a, dry_run=dry_run)


def _replace(store: Store, a: Admitted, *, dry_run: bool) -> dict:
    obj = store.replace(a.kind, a.scope, a.name, a.spec, labels=a.labels, annotations=a.annotations,
                        expected_rv=a.resource_version, dry_run=dry_run)
    return obj.manifest()


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def patch(store: Store, kind: str, body: Any, *, scope: str, name: str, dry_run: bool) -> dict:
    if not isinstance(body, dict):
        raise InvalidObject(kind, [FieldError("(object)", "a merge patch must be a JSON object")])
    current = store.get(kind, scope, name).manifest()
    merged = merge_patch(current, body)
    merged.pop("status", None)
    meta = merged.setdefault("metadata", {})
    # without a resourceVersion in the patch, the patch applies to what we just read
    patch_rv = (body.get("metadata") or {}).get("resourceVersion")
    meta["resourceVersion"] = patch_rv or current["metadata"]["resourceVersion"]
    a = admit(kind, merged, scope=scope, name=name)
    return _replace(store, a, dry_run=dry_run)


def delete(store: Store, kind: str, *, scope: str, name: str, dry_run: bool) -> dict:
    if kind == "Tenant":
        projects, _, _ = store.list("Project", scope=name, limit=1)
        if projects:
            raise Conflict(f"tenant '{name}' still has projects (for example {name}/{projects[0].name}); "
                           "delete them first")
    cascade = ("App",) if kind == "Project" else ()
    obj = store.delete(kind, scope, name, dry_run=dry_run, cascade=cascade)
    return obj.manifest()


def get(store: Store, kind: str, *, scope: str, name: str) -> dict:
    return store.get(kind, scope, name).manifest()


def list_page(store: Store, kind: str, *, scope: str | None = None, scope_prefix: str | None = None,
              label_selector: str | None = None, limit: int | None = None, continue_token: str | None = None,
              name_contains: str | None = None) -> dict:
    try:
        selector = parse_selector(label_selector) if label_selector else None
    except ValueError as e:
        raise Problem(400, f"labelSelector: {e}") from None
    if limit is not None and not 1 <= limit <= MAX_PAGE:
        raise Problem(400, f"limit must be between 1 and {MAX_PAGE}")
    try:
        items, token, rv = store.list(kind, scope=scope, scope_prefix=scope_prefix, selector=selector,
                                      limit=limit, continue_token=continue_token, name_contains=name_contains)
    except ValueError as e:
        raise Problem(400, f"continue: {e}") from None
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if token:
        meta["continue"] = token
    return {"apiVersion": "dockyard/v1", "kind": f"{kind}List", "metadata": meta,
            "items": [i.manifest() for i in items]}
