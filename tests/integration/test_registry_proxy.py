"""The registry proxy in front of a real distribution registry, driven by the real `docker push/pull`:
uploads that would pass a storage quota are cut off with the registry's DENIED error, the rest flows
through unchanged, and the usage figure follows what the registry stores."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from peers import build_image, run_docker, throwaway_env

from dockyard.registry.proxy import RegistryProxy
from dockyard.registry.usage import StorageUsage

pytestmark = pytest.mark.engine

REGISTRY = shutil.which("docker-registry")
ENV = throwaway_env(Path("/nonexistent-dockyard-test"))  # the docker CLI with no login of root's


class FixedQuota:
    """A quota of `limit` bytes for project acme/shop only, over the real storage figure (the store is
    not needed here)."""

    def __init__(self, usage: StorageUsage, limit: int | None) -> None:
        self.usage, self.limit = usage, limit

    def remaining(self, tenant: str, project: str, inflight: int) -> int | None:
        if self.limit is None or (tenant, project) != ("acme", "shop"):
            return None
        return self.limit - self.usage.project_bytes(tenant, project) - inflight

    def message(self, tenant: str, project: str, inflight: int, adding: int) -> str:
        return f"storage quota exceeded: project {tenant}/{project} may store {self.limit} bytes"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    if REGISTRY is None:
        pytest.skip("docker-registry is not installed (scripts/install.sh installs it)")
    sock, storage = tmp_path / "registry.sock", tmp_path / "storage"
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {storage}}}\n"
                   f"  delete: {{enabled: true}}\nhttp:\n  net: unix\n  addr: {sock}\n")
    proc = subprocess.Popen([REGISTRY, "serve", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not sock.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the registry did not start"
            time.sleep(0.05)
        yield sock, storage
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_push_over_quota_is_refused_and_nothing_is_stored(registry: tuple[Path, Path], tmp_path: Path) -> None:
    sock, storage = registry
    usage = StorageUsage(storage, ttl=0)
    port = _free_port()
    proxy = RegistryProxy(f"127.0.0.1:{port}", sock, FixedQuota(usage, 6 * 1024 * 1024), usage=usage)
    proxy.start()
    small, big = f"127.0.0.1:{port}/acme/shop/small:1", f"127.0.0.1:{port}/acme/shop/big:1"
    try:
        build_image(ENV, small, size=2 * 1024 * 1024, ctx=tmp_path / "small")
        build_image(ENV, big, size=8 * 1024 * 1024, ctx=tmp_path / "big")
        pushed = run_docker(ENV, "push", small, check=False)
        assert pushed.returncode == 0, pushed.stderr
        stored = usage.project_bytes("acme", "shop")
        assert 2 * 1024 * 1024 <= stored < 3 * 1024 * 1024

        refused = run_docker(ENV, "push", big, check=False)
        assert refused.returncode != 0
        assert "storage quota exceeded" in refused.stderr, refused.stderr
        # the refused layer is not in the registry's storage, and the tag does not exist
        assert usage.project_bytes("acme", "shop") == stored
        tags = httpx.get(f"http://127.0.0.1:{port}/v2/acme/shop/big/tags/list")
        assert tags.status_code == 404
        blobs = [p for p in (storage / "docker/registry/v2/blobs").rglob("data") if p.stat().st_size > 7 * 1024 * 1024]
        assert blobs == []

        # another project has no quota here: the same image goes through, and pulls of it work
        other = f"127.0.0.1:{port}/acme/other/big:1"
        run_docker(ENV, "tag", big, other)
        assert run_docker(ENV, "push", other, check=False).returncode == 0
        run_docker(ENV, "rmi", other, big)
        pulled = run_docker(ENV, "pull", other, check=False)
        assert pulled.returncode == 0, pulled.stderr
    finally:
        proxy.stop()
        run_docker(ENV, "rmi", "-f", small, big, f"127.0.0.1:{port}/acme/other/big:1", check=False)


def test_tls_probe_gets_a_plain_http_answer_at_once(registry: tuple[Path, Path]) -> None:
    """dockerd tries https first; the answer must be immediate plain HTTP, not a 10 s stall."""
    sock, _ = registry
    port = _free_port()
    proxy = RegistryProxy(f"127.0.0.1:{port}", sock, None)
    proxy.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
            assert s.recv(64).startswith(b"HTTP/1.1 400")
        assert httpx.get(f"http://127.0.0.1:{port}/v2/").status_code == 200
    finally:
        proxy.stop()


def test_an_early_answer_of_the_registry_reaches_the_client(registry: tuple[Path, Path]) -> None:
    """The registry may answer before it has read a request's body (a bad upload state here; an early
    401 in real life) and close the connection; the client must get that answer, not a cut-off."""
    sock, _ = registry
    port = _free_port()
    proxy = RegistryProxy(f"127.0.0.1:{port}", sock, None)
    proxy.start()
    body = os.urandom(8 * 1024 * 1024)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"PUT /v2/acme/shop/web/blobs/uploads/0000?_state=bogus&digest=sha256:" + b"0" * 64
                      + f" HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode())
            received = bytearray()

            def send() -> None:
                try:
                    s.sendall(body)
                except OSError:
                    pass  # the registry stopped reading: expected

            t = threading.Thread(target=send)
            t.start()
            while not received.endswith(b"}\n") and len(received) < 65536:
                chunk = s.recv(65536)
                if not chunk:
                    break
                received += chunk
            t.join(timeout=10)
        assert received.startswith(b"HTTP/1.1 4"), received[:200]
        assert b"BLOB_UPLOAD" in received or b"errors" in received
    finally:
        proxy.stop()
