"""Role bindings: a user's role on a tenant (project "") or on one project."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, insert, select, update

from dockyard.store.repository import Store, now
from dockyard.store.tables import role_bindings


@dataclass(frozen=True)
class Binding:
    user: str
    tenant: str
    project: str  # "" for a tenant-wide binding
    role: str


def bindings_of_user(store: Store, user: str) -> list[Binding]:
    with store.read_engine.connect() as conn:
        rows = conn.execute(select(role_bindings).where(role_bindings.c.user == user)).all()
    return [Binding(r.user, r.tenant, r.project, r.role) for r in rows]


def bindings_in(store: Store, tenant: str, project: str | None = None) -> list[Binding]:
    """Bindings on a tenant (project None: the tenant and all its projects; "": the tenant only)."""
    q = select(role_bindings).where(role_bindings.c.tenant == tenant)
    if project is not None:
        q = q.where(role_bindings.c.project.in_(["", project]))
    with store.read_engine.connect() as conn:
        rows = conn.execute(q.order_by(role_bindings.c.project, role_bindings.c.user)).all()
    return [Binding(r.user, r.tenant, r.project, r.role) for r in rows]


def grant(store: Store, user: str, tenant: str, project: str, role: str) -> None:
    with store.tx() as conn:
        key = and_(role_bindings.c.user == user, role_bindings.c.tenant == tenant, role_bindings.c.project == project)
        if conn.execute(select(role_bindings.c.id).where(key)).first():
            conn.execute(update(role_bindings).where(key).values(role=role))
        else:
            conn.execute(insert(role_bindings).values(user=user, tenant=tenant, project=project, role=role,
                                                      created_at=now()))


def revoke(store: Store, user: str, tenant: str, project: str) -> bool:
    with store.tx() as conn:
        res = conn.execute(delete(role_bindings).where(and_(
            role_bindings.c.user == user, role_bindings.c.tenant == tenant, role_bindings.c.project == project)))
        return res.rowcount > 0


def revoke_all(store: Store, *, user: str | None = None, tenant: str | None = None,
               project: str | None = None) -> None:
    q = delete(role_bindings)
    if user is not None:
        q = q.where(role_bindings.c.user == user)
    if tenant is not None:
        q = q.where(role_bindings.c.tenant == tenant)
    if project is not None:
        q = q.where(role_bindings.c.project == project)
    with store.tx() as conn:
        conn.execute(q)
