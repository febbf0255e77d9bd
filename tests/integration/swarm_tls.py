"""Throwaway TLS material for a test Swarm's managers: one CA, a server certificate per manager with
its IP as subject alternative name, and one client certificate, so tests reach the managers over
tcp:// with --tlsverify as an operator would reach a remote swarm."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsPair:
    cert_pem: str
    key_pem: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # P-256: fast to make, accepted by Go's TLS


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
          issuer_key: ec.EllipticCurvePrivateKey, extensions: list[tuple[x509.ExtensionType, bool]]) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer else name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2)))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class TestCA:
    """A CA that lives as long as one test cluster; nothing of it is trusted outside the cluster."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, name: str) -> None:
        self._key = _key()
        self._cert = _cert(f"{name} test CA", self._key, None, self._key,
                           [(x509.BasicConstraints(ca=True, path_length=0), True)])
        self.ca_pem = _pem(self._cert)

    def _issue(self, subject: str, usage: x509.ObjectIdentifier, ips: tuple[str, ...] = ()) -> TlsPair:
        key = _key()
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([usage]), False)]
        if ips:
            extensions.append((x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(i)) for i in ips]), False))
        return TlsPair(_pem(_cert(subject, key, self._cert, self._key, extensions)), _key_pem(key))

    def server(self, name: str, *ips: str) -> TlsPair:
        return self._issue(name, ExtendedKeyUsageOID.SERVER_AUTH, ips)

    def client(self, name: str) -> TlsPair:
        return self._issue(name, ExtendedKeyUsageOID.CLIENT_AUTH)


def write_pem_files(directory: Path, ca_pem: str, pair: TlsPair, cert_name: str = "cert.pem",
                    key_name: str = "key.pem") -> tuple[Path, Path, Path]:
    """Write ca.pem and a certificate/key pair (key mode 0600); the docker CLI's DOCKER_CERT_PATH layout by
    default. Returns (ca, cert, key) paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / cert_name, directory / key_name
    paths[0].write_text(ca_pem)
    paths[1].write_text(pair.cert_pem)
    paths[2].touch(mode=0o600)
    paths[2].write_text(pair.key_pem)
    return paths
