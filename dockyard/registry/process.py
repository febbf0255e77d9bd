"""The distribution registry (`docker-registry serve`) as a supervised child of the server.

Each instance has one supervisor thread that alone spawns, watches and stops its process: it
restarts a process that died (with a growing back-off), and since the child is asked to die with
the thread that spawned it (PR_SET_PDEATHSIG), a killed server never leaves a registry behind. A
pid file lets the next start reap a child that outlived a crash anyway.

Two instances share one storage directory: the writable one, and a read-only one (storage
maintenance mode) that serves pulls while garbage collection runs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import yaml

from dockyard.registry.settings import RegistrySettings
from dockyard.registry.tokens import write_private

log = logging.getLogger(__name__)
DRAIN_SECONDS = 5          # http.draintimeout: in-flight requests finish on SIGTERM
READY_TIMEOUT = 30.0
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0        # a process up this long resets the back-off
LOG_LIMIT = 10 * 1024 * 1024
PR_SET_PDEATHSIG = 1


class RegistryError(Exception):
    """The registry could not be started, or a maintenance command failed."""


def registry_config(settings: RegistrySettings, *, sock: Path, readonly: bool, http_secret: str,
                    notify_secret: str, rootcert: Path) -> dict:
    """The distribution configuration of one instance (both share storage, secret and auth)."""
    cfg: dict = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": True},
                "fields": {"service": "registry", "instance": "readonly" if readonly else "writable"}},
        "storage": {
            "filesystem": {"rootdirectory": str(settings.storage)},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
            # abandoned uploads go after a week (the read-only instance must not write)
            "maintenance": {"uploadpurging": {"enabled": not readonly, "age": "168h", "interval": "24h",
                                              "dryrun": False},
                            "readonly": {"enabled": readonly}},
        },
        "http": {"net": "unix", "addr": str(sock), "secret": http_secret, "draintimeout": f"{DRAIN_SECONDS}s",
                 "headers": {"X-Content-Type-Options": ["nosniff"]}},
        "auth": {"token": {"realm": settings.realm, "service": settings.service, "issuer": settings.issuer,
                           "rootcertbundle": str(rootcert)}},
    }
    if not readonly:
        cfg["notifications"] = {"endpoints": [{
            "name": "dockyard", "url": settings.events_url,
            "headers": {"Authorization": [f"Bearer {notify_secret}"]},
            "timeout": "5s", "threshold": 5, "backoff": "2s",
            # blob events (application/octet-stream) and pulls are of no use to Dockyard; in 2.8
            # ignore.actions only works when ignore.mediatypes is non-empty
            "ignore": {"mediatypes": ["application/octet-stream"], "actions": ["pull"]},
        }]}
    return cfg


def answers(sock: Path, timeout: float = 2.0) -> bool:
    """True when an HTTP server answers GET /v2/ on the unix socket (a 401 counts: it is up)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(sock))
            s.sendall(b"GET /v2/ HTTP/1.0\r\nHost: registry\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


def die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def reap_stale(pidfile: Path, marker: str) -> None:
    """End a registry left behind by an earlier server (its pid file names it, and its command
    line still carries `marker`, our config path: a recycled pid is left alone)."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        pidfile.unlink(missing_ok=True)
        return
    if marker.encode() not in cmdline:
        pidfile.unlink(missing_ok=True)
        return
    log.warning("ending registry pid %s left behind by an earlier server", pid)
    _signal_and_wait(pid, DRAIN_SECONDS + 2)
    pidfile.unlink(missing_ok=True)


def _signal_and_wait(pid: int, grace: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists() or b"State:\tZ" in Path(f"/proc/{pid}/status").read_bytes():
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, FileNotFoundError):
        pass


class RegistryInstance:
    """One `docker-registry serve CONFIG` kept running (or stopped) by its supervisor thread.
    `run()` and `halt()` say what is wanted and wait until it is so."""

    def __init__(self, name: str, binary: str, config: Path, sock: Path, log_path: Path) -> None:
        self.name, self.binary, self.config, self.sock, self.log_path = name, binary, config, sock, log_path
        self.pidfile = config.with_suffix(".pid")
        self._cond = threading.Condition()
        self._want = False
        self._closed = False
        self._ready = False
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def run(self, timeout: float = READY_TIMEOUT) -> None:
        """Want the process running; return once it answers (RegistryError after `timeout`)."""
        with self._cond:
            self._want = True
            if self._thread is None:
                self._thread = threading.Thread(target=self._supervise, name=f"registry-{self.name}", daemon=True)
                self._thread.start()
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._ready, timeout):
                raise RegistryError(f"the {self.name} registry did not answer on {self.sock} within {timeout:.0f} s; "
                                    f"see {self.log_path}")

    def halt(self, timeout: float = DRAIN_SECONDS + 5) -> None:
        """Want the process stopped (SIGTERM: in-flight requests drain); return once it is."""
        with self._cond:
            self._want = False
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._proc is None, timeout)

    def close(self) -> None:
        """Stop the process and end the supervisor."""
        self.halt()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(DRAIN_SECONDS + 5)

    # --- the supervisor thread ------------------------------------------------------------

    def _supervise(self) -> None:
        backoff = 0.5
        started = time.monotonic()
        while True:
            with self._cond:
                if self._closed and self._proc is None:
                    return
                want = self._want and not self._closed
                proc = self._proc
            if want and proc is None:
                started = time.monotonic()
                if self._spawn_until_ready():
                    continue
                self._backoff_wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            elif not want and proc is not None:
                self._terminate(proc)
            elif proc is not None and proc.poll() is not None:
                up = time.monotonic() - started
                log.warning("the %s registry exited with %s after %.0f s; restarting in %.1f s (log: %s)",
                            self.name, proc.returncode, up, backoff, self.log_path)
                self._forget(proc)
                if up >= STABLE_AFTER:
                    backoff = 0.5
                self._backoff_wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            else:
                with self._cond:
                    self._cond.wait(0.5)

    def _backoff_wait(self, seconds: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._want or self._closed, seconds)

    def _spawn_until_ready(self) -> bool:
        self.sock.unlink(missing_ok=True)  # a socket file left by a killed process makes the bind fail
        if self.log_path.exists() and self.log_path.stat().st_size > LOG_LIMIT:
            self.log_path.replace(self.log_path.with_suffix(".log.1"))
        with open(self.log_path, "ab") as out:
            proc = subprocess.Popen([self.binary, "serve", str(self.config)], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, preexec_fn=die_with_parent, close_fds=True)
        self.pidfile.write_text(f"{proc.pid}\n")
        with self._cond:
            self._proc = proc
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None and self._want:
            if answers(self.sock):
                with self._cond:
                    self._ready = True
                    self._cond.notify_all()
                log.info("the %s registry (pid %s) answers on %s", self.name, proc.pid, self.sock)
                return True
            time.sleep(0.05)
        if proc.poll() is None and self._want:
            log.error("the %s registry did not answer within %.0f s; restarting it", self.name, READY_TIMEOUT)
        elif proc.poll() is not None:
            log.error("the %s registry exited at start with %s; see %s", self.name, proc.returncode, self.log_path)
        self._terminate(proc)
        return False

    def _terminate(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(DRAIN_SECONDS + 2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._forget(proc)

    def _forget(self, proc: subprocess.Popen) -> None:
        proc.poll()
        self.pidfile.unlink(missing_ok=True)
        with self._cond:
            if self._proc is proc:
                self._proc = None
            self._ready = False
            self._cond.notify_all()


def write_config(path: Path, cfg: dict) -> None:
    """Write the config readable by the owner only (it holds the notification secret)."""
    write_private(path, yaml.safe_dump(cfg, sort_keys=False).encode())


def garbage_collect(binary: str, config: Path, timeout: float = 3600, *, delete_untagged: bool = True) -> str:
    """`docker-registry garbage-collect [--delete-untagged] CONFIG`; its output. Only safe while no
    writable instance serves the storage (RegistryService.readonly). Without `delete_untagged` only
    the blobs of deleted manifests go (Dockyard's GC deletes the untagged manifests nothing needs
    first, registry/untagged.py)."""
    flags = ["--delete-untagged"] if delete_untagged else []
    res = subprocess.run([binary, "garbage-collect", *flags, str(config)], capture_output=True,
                         text=True, timeout=timeout)
    out = res.stdout + res.stderr
    if res.returncode != 0 and "Path not found: /docker/registry/v2/repositories" in out:
        return "nothing to collect: the registry holds no repositories yet\n"
    if res.returncode != 0:
        raise RegistryError(f"garbage-collect exited with {res.returncode}: {out[-2000:]}")
    return out
