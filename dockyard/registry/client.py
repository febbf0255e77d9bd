"""An HTTP client for the upstream registry (Dockyard's child on its unix socket, or an external
registry by URL), speaking the distribution API v2 with a short-lived token per request.

Dockyard asks the registry directly (not through the proxy): the proxy is for docker clients and
counts their uploads; what the platform itself reads or deletes must not depend on it. Each call
gets its own token for exactly the repository (and actions) it needs, minted by Dockyard's token
service for the subject `dockyard` (a delete: for whoever asked for it, whom the registry's
notification of it then names); with no token service (a bare registry) requests go without.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from dockyard.registry.service import RegistryService

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX)
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join(MANIFEST_TYPES)
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')

# (access, subject) → bearer token (None: send no Authorization header)
Authorize = Callable[[list[dict], str], str | None]
SUBJECT = "dockyard"


class RegistryError(Exception):
    """The registry refused or failed a request; `status` is its HTTP status (0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Manifest:
    """A manifest as Dockyard shows it: its digest, media type, and the bytes it takes to pull
    (config + layers; for an index, the sum of its platform manifests)."""

    digest: str
    media_type: str
    size: int
    platforms: list[str] = field(default_factory=list)  # "linux/amd64", … for an index
    layers: list[str] = field(default_factory=list)     # blob digests (config first)


def repository_access(repository: str, actions: tuple[str, ...]) -> list[dict]:
    return [{"type": "repository", "name": repository, "actions": list(actions)}]


CATALOG_ACCESS = [{"type": "registry", "name": "catalog", "actions": ["*"]}]


class _FallbackTransport(httpx.BaseTransport):
    """Unix sockets tried in order: while garbage collection runs, the writable registry is
    stopped and its read-only twin answers on another socket."""

    def __init__(self, sockets: list[Path]) -> None:
        self._transports = [httpx.HTTPTransport(uds=str(s)) for s in sockets]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for t in self._transports[:-1]:
            try:
                return t.handle_request(request)
            except httpx.ConnectError:
                continue
        return self._transports[-1].handle_request(request)

    def close(self) -> None:
        for t in self._transports:
            t.close()


class RegistryClient:
    """Blocking; one connection pool, safe to share between threads. `sockets`: the registry's
    unix sockets, tried in order; else `url`."""

    def __init__(self, *, sockets: list[Path] | None = None, url: str | None = None,
                 authorize: Authorize | None = None, timeout: float = 30.0) -> None:
        if (not sockets) == (url is None):
            raise ValueError("give either the registry's unix sockets or its URL")
        transport = _FallbackTransport(sockets) if sockets else None
        self._http = httpx.Client(base_url=url or "http://registry", transport=transport, timeout=timeout)
        self._authorize = authorize

    def close(self) -> None:
        self._http.close()

    # --- wire ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, access: list[dict], *, headers: dict | None = None,
                 ok: tuple[int, ...] = (200,), missing_ok: bool = False, subject: str = SUBJECT
                 ) -> httpx.Response | None:
        h = dict(headers or {})
        token = self._authorize(access, subject) if self._authorize else None
        if token:
            h["Authorization"] = f"Bearer {token}"
        try:
            r = self._http.request(method, path, headers=h)
        except httpx.HTTPError as e:
            raise RegistryError(f"the registry does not answer: {e}") from None
        if r.status_code == 404 and missing_ok:
            return None
        if r.status_code not in ok:
            raise RegistryError(f"{method} {path}: {r.status_code} {_error_text(r)}", r.status_code)
        return r

    # --- reads --------------------------------------------------------------------------

    def repositories(self, prefix: str = "") -> list[str]:
        """Repositories whose name starts with `prefix` (e.g. "acme/shop/"), from the catalog,
        following its pages."""
        out: list[str] = []
        path: str | None = "/v2/_catalog?n=1000"
        while path:
            r = self._request("GET", path, CATALOG_ACCESS)
            assert r is not None
            out += [n for n in r.json().get("repositories") or [] if n.startswith(prefix)]
            m = _NEXT.search(r.headers.get("Link", ""))
            path = m.group(1) if m else None
        return sorted(out)

    def tags(self, repository: str) -> list[str]:
        """The repository's tags; [] when the repository does not exist (or has none)."""
        r = self._request("GET", f"/v2/{repository}/tags/list", repository_access(repository, ("pull",)),
                          missing_ok=True)
        return sorted((r.json().get("tags") or []) if r is not None else [])

    def digest(self, repository: str, reference: str) -> str | None:
        """The digest a tag points to now (a HEAD request), or None when there is no such tag."""
        r = self._request("HEAD", f"/v2/{repository}/manifests/{reference}",
                          repository_access(repository, ("pull",)), headers={"Accept": ACCEPT}, missing_ok=True)
        return r.headers.get("Docker-Content-Digest") if r is not None else None

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        """The manifest a tag or digest names, or None when there is none."""
        r = self._request("GET", f"/v2/{repository}/manifests/{reference}",
                          repository_access(repository, ("pull",)), headers={"Accept": ACCEPT}, missing_ok=True)
        if r is None:
            return None
        body = json.loads(r.content)
        media = body.get("mediaType") or r.headers.get("Content-Type", "").split(";")[0]
        digest = r.headers.get("Docker-Content-Digest") or reference
        if media in INDEX_TYPES:
            size, platforms, layers = 0, [], []
            for child in body.get("manifests") or []:
                p = child.get("platform") or {}
                platforms.append("/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x))
                sub = self.manifest(repository, child["digest"])
                if sub is not None:
                    size += sub.size
                    layers += sub.layers
            return Manifest(digest, media, size, platforms, layers)
        parts = [body.get("config") or {}] + list(body.get("layers") or [])
        return Manifest(digest, media, sum(int(p.get("size") or 0) for p in parts), [],
                        [p["digest"] for p in parts if p.get("digest")])

    # --- writes -------------------------------------------------------------------------

    def delete_manifest(self, repository: str, digest: str, actor: str = SUBJECT) -> bool:
        """Delete a manifest by digest (every tag pointing to it goes with it) for `actor`, the
        name the registry's notification of the delete carries; False when it was already gone."""
        r = self._request("DELETE", f"/v2/{repository}/manifests/{digest}",
                          repository_access(repository, ("pull", "delete")), ok=(202, 200), missing_ok=True,
                          subject=actor or SUBJECT)
        return r is not None


def _error_text(r: httpx.Response) -> str:
    try:
        errors = r.json().get("errors") or []
        return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or r.text[:200]
    except ValueError:
        return r.text[:200]


def client_for(service: RegistryService) -> RegistryClient:
    """The client for a RegistryService: its own registry's sockets (writable, then read-only) or
    the external URL, with tokens from its issuer (subject `dockyard`, or who asked for a delete)."""
    settings, issuer = service.settings, service.issuer

    def authorize(access: list[dict], subject: str) -> str:
        return issuer.issue(subject, access, ttl=60)

    if settings.external_url:
        return RegistryClient(url=settings.external_url, authorize=authorize)
    return RegistryClient(sockets=[settings.socket, settings.readonly_socket], authorize=authorize)
