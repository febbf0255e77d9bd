"""Leases held in the store: exactly one server replica runs the controllers at a time."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.store.repository import Store, now
from dockyard.store.tables import leases


def try_acquire(store: Store, name: str, holder: str, ttl: float) -> bool:
    """Take or renew lease `name` for `holder`; True while `holder` holds it."""
    expires = now() + timedelta(seconds=ttl)
    with store.tx() as conn:
        res = conn.execute(update(leases).where(and_(leases.c.name == name, or_(
            leases.c.holder == holder, leases.c.expires_at < now()))).values(holder=holder, expires_at=expires))
        if res.rowcount == 1:
            return True
        if conn.execute(select(leases.c.name).where(leases.c.name == name)).first() is not None:
            return False
    try:
        with store.tx() as conn:
            conn.execute(insert(leases).values(name=name, holder=holder, expires_at=expires))
        return True
    except IntegrityError:
        return False


def release(store: Store, name: str, holder: str) -> None:
    with store.tx() as conn:
        conn.execute(update(leases).where(and_(leases.c.name == name, leases.c.holder == holder))
                     .values(expires_at=now() - timedelta(seconds=1)))


def holder_of(store: Store, name: str) -> str | None:
    with store.read_engine.connect() as conn:
        row = conn.execute(select(leases).where(leases.c.name == name)).first()
    if row is None:
        return None
    exp = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=now().tzinfo)
    return row.holder if exp > now() else None
