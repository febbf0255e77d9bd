"""Fetching a build's source: one commit of a git repository, shallow, into a temporary directory.

The URL is a user's, so git runs hemmed in:
- the destination is checked again now, with names resolved (`admission.egress.allowed_at_send`),
  and git connects to exactly the checked address (http(s): `http.curloptResolve`; git://: the
  address in the URL), so a DNS answer that changed since admission cannot lead it elsewhere;
  redirects are not followed;
- only the http, https and git transports are allowed (`protocol.allow=never`: no file://, ssh, ext::);
- no system or user git configuration, no credential helpers, no prompts, no hooks, no submodules;
- a time limit and a size limit on what lands on disk; `stop` ends it at once.
The whole process group is killed on any of those, and the caller removes the directory."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dockyard.admission.egress import allowed_at_send
from dockyard.model.build import GIT_SCHEMES
from dockyard.policy.egress import Destination, EgressRefused
from dockyard.registry.process import die_with_parent

GIT_CONFIG = ("protocol.allow=never", "protocol.http.allow=always", "protocol.https.allow=always",
              "protocol.git.allow=always", "credential.helper=", "core.askPass=", "http.followRedirects=false",
              "core.hooksPath=/dev/null", "submodule.recurse=false", "fetch.recurseSubmodules=false",
              "core.fsmonitor=false", "advice.detachedHead=false", "init.defaultBranch=main")


class SourceError(Exception):
    """The source could not be fetched; the message says why (for the Build's status)."""


@dataclass(frozen=True)
class Limits:
    timeout: float = 300.0
    max_bytes: int = 512 * 1024 * 1024


def _git_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_ASKPASS": "/bin/false",
            "SSH_ASKPASS": "/bin/false", "GIT_PROTOCOL_FROM_USER": "0", "LC_ALL": "C"}


def _pin(dest: Destination) -> list[str]:
    """git -c options that make curl connect to the checked address for the URL's host and port."""
    if dest.scheme not in ("http", "https") or not dest.addresses:
        return []
    addr = dest.addresses[0]
    addr = f"[{addr}]" if ":" in addr else addr
    return ["-c", f"http.curloptResolve={dest.host}:{dest.port}:{addr}"]


def _pinned_url(url: str, dest: Destination) -> str:
    """For git://, the URL with the checked address in place of the host name (git's own protocol
    has no way to be told the address; it names the host only as a virtual-host hint)."""
    if dest.scheme != "git" or not dest.addresses:
        return url
    parts = urlsplit(url)
    addr = dest.addresses[0]
    host = f"[{addr}]" if ":" in addr else addr
    return urlunsplit(parts._replace(netloc=f"{host}:{dest.port}"))


def _tree_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _run(argv: list[str], what: str, *, cwd: Path, env: dict[str, str], deadline: float, limits: Limits, watch: Path,
         stop: threading.Event, log: Callable[[str], None]) -> str:
    """Run one git command under the limits; return its stdout, log its stderr."""
    # its own session (so the whole group can be killed), and asked to die with this thread: a
    # killed server must not leave a git behind that nobody watches for time or size any more
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, preexec_fn=die_with_parent)
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read() if proc.stdout else b""), daemon=True)
    errors = threading.Thread(target=_relay, args=(proc, log), daemon=True)
    reader.start()
    errors.start()
    why = None
    while proc.poll() is None:
        if stop.wait(0.2):
            why = "stopped"
        elif time.monotonic() > deadline:
            why = f"took longer than {limits.timeout:.0f} s"
        elif _tree_bytes(watch) > limits.max_bytes:
            why = f"is larger than {limits.max_bytes // (1024 * 1024)} MiB"
        if why:
            _kill_group(proc)
            break
    proc.wait()
    reader.join(5)
    errors.join(5)
    if why == "stopped":
        raise SourceError("stopped")
    if why:
        raise SourceError(f"fetching the source {why}")
    if proc.returncode != 0:
        raise SourceError(f"git {what} failed (exit {proc.returncode}); see the build log")
    return b"".join(out).decode("utf-8", "replace").strip()


def _relay(proc: subprocess.Popen, log: Callable[[str], None]) -> None:
    assert proc.stderr is not None
    for raw in iter(proc.stderr.readline, b""):
        for part in raw.decode("utf-8", "replace").replace("\r", "\n").splitlines():
            if part.strip():
                log(f"git: {part.strip()}")


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def fetch(url: str, ref: str, into: Path, *, annotations: dict[str, str], limits: Limits, stop: threading.Event,
          log: Callable[[str], None]) -> str:
    """Fetch commit `ref` (a branch, tag or SHA) of `url` into the new directory `into` and check it
    out; return the commit's SHA. SourceError with the reason otherwise."""
    try:
        dest = allowed_at_send(url, GIT_SCHEMES, annotations)
    except EgressRefused as e:
        raise SourceError(f"spec.source.git: {e}") from None
    into.mkdir(parents=True)
    home = into.parent / f"{into.name}.home"
    home.mkdir()
    env = _git_env(home)
    config = [arg for item in GIT_CONFIG for arg in ("-c", item)] + _pin(dest)
    deadline = time.monotonic() + limits.timeout

    def git(*args: str) -> str:
        return _run(["git", *config, *args], args[0], cwd=into, env=env, deadline=deadline, limits=limits, watch=into,
                    stop=stop, log=log)

    log(f"fetching {ref} from {url} ({dest.addresses[0] if dest.addresses else dest.host})")
    git("init", "-q", ".")
    git("fetch", "--depth", "1", "--no-tags", "--no-recurse-submodules", "--", _pinned_url(url, dest), ref)
    git("checkout", "-q", "--detach", "FETCH_HEAD")
    commit = git("rev-parse", "HEAD")
    log(f"checked out commit {commit}")
    return commit
