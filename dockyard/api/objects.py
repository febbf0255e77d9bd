"""The object operations behind every resource route: authorize, admit, apply the project's
defaults, security policy and quota, store, shape the response. Routers stay thin and call these;
every route that touches a tenant's objects goes through here with the caller's Authorizer."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, and_, select

from dockyard.admission import Admitted, FieldError, InvalidObject, admit, egress, requester  # noqa: F401 (FieldError re-exported)
from dockyard.api import change_events, cluster_rules
from dockyard.api.authz import Authorizer
from dockyard.api.deps import bearer_token
from dockyard.api.problems import Problem
from dockyard.model.app import AppSpec, keep_image_digest
from dockyard.model.kinds import KINDS
from dockyard.model.project import ProjectSpec
from dockyard.model.quota import Defaults, Quota
from dockyard.model.secret import SecretSpec
from dockyard.policy import quota as quota_math
from dockyard.policy import security
from dockyard.store.bindings import revoke_all
from dockyard.store.errors import Conflict, NotFound
from dockyard.store.repository import Store, StoredObject
from dockyard.store.robots import delete_project_robots
from dockyard.store.selectors import parse_selector
from dockyard.store.tables import resources

MAX_PAGE = 1000
# what a container gets when neither the app nor its project says (every container has limits)
PLATFORM_DEFAULTS = Defaults(cpu="1", memory="512Mi", pids=1024)


class QuotaExceeded(Problem):
    def __init__(self, message: str) -> None:
        super().__init__(403, message, title="Quota exceeded")


# --- authorization per kind --------------------------------------------------------------

# the permission actions that read and write each project-scoped kind (App: app.read / app.write)
KIND_ACTIONS: dict[str, tuple[str, str]] = {
    "AlertRule": ("alerts.read", "alerts.write"),
    "Silence": ("alerts.read", "alerts.write"),
    "Notifier": ("integrations.manage", "integrations.manage"),
    "LogDrain": ("integrations.manage", "integrations.manage"),
    "Build": ("builds.read", "builds.write"),
    "BuildConfig": ("builds.read", "builds.write"),
}
# kinds that live in a project: they need it to exist, are listed in it and go with it
PROJECT_KINDS = tuple(k for k, info in KINDS.items() if info.scope == "project")


def _split(scope: str) -> tuple[str, str]:
    t, _, p = scope.partition("/")
    return t, p


def _authorize(authz: Authorizer, kind: str, verb: str, scope: str, name: str | None) -> None:
    if kind in ("Secret", "Config"):
        tenant, project = _split(scope)
        authz.require("secret.read" if verb == "read" else "secret.write", tenant=tenant, project=project,
                      missing=f"{kind.lower()} '{scope}/{name}' not found" if name else f"project '{scope}' not found")
    elif kind == "Cluster":
        authz.require("clusters.manage")  # admin only, list and read included (endpoints, certificates)
    elif kind == "Tenant":
        tenant = name or ""
        action = {"read": "tenant.read", "create": "tenant.create", "update": "tenant.update",
                  "delete": "tenant.delete"}[verb]
        authz.require(action, tenant=tenant or None, missing=f"tenant '{tenant}' not found")
    elif kind == "Project":
        action = {"read": "project.read", "create": "project.create", "update": "project.update",
                  "delete": "project.delete"}[verb]
        missing = f"project '{scope}/{name}' not found"
        if verb in ("create", "delete"):
            # deciding at tenant level; the project itself must still be visible for delete
            if verb == "delete" and not authz.can_see_project(scope, name or ""):
                raise NotFound(missing)
            authz.require(action, tenant=scope, missing=f"tenant '{scope}' not found")
        else:
            authz.require(action, tenant=scope, project=name, missing=missing)
    else:
        tenant, project = _split(scope)
        read, write = KIND_ACTIONS.get(kind, ("app.read", "app.write"))
        action = read if verb == "read" else write
        authz.require(action, tenant=tenant, project=project,
                      missing=f"{kind.lower()} '{scope}/{name}' not found" if name else
                      f"project '{scope}' not found")


def _property_checks(authz: Authorizer, kind: str, new_spec: dict, old_spec: dict | None, tenant: str) -> None:
    """Fields only admins may set: quotas and the privileged policy."""
    if kind in ("Tenant", "Project") and (new_spec.get("quota") or {}) != ((old_spec or {}).get("quota") or {}):
        authz.require("tenant.quota", tenant=tenant)
    if kind == "Project" and new_spec.get("securityPolicy") == "privileged" and \
            (old_spec or {}).get("securityPolicy") != "privileged":
        authz.require("project.privileged", tenant=tenant)


def _egress_checks(authz: Authorizer, a: Admitted, current: StoredObject | None) -> dict[str, str]:
    """URLs the platform will send to (log drains, notifiers), checked with the writer's rights;
    returns the annotations to store (see admission/egress.py)."""
    try:
        return egress.admit_destinations(a.kind, a.spec, a.annotations, is_admin=authz.is_admin,
                                         previous=(current.spec, current.annotations) if current else None)
    except egress.DestinationForbidden as e:
        raise Problem(403, "; ".join(f"{x.field}: {x.message}" for x in e.errors), errors=e.errors,
                      title="Destination forbidden") from None


# --- apps: defaults, policy, quota ---------------------------------------------------------

def _project_of(store: Store, scope: str) -> StoredObject:
    tenant, project = _split(scope)
    try:
        return store.get("Project", tenant, project)
    except NotFound:
        raise NotFound(f"project '{scope}' not found; create it first") from None


def _apply_defaults(spec: AppSpec, defaults: Defaults) -> None:
    res = spec.resources
    if res.limit_cpu() is None:
        res.cpu = defaults.cpu or PLATFORM_DEFAULTS.cpu
    if res.limit_memory() is None:
        res.memory = defaults.memory or PLATFORM_DEFAULTS.memory
    if res.pids is None:
        res.pids = defaults.pids or PLATFORM_DEFAULTS.pids


def _admit_app(store: Store, a: Admitted) -> dict:
    """Project defaults and the security policy, for every path that makes containers."""
    project = ProjectSpec.model_validate(_project_of(store, a.scope).spec)
    spec = AppSpec.model_validate(a.spec)
    _apply_defaults(spec, project.defaults)
    security.harden(spec, project.security_policy)
    violations = security.check(spec, project.security_policy)
    if violations:
        errors = [FieldError(v.field, v.message) for v in violations]
        raise Problem(403, "; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors,
                      title="Forbidden by security policy")
    return spec.model_dump(by_alias=True, exclude_none=True, mode="json")


def _usage(conn: Connection, scopes: list[str], exclude: tuple[str, str] | None) -> quota_math.Usage:
    used = quota_math.Usage()
    rows = conn.execute(select(resources.c.scope, resources.c.name, resources.c.spec).where(and_(
        resources.c.kind == "App", resources.c.scope.in_(scopes)))).all()
    for r in rows:
        if exclude and (r.scope, r.name) == exclude:
            continue
        used.add(AppSpec.model_validate(r.spec))
    return used


def _quota_check(store: Store) -> Any:
    """Runs inside the write transaction: usage is read and the write made under the same lock,
    so concurrent creates cannot both pass (the project and tenant rows are locked first)."""

    def check(conn: Connection, obj: StoredObject) -> None:
        tenant, project = _split(obj.scope)
        t_row = conn.execute(select(resources.c.spec).where(and_(
            resources.c.kind == "Tenant", resources.c.scope == "", resources.c.name == tenant)).with_for_update()).first()
        p_row = conn.execute(select(resources.c.spec).where(and_(
            resources.c.kind == "Project", resources.c.scope == tenant, resources.c.name == project))
            .with_for_update()).first()
        if p_row is None:
            raise NotFound(f"project '{obj.scope}' not found; create it first")
        new = AppSpec.model_validate(obj.spec)
        key = (obj.scope, obj.name)
        p_quota = Quota.model_validate(p_row.spec.get("quota") or {})
        if any(getattr(p_quota, r) is not None for r in quota_math.RESOURCES):
            before = _usage(conn, [obj.scope], None)
            after = _usage(conn, [obj.scope], key)
            after.add(new)
            msg = quota_math.exceeded(p_quota, before, after, f"project {obj.scope}")
            if msg:
                raise QuotaExceeded(msg)
        t_quota = Quota.model_validate((t_row.spec if t_row else {}).get("quota") or {})
        if any(getattr(t_quota, r) is not None for r in quota_math.RESOURCES):
            scopes = [f"{tenant}/{n}" for n in conn.execute(select(resources.c.name).where(and_(
                resources.c.kind == "Project", resources.c.scope == tenant))).scalars()]
            before = _usage(conn, scopes, None)
            after = _usage(conn, scopes, key)
            after.add(new)
            msg = quota_math.exceeded(t_quota, before, after, f"tenant {tenant}")
            if msg:
                raise QuotaExceeded(msg)

    return check


def _parent_check(store: Store, kind: str) -> Any:
    def check(conn: Connection, obj: StoredObject) -> None:
        if kind == "Project":
            # lock the tenant row: a concurrent tenant delete either sees this project or wins first
            tenant = conn.execute(select(resources.c.id).where(and_(
                resources.c.kind == "Tenant", resources.c.scope == "", resources.c.name == obj.scope))
                .with_for_update()).first()
            if tenant is None:
                raise NotFound(f"tenant '{obj.scope}' not found; create it first")
            cluster_rules.project_cluster_exists(conn, obj)
        if kind in PROJECT_KINDS:  # an App is checked with its quota instead
            tenant, project = _split(obj.scope)
            if not store.exists(conn, "Project", tenant, project):
                raise NotFound(f"project '{obj.scope}' not found; create it first")

    return check


def _seal_secret(store: Store, a: Admitted, current: StoredObject | None) -> dict:
    """Encrypt a Secret's value for storage; a write without a value keeps the stored one."""
    spec = SecretSpec.model_validate(a.spec)
    plain = spec.plain()
    if plain is None:
        if current is None:
            raise InvalidObject("Secret", [FieldError("spec.value", "is required: give value or valueBase64")])
        return current.spec
    digest = hashlib.sha256(plain).hexdigest()
    if current is not None and current.spec.get("sha256") == digest:
        return current.spec  # same value: no change, no new generation
    if store.keyring is None:
        raise Problem(503, "secrets are unavailable: the server has no key ring")
    key_id, token = store.keyring.encrypt(plain)
    return {"sha256": digest, "size": len(plain), "keyId": key_id, "ciphertext": token}


@contextmanager
def _quota_refusals_recorded(store: Store, authz: Authorizer, a: Admitted, dry_run: bool) -> Iterator[None]:
    """A write the quota refuses leaves a Warning event in the project, recorded after its
    transaction was rolled back (a dry run only asks, and records nothing)."""
    try:
        yield
    except QuotaExceeded as e:
        if not dry_run:
            change_events.quota_refused(store, authz.user.name, a.scope, a.name, a.spec, e.detail)
        raise


# --- operations --------------------------------------------------------------------------

def create(store: Store, authz: Authorizer, kind: str, body: Any, *, scope: str | None, dry_run: bool) -> dict:
    if kind in PROJECT_KINDS and scope is not None:
        _authorize(authz, kind, "create", scope, None)  # an invisible project is a 404 before anything else
    elif kind == "Tenant":
        authz.require("tenant.create")
    elif kind == "Cluster":
        authz.require("clusters.manage")
    a = admit(kind, body, scope=scope)
    cluster_rules.check_name(a)
    _authorize(authz, kind, "create", a.scope, a.name)
    _property_checks(authz, kind, a.spec, None, _split(a.scope)[0] or a.name)
    a.annotations = _egress_checks(authz, a, None)
    a.annotations = requester.stamp(a.kind, a.annotations, authz.user.name)
    if kind == "App":
        a.spec = _admit_app(store, a)
        check = _quota_check(store)
    else:
        if kind == "Secret":
            a.spec = _seal_secret(store, a, None)
        elif kind == "Cluster":
            a.spec = cluster_rules.seal_tls_keys(store, a, None)
        check = _parent_check(store, kind)
    with _quota_refusals_recorded(store, authz, a, dry_run):
        obj = store.create(kind, a.scope, a.name, a.spec, labels=a.labels, annotations=a.annotations,
                           dry_run=dry_run, check=check)
    if kind == "App" and not dry_run:
        change_events.app_created(store, authz.user.name, obj)
    return obj.manifest()


def _replace_admitted(store: Store, authz: Authorizer, a: Admitted, *, dry_run: bool,
                      change_cause: str | None = None) -> dict:
    current = store.get(a.kind, a.scope, a.name)
    _property_checks(authz, a.kind, a.spec, current.spec, _split(a.scope)[0] or a.name)
    cluster_rules.project_cluster_unchanged(a, current)
    a.annotations = _egress_checks(authz, a, current)
    a.annotations = requester.stamp(a.kind, a.annotations, authz.user.name)
    check = None
    if a.kind == "App":
        a.spec = keep_image_digest(current.spec, _admit_app(store, a))
        check = _quota_check(store)
    elif a.kind == "Secret":
        a.spec = _seal_secret(store, a, current)
    elif a.kind == "Cluster":
        a.spec = cluster_rules.seal_tls_keys(store, a, current)
        check = cluster_rules.cluster_keeps_its_tenants
    with _quota_refusals_recorded(store, authz, a, dry_run):
        obj = store.replace(a.kind, a.scope, a.name, a.spec, labels=a.labels, annotations=a.annotations,
                            expected_rv=a.resource_version, dry_run=dry_run, check=check, change_cause=change_cause)
    if a.kind == "App" and not dry_run:
        change_events.app_changed(store, authz.user.name, current, obj, change_cause)
    return obj.manifest()


def replace(store: Store, authz: Authorizer, kind: str, body: Any, *, scope: str, name: str,
            dry_run: bool, change_cause: str | None = None) -> dict:
    """Replace an object with `body`. `change_cause` is what an App's new revision records
    (default: see Store.replace)."""
    _authorize(authz, kind, "update", scope, name)
    a = admit(kind, body, scope=scope, name=name)
    return _replace_admitted(store, authz, a, dry_run=dry_run, change_cause=change_cause)


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


def patch(store: Store, authz: Authorizer, kind: str, body: Any, *, scope: str, name: str,
          dry_run: bool, change_cause: str | None = None) -> dict:
    """Apply a JSON merge patch. `change_cause` is what an App's new revision records (default:
    see Store.replace)."""
    _authorize(authz, kind, "update", scope, name)
    if not isinstance(body, dict):
        raise InvalidObject(kind, [FieldError("(object)", "a merge patch must be a JSON object")])
    current = store.get(kind, scope, name).manifest()
    merged = merge_patch(current, body)
    merged.pop("status", None)
    if kind == "App":
        _drop_carried_digest(current, body, merged)
    meta = merged.setdefault("metadata", {})
    # without a resourceVersion in the patch, the patch applies to what we just read
    patch_rv = (body.get("metadata") or {}).get("resourceVersion")
    meta["resourceVersion"] = patch_rv or current["metadata"]["resourceVersion"]
    a = admit(kind, merged, scope=scope, name=name)
    return _replace_admitted(store, authz, a, dry_run=dry_run, change_cause=change_cause)


def _drop_carried_digest(current: dict, body: dict, merged: dict) -> None:
    """A patch that changes `spec.image` without giving `spec.imageDigest` must not keep the
    current digest (the merge carries it along): replicas would run the new tag's name at the old
    tag's digest. Without it the controller resolves the new tag."""
    spec_patch = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    if "image" in spec_patch and "imageDigest" not in spec_patch and \
            spec_patch["image"] != (current.get("spec") or {}).get("image") and isinstance(merged.get("spec"), dict):
        merged["spec"].pop("imageDigest", None)


def delete(store: Store, authz: Authorizer, kind: str, *, scope: str, name: str, dry_run: bool) -> dict:
    _authorize(authz, kind, "delete", scope, name)
    check = None
    if kind == "Tenant":
        def check(conn: Connection, obj: StoredObject) -> None:
            # inside the delete's transaction: a project created meanwhile cannot be orphaned
            first = conn.execute(select(resources.c.name).where(and_(
                resources.c.kind == "Project", resources.c.scope == name)).limit(1)).scalar()
            if first is not None:
                raise Conflict(f"tenant '{name}' still has projects (for example {name}/{first}); delete them first")
    elif kind == "Cluster":
        check = cluster_rules.cluster_unused
    cascade = PROJECT_KINDS if kind == "Project" else ()
    obj = store.delete(kind, scope, name, dry_run=dry_run, cascade=cascade, check=check)
    if not dry_run and kind == "Project":
        revoke_all(store, tenant=scope, project=name)
        delete_project_robots(store, scope, name)
    elif not dry_run and kind == "Tenant":
        revoke_all(store, tenant=name)
    return obj.manifest()


def get(store: Store, authz: Authorizer, kind: str, *, scope: str, name: str) -> dict:
    _authorize(authz, kind, "read", scope, name)
    return store.get(kind, scope, name).manifest()


def visible_filter(authz: Authorizer, kind: str) -> Any:
    """A predicate on (scope, name) for what the caller may see in a list or a watch."""
    scopes = authz.visible_scopes()
    if scopes is None:
        return None
    tenants, projects = scopes
    if kind == "Tenant":
        seen = tenants | {p.split("/")[0] for p in projects}
        return lambda scope, name: name in seen
    if kind == "Project":
        return lambda scope, name: scope in tenants or f"{scope}/{name}" in projects
    return lambda scope, name: scope.split("/")[0] in tenants or scope in projects


def reauthorize(store: Store, request: Any) -> Authorizer:
    """The caller's Authorizer as of now, from the request's token (for long-lived streams)."""
    token = bearer_token(request)
    user = store.token_cache.authenticate(store, token) if token else None
    if user is None:
        raise Problem(401, "the token is no longer valid")
    return Authorizer(store, user)


def check_list_scope(authz: Authorizer, kind: str, scope: str | None) -> None:
    """Whether the caller may list `kind` in `scope` (raises like a list would)."""
    if scope is not None and kind in PROJECT_KINDS:
        _authorize(authz, kind, "read", scope, None)
    elif scope and kind == "Project":
        authz.require("tenant.read", tenant=scope)


def list_page(store: Store, authz: Authorizer, kind: str, *, scope: str | None = None,
              label_selector: str | None = None, limit: int | None = None, continue_token: str | None = None,
              name_contains: str | None = None) -> dict:
    check_list_scope(authz, kind, scope)
    try:
        selector = parse_selector(label_selector) if label_selector else None
    except ValueError as e:
        raise Problem(400, f"labelSelector: {e}") from None
    if limit is not None and not 1 <= limit <= MAX_PAGE:
        raise Problem(400, f"limit must be between 1 and {MAX_PAGE}")
    try:
        items, token, rv = store.list(kind, scope=scope, selector=selector, limit=limit, continue_token=continue_token,
                                      name_contains=name_contains, visible=visible_filter(authz, kind))
    except ValueError as e:
        raise Problem(400, f"continue: {e}") from None
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if token:
        meta["continue"] = token
    return {"apiVersion": "dockyard/v1", "kind": f"{kind}List", "metadata": meta,
            "items": [i.manifest() for i in items]}


def quota_report(store: Store, authz: Authorizer, tenant: str, project: str,
                 storage: Callable[[str, str], int] | None = None) -> dict:
    """Used and hard amounts of a project and of its tenant; `storage(tenant, project)` gives the
    registry bytes a project holds (none without a registry of our own)."""
    authz.require("project.read", tenant=tenant, project=project)
    p = store.get("Project", tenant, project)
    t = store.get("Tenant", "", tenant)
    with store.read_engine.connect() as conn:
        p_used = _usage(conn, [f"{tenant}/{project}"], None)
        names = list(conn.execute(select(resources.c.name).where(and_(
            resources.c.kind == "Project", resources.c.scope == tenant))).scalars())
        t_used = _usage(conn, [f"{tenant}/{n}" for n in names], None)
    if storage is not None:
        p_used.storage = storage(tenant, project)
        t_used.storage = sum(storage(tenant, n) for n in names)

    def rows(q: Quota, used: quota_math.Usage) -> dict:
        out = {}
        for r in quota_math.RESOURCES:
            hard = quota_math.hard_amount(q, r)
            out[r] = {"used": quota_math.show(r, used.amount(r)),
                      "hard": quota_math.show(r, hard) if hard is not None else None}
        return out

    return {"project": {"name": f"{tenant}/{project}",
                        "resources": rows(Quota.model_validate(p.spec.get("quota") or {}), p_used)},
            "tenant": {"name": tenant, "resources": rows(Quota.model_validate(t.spec.get("quota") or {}), t_used)},
            "defaults": ProjectSpec.model_validate(p.spec).defaults.dump()}

