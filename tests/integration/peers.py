"""The real clients the registry and build tests drive, in one place for tests/integration and
tests/e2e: the docker CLI with a throwaway DOCKER_CONFIG (so no login reaches root's config),
images built for a test without pulling anything, and a `git daemon` on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockyard_harness import free_port

DEMO = "dockyard/demo:1.0"


def run_docker(env: dict, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`docker ARGS` with `env`; a failure is an AssertionError with docker's output when `check`."""
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=180, env=env, input=input)
    if check and res.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {res.stdout}\n{res.stderr}")
    return res


def throwaway_env(config: Path) -> dict:
    """The environment of a docker CLI whose logins go to `config`, not to root's."""
    return {**os.environ, "DOCKER_CONFIG": str(config)}


def build_image(env: dict, ref: str, base: str = "scratch", label: str = "", size: int = 0,
                ctx: Path | None = None) -> str:
    """Build `ref` FROM a local `base` (nothing is pulled), with a label (an image of its own
    digest) and, for a known pushed size, a layer of `size` random (incompressible) bytes, which
    needs a context: the new directory `ctx`."""
    dockerfile = f"FROM {base}\n" + (f"LABEL variant={label}\n" if label else "")
    if not size:
        run_docker(env, "build", "-q", "-t", ref, "-", input=dockerfile)
        return ref
    assert ctx is not None, "a layer of random bytes needs a build context"
    ctx.mkdir(parents=True)
    (ctx / "blob").write_bytes(os.urandom(size))
    (ctx / "Dockerfile").write_text(dockerfile + "COPY blob /blob\n")
    run_docker(env, "build", "-q", "-t", ref, str(ctx))
    return ref


def remove_registry_refs(env: dict, *registries: str) -> None:
    """Take the references to these registries' images off the engine: tags and images pulled by
    digest (by reference, never by id: an id may be the local demo image's too)."""
    out = run_docker(env, "images", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}",
                     check=False).stdout.splitlines()
    refs = []
    for repo, tag, digest in (line.split() for line in out if line.strip()):
        if repo.split("/", 1)[0] in registries:
            refs += ([f"{repo}:{tag}"] if tag != "<none>" else []) + ([f"{repo}@{digest}"] if digest != "<none>" else [])
    for i in range(0, len(refs), 50):
        run_docker(env, "rmi", *refs[i:i + 50], check=False)


class Docker:
    """The docker CLI with a throwaway DOCKER_CONFIG; logs out and removes the image references it
    tagged or built when done. Calls return the CompletedProcess for the test to judge."""

    def __init__(self, config: Path) -> None:
        self.env = throwaway_env(config)
        self.tagged: set[str] = set()
        self.registries: set[str] = set()

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return run_docker(self.env, *args, input=stdin, check=False)

    def login(self, registry: str, user: str, password: str) -> subprocess.CompletedProcess:
        self.registries.add(registry)
        return self("login", "-u", user, "--password-stdin", registry, stdin=password)

    def tag(self, ref: str) -> str:
        assert self("tag", DEMO, ref).returncode == 0
        self.tagged.add(ref)
        return ref

    def build(self, ref: str, ctx: Path, size: int) -> str:
        """An image of one layer of `size` random bytes, tagged `ref`."""
        self.tagged.add(build_image(self.env, ref, size=size, ctx=ctx))
        return ref

    def cleanup(self) -> None:
        for registry in self.registries:
            self("logout", registry)
        for ref in self.tagged:
            self("rmi", ref)


@pytest.fixture
def docker_cli(tmp_path: Path) -> Iterator[Docker]:
    d = Docker(tmp_path / "docker-config")
    yield d
    d.cleanup()


GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.test", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.test"}


class GitServer:
    """Bare repositories under `root`, served read-only by `git daemon` on a loopback port; commits
    are made in a work tree and pushed to the bare repository through the file system."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the daemon and wait until it accepts connections."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["git", "daemon", "--export-all", f"--base-path={self.root}", "--listen=127.0.0.1",
             f"--port={self.port}", "--reuseaddr", str(self.root)],
            env={**os.environ, **GIT_ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)

    def url(self, repo: str) -> str:
        return f"git://127.0.0.1:{self.port}/{repo}.git"

    def git(self, cwd: Path, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True,
                              capture_output=True, text=True).stdout.strip()

    def commit(self, repo: str, files: dict[str, str], branch: str = "main") -> str:
        """Write `files` into the repository's work tree, commit and push to `branch`; the SHA."""
        bare = self.root / f"{repo}.git"
        work = self.root / f"{repo}.work"
        if not bare.exists():
            self.git(self.root, "init", "-q", "--bare", str(bare))
            self.git(self.root, "init", "-q", "-b", branch, str(work))
        for name, text in files.items():
            (work / name).write_text(text)
        self.git(work, "add", ".")
        self.git(work, "commit", "-q", "-m", f"change {time.time()}")
        self.git(work, "push", "-q", str(bare), f"HEAD:refs/heads/{branch}")
        return self.git(work, "rev-parse", "HEAD")


@pytest.fixture
def gitserver(tmp_path: Path) -> Iterator[GitServer]:
    g = GitServer(tmp_path / "git")
    g.start()
    yield g
    g.stop()
