"""Security policy for what runs: `baseline` (default), `restricted`, `privileged`.

Baseline follows the Kubernetes Pod Security "baseline" level; restricted adds: all
capabilities dropped, a non-root user and a read-only root filesystem. The engine sockets are
refused under every policy. Checks are pure; admission runs them on every path that creates
containers (manifests, Compose import, patches, rollbacks)."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.model.app import AppSpec

BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
ENGINE_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
                  "/var/run/containerd/containerd.sock", "/run/podman/podman.sock", "/var/run/podman/podman.sock")


@dataclass(frozen=True)
class Violation:
    field: str
    message: str


def _exposes_engine_socket(host_path: str) -> bool:
    p = "/" + host_path.strip("/")
    return any(sock == p or sock.startswith(p.rstrip("/") + "/") for sock in ENGINE_SOCKETS) or p == "/"


def _is_root(user: str | None) -> bool:
    if not user:
        return True  # the image's default user, which is root unless the image says otherwise
    name = user.split(":", 1)[0]
    return name in ("root", "0")


def check(spec: AppSpec, policy: str) -> list[Violation]:
    """What in `spec` the `policy` refuses (empty: allowed)."""
    out: list[Violation] = []
    sc = spec.security_context
    for i, v in enumerate(spec.volumes):
        if v.host_path and _exposes_engine_socket(v.host_path):
            out.append(Violation(f"spec.volumes[{i}].hostPath",
                                 f"'{v.host_path}' would expose the container engine's socket: always refused"))
    if policy == "privileged":
        return out
    name = f"the project's security policy ({policy})"
    for flag, label in (("privileged", "privileged"), ("host_network", "hostNetwork"), ("host_pid", "hostPID"),
                        ("host_ipc", "hostIPC"), ("host_uts", "hostUTS")):
        if getattr(sc, flag):
            out.append(Violation(f"spec.securityContext.{label}", f"{label} is forbidden by {name}"))
    for i, v in enumerate(spec.volumes):
        if v.host_path and not _exposes_engine_socket(v.host_path):
            out.append(Violation(f"spec.volumes[{i}].hostPath", f"host bind mounts are forbidden by {name}"))
    if sc.devices:
        out.append(Violation("spec.securityContext.devices", f"host devices are forbidden by {name}"))
    allowed = {"NET_BIND_SERVICE"} if policy == "restricted" else BASELINE_CAPABILITIES
    for i, cap in enumerate(sc.capabilities.add):
        if cap not in allowed:
            out.append(Violation(f"spec.securityContext.capabilities.add[{i}]",
                                 f"adding {cap} is forbidden by {name} (allowed: {', '.join(sorted(allowed))})"))
    if sc.seccomp_profile == "unconfined":
        out.append(Violation("spec.securityContext.seccompProfile", f"unconfined seccomp is forbidden by {name}"))
    if sc.apparmor_profile == "unconfined":
        out.append(Violation("spec.securityContext.apparmorProfile", f"unconfined AppArmor is forbidden by {name}"))
    for k in sc.sysctls:
        if k not in SAFE_SYSCTLS:
            out.append(Violation(f"spec.securityContext.sysctls.{k}", f"sysctl {k} is forbidden by {name}"))
    if policy == "restricted":
        if _is_root(spec.user):
            out.append(Violation("spec.user", f"{name} requires a non-root user, e.g. user: \"1000:1000\""))
        if not sc.read_only_root_filesystem:
            out.append(Violation("spec.securityContext.readOnlyRootFilesystem",
                                 f"{name} requires a read-only root filesystem (set it to true)"))
    return out


def harden(spec: AppSpec, policy: str) -> AppSpec:
    """Defaults a policy imposes: restricted drops every capability and runs as non-root."""
    if policy == "restricted":
        sc = spec.security_context
        if "ALL" not in sc.capabilities.drop:
            sc.capabilities.drop = ["ALL", *sc.capabilities.drop]
        sc.run_as_non_root = True
    return spec
