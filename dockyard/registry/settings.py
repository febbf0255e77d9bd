"""Where the registry lives and how its images are named: one frozen value that the server builds
from its flags and every registry module reads."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:5000"


@dataclass(frozen=True)
class RegistrySettings:
    listen: str | None          # "127.0.0.1:5000"; None = no registry of our own (off, or external)
    root: Path                  # <data-dir>/registry
    api_url: str                # where the registry child reaches Dockyard: the token realm and notifications
    external_url: str | None = None
    service: str = "dockyard-registry"   # the JWT's aud, and auth.token.service of the registry
    issuer: str = "dockyard"             # the JWT's iss

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def socket(self) -> Path:
        """The writable child's unix socket (only the proxy connects to it)."""
        return self.root / "registry.sock"

    @property
    def readonly_socket(self) -> Path:
        """The read-only child's socket, used while garbage collection runs."""
        return self.root / "registry-ro.sock"

    @property
    def host(self) -> str | None:
        """The host[:port] that image references start with, or None without a registry."""
        if self.external_url:
            return self.external_url.split("://", 1)[-1].rstrip("/")
        return self.listen

    @property
    def enabled(self) -> bool:
        return self.host is not None

    @property
    def realm(self) -> str:
        return self.api_url.rstrip("/") + "/registry/token"

    @property
    def events_url(self) -> str:
        return self.api_url.rstrip("/") + "/registry/events"

    def image_project(self, ref: str) -> tuple[str, str, str, str | None] | None:
        """(tenant, project, name, tag) when `ref` names an image in this registry, else None.
        The tag is None when the reference has none (or names a digest only)."""
        host = self.host
        if not host or not ref.startswith(host + "/"):
            return None
        return split_repository_ref(ref[len(host) + 1:])


def split_repository_ref(path: str) -> tuple[str, str, str, str | None] | None:
    """"t/p/name[/more][:tag][@digest]" → (t, p, name, tag); None unless it has three parts."""
    path = path.split("@", 1)[0]
    repo, tag = path, None
    head, sep, last = path.rpartition(":")
    if sep and "/" not in last:
        repo, tag = head, last
    parts = repo.split("/")
    if len(parts) < 3 or not all(parts):
        return None
    return parts[0], parts[1], "/".join(parts[2:]), tag or None


def registry_binary() -> str | None:
    """The distribution registry's program (Debian names it docker-registry), or None."""
    return shutil.which("docker-registry")


def server_settings(data_dir: Path, api_listen: str, listen: str | None, external_url: str | None
                    ) -> RegistrySettings:
    """The settings `dockyard server` uses: the child reaches the API on loopback when the API
    listens on every address."""
    host, _, port = api_listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1" if host != "[::]" and host != "::" else "[::1]"
    return RegistrySettings(listen=None if external_url else listen, root=data_dir / "registry",
                            api_url=f"http://{host}:{port}", external_url=external_url)
