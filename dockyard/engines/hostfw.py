"""Host firewall rules that keep a project's containers off the host's own addresses.

Docker already stops traffic between bridge networks (DOCKER-ISOLATION chains), but a container
can still open connections to any address of the host itself — the bridge gateways, the host's
interfaces — because those go through INPUT, not FORWARD. Dockyard adds, per project bridge,
a rule in its own chain DOCKYARD-INPUT (jumped to from INPUT): new connections from the bridge
to the host are dropped; replies to connections the host opened still pass."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading

log = logging.getLogger(__name__)
CHAIN = "DOCKYARD-INPUT"
_lock = threading.Lock()


class HostFirewall:
    def __init__(self) -> None:
        self.iptables = shutil.which("iptables")
        self.available = bool(self.iptables) and os.geteuid() == 0
        self._chain_ready = False
        if not self.available:
            log.warning("host firewall unavailable (needs root and iptables): containers can reach host addresses")

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.iptables or "iptables", "-w", "5", *args], capture_output=True, text=True,
                              timeout=20)

    def _ensure_chain(self) -> None:
        if self._chain_ready:
            return
        if self._run("-n", "-L", CHAIN).returncode != 0:
            self._run("-N", CHAIN)
        if self._run("-C", "INPUT", "-j", CHAIN).returncode != 0:
            self._run("-I", "INPUT", "1", "-j", CHAIN)
        self._chain_ready = True

    def _rule(self, bridge: str) -> list[str]:
        return [CHAIN, "-i", bridge, "-m", "conntrack", "!", "--ctstate", "ESTABLISHED,RELATED",
                "-m", "comment", "--comment", f"dockyard isolation {bridge}", "-j", "DROP"]

    def isolate(self, bridge: str) -> bool:
        """Make sure the rule for `bridge` exists; True when the bridge is isolated."""
        if not self.available:
            return False
        with _lock:
            self._ensure_chain()
            rule = self._rule(bridge)
            if self._run("-C", *rule).returncode == 0:
                return True
            res = self._run("-A", *rule)
            if res.returncode != 0:
                log.warning("could not isolate %s from the host: %s", bridge, res.stderr.strip())
                return False
            return True

    def release(self, bridge: str) -> None:
        if not self.available:
            return
        with _lock:
            while self._run("-D", *self._rule(bridge)).returncode == 0:
                pass
