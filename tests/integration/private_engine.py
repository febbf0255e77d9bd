"""A private Docker engine for tests that must stop or crash the engine: its own dockerd in its
own network, UTS, PID and mount namespaces, so nothing of the host's engine is touched."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import docker


def dockerd_pid(wrapper: subprocess.Popen | None) -> int | None:
    """The host PID of a namespaced dockerd: the child of its `unshare --fork` wrapper (inside its PID
    namespace, and in its pid file, it is 1)."""
    if wrapper is None or wrapper.poll() is not None:
        return None
    try:
        children = Path(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def stop_dockerd(wrapper: subprocess.Popen | None, sig: int, timeout: float = 30) -> None:
    """Signal the namespaced dockerd under `wrapper` and wait for the wrapper to end (SIGKILL: the whole
    PID namespace dies with it, a crash). If it does not end in `timeout`, its process group is killed."""
    if wrapper is None:
        return
    pid = dockerd_pid(wrapper)
    try:
        if pid and pid > 1:
            os.kill(pid, sig)
        else:
            os.killpg(wrapper.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        wrapper.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(wrapper.pid, signal.SIGKILL)
        wrapper.wait(10)


class PrivateEngine:
    def __init__(self, name: str, root: Path, index: int = 2) -> None:
        self.name = name
        self.dir = root / name
        self.index = index
        self.netns = f"dyt-{name}"
        self.sock = self.dir / "docker.sock"
        self.url = f"unix://{self.sock}"
        self.proc: subprocess.Popen | None = None

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def create(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ip("netns", "add", self.netns)
        self._ip("-n", self.netns, "link", "set", "lo", "up")
        self.start()

    def start(self) -> None:
        (self.dir / "dockerd.pid").unlink(missing_ok=True)
        script = (f"hostname {self.name}; exec dockerd --data-root {self.dir}/data --exec-root {self.dir}/exec "
                  f"-H {self.url} --pidfile {self.dir}/dockerd.pid --containerd-namespace {self.netns} "
                  f"--containerd-plugins-namespace {self.netns}-p --bip 172.30.{self.index}.1/24")
        with open(self.dir / "log", "ab") as log:
            self.proc = subprocess.Popen(
                ["nsenter", f"--net=/var/run/netns/{self.netns}", "unshare", "--uts", "--pid", "--mount", "--fork",
                 "--mount-proc", "sh", "-c", script], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                docker.APIClient(base_url=self.url, version="1.41", timeout=3).ping()
                return
            except Exception:  # noqa: BLE001 — not up yet
                time.sleep(0.3)
        raise RuntimeError(f"private dockerd {self.name} did not start: {(self.dir / 'log').read_text()[-1500:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """Stop dockerd (SIGTERM: a clean engine restart; SIGKILL: a crash of the whole node)."""
        stop_dockerd(self.proc, sig, timeout)
        self.proc = None

    def load_image(self, image: str) -> None:
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", self.url, "load", "-q"], stdin=save.stdout, check=True, capture_output=True)
        save.wait()

    def destroy(self) -> None:
        self.stop(signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(self.dir))]
        for m in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
