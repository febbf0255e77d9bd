"""The registry token service's pure parts: scope parsing, grants, the libtrust key ID, the JWT
fields distribution 2.8 insists on, ephemeral credentials, and the verified-password cache."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from dockyard.registry.credentials import (
    EPHEMERAL_USER,
    EphemeralGrantee,
    PasswordCache,
    RegistryCredentials,
    ephemeral_credential,
    read_ephemeral,
)
from dockyard.registry.settings import RegistrySettings, split_repository_ref
from dockyard.registry.tokens import ROLE_ACTIONS, Grantee, Scope, TokenIssuer, granted, libtrust_kid, parse_scopes
from dockyard.store.repository import Store
from dockyard.store.users import create_user, delete_user, set_password


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RoleGrantee(Grantee):
    """A caller with one role in acme/shop and none elsewhere."""

    def __init__(self, role: str, catalog: bool = False) -> None:
        self.subject, self.role, self.catalog = "u", role, catalog

    def actions(self, tenant: str, project: str, name: str) -> frozenset[str]:
        return ROLE_ACTIONS[self.role] if (tenant, project) == ("acme", "shop") else frozenset()


def test_scopes_are_split_type_from_the_left_actions_from_the_right() -> None:
    scopes = parse_scopes(["repository:acme/shop/web:pull,push", "registry:catalog:* repository(plugin):a/b/c:pull",
                           "nonsense", "repository::pull", "repository:acme/shop/x:"])
    assert scopes == [Scope("repository", "acme/shop/web", ("pull", "push")), Scope("registry", "catalog", ("*",)),
                      Scope("repository", "a/b/c", ("pull",)), Scope("repository", "acme/shop/x", ())]


def test_grants_follow_the_permission_table() -> None:
    assert ROLE_ACTIONS["viewer"] == {"pull"}
    assert ROLE_ACTIONS["developer"] == {"pull", "push"}
    assert ROLE_ACTIONS["maintainer"] == ROLE_ACTIONS["owner"] == {"pull", "push", "delete"}
    ask = Scope("repository", "acme/shop/web/api", ("pull", "push", "delete"))
    assert granted(ask, RoleGrantee("viewer")) == {"pull"}
    assert granted(ask, RoleGrantee("developer")) == {"pull", "push"}
    assert granted(Scope("repository", "acme/shop/web", ("*",)), RoleGrantee("maintainer")) == {"pull", "push", "delete"}
    # another project, a name that is no T/P/NAME, another resource type: nothing, never an error
    assert granted(Scope("repository", "other/shop/web", ("pull",)), RoleGrantee("owner")) == set()
    assert granted(Scope("repository", "acme/shop", ("pull",)), RoleGrantee("owner")) == set()
    assert granted(Scope("repository", "acme//web", ("pull",)), RoleGrantee("owner")) == set()
    assert granted(Scope("artifact", "acme/shop/web", ("pull",)), RoleGrantee("owner")) == set()
    # the catalog only for those who may list everything (admins)
    assert granted(Scope("registry", "catalog", ("*",)), RoleGrantee("owner")) == set()
    assert granted(Scope("registry", "catalog", ("*",)), RoleGrantee("owner", catalog=True)) == {"*"}


def test_libtrust_kid_is_base32_of_the_der_key_digest_in_groups_of_four() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    kid = libtrust_kid(key)
    assert re.fullmatch(r"([A-Z2-7]{4}:){11}[A-Z2-7]{4}", kid)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert base64.b32decode(kid.replace(":", "")) == hashlib.sha256(der).digest()[:30]


def test_jwt_has_the_fields_distribution_checks_and_verifies(tmp_path: Path) -> None:
    issuer = TokenIssuer(tmp_path, issuer="dockyard", service="dockyard-registry", clock=lambda: 1_700_000_000.7)
    access = [{"type": "repository", "name": "acme/shop/web", "actions": ["pull"]}]
    token = issuer.issue("alice", access, ttl=300)
    head_b64, claims_b64, sig_b64 = token.split(".")
    header, claims = json.loads(_unb64(head_b64)), json.loads(_unb64(claims_b64))
    assert header["alg"] == "ES256" and header["typ"] == "JWT" and header["kid"] == issuer.kid
    cert = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))  # standard base64, not url-safe
    assert cert == x509.load_pem_x509_certificate((tmp_path / "token.crt").read_bytes())
    assert claims["iss"] == "dockyard" and claims["sub"] == "alice" and claims["access"] == access
    assert claims["aud"] == "dockyard-registry"  # a string: distribution 2.8 rejects an array
    for k in ("exp", "nbf", "iat"):
        assert type(claims[k]) is int  # a float is rejected
    assert claims["iat"] == 1_700_000_000 and claims["exp"] == claims["iat"] + 300 and claims["nbf"] <= claims["iat"]
    sig = _unb64(sig_b64)
    assert len(sig) == 64  # raw r||s, not DER
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    cert.public_key().verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))


def test_key_and_certificate_are_made_once_and_private(tmp_path: Path) -> None:
    a = TokenIssuer(tmp_path, issuer="i", service="s")
    b = TokenIssuer(tmp_path, issuer="i", service="s")
    assert a.kid == b.kid
    for name in ("token.key", "token.crt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600


def test_disallowed_scopes_get_empty_actions(tmp_path: Path) -> None:
    issuer = TokenIssuer(tmp_path, issuer="i", service="s")
    issued = issuer.issue_for(RoleGrantee("viewer"), parse_scopes(["repository:acme/shop/web:pull,push",
                                                                   "repository:other/shop/web:pull"]))
    assert issued.access == [{"type": "repository", "name": "acme/shop/web", "actions": ["pull"]},
                             {"type": "repository", "name": "other/shop/web", "actions": []}]


def test_ephemeral_credentials_are_scoped_signed_and_expire() -> None:
    secret = b"k" * 32
    user, password = ephemeral_credential(secret, "acme", "shop", ("pull",), ttl=60)
    assert user == EPHEMERAL_USER
    g = EphemeralGrantee(read_ephemeral(secret, password))
    assert g.actions("acme", "shop", "web") == {"pull"} and g.actions("acme", "blog", "web") == set()
    assert read_ephemeral(b"x" * 32, password) is None                      # another server's secret
    payload, _, sig = password.partition(".")
    assert read_ephemeral(secret, payload[:-2] + "AA." + sig) is None       # tampered with
    assert read_ephemeral(secret, password, at=10**12) is None              # expired
    _, one = ephemeral_credential(secret, "acme", "shop", ("pull", "push", "delete"), ttl=60,
                                  repository="acme/shop/web")
    g = EphemeralGrantee(read_ephemeral(secret, one))
    assert g.actions("acme", "shop", "web") == {"pull", "push"}            # never delete
    assert g.actions("acme", "shop", "api") == set()


def test_ephemeral_credentials_carry_a_bounded_signed_subject() -> None:
    secret = b"k" * 32
    _, plain = ephemeral_credential(secret, "acme", "shop", ("push",), ttl=60)
    assert EphemeralGrantee(read_ephemeral(secret, plain)).subject == f"{EPHEMERAL_USER}:acme/shop"
    _, named = ephemeral_credential(secret, "acme", "shop", ("push",), ttl=60, subject="build site-3 (by admin)")
    assert EphemeralGrantee(read_ephemeral(secret, named)).subject == "build site-3 (by admin)"
    _, odd = ephemeral_credential(secret, "acme", "shop", ("push",), ttl=60, subject="build x\n\x1b[31m" + "y" * 300)
    subject = EphemeralGrantee(read_ephemeral(secret, odd)).subject
    assert len(subject) <= 100 and subject.isprintable() and subject.startswith("build x??[31m")
    payload, _, sig = named.partition(".")
    forged = json.loads(base64.urlsafe_b64decode(payload[4:] + "=" * (-len(payload[4:]) % 4)))
    forged["s"] = "admin"
    body = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    assert read_ephemeral(secret, f"dye_{body}.{sig}") is None              # the subject is signed


def test_password_cache_remembers_successes_for_a_while_only() -> None:
    now = [0.0]
    cache = PasswordCache(ttl=60, clock=lambda: now[0])
    assert cache.get("alice", "pw") is None
    cache.put("alice", "pw", object())  # type: ignore[arg-type]
    assert cache.get("alice", "pw") is not None and cache.get("alice", "other") is None
    now[0] = 61
    assert cache.get("alice", "pw") is None


def test_password_change_and_user_deletion_clear_the_cache(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.migrate()
    create_user(store, "alice", "first-password")
    creds = RegistryCredentials(store, b"s" * 32)
    assert creds.authenticate("alice", "first-password") is not None
    assert creds.passwords.get("alice", "first-password") is not None
    set_password(store, "alice", "second-password")
    assert creds.passwords.get("alice", "first-password") is None
    assert creds.authenticate("alice", "first-password") is None
    assert creds.authenticate("alice", "second-password") is not None
    delete_user(store, "alice")
    assert creds.authenticate("alice", "second-password") is None
    assert creds.authenticate("alice", "") is None and creds.authenticate("", "x") is None


@pytest.mark.parametrize(("ref", "expected"), [
    ("127.0.0.1:5000/acme/shop/web:1.4", ("acme", "shop", "web", "1.4")),
    ("127.0.0.1:5000/acme/shop/tools/cli", ("acme", "shop", "tools/cli", None)),
    ("127.0.0.1:5000/acme/shop/web@sha256:" + "a" * 64, ("acme", "shop", "web", None)),
    ("127.0.0.1:5000/acme/web:1", None),
    ("docker.io/acme/shop/web:1", None),
])
def test_image_references_of_the_registry(ref: str, expected: tuple | None) -> None:
    settings = RegistrySettings(listen="127.0.0.1:5000", root=Path("/x"), api_url="http://127.0.0.1:8080")
    assert settings.image_project(ref) == expected
    assert split_repository_ref("acme/shop/web:2") == ("acme", "shop", "web", "2")
