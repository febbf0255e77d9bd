"""Users and their tokens. Passwords are argon2id hashes; tokens are stored as SHA-256 only."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.store.errors import AlreadyExists
from dockyard.store.repository import Store, now
from dockyard.store.tables import tokens, users

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
TOKEN_PREFIX = "dy_"


@dataclass
class User:
    id: int
    name: str
    is_admin: bool


@dataclass
class IssuedToken:
    token: str
    expires_at: datetime | None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(store: Store, name: str, password: str, *, is_admin: bool = False) -> User:
    h = _hasher.hash(password)
    try:
        with store.engine.begin() as conn:
            res = conn.execute(insert(users).values(name=name, password_hash=h, is_admin=is_admin, created_at=now()))
            return User(int(res.inserted_primary_key[0]), name, is_admin)
    except IntegrityError:
        raise AlreadyExists(f"user '{name}' already exists") from None


def user_count(store: Store) -> int:
    with store.read_engine.connect() as conn:
        return len(conn.execute(select(users.c.id)).all())


def verify_password(store: Store, name: str, password: str) -> User | None:
    with store.read_engine.connect() as conn:
        row = conn.execute(select(users).where(users.c.name == name)).first()
    if row is None:
        # spend the same time as a real check, so that timing does not reveal which names exist
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        return None
    try:
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return User(row.id, row.name, bool(row.is_admin))


def set_password(store: Store, name: str, password: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(users).where(users.c.name == name).values(password_hash=_hasher.hash(password)))


def issue_token(store: Store, user: User, *, kind: str = "session", name: str = "login",
                ttl: timedelta | None = timedelta(hours=12)) -> IssuedToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = now() + ttl if ttl else None
    with store.engine.begin() as conn:
        conn.execute(insert(tokens).values(user_id=user.id, name=name, token_hash=hash_token(token), kind=kind,
                                           expires_at=expires, revoked=False, created_at=now()))
    return IssuedToken(token, expires)


def authenticate_token(store: Store, token: str) -> User | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with store.read_engine.connect() as conn:
        row = conn.execute(select(tokens, users.c.name, users.c.is_admin).join(users, users.c.id == tokens.c.user_id)
                           .where(tokens.c.token_hash == hash_token(token))).first()
    if row is None or row.revoked:
        return None
    if row.expires_at is not None:
        exp = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        if exp <= now():
            return None
    return User(row.user_id, row.name, bool(row.is_admin))


def revoke_token(store: Store, token: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(tokens).where(and_(tokens.c.token_hash == hash_token(token))).values(revoked=True))


_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
