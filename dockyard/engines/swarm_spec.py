"""DesiredApp → Swarm ServiceSpec (Engine API 1.41), as plain data: no engine calls here.

The same policy as the docker driver (engines/common.py): this installation's labels, a pids limit
by default, bounded json-file logs, a writable /tmp on a read-only root. What API 1.41 cannot
express for a service (privileged, host namespaces, devices, seccomp or AppArmor profiles, another
OCI runtime) is refused with a permanent EngineError naming the App field, never silently dropped.
API 1.41 has no NoNewPrivileges for services (it came with 1.46): tasks run without it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from dockyard.engines.base import DesiredApp, EngineError, MountedFile, WorkloadKey
from dockyard.engines.common import (
    DEFAULT_PIDS_LIMIT,
    L_REVISION,
    LOG_OPTIONS,
    TMP_SIZE,
    ns,
    process_settings,
    workload_labels,
)
from dockyard.model.app import AppSpec, run_image

L_TEMPLATE = "dockyard.template-hash"
MAX_NAME = 63          # service and network names (a DNS label)
MAX_OBJECT_NAME = 64   # secret and config names
MONITOR = 5.0          # seconds a new task must keep running before the update moves on
STOP_GRACE = 10.0      # SIGTERM, then SIGKILL after this many seconds (as the docker driver)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _bounded(name: str, limit: int) -> str:
    """`name` if it fits, else its head and a hash of the whole (names stay unique and stable)."""
    name = _UNSAFE.sub("-", name)
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:limit - 11]}-{digest}"


def service_name(instance: str, key: WorkloadKey) -> str:
    return _bounded(f"dy-{instance}-{key.tenant}-{key.project}-{key.app}", MAX_NAME)


def network_name(instance: str, tenant: str, project: str) -> str:
    return _bounded(f"dy-{instance}-{tenant}-{project}", MAX_NAME)


def volume_name(instance: str, tenant: str, project: str, volume: str) -> str:
    """A named volume of driver local: each node has its own (data does not follow a task)."""
    return _bounded(f"dy-{instance}-{tenant}-{project}-{volume}", 255)


def file_object_name(instance: str, key: WorkloadKey, f: MountedFile) -> str:
    """Swarm secrets and configs cannot change: the name carries a hash of the content, so a new
    content is a new object and a task never sees a file change under it."""
    sha = hashlib.sha256(f.data).hexdigest()[:12]
    return _bounded(f"dy-{instance}-{key.tenant}-{key.project}-{f.name}", MAX_OBJECT_NAME - 13) + f"-{sha}"


@dataclass(frozen=True)
class FileObject:
    """A Swarm secret or config made for a MountedFile: its id and name on the cluster."""

    file: MountedFile
    id: str
    name: str


def literal(text: str) -> str:
    """`text` as Swarm keeps it: a task's environment and mount paths are Go templates to Swarm
    ({{.Node.Hostname}} is expanded, "{{name}}" refused), which the docker driver passes as they are;
    each "{{" becomes the template that prints it."""
    return text.replace("{{", '{{"{{"}}')


def _refuse(field: str, why: str) -> EngineError:
    return EngineError(f"spec.{field}: {why} on a Swarm cluster", permanent=True, reason="UnsupportedOnSwarm")


def check_supported(spec: AppSpec) -> None:
    """Raise for what a Swarm service cannot do (API 1.41)."""
    sc = spec.security_context
    for field, on in (("privileged", sc.privileged), ("hostPid", sc.host_pid), ("hostIpc", sc.host_ipc),
                      ("hostUts", sc.host_uts), ("hostNetwork", sc.host_network)):
        if on:
            raise _refuse(f"securityContext.{field}", "services cannot have it")
    if sc.devices:
        raise _refuse("securityContext.devices", "services cannot be given devices")
    if sc.seccomp_profile != "default":
        raise _refuse("securityContext.seccompProfile", "services run with the default seccomp profile only")
    if sc.apparmor_profile != "default":
        raise _refuse("securityContext.apparmorProfile", "services run with the default AppArmor profile only")
    if spec.runtime != "runc":
        raise _refuse("runtime", "services run with the nodes' default runtime only")


def _resources(spec: AppSpec) -> dict:
    res = spec.resources
    limits: dict = {"Pids": res.pids or DEFAULT_PIDS_LIMIT}
    if (cpu := res.limit_cpu()) is not None:
        limits["NanoCPUs"] = int(cpu * 1e9)
    if (mem := res.limit_memory()) is not None:
        limits["MemoryBytes"] = mem
    reservations: dict = {}
    if (rc := res.request_cpu()) is not None:
        reservations["NanoCPUs"] = int(rc * 1e9)
    if (rm := res.request_memory()) is not None:
        reservations["MemoryBytes"] = rm
    return {"Limits": limits, "Reservations": reservations}


def _mounts(instance: str, key: WorkloadKey, spec: AppSpec) -> list[dict]:
    out = []
    for v in spec.volumes:
        if v.host_path:
            out.append({"Type": "bind", "Source": literal(v.host_path), "Target": literal(v.mount_path),
                        "ReadOnly": v.read_only})
        else:
            out.append({"Type": "volume", "Source": volume_name(instance, key.tenant, key.project, v.name),
                        "Target": literal(v.mount_path), "ReadOnly": v.read_only,
                        "VolumeOptions": {"Labels": workload_labels(instance, key.tenant, key.project),
                                          "DriverConfig": {"Name": "local"}}})
    if spec.security_context.read_only_root_filesystem:
        out.append({"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": TMP_SIZE}})
    return out


def _file_refs(files: list[FileObject]) -> tuple[list[dict], list[dict]]:
    secrets, configs = [], []
    for fo in files:
        target = {"Name": fo.file.target, "UID": "0", "GID": "0", "Mode": 0o444}
        if fo.file.secret:
            secrets.append({"File": target, "SecretID": fo.id, "SecretName": fo.name})
        else:
            configs.append({"File": target, "ConfigID": fo.id, "ConfigName": fo.name})
    return secrets, configs


def _placement(spec: AppSpec) -> dict:
    pl = spec.placement
    if pl is None:
        return {}
    out: dict = {}
    if pl.constraints:
        out["Constraints"] = list(pl.constraints)
    if pl.spread:
        out["Preferences"] = [{"Spread": {"SpreadDescriptor": s}} for s in pl.spread]
    if pl.max_replicas_per_node:
        out["MaxReplicas"] = pl.max_replicas_per_node
    return out


def _update_configs(spec: AppSpec) -> tuple[dict, dict]:
    """Start-first rolling updates `maxSurge` tasks at a time (stop-first, all at once, for
    Recreate) that roll back by themselves when a new task fails within MONITOR seconds."""
    surge, _ = spec.strategy.resolve(spec.replicas)
    recreate = spec.strategy.type == "Recreate"
    parallelism = 0 if recreate else max(surge, 1)
    order = "stop-first" if recreate else "start-first"
    update = {"Parallelism": parallelism, "Order": order, "FailureAction": "rollback", "Monitor": ns(MONITOR),
              "MaxFailureRatio": 0, "Delay": 0}
    # a rollback that fails too stops there (it must not roll back to the failed template)
    return update, {**update, "FailureAction": "pause"}


def service_spec(desired: DesiredApp, *, instance: str, network: str, files: list[FileObject]) -> dict:
    """The ServiceSpec for `desired`; `files` are the Swarm objects made for desired.files."""
    spec = desired.spec
    key = desired.key
    check_supported(spec)
    sc = spec.security_context
    labels = {**spec.labels, **workload_labels(instance, key.tenant, key.project, key.app),
              L_TEMPLATE: desired.template_hash, L_REVISION: str(desired.revision)}
    container: dict = {
        "Image": run_image(spec),
        "Labels": labels,
        "Env": [literal(f"{e.name}={e.value}") for e in spec.env],
        # replica N answers to app-N, as on one engine
        "Hostname": f"{key.app[:50]}-{{{{.Task.Slot}}}}",
        "ReadOnly": sc.read_only_root_filesystem,
        "StopGracePeriod": ns(STOP_GRACE),
        "Mounts": _mounts(instance, key, spec),
    }
    container.update(process_settings(spec))
    if sc.capabilities.add:
        container["CapabilityAdd"] = [f"CAP_{c}" if c != "ALL" else c for c in sc.capabilities.add]
    if sc.capabilities.drop:
        container["CapabilityDrop"] = [f"CAP_{c}" if c != "ALL" else c for c in sc.capabilities.drop]
    if sc.sysctls:
        container["Sysctls"] = dict(sc.sysctls)
    secrets, configs = _file_refs(files)
    if secrets:
        container["Secrets"] = secrets
    if configs:
        container["Configs"] = configs
    restart = {"always": "any", "on-failure": "on-failure", "never": "none"}[spec.restart_policy]
    update, rollback = _update_configs(spec)
    return {
        "Name": service_name(instance, key),
        "Labels": labels,
        "TaskTemplate": {
            "ContainerSpec": container,
            "Resources": _resources(spec),
            "RestartPolicy": {"Condition": restart, "Delay": ns(1), "MaxAttempts": 0},
            "Placement": _placement(spec),
            "Networks": [{"Target": network, "Aliases": [key.app]}],
            "LogDriver": {"Name": "json-file", "Options": dict(LOG_OPTIONS)},
        },
        "Mode": {"Replicated": {"Replicas": spec.replicas}},
        "UpdateConfig": update,
        "RollbackConfig": rollback,
        # no IPVS on every kernel: DNS round robin instead of a virtual IP, nothing on the ingress mesh
        "EndpointSpec": {"Mode": "dnsrr"},
    }


def spec_hash(spec: Mapping | None) -> str:
    """The template hash a service (or one of its versions) was made from."""
    return str(((spec or {}).get("Labels") or {}).get(L_TEMPLATE, ""))


def spec_replicas(spec: Mapping | None) -> int:
    return int((((spec or {}).get("Mode") or {}).get("Replicated") or {}).get("Replicas") or 0)
