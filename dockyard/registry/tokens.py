"""The registry's bearer tokens: an ES256 key and self-signed certificate kept in the data dir,
JWTs in the form distribution 2.8 accepts, and the pure logic of scopes and grants.

Distribution checks `iss`, `aud` (one string), integer `exp`/`nbf`/`iat`, and finds the key by the
`x5c` chain (a certificate of its rootcertbundle) or by `kid`, which must be the libtrust key ID.
We send both, so the same token also works with distribution 3.x.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from dockyard.policy.permissions import BY_ACTION, ROLES, at_least

KEY_FILE = "token.key"
CERT_FILE = "token.crt"
CERT_YEARS = 10

# registry actions and the permission rows that allow them
ACTION_PERMISSIONS = {"pull": "images.pull", "push": "images.push", "delete": "images.delete"}
# what each project role may do to the project's repositories, read from the permission table
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    role: frozenset(a for a, perm in ACTION_PERMISSIONS.items() if at_least(role, BY_ACTION[perm].min_role))
    for role in ROLES}


# --- keys -----------------------------------------------------------------------------------

def write_private(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, atomically (a crash leaves the old file or none)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load_or_create_key(root: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """The signing key and its certificate under `root`, made on first use (both mode 0600; the
    key is written last, so a half-made pair is remade)."""
    root.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = root / KEY_FILE, root / CERT_FILE
    if key_path.exists() and cert_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if isinstance(key, ec.EllipticCurvePrivateKey) and cert.public_key() == key.public_key():
            return key, cert
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard registry token signer")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365 * CERT_YEARS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return key, cert


def libtrust_kid(public_key: ec.EllipticCurvePublicKey) -> str:
    """libtrust's key ID: base32 of the first 240 bits of SHA-256 of the DER public key, in 12
    groups of 4 characters joined by ':'."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, 48, 4))


def b64url(data: bytes) -> str:
    """Base64url without padding, as JWTs (and ephemeral credentials) write it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- scopes and grants ------------------------------------------------------------------------

# distribution's repository name grammar, at least TENANT/PROJECT/NAME, and its length limit
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"^{_COMPONENT}/{_COMPONENT}(?:/{_COMPONENT})+$")
MAX_NAME = 255

@dataclass(frozen=True)
class Scope:
    type: str                    # "repository" or "registry" (anything else grants nothing)
    name: str                    # "t/p/app", or "catalog"
    actions: tuple[str, ...]     # as asked: pull, push, delete, "*"

    def claim(self, actions: Iterable[str]) -> dict:
        return {"type": self.type, "name": self.name, "actions": sorted(actions)}


def parse_scopes(values: Iterable[str]) -> list[Scope]:
    """The scopes of a token request: each `scope` parameter may hold several, separated by
    spaces. The type ends at the first ':' (a resource class such as `repository(plugin)` is
    dropped); the actions start after the last ':'. Malformed scopes are skipped: they simply
    get no grant."""
    out = []
    for value in values:
        for text in value.split():
            rtype, sep, rest = text.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not sep or not sep2 or not name:
                continue
            rtype = rtype.split("(", 1)[0]
            acts = tuple(dict.fromkeys(a for a in actions.split(",") if a))
            out.append(Scope(rtype, name, acts))
    return out


class Grantee:
    """Who a token is for and what they may do: `actions(tenant, project, name)` is the set of
    registry actions on that repository (empty for what they may not touch)."""

    subject: str
    catalog: bool = False

    def actions(self, tenant: str, project: str, name: str) -> frozenset[str]:  # pragma: no cover - interface
        raise NotImplementedError


def granted(scope: Scope, grantee: Grantee) -> frozenset[str]:
    """The actions of `scope` that `grantee` gets: the intersection of asked and allowed."""
    if scope.type == "registry":
        return frozenset(scope.actions) & {"*"} if scope.name == "catalog" and grantee.catalog else frozenset()
    if scope.type != "repository" or len(scope.name) > MAX_NAME or not REPOSITORY.match(scope.name):
        return frozenset()  # not a name the registry could serve ('..', upper case, ':'): nothing to grant
    parts = scope.name.split("/")
    allowed = grantee.actions(parts[0], parts[1], "/".join(parts[2:]))
    if "*" in scope.actions:
        return allowed
    return allowed & frozenset(scope.actions)


# --- tokens ---------------------------------------------------------------------------------

@dataclass
class IssuedRegistryToken:
    token: str
    expires_in: int
    issued_at: datetime
    access: list[dict]


class TokenIssuer:
    """Mints the registry's bearer tokens. The header (with the certificate chain) is encoded
    once; each token costs one ECDSA signature."""

    def __init__(self, root: Path, *, issuer: str, service: str, clock: Callable[[], float] = time.time) -> None:
        self.key, self.cert = load_or_create_key(root)
        self.issuer = issuer
        self.service = service
        self.clock = clock
        self.kid = libtrust_kid(self.key.public_key())
        x5c = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()
        header = {"typ": "JWT", "alg": "ES256", "kid": self.kid, "x5c": [x5c]}
        self._header = b64url(json.dumps(header, separators=(",", ":")).encode())
        self.cert_path = root / CERT_FILE

    def issue(self, subject: str, access: list[dict], ttl: int = 300) -> str:
        return self.mint(subject, access, ttl).token

    def mint(self, subject: str, access: list[dict], ttl: int = 300) -> IssuedRegistryToken:
        now = int(self.clock())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + int(ttl), "nbf": now - 1,
                  "iat": now, "jti": secrets.token_urlsafe(12), "access": access}
        signing_input = f"{self._header}.{b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return IssuedRegistryToken(f"{signing_input}.{b64url(signature)}", int(ttl),
                                   datetime.fromtimestamp(now, UTC), access)

    def issue_for(self, grantee: Grantee, scopes: list[Scope], ttl: int = 300) -> IssuedRegistryToken:
        """A token with, for each asked scope, the actions `grantee` gets: a scope they may not
        have is answered with empty actions, never an error (docker asks for extra scopes when it
        tries cross-repository mounts, and must still get its token)."""
        return self.mint(grantee.subject, [scope.claim(granted(scope, grantee)) for scope in scopes], ttl)
