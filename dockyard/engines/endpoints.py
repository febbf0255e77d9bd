"""EndpointSet: one cluster reached through several manager endpoints, with failover.

Calls go to the endpoint that answered last. An endpoint that cannot be reached (refused,
timed out, socket gone) is marked down and the call moves on to the next one, so a dead manager
costs one short connect timeout per call at most, and only until it is marked down; a down
endpoint is tried again after RETRY_AFTER seconds. A manager that answers but cannot serve the
call (the swarm has no leader, or it is not a manager) is not marked down (it is alive), but the
call is tried on the others too: one of them may be on the side that has a leader.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import requests
import urllib3
from docker import errors as docker_errors

from dockyard.engines.base import EngineError, EngineUnavailable

T = TypeVar("T")

CONNECT_TIMEOUT = 2.0   # seconds to reach a manager: a dead one must cost little
# seconds for an answer (log follows read without one). Swarm calls answer in milliseconds; a
# manager that has just lost its quorum holds them instead of refusing, and a write must fail fast
READ_TIMEOUT = 3.0
PING_TIMEOUT = 1.0      # seconds for the ping that tells a hung manager from a dead one
RETRY_AFTER = 5.0       # seconds a down endpoint is skipped before it is tried again
API_VERSION = "1.41"


@dataclass(frozen=True)
class Endpoint:
    """A manager's API: unix:///path, tcp://host:port (with `tls` = (ca, cert, key) file paths:
    the client verifies the server against ca and presents cert/key) or ssh://user@host[:port]
    (runs the `ssh` binary, which must be installed and trust the host)."""

    url: str
    tls: tuple[str, str, str] | None = None


def not_serving(e: docker_errors.APIError) -> bool:
    """The engine's answer when its swarm has no leader (quorum lost) or it is no manager."""
    msg = str(e.explanation or e).lower()
    return (e.status_code == 503 or "rpc error" in msg) and (
        "does not have a leader" in msg or "not a swarm manager" in msg or "no leader" in msg
        or "context deadline exceeded" in msg)


def _unreachable(e: BaseException) -> bool:
    if isinstance(e, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                      urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)):
        return True
    if isinstance(e, docker_errors.DockerException) and not isinstance(e, docker_errors.APIError):
        return True  # the SDK's own wrapping of socket and ssh failures
    return False


def _alive(client: Any) -> bool:
    """Whether the engine behind `client` answers a ping (its own API, no swarm involved)."""
    try:
        return client._get(client._url("/_ping"), timeout=(CONNECT_TIMEOUT, PING_TIMEOUT)).status_code == 200
    except Exception:  # noqa: BLE001 — whatever went wrong, it does not answer
        return False


def open_client(ep: Endpoint, read_timeout: float = READ_TIMEOUT) -> docker.APIClient:
    """A low-level client for one endpoint with short timeouts (connect CONNECT_TIMEOUT)."""
    kwargs: dict[str, Any] = {"base_url": ep.url, "version": API_VERSION, "timeout": read_timeout}
    if ep.url.startswith("ssh://"):
        kwargs["use_ssh_client"] = True
    if ep.tls is not None:
        if not ep.url.startswith("tcp://"):
            raise EngineError(f"endpoint {ep.url}: TLS needs a tcp:// endpoint", permanent=True)
        ca, cert, key = ep.tls
        kwargs["tls"] = docker.tls.TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)
    client = docker.APIClient(**kwargs)
    # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE in the environment replace the session's own CA
    # (and proxy variables apply): the cluster's CA would be ignored. A manager is reached directly.
    client.trust_env = False
    # per request (connect, read): a manager whose machine is gone fails after CONNECT_TIMEOUT
    client.timeout = (CONNECT_TIMEOUT, read_timeout)
    return client


class EndpointSet:
    def __init__(self, endpoints: list[Endpoint], *, name: str, timeout: float = READ_TIMEOUT,
                 opener: Callable[[Endpoint, float], Any] = open_client,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not endpoints:
            raise EngineError(f"cluster {name} has no endpoints", permanent=True)
        self.endpoints = list(endpoints)
        self.name = name
        self.timeout = timeout
        self._opener = opener
        self._clock = clock
        self._clients: dict[int, Any] = {}
        # endpoint index → (when, why): "down" (unreachable) or "hung" (answers a ping, but its swarm
        # calls time out: a manager that has just lost its quorum waits before it says so)
        self._down: dict[int, tuple[float, str]] = {}
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> str:
        """The url of the endpoint calls go to first."""
        return self.endpoints[self._active].url

    def _client(self, i: int) -> Any:
        with self._lock:
            c = self._clients.get(i)
        if c is None:
            made = self._opener(self.endpoints[i], self.timeout)
            with self._lock:
                c = self._clients.setdefault(i, made)
            if c is not made and hasattr(made, "close"):
                made.close()  # another thread made one meanwhile: use that one, keep no stray connection pool
        return c

    def _order(self) -> tuple[list[int], dict[int, str]]:
        """(endpoints to try: the active one, then the others in their order; endpoints found
        unreachable less than RETRY_AFTER seconds ago, skipped so that a dead manager costs nothing,
        with why). Read under the lock: another thread's call may mark one up meanwhile."""
        now = self._clock()
        with self._lock:
            n = len(self.endpoints)
            ring = [(self._active + k) % n for k in range(n)]
            skipped = {i: why for i, (when, why) in self._down.items() if now - when < RETRY_AFTER}
        return [i for i in ring if i not in skipped], skipped

    def call(self, fn: Callable[[Any], T]) -> T:
        """`fn(client)` on the first endpoint that can serve it. EngineUnavailable when none can:
        every endpoint unreachable, or the reachable ones without a leader. Other API errors are
        the call's own (raised as they are: NotFound, APIError)."""
        fresh, skipped = self._order()
        unreachable = [f"{self.endpoints[i].url}: down" for i, why in skipped.items() if why == "down"]
        leaderless = [f"{self.endpoints[i].url}: swarm calls time out" for i, why in skipped.items() if why == "hung"]
        for i in fresh:
            url = self.endpoints[i].url
            client = None
            try:
                client = self._client(i)
                result = fn(client)
            except docker_errors.APIError as e:
                if not_serving(e):
                    leaderless.append(f"{url}: {str(e.explanation or e).strip()}")
                    continue
                self._mark_up(i)
                raise
            except Exception as e:  # noqa: BLE001 — sorted below: unreachable or the call's own
                if not _unreachable(e):
                    raise
                if isinstance(e, requests.exceptions.ReadTimeout) and client is not None and _alive(client):
                    self._mark_down(i, "hung")
                    leaderless.append(f"{url}: swarm calls time out")
                    continue
                self._mark_down(i)
                unreachable.append(f"{url}: {type(e).__name__}")
                continue
            self._mark_up(i)
            return result
        total = len(self.endpoints)
        if leaderless:
            raise EngineUnavailable(
                f"swarm {self.name} has no leader: {len(unreachable)} of {total} manager endpoints are "
                f"unreachable and the others cannot serve swarm calls ({leaderless[0]})")
        raise EngineUnavailable(f"cluster {self.name}: no manager endpoint answers ({'; '.join(unreachable)})")

    def _mark_down(self, i: int, why: str = "down") -> None:
        with self._lock:
            self._down[i] = (self._clock(), why)
            stale = self._clients.pop(i, None)
        if stale is not None and hasattr(stale, "close"):
            stale.close()  # a fresh client next time: no half-open pooled connections

    def _mark_up(self, i: int) -> None:
        with self._lock:
            self._down.pop(i, None)
            self._active = i

    def alive(self, i: int) -> bool:
        """Whether endpoint `i` answers a ping now (a fresh look, whatever it was marked)."""
        try:
            return _alive(self._client(i))
        except Exception:  # noqa: BLE001 — a client that cannot even be made does not answer
            return False

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for c in clients:
            if hasattr(c, "close"):
                c.close()
