"""What the generic object operations (api/objects.py) do differently because of Kind Cluster:
seal the endpoints' TLS keys, keep the reserved name `local` out of the store, bind a Project to
an existing cluster for good, refuse to delete a cluster that projects use, and refuse — fast, with
503 — writes to Apps, Secrets and Configs of a project whose cluster cannot apply changes now."""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import Request
from sqlalchemy import Connection, and_, select
from starlette.concurrency import run_in_threadpool

from dockyard.admission import Admitted, FieldError, InvalidObject
from dockyard.api.problems import Problem
from dockyard.model.cluster import LOCAL, SEALED, ClusterError, open_to, without_addresses
from dockyard.model.project import project_cluster
from dockyard.store.errors import Conflict, NotFound
from dockyard.store.repository import Store, StoredObject
from dockyard.store.tables import resources

RETRY_AFTER = "5"  # seconds: the router re-probes a cluster at least this often


def check_name(a: Admitted) -> None:
    if a.kind == "Cluster" and a.name == LOCAL:
        raise InvalidObject("Cluster", [FieldError("metadata.name", f"'{LOCAL}' is reserved for the server's own "
                                                                    "engine (dockyard server --engine)")])


def seal_tls_keys(store: Store, a: Admitted, current: StoredObject | None) -> dict:
    """The spec to store: each endpoint's TLS key encrypted with the key ring. A key sent as
    "(sealed)" (what reads show) keeps the key stored for the same endpoint URL; a key equal to
    the stored one keeps its ciphertext, so re-applying a manifest changes nothing."""
    stored = {ep.get("url"): ep.get("tls") or {} for ep in (current.spec.get("endpoints") or [])} if current else {}
    endpoints, errors = [], []
    for i, ep in enumerate(a.spec.get("endpoints") or []):
        tls = ep.get("tls")
        if not tls:
            endpoints.append(ep)
            continue
        key = tls.get("key")
        keep = {k: v for k, v in tls.items() if k in ("ca", "cert")}
        before = stored.get(ep["url"], {})
        if key is None or key == SEALED:
            if "keyCiphertext" not in before:
                errors.append(FieldError(f"spec.endpoints[{i}].tls.key",
                                         "is required: no key is stored for this endpoint yet (give the PEM key)"))
                continue
            sealed = {k: before[k] for k in ("keyCiphertext", "keyId", "keySha256") if k in before}
        else:
            digest = hashlib.sha256(key.encode()).hexdigest()
            if before.get("keySha256") == digest:
                sealed = {k: before[k] for k in ("keyCiphertext", "keyId", "keySha256")}
            else:
                if store.keyring is None:
                    raise Problem(503, "cluster TLS keys cannot be stored: the server has no key ring")
                key_id, token = store.keyring.encrypt(key.encode())
                sealed = {"keyCiphertext": token, "keyId": key_id, "keySha256": digest}
        endpoints.append({**ep, "tls": {**keep, **sealed}})
    if errors:
        raise InvalidObject("Cluster", errors)
    return {**a.spec, "endpoints": endpoints}


def reseal_tls_keys(store: Store) -> int:
    """Encrypt every Cluster's TLS keys with the key ring's active key (after a rotation, before
    the old keys are retired); returns how many keys were re-encrypted."""
    ring = store.keyring
    count = 0
    for obj in store.list("Cluster")[0]:
        endpoints = []
        for ep in obj.spec.get("endpoints") or []:
            tls = ep.get("tls") or {}
            if "keyCiphertext" in tls and tls.get("keyId") != ring.active:
                key_id, token = ring.encrypt(ring.decrypt(tls["keyCiphertext"]))
                ep = {**ep, "tls": {**tls, "keyCiphertext": token, "keyId": key_id}}
                count += 1
            endpoints.append(ep)
        if endpoints != (obj.spec.get("endpoints") or []):
            store.replace("Cluster", obj.scope, obj.name, {**obj.spec, "endpoints": endpoints})
    return count


def project_cluster_exists(conn: Connection, obj: StoredObject) -> None:
    """Inside a project create's transaction: its cluster exists (the row is locked, so a
    concurrent delete of the cluster either sees this project or wins first)."""
    cluster = project_cluster(obj.spec)
    if cluster == LOCAL:
        return
    row = conn.execute(select(resources.c.spec).where(and_(
        resources.c.kind == "Cluster", resources.c.scope == "", resources.c.name == cluster)).with_for_update()).first()
    if row is not None and open_to(row.spec or {}, obj.scope):
        return
    # only the clusters this tenant may use are named: the others are no business of its owners
    rows = conn.execute(select(resources.c.name, resources.c.spec).where(resources.c.kind == "Cluster")
                        .order_by(resources.c.name)).all()
    known = [LOCAL, *[r.name for r in rows if open_to(r.spec or {}, obj.scope)][:20]]
    why = "does not exist" if row is None else f"is not open to tenant {obj.scope} (a platform admin sets its spec.tenants)"
    raise InvalidObject("Project", [FieldError("spec.cluster", f"cluster '{cluster}' {why} "
                                                               f"(clusters: {', '.join(known)})")])


def project_cluster_unchanged(a: Admitted, current: StoredObject) -> None:
    was, asked = project_cluster(current.spec), project_cluster(a.spec)
    if a.kind == "Project" and asked != was:
        raise InvalidObject("Project", [FieldError(
            "spec.cluster", f"cannot change from '{was}' to '{asked}' (no cluster given means 'local'): keep "
            f"cluster: {was}, or move apps by creating a project on the other cluster")])


def _refuse_users(conn: Connection, obj: StoredObject, what: str, keeps: Any = lambda tenant: False) -> None:
    """409 naming the projects bound to the cluster `obj` whose tenant `keeps(tenant)` is False."""
    rows = conn.execute(select(resources.c.scope, resources.c.name, resources.c.spec).where(
        resources.c.kind == "Project").order_by(resources.c.scope, resources.c.name)).all()
    users = [f"{r.scope}/{r.name}" for r in rows if project_cluster(r.spec) == obj.name and not keeps(r.scope)]
    if users:
        more = f" and {len(users) - 5} more" if len(users) > 5 else ""
        raise Conflict(f"cluster {obj.name} is used by project{'s' if len(users) > 1 else ''} "
                       f"{', '.join(users[:5])}{more}: {what}")


def cluster_unused(conn: Connection, obj: StoredObject) -> None:
    """Inside a cluster delete's transaction: no project is bound to it."""
    _refuse_users(conn, obj, "delete them first")


def cluster_keeps_its_tenants(conn: Connection, obj: StoredObject) -> None:
    """Inside a cluster replace's transaction: spec.tenants still lets every bound project's tenant in."""
    _refuse_users(conn, obj, "delete them first or keep their tenants in spec.tenants",
                  keeps=lambda tenant: open_to(obj.spec, tenant))


def check_writable(store: Store, ops: Any, tenant: str, project: str) -> None:
    """503 with Retry-After when the project's cluster cannot apply changes now (blocking). The
    local engine is never refused here: while it is down, the store accepts and the controllers
    converge once it answers."""
    try:
        cluster = project_cluster(store.get("Project", tenant, project).spec)
    except NotFound:
        return  # the handler answers 404
    if cluster == LOCAL:
        return
    try:
        health = ops.cluster_health(cluster)
        why = None if health.writable else health.message
    except ClusterError as e:
        why = None if e.status == 404 else e.message
    if why is not None:
        raise Problem(503, f"cluster {cluster} cannot apply changes now: {without_addresses(why)}; nothing was changed",
                      headers={"Retry-After": RETRY_AFTER})


async def cluster_writable(request: Request, tenant: str, project: str) -> None:
    """Route dependency for writes that reach the project's engine: see check_writable. Routes
    with a dry run pass it by when one is asked for (api/resources.py: engine_write)."""
    ops = getattr(request.app.state, "clusters", None)
    if ops is not None:
        await run_in_threadpool(check_writable, request.app.state.store, ops, tenant, project)
