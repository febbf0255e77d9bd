"""Where the platform may send data on a user's behalf (notifiers, log drains).

A user-supplied URL is the classic server-side request forgery lever: a webhook pointed at
169.254.169.254 reads a cloud's instance credentials, one pointed at 127.0.0.1 reaches the
control plane's own services. The rules:

- link-local, cloud metadata, unspecified, multicast and reserved addresses: refused for everyone;
- loopback and private (RFC 1918, ULA, CGNAT) addresses: only a platform admin may write them;
  admission then marks the object with the annotation `PRIVATE_ANNOTATION`, and senders allow
  private destinations only for objects that carry it (a name that resolved to a public
  address when it was written and to a private one later is refused at send time);
- everything else: allowed.

Checks are pure apart from name resolution; `resolve` is injectable for tests. Senders connect
with `open_pinned_http` to the address a check returned, so DNS cannot change it in between."""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

PRIVATE_ANNOTATION = "dockyard.io/egress-private"
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal",
                            "metadata.azure.com", "metadata.packet.net"})
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("169.254.170.2"),
                                ipaddress.ip_address("100.100.100.200"), ipaddress.ip_address("fd00:ec2::254")})
CGNAT = ipaddress.ip_network("100.64.0.0/10")

Resolver = Callable[[str, int], list[str]]


class EgressRefused(ValueError):
    """The destination may not be used; the message says why, for the field's error."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]
    private: bool  # some address is loopback or private


def system_resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise EgressRefused(f"host '{host}' cannot be resolved ({e})") from None
    return sorted({str(info[4][0]) for info in infos})


def classify(address: str) -> str:
    """'forbidden', 'private' or 'public' for one IP address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return "forbidden"
    # before is_reserved: ::1 lies in the reserved ::/8
    if ip.is_loopback or ip.is_private or (isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT):
        return "private"
    return "forbidden" if ip.is_reserved else "public"


DEFAULT_PORTS = {"http": 80, "https": 443, "smtp": 25, "smtps": 465, "syslog": 514, "syslog+tcp": 514,
                 "syslog+tls": 6514, "git": 9418}


def check_url(url: str, *, schemes: frozenset[str] | set[str], allow_private: bool,
              resolve: Resolver | None = system_resolve) -> Destination:
    """Parse, resolve and check `url`; raise EgressRefused naming the reason. With `resolve=None`
    (admission) host names are not looked up: only literal addresses, `localhost` and metadata
    names are judged, and senders check what the name resolves to on every send."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise EgressRefused(f"is not a valid URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise EgressRefused(f"scheme '{scheme or '(none)'}' is not allowed here; use {', '.join(sorted(schemes))}")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise EgressRefused("has no host")
    return check_host(host, port or DEFAULT_PORTS.get(scheme, 0), scheme=scheme, allow_private=allow_private,
                      resolve=resolve)


def check_host(host: str, port: int, *, scheme: str = "", allow_private: bool,
               resolve: Resolver | None = system_resolve) -> Destination:
    host = host.rstrip(".").lower()
    if host in METADATA_NAMES:
        raise EgressRefused(f"host '{host}' is a cloud metadata service")
    try:
        addresses = [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        if host == "localhost" or host.endswith(".localhost"):
            addresses = ["127.0.0.1"]  # RFC 6761: always loopback, whatever a resolver says
        elif resolve is None:
            return Destination(scheme, host, port, (), False)
        else:
            addresses = resolve(host, port)
    if not addresses:
        raise EgressRefused(f"host '{host}' has no address")
    kinds = {a: classify(a) for a in addresses}
    bad = [a for a, k in kinds.items() if k == "forbidden"]
    if bad:
        raise EgressRefused(f"host '{host}' is {bad[0]}, a link-local, metadata or reserved address; "
                            "notifications, log drains and builds may not go there")
    private = any(k == "private" for k in kinds.values())
    if private and not allow_private:
        raise EgressRefused(f"host '{host}' is {addresses[0]}, a loopback or private address; "
                            "only a platform admin may send there")
    return Destination(scheme, host, port, tuple(addresses), private)


def open_pinned_http(scheme: str, dest: Destination, timeout: float,
                     tls_context: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    """An HTTP(S) connection that goes to the address `dest` was checked with, never to a second
    resolution of its name (which may lead elsewhere by now); the Host header and the TLS server
    name keep the host name."""
    address = dest.addresses[0]
    conn: http.client.HTTPConnection
    if scheme == "https":
        context = tls_context or ssl.create_default_context()
        conn = http.client.HTTPSConnection(dest.host, dest.port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(dest.host, dest.port, timeout=timeout)
    # http.client resolves self.host in connect()
    conn._create_connection = lambda addr, *a: socket.create_connection((address, addr[1]), *a)  # type: ignore[attr-defined]
    return conn
