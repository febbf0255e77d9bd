"""Engine drivers: one interface, one module per engine. Only this package talks to engines."""

from __future__ import annotations

import os

from dockyard.engines.base import EngineDriver, EngineError, EngineUnavailable
from dockyard.engines.endpoints import Endpoint


def open_engine(url: str, *, driver: str = "docker", instance: str) -> EngineDriver:
    """Open the driver `driver` for the engine at `url` (unix://, tcp://, ssh://)."""
    if driver == "docker":
        from dockyard.engines.docker import DockerDriver

        return DockerDriver(url, instance=instance)
    raise EngineError(f"unknown engine driver '{driver}' (known: docker)")


def open_cluster(driver: str, endpoints: list[Endpoint], *, instance: str, name: str) -> EngineDriver:
    """Open the driver for a Cluster: `swarm` talks to its managers with failover; `docker` is
    one engine, its first endpoint (TLS files must be ca.pem, cert.pem and key.pem in one folder)."""
    if driver == "swarm":
        from dockyard.engines.swarm import SwarmDriver

        return SwarmDriver(endpoints, instance=instance, name=name)
    if driver == "docker":
        ep = endpoints[0]
        url = ep.url
        if ep.tls is not None:
            folder = os.path.dirname(ep.tls[0])
            if [os.path.join(folder, f) for f in ("ca.pem", "cert.pem", "key.pem")] != list(ep.tls):
                raise EngineError(f"cluster {name}: TLS files must be ca.pem, cert.pem and key.pem in one folder",
                                  permanent=True)
            url = f"{url}?tlsdir={folder}"
        return open_engine(url, driver="docker", instance=instance)
    raise EngineError(f"unknown cluster driver '{driver}' (known: docker, swarm)", permanent=True)


__all__ = ["Endpoint", "EngineDriver", "EngineError", "EngineUnavailable", "open_cluster", "open_engine"]
