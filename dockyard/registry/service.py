"""`RegistryService`: the registry as one piece the server starts and stops — settings, the
child processes, the proxy in front of them, the token issuer and the credentials it accepts."""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

from dockyard.registry import process
from dockyard.registry.credentials import RegistryCredentials, ephemeral_credential
from dockyard.registry.process import RegistryError, RegistryInstance, registry_config, write_config
from dockyard.registry.settings import RegistrySettings, registry_binary, server_settings
from dockyard.registry.tokens import TokenIssuer, write_private
from dockyard.store.repository import Store

log = logging.getLogger(__name__)


def load_or_create_secret(path: Path, nbytes: int = 32) -> str:
    """A random secret kept in `path` (mode 0600), made on first use."""
    if path.exists():
        text = path.read_text().strip()
        if text:
            return text
    text = secrets.token_urlsafe(nbytes)
    write_private(path, (text + "\n").encode())
    return text


class RegistryService:
    """Dockyard's registry. With `settings.listen` it runs the registry itself (a writable child
    behind the proxy, and a read-only child during garbage collection); with an external registry
    (`settings.external_url`) it is only the token service."""

    def __init__(self, settings: RegistrySettings, store: Store, *, binary: str | None = None) -> None:
        self.settings = settings
        self.store = store
        root = settings.root
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o700)
        self.issuer = TokenIssuer(root, issuer=settings.issuer, service=settings.service)
        self.credential_secret = load_or_create_secret(root / "credential-secret").encode()
        self.notify_secret = load_or_create_secret(root / "notify-secret")
        self.credentials = RegistryCredentials(store, self.credential_secret)
        self.proxy = None
        self.usage = None
        self._in_readonly = False
        self._maintenance = threading.Lock()
        self.binary = binary or registry_binary()
        self.writable: RegistryInstance | None = None
        self.readonly_instance: RegistryInstance | None = None
        if settings.listen and not self.binary:
            raise RegistryError("docker-registry is not installed (Debian package docker-registry)")
        if settings.listen:
            http_secret = load_or_create_secret(root / "http-secret")  # both instances share it
            self.writable = self._instance("writable", settings.socket, http_secret, readonly=False)
            self.readonly_instance = self._instance("readonly", settings.readonly_socket, http_secret, readonly=True)

    @property
    def runs_registry(self) -> bool:
        return self.writable is not None

    def _instance(self, name: str, sock: Path, http_secret: str, *, readonly: bool) -> RegistryInstance:
        root = self.settings.root
        config = root / f"{name}.yml"
        write_config(config, registry_config(self.settings, sock=sock, readonly=readonly, http_secret=http_secret,
                                             notify_secret=self.notify_secret, rootcert=self.issuer.cert_path))
        return RegistryInstance(name, self.binary or "docker-registry", config, sock, root / f"{name}.log")

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writable registry and the proxy in front of it (nothing for an external one).
        Raises RegistryError or OSError (the listen address is taken)."""
        if self.writable is None:
            return
        from dockyard.registry.proxy import RegistryProxy
        from dockyard.registry.quota import StoreQuotaPolicy
        from dockyard.registry.usage import StorageUsage

        self.settings.storage.mkdir(parents=True, exist_ok=True)
        for inst in (self.writable, self.readonly_instance):
            assert inst is not None
            process.reap_stale(inst.pidfile, str(inst.config))
        self.writable.run()
        self.usage = StorageUsage(self.settings.storage)
        self.proxy = RegistryProxy(self.settings.listen or "", self.settings.socket,
                                   StoreQuotaPolicy(self.store, self.usage), self.usage)
        try:
            self.proxy.start()
        except OSError:
            self.writable.close()
            raise

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for inst in (self.readonly_instance, self.writable):
            if inst is not None:
                inst.close()

    # --- credentials ----------------------------------------------------------------------------

    def credential(self, tenant: str, project: str, actions: tuple[str, ...], ttl: float = 3600,
                   repository: str | None = None, subject: str | None = None) -> tuple[str, str]:
        """An ephemeral (username, password) for `actions` on the project's repositories; `subject`
        is who the registry records as its user (default `dockyard-ephemeral:T/P`)."""
        return ephemeral_credential(self.credential_secret, tenant, project, actions, ttl, repository, subject)

    # --- maintenance ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def readonly(self) -> Iterator[None]:
        """Serve the storage read-only for the duration: a read-only instance takes new
        connections while the writable one drains and stops; afterwards the writable one is
        started again and takes over. Pushes in between are refused by the registry (as
        maintenance), pulls go on. One at a time."""
        if self.writable is None or self.readonly_instance is None or self.proxy is None:
            raise RegistryError("maintenance needs Dockyard's own registry (not an external one)")
        with self._maintenance:
            ro, rw, proxy = self.readonly_instance, self.writable, self.proxy
            ro.run()
            proxy.set_upstream(ro.sock)
            try:
                rw.halt()
                self._in_readonly = True
                yield
            finally:
                self._in_readonly = False
                # should the writable one not come back, the read-only one keeps serving pulls (and
                # the supervisor keeps trying); run() raises, so the caller hears of it
                rw.run()
                proxy.set_upstream(rw.sock)
                ro.halt()

    def garbage_collect(self, *, delete_untagged: bool = True) -> str:
        """Run the registry's garbage collector; its output. Only inside `readonly()`."""
        if not self._in_readonly or self.writable is None:
            raise RegistryError("garbage collection runs only inside RegistryService.readonly()")
        return process.garbage_collect(self.binary or "docker-registry", self.writable.config,
                                       delete_untagged=delete_untagged)


def open_registry(data_dir: Path, store: Store, *, api_listen: str, listen: str | None,
                  external_url: str | None) -> RegistryService | None:
    """The server's registry: its own (`listen`), an external one it is the token service of
    (`external_url`), or None (off, or `docker-registry` is not installed: said in the log)."""
    if not listen and not external_url:
        log.info("the registry is off (--registry-listen off)")
        return None
    if listen and not external_url and registry_binary() is None:
        log.warning("the registry is off: docker-registry is not installed (Debian package docker-registry)")
        return None
    settings = server_settings(data_dir, api_listen, listen, external_url)
    return RegistryService(settings, store)
