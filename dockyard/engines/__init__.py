"""Engine drivers: one interface, one module per engine. Only this package talks to engines."""

from __future__ import annotations

from dockyard.engines.base import EngineDriver, EngineError, EngineUnavailable


def open_engine(url: str, *, driver: str = "docker", instance: str) -> EngineDriver:
    """Open the driver `driver` for the engine at `url` (unix://, tcp://, ssh://)."""
    if driver == "docker":
        from dockyard.engines.docker import DockerDriver

        return DockerDriver(url, instance=instance)
    raise EngineError(f"unknown engine driver '{driver}' (known: docker)")


__all__ = ["EngineDriver", "EngineError", "EngineUnavailable", "open_engine"]
