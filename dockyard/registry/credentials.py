"""Who may log in to the registry, and what each kind of login may do.

Four kinds of credentials reach the token endpoint as HTTP Basic auth:
- a user's password (argon2 takes tens of milliseconds and `docker` asks for a token per
  operation, so a successful check is remembered for a minute, keyed by a hash of the password);
- a user's API token (`dy_…`) as the password: a project-scoped token keeps its project and role cap;
- a robot (`robot$TENANT+PROJECT+NAME` and its secret): pull or push+pull in its project only;
- an ephemeral credential (`dockyard-ephemeral` and an HMAC-signed, expiring grant): what the
  engine pulls with and builds push with; nothing is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable

from dockyard.api.authz import Authorizer
from dockyard.registry.tokens import ROLE_ACTIONS, Grantee, b64url
from dockyard.store.errors import NotFound
from dockyard.store.repository import Store
from dockyard.store.robots import USER_PREFIX, Robot, verify_robot
from dockyard.store.users import TOKEN_PREFIX, User, verify_password

EPHEMERAL_USER = "dockyard-ephemeral"
EPHEMERAL_PREFIX = "dye_"
NOTHING: frozenset[str] = frozenset()
ROBOT_ACTIONS = {"pull": frozenset({"pull"}), "push": frozenset({"pull", "push"})}


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, payload: str) -> str:
    return b64url(hmac.new(secret, payload.encode(), hashlib.sha256).digest())


MAX_SUBJECT = 100


def bounded_subject(text: str | None) -> str | None:
    """`text` as a token subject: printable, at most MAX_SUBJECT characters; None when empty."""
    if not text:
        return None
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)[:MAX_SUBJECT].strip()
    return clean or None


def ephemeral_credential(secret: bytes, tenant: str, project: str, actions: tuple[str, ...], ttl: float,
                         repository: str | None = None, subject: str | None = None) -> tuple[str, str]:
    """(username, password) that the token endpoint accepts for `ttl` seconds: `actions` (pull,
    push) on the project's repositories (only `repository`, "t/p/name", if given). Nothing is
    stored; the HMAC over the grant with the server's secret is what makes it valid. `subject`
    (signed with the grant) says who it is for, e.g. "build site-3 (by admin)": the registry
    records it as the pusher, in image tags, the dashboard and events."""
    grant = {"t": tenant, "p": project, "a": sorted(set(actions) & {"pull", "push"}), "r": repository,
             "e": int(time.time() + ttl)}
    if subject := bounded_subject(subject):
        grant["s"] = subject
    payload = b64url(json.dumps(grant, separators=(",", ":")).encode())
    return EPHEMERAL_USER, f"{EPHEMERAL_PREFIX}{payload}.{_sign(secret, payload)}"


def read_ephemeral(secret: bytes, password: str, at: float | None = None) -> dict | None:
    """The grant inside an ephemeral credential, or None if it is forged, malformed or expired."""
    if not password.startswith(EPHEMERAL_PREFIX) or len(password) > 2000:
        return None
    payload, _, sig = password[len(EPHEMERAL_PREFIX):].partition(".")
    if not hmac.compare_digest(sig, _sign(secret, payload)):
        return None
    try:
        grant = json.loads(_unb64(payload))
    except ValueError:
        return None
    if not isinstance(grant, dict) or int(grant.get("e", 0)) <= (at or time.time()):
        return None
    return grant


def _project_uid(store: Store, tenant: str, project: str) -> str | None:
    try:
        return store.get("Project", tenant, project).uid
    except NotFound:
        return None


class UserGrantee(Grantee):
    """A Dockyard user (by password or API token): their project role decides, through the same
    Authorizer the REST API uses; only repositories of existing projects; catalog for admins."""

    def __init__(self, store: Store, user: User) -> None:
        self.store = store
        self.authz = Authorizer(store, user)
        self.subject = user.name
        self.catalog = self.authz.is_admin

    def actions(self, tenant: str, project: str, name: str) -> frozenset[str]:
        role = self.authz.project_role(tenant, project)
        if role is None or _project_uid(self.store, tenant, project) is None:
            return NOTHING
        return ROLE_ACTIONS.get(role, NOTHING)


class RobotGrantee(Grantee):
    """A robot: its access in its own project (the same incarnation it was made in), nothing else."""

    def __init__(self, store: Store, robot: Robot) -> None:
        self.store = store
        self.robot = robot
        self.subject = robot.username

    def actions(self, tenant: str, project: str, name: str) -> frozenset[str]:
        r = self.robot
        if (tenant, project) != (r.tenant, r.project) or _project_uid(self.store, tenant, project) != r.project_uid:
            return NOTHING
        return ROBOT_ACTIONS.get(r.access, NOTHING)


class EphemeralGrantee(Grantee):
    def __init__(self, grant: dict) -> None:
        self.grant = grant
        given = grant.get("s")
        self.subject = bounded_subject(given if isinstance(given, str) else None) or \
            f"{EPHEMERAL_USER}:{grant['t']}/{grant['p']}"

    def actions(self, tenant: str, project: str, name: str) -> frozenset[str]:
        g = self.grant
        if (tenant, project) != (g["t"], g["p"]) or (g.get("r") and g["r"] != f"{tenant}/{project}/{name}"):
            return NOTHING
        return frozenset(g.get("a") or ()) & {"pull", "push"}


class PasswordCache:
    """Successful password checks for `ttl` seconds, keyed by (user, SHA-256 of the password).
    Failures are never remembered. `clear()` is called when a password changes or a user is
    deleted on this server (store.users clears it with the token cache); another replica's change
    takes effect here within `ttl`."""

    def __init__(self, ttl: float = 60.0, size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._d: dict[tuple[str, str], tuple[float, User]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(name: str, password: str) -> tuple[str, str]:
        return name, hashlib.sha256(password.encode()).hexdigest()

    def get(self, name: str, password: str) -> User | None:
        with self._lock:
            hit = self._d.get(self._key(name, password))
        return hit[1] if hit is not None and hit[0] > self.clock() else None

    def put(self, name: str, password: str, user: User) -> None:
        with self._lock:
            if len(self._d) >= self.size:
                self._d.clear()
            self._d[self._key(name, password)] = (self.clock() + self.ttl, user)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


class RegistryCredentials:
    """Turns a Basic-auth username and password into a Grantee, or None."""

    def __init__(self, store: Store, secret: bytes, passwords: PasswordCache | None = None) -> None:
        self.store = store
        self.secret = secret
        self.passwords = passwords or PasswordCache()
        store.password_cache = self.passwords  # cleared by store.users on password change / user deletion

    def authenticate(self, username: str, password: str) -> Grantee | None:
        if not username or not password:
            return None
        if username == EPHEMERAL_USER:
            grant = read_ephemeral(self.secret, password)
            return EphemeralGrantee(grant) if grant else None
        if username.startswith(USER_PREFIX):
            robot = verify_robot(self.store, username, password)
            return RobotGrantee(self.store, robot) if robot else None
        if password.startswith(TOKEN_PREFIX):
            user = self.store.token_cache.authenticate(self.store, password)
            # the token must be the named user's: a stolen token cannot be used under another name
            return UserGrantee(self.store, user) if user is not None and user.name == username else None
        user = self.passwords.get(username, password)
        if user is None:
            user = verify_password(self.store, username, password)
            if user is None:
                return None
            self.passwords.put(username, password, user)
        return UserGrantee(self.store, user)
