"""What every engine driver applies the same way, whatever runs the containers: the labels that
mark this installation's objects, the security policy's defaults and the health check command.
Pure (no engine SDK): the docker driver turns these into container settings, the swarm driver
into a service spec."""

from __future__ import annotations

from dockyard.model.app import AppSpec
from dockyard.model.quantity import parse_duration

L_INSTANCE, L_TENANT, L_PROJECT, L_APP = "dockyard.instance", "dockyard.tenant", "dockyard.project", "dockyard.app"
L_REVISION = "dockyard.revision"
DEFAULT_PIDS_LIMIT = 1024
# the engine keeps at most this much log per container (json-file rotation)
LOG_OPTIONS = {"max-size": "10m", "max-file": "3"}
# a read-only root filesystem gets a writable /tmp (most programs need one)
TMP_SIZE = 64 * 1024 * 1024


def ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def healthcheck_config(spec: AppSpec) -> dict:
    """The engine's HealthConfig (Test, Interval, Timeout, Retries, StartPeriod; durations in ns)
    for the App's healthcheck, which must be set. HTTP and TCP checks run inside the container with
    wget/curl and nc, whichever the image has."""
    hc = spec.healthcheck
    assert hc is not None
    if hc.exec:
        test = ["CMD", *hc.exec.command]
    elif hc.http:
        url = f"http://127.0.0.1:{hc.http.port}{hc.http.path}"
        test = ["CMD-SHELL", f"wget -q -O /dev/null '{url}' || curl -fsS -o /dev/null '{url}'"]
    else:
        assert hc.tcp
        p = hc.tcp.port
        test = ["CMD-SHELL", f"nc -z 127.0.0.1 {p} 2>/dev/null || nc -w 1 127.0.0.1 {p} </dev/null"]
    return {"Test": test, "Interval": ns(parse_duration(hc.interval)), "Timeout": ns(parse_duration(hc.timeout)),
            "Retries": hc.retries, "StartPeriod": ns(parse_duration(hc.start_period))}


def process_settings(spec: AppSpec) -> dict:
    """What the App sets of its process, by the engine's ContainerSpec names (Command is the
    entrypoint, Args its arguments); unset ones are left out, so the image's own apply."""
    out: dict = {}
    if spec.command is not None:
        out["Command"] = spec.command
    if spec.args is not None:
        out["Args"] = spec.args
    if spec.user:
        out["User"] = spec.user
    if spec.working_dir:
        out["Dir"] = spec.working_dir
    if spec.healthcheck:
        out["Healthcheck"] = healthcheck_config(spec)
    return out


def workload_labels(instance: str, tenant: str, project: str, app: str | None = None) -> dict[str, str]:
    """The labels that say an engine object belongs to this installation (and to which project/app)."""
    out = {L_INSTANCE: instance, L_TENANT: tenant, L_PROJECT: project}
    if app is not None:
        out[L_APP] = app
    return out
