"""Robot accounts: per-project registry logins for CI systems. A robot pulls (or pushes and
pulls) its project's repositories and nothing else; it works only at the registry's token
endpoint, never on the REST API. Its secret is shown once and stored as SHA-256 (the secret is
32 random bytes, so a slow password hash would buy nothing and cost every `docker` operation)."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Boolean, Column, DateTime, Integer, String, Table, UniqueConstraint, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.store.errors import AlreadyExists
from dockyard.store.repository import Store, now
from dockyard.store.tables import metadata
from dockyard.store.users import hash_token

ACCESS = ("pull", "push")
USER_PREFIX = "robot$"
SECRET_PREFIX = "dyr_"
# last_used_at is written at most this often per robot: a CI loop must not turn pulls into writes
LAST_USED_EVERY = timedelta(minutes=1)

# Created by migration 0006_robots. project_uid ties a robot to one incarnation of its project: a
# project deleted and made again under the same name does not inherit the old one's robots.
robots = Table(
    "robots", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant", String(63), nullable=False),
    Column("project", String(63), nullable=False),
    Column("project_uid", String(36), nullable=False),
    Column("name", String(63), nullable=False),
    Column("access", String(8), nullable=False),  # pull | push (push includes pull)
    Column("secret_hash", String(64), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("created_by", String(63), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint("tenant", "project", "name", name="uq_robots_key"),
)


@dataclass
class Robot:
    id: int
    tenant: str
    project: str
    project_uid: str
    name: str
    access: str
    disabled: bool
    expires_at: datetime | None
    created_by: str
    created_at: datetime
    last_used_at: datetime | None

    @property
    def username(self) -> str:
        return robot_username(self.tenant, self.project, self.name)

    def expired(self, at: datetime | None = None) -> bool:
        return self.expires_at is not None and _aware(self.expires_at) <= (at or now())


def robot_username(tenant: str, project: str, name: str) -> str:
    """`robot$TENANT+PROJECT+NAME`: '+' cannot occur in tenant, project or robot names."""
    return f"{USER_PREFIX}{tenant}+{project}+{name}"


def parse_robot_username(username: str) -> tuple[str, str, str] | None:
    if not username.startswith(USER_PREFIX):
        return None
    parts = username[len(USER_PREFIX):].split("+")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _robot(r: object) -> Robot:
    return Robot(r.id, r.tenant, r.project, r.project_uid, r.name, r.access, bool(r.disabled),  # type: ignore[attr-defined]
                 _aware(r.expires_at) if r.expires_at else None, r.created_by, _aware(r.created_at),  # type: ignore[attr-defined]
                 _aware(r.last_used_at) if r.last_used_at else None)  # type: ignore[attr-defined]


def create_robot(store: Store, tenant: str, project: str, project_uid: str, name: str, access: str, *,
                 created_by: str, ttl: timedelta | None) -> tuple[Robot, str]:
    """A new robot and its secret (the only time the secret exists in clear)."""
    if access not in ACCESS:
        raise ValueError(f"access must be one of {', '.join(ACCESS)}")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    at = now()
    values = dict(tenant=tenant, project=project, project_uid=project_uid, name=name, access=access,
                  secret_hash=hash_token(secret), disabled=False, expires_at=at + ttl if ttl else None,
                  created_by=created_by, created_at=at, last_used_at=None)
    try:
        with store.tx() as conn:
            res = conn.execute(insert(robots).values(**values))
    except IntegrityError:
        raise AlreadyExists(f"robot '{name}' already exists in project {tenant}/{project}") from None
    values.pop("secret_hash")
    return Robot(id=int(res.inserted_primary_key[0]), **values), secret


def list_robots(store: Store, tenant: str, project: str) -> list[Robot]:
    with store.read_engine.connect() as conn:
        rows = conn.execute(select(robots).where(and_(robots.c.tenant == tenant, robots.c.project == project))
                            .order_by(robots.c.name)).all()
    return [_robot(r) for r in rows]


def _key(tenant: str, project: str, name: str):  # noqa: ANN202 — a SQL expression
    return and_(robots.c.tenant == tenant, robots.c.project == project, robots.c.name == name)


def get_robot(store: Store, tenant: str, project: str, name: str) -> Robot | None:
    with store.read_engine.connect() as conn:
        r = conn.execute(select(robots).where(_key(tenant, project, name))).first()
    return _robot(r) if r else None


def delete_robot(store: Store, tenant: str, project: str, name: str) -> bool:
    with store.tx() as conn:
        return conn.execute(delete(robots).where(_key(tenant, project, name))).rowcount > 0


def set_robot_disabled(store: Store, tenant: str, project: str, name: str, disabled: bool) -> Robot | None:
    with store.tx() as conn:
        if conn.execute(update(robots).where(_key(tenant, project, name)).values(disabled=disabled)).rowcount == 0:
            return None
    return get_robot(store, tenant, project, name)


def delete_project_robots(store: Store, tenant: str, project: str | None = None, *,
                          keep_uid: str | None = None) -> int:
    """Remove the robots of a project (None: of every project of the tenant); with `keep_uid`, only
    those of its earlier incarnations (left by a crash between a project's deletion and this)."""
    q = delete(robots).where(robots.c.tenant == tenant)
    if project is not None:
        q = q.where(robots.c.project == project)
    if keep_uid is not None:
        q = q.where(robots.c.project_uid != keep_uid)
    with store.tx() as conn:
        return conn.execute(q).rowcount


def verify_robot(store: Store, username: str, secret: str) -> Robot | None:
    """The robot these credentials name, if the secret matches and it is enabled and unexpired;
    notes the use (at most once a minute)."""
    key = parse_robot_username(username)
    if key is None or not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
        return None
    with store.read_engine.connect() as conn:
        r = conn.execute(select(robots).where(_key(*key))).first()
    if r is None or not hmac.compare_digest(r.secret_hash, hash_token(secret)):
        return None
    robot = _robot(r)
    at = now()
    if robot.disabled or robot.expired(at):
        return None
    if robot.last_used_at is None or at - robot.last_used_at >= LAST_USED_EVERY:
        with store.tx() as conn:
            conn.execute(update(robots).where(robots.c.id == robot.id).values(last_used_at=at))
        robot.last_used_at = at
    return robot
