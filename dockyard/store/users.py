"""Users and their tokens. Passwords are argon2id hashes; tokens are stored as SHA-256 only."""

from __future__ import annotations

import functools
import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from dockyard.store.errors import AlreadyExists
from dockyard.store.repository import Store, now
from dockyard.store.tables import tokens, users

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# each check takes 64 MiB: at most two at a time, so a burst of logins cannot exhaust memory
_argon_slots = threading.BoundedSemaphore(2)
TOKEN_PREFIX = "dy_"


@dataclass
class User:
    id: int
    name: str
    is_admin: bool
    token_project: str | None = None  # set when the request's token is limited to one project
    token_role: str | None = None
    token_id: int | None = None


@dataclass
class IssuedToken:
    token: str
    expires_at: datetime | None
    id: int = 0


def _forgets_cached_tokens(fn: Any) -> Any:
    """After `fn` has committed, drop cached tokens (and verified passwords) so the change takes effect at once (clearing
    before the commit would let a concurrent request cache the old state again)."""
    @functools.wraps(fn)
    def wrapper(store: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(store, *args, **kwargs)
        finally:
            for cache in (store.token_cache, store.password_cache):  # the registry remembers passwords too
                if cache is not None:
                    cache.clear()

    return wrapper


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(store: Store, name: str, password: str, *, is_admin: bool = False) -> User:
    h = _hasher.hash(password)
    try:
        with store.tx() as conn:
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
            with _argon_slots:
                _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        return None
    try:
        with _argon_slots:
            _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    return User(row.id, row.name, bool(row.is_admin))


@_forgets_cached_tokens
def set_password(store: Store, name: str, password: str) -> None:
    with store.tx() as conn:
        conn.execute(update(users).where(users.c.name == name).values(password_hash=_hasher.hash(password)))


def issue_token(store: Store, user: User, *, kind: str = "session", name: str = "login",
                ttl: timedelta | None = timedelta(hours=12), project: str | None = None,
                role: str | None = None) -> IssuedToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = now() + ttl if ttl else None
    with store.tx() as conn:
        res = conn.execute(insert(tokens).values(user_id=user.id, name=name, token_hash=hash_token(token), kind=kind,
                                                 expires_at=expires, revoked=False, created_at=now(), project=project,
                                                 role=role))
    return IssuedToken(token, expires, int(res.inserted_primary_key[0]))


@dataclass
class TokenInfo:
    id: int
    name: str
    kind: str
    project: str | None
    role: str | None
    expires_at: datetime | None
    revoked: bool
    created_at: datetime


def list_tokens(store: Store, user_id: int) -> list[TokenInfo]:
    with store.read_engine.connect() as conn:
        rows = conn.execute(select(tokens).where(tokens.c.user_id == user_id).order_by(tokens.c.id)).all()
    return [TokenInfo(r.id, r.name, r.kind, r.project, r.role, r.expires_at, bool(r.revoked), r.created_at)
            for r in rows]


@_forgets_cached_tokens
def revoke_token_id(store: Store, user_id: int, token_id: int) -> bool:
    with store.tx() as conn:
        res = conn.execute(update(tokens).where(and_(tokens.c.id == token_id, tokens.c.user_id == user_id))
                           .values(revoked=True))
        return res.rowcount > 0


def list_users(store: Store) -> list[tuple[User, datetime]]:
    with store.read_engine.connect() as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).all()
    return [(User(r.id, r.name, bool(r.is_admin)), r.created_at) for r in rows]


def get_user(store: Store, name: str) -> User | None:
    with store.read_engine.connect() as conn:
        r = conn.execute(select(users).where(users.c.name == name)).first()
    return User(r.id, r.name, bool(r.is_admin)) if r else None


@_forgets_cached_tokens
def delete_user(store: Store, name: str) -> bool:
    """Delete a user, their tokens and their role bindings."""
    from dockyard.store.tables import role_bindings

    with store.tx() as conn:
        r = conn.execute(select(users.c.id).where(users.c.name == name)).first()
        if r is None:
            return False
        conn.execute(delete(tokens).where(tokens.c.user_id == r.id))
        conn.execute(delete(role_bindings).where(role_bindings.c.user == name))
        conn.execute(delete(users).where(users.c.id == r.id))
        return True


def get_preferences(store: Store, user_id: int) -> dict[str, Any]:
    """The user's stored preferences ({} when none were set)."""
    with store.read_engine.connect() as conn:
        prefs = conn.execute(select(users.c.preferences).where(users.c.id == user_id)).scalar()
    return dict(prefs or {})


def update_preferences(store: Store, user_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Merge `changes` into the user's preferences (a None value removes the key); returns them."""
    with store.tx() as conn:
        prefs = dict(conn.execute(select(users.c.preferences).where(users.c.id == user_id)).scalar() or {})
        for k, v in changes.items():
            if v is None:
                prefs.pop(k, None)
            else:
                prefs[k] = v
        conn.execute(update(users).where(users.c.id == user_id).values(preferences=prefs))
    return prefs


def authenticate_token(store: Store, token: str) -> User | None:
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    with store.read_engine.connect() as conn:
        row = conn.execute(select(tokens, users.c.name.label("user_name"), users.c.is_admin)
                           .join(users, users.c.id == tokens.c.user_id)
                           .where(tokens.c.token_hash == hash_token(token))).first()
    if row is None or row.revoked:
        return None
    if row.expires_at is not None:
        exp = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
        if exp <= now():
            return None
    return User(row.user_id, row.user_name, bool(row.is_admin), token_project=row.project, token_role=row.role,
                token_id=row.id)


@_forgets_cached_tokens
def revoke_token(store: Store, token: str) -> None:
    with store.tx() as conn:
        conn.execute(update(tokens).where(and_(tokens.c.token_hash == hash_token(token))).values(revoked=True))


_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class TokenCache:
    """Recently verified tokens, for a few seconds: most requests then need no token query.
    Revocation, logout, password changes and user deletion through this server clear it at once;
    another replica's revocation takes effect here within `ttl` seconds."""

    def __init__(self, ttl: float = 5.0, size: int = 10_000) -> None:
        import threading

        self.ttl = ttl
        self.size = size
        self._d: dict[str, tuple[float, User, datetime | None]] = {}
        self._lock = threading.Lock()

    def authenticate(self, store: Store, token: str) -> User | None:
        import time

        h = hash_token(token)
        now_m = time.monotonic()
        with self._lock:
            hit = self._d.get(h)
        if hit is not None and now_m - hit[0] < self.ttl and (hit[2] is None or hit[2] > now()):
            return hit[1]
        user = authenticate_token(store, token)
        with self._lock:
            if user is None:
                self._d.pop(h, None)
            else:
                if len(self._d) >= self.size:
                    self._d.clear()
                self._d[h] = (now_m, user, _token_expiry(store, h))
        return user

    def peek(self, token: str) -> User | None:
        """The cached user for a token still fresh in the cache, without touching the store."""
        import time

        with self._lock:
            hit = self._d.get(hash_token(token))
        if hit is not None and time.monotonic() - hit[0] < self.ttl and (hit[2] is None or hit[2] > now()):
            return hit[1]
        return None

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


def _token_expiry(store: Store, token_hash: str) -> datetime | None:
    with store.read_engine.connect() as conn:
        exp = conn.execute(select(tokens.c.expires_at).where(tokens.c.token_hash == token_hash)).scalar()
    if exp is not None and exp.tzinfo is None:
        exp = exp.replace(tzinfo=UTC)
    return exp

