"""Compose Spec importer: turns a parsed docker-compose file into Dockyard App manifests.

`convert_compose` is pure: it reads nothing from disk or from the process environment. The
CLI parses the YAML, reads the env files the Compose file names and passes their contents,
and passes the variables used for `${VAR}` interpolation.

Each service becomes one App. Keys Dockyard can honour are translated; keys that are
harmless on a platform are dropped with a warning saying how they are treated; keys it
cannot honour, or that the baseline security policy forbids, are errors. Every problem in
the file is collected before raising, so a user can fix a file in one pass.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError

from dockyard.model.app import ENV_NAME, App
from dockyard.model.image import parse_image
from dockyard.model.meta import API_VERSION, DNS_LABEL, check_project_ref
from dockyard.model.quantity import format_memory, parse_cpu, parse_duration

FORBIDDEN = "forbidden by the project's security policy (baseline): "
SERVICE_LABEL = "compose.dockyard.io/service"
MAX_PORT_RANGE = 100  # a range expands to one port entry each; "1-65535" is a mistake, not a wish


@dataclass
class ComposeIssue:
    """One problem (or warning) found in a Compose file, located by a dotted path."""

    path: str  # e.g. "services.web.build" or "services.web.ports[1]"
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ComposeError(Exception):
    """The Compose file cannot be imported; `issues` lists every problem found."""

    def __init__(self, issues: list[ComposeIssue], warnings: list[ComposeIssue] | None = None):
        self.issues = list(issues)
        self.warnings = list(warnings or [])
        super().__init__("; ".join(str(i) for i in self.issues))


@dataclass
class ComposeResult:
    """App manifests in start order (dependencies first) and what was changed on the way."""

    items: list[dict]
    warnings: list[ComposeIssue] = field(default_factory=list)


@dataclass
class _Ctx:
    """What one conversion collects and needs: issues, inputs and the volume table."""

    env: dict[str, str]
    files: dict[str, str]
    errors: list[ComposeIssue] = field(default_factory=list)
    warnings: list[ComposeIssue] = field(default_factory=list)
    volumes: dict[str, str] = field(default_factory=dict)  # compose volume key -> Dockyard volume
    unset_vars: set[str] = field(default_factory=set)

    def error(self, path: str, message: str) -> None:
        self.errors.append(ComposeIssue(path, message))

    def forbid(self, path: str, message: str) -> None:
        self.errors.append(ComposeIssue(path, FORBIDDEN + message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(ComposeIssue(path, message))


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def looks_like_compose(doc: object) -> bool:
    """True for a parsed Compose file: a mapping with a `services` mapping and no `kind`."""
    return isinstance(doc, dict) and isinstance(doc.get("services"), dict) and "kind" not in doc


def convert_compose(
    doc: dict,
    project: str,
    files: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> ComposeResult:
    """Convert a parsed Compose file into App manifests for `project` ("tenant/project").

    `files` maps env_file paths, as written in the Compose file, to their contents; `env`
    holds the variables for interpolation. Returns the Apps in depends_on order with the
    warnings; raises ComposeError listing every problem when the file cannot be imported.
    """
    ctx = _Ctx(env=dict(env or {}), files=dict(files or {}))
    if not isinstance(doc, dict):
        raise ComposeError([ComposeIssue("", "a Compose file must be a mapping with a services: key")])
    try:
        check_project_ref(project)
    except ValueError as e:
        ctx.error("project", str(e))
    doc = _interpolate_tree(_strip_extensions(doc), "", ctx)
    _check_top_level(doc, ctx)
    services = _services(doc, ctx)
    ctx.volumes = _top_level_volumes(doc.get("volumes"), ctx)
    _note_networks(doc, services, ctx)
    deps = {name: _dependencies(svc, f"services.{name}", services, ctx) for name, svc in services.items()}
    manifests = {name: _convert_service(name, svc, project, deps[name], ctx)
                 for name, svc in services.items()}
    order = _start_order(deps, ctx)
    if ctx.errors:
        raise ComposeError(ctx.errors, ctx.warnings)
    return ComposeResult([manifests[name] for name in order], ctx.warnings)


# ---------------------------------------------------------------------------------------------
# Extension fields and interpolation
# ---------------------------------------------------------------------------------------------

# Mappings whose keys are user data (variable names, label keys...), not Compose keys: an
# "x-" key there is data and must survive.
_DATA_MAPS = {"environment", "labels", "sysctls", "extra_hosts", "driver_opts", "annotations", "options",
              "ulimits"}
# Mappings keyed by names (services, volumes...); their values are definitions again.
_NAME_MAPS = {"services", "volumes", "networks", "secrets", "configs", "depends_on"}


def _strip_extensions(node: object, key: str | None = None) -> object:
    """Drop `x-*` extension fields wherever Compose keys are expected (they are for tooling)."""
    if isinstance(node, list):
        return [_strip_extensions(v) for v in node]
    if not isinstance(node, dict):
        return node
    if key in _DATA_MAPS:
        return node
    if key in _NAME_MAPS:
        return {k: _strip_extensions(v) for k, v in node.items()}
    return {k: _strip_extensions(v, str(k)) for k, v in node.items() if not str(k).startswith("x-")}


def _interpolate_tree(node: object, path: str, ctx: _Ctx) -> object:
    """Interpolate every string value (never keys), as Compose does before reading the file."""
    if isinstance(node, str):
        return _interpolate(node, path, ctx)
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, f"{path}.{k}" if path else str(k), ctx) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(v, f"{path}[{i}]", ctx) for i, v in enumerate(node)]
    return node


_VAR_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPERATORS = (":-", "-", ":?", "?", ":+", "+")  # ":-" before "-": the longer form must win


def _interpolate(text: str, path: str, ctx: _Ctx) -> str:
    """Expand `$VAR`, `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `${VAR:?e}`, `${VAR:+r}` and `$$`."""
    out, i = [], 0
    while i < len(text):
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        value, i = _expand_at(text, j, path, ctx)
        out.append(value)
    return "".join(out)


def _expand_at(text: str, j: int, path: str, ctx: _Ctx) -> tuple[str, int]:
    """Expand the reference starting with the `$` at text[j]; return it and where it ends."""
    nxt = text[j + 1:j + 2]
    if nxt == "$":
        return "$", j + 2
    if nxt == "{":
        end = _closing_brace(text, j + 2)
        if end < 0:
            ctx.error(path, f"invalid interpolation in '{text}': '${{' is never closed")
            return "", len(text)
        return _expand_braced(text[j + 2:end], text, path, ctx), end + 1
    m = _VAR_NAME.match(text, j + 1)
    if m:
        return _lookup(m.group(), path, ctx), m.end()
    ctx.error(path, f"invalid interpolation in '{text}': write $$ for a literal $")
    return "$", j + 1


def _closing_brace(text: str, start: int) -> int:
    """Index of the `}` closing a `${` opened just before `start`; defaults may nest `${...}`."""
    depth, k = 1, start
    while k < len(text):
        if text.startswith("$$", k):
            k += 2
            continue
        if text.startswith("${", k):
            depth, k = depth + 1, k + 2
            continue
        if text[k] == "}":
            depth -= 1
            if depth == 0:
                return k
        k += 1
    return -1


def _expand_braced(inner: str, text: str, path: str, ctx: _Ctx) -> str:
    m = _VAR_NAME.match(inner)
    op = next((o for o in _OPERATORS if inner[m.end():].startswith(o)), None) if m else None
    if not m or (op is None and m.end() != len(inner)):
        ctx.error(path, f"invalid interpolation '${{{inner}}}' in '{text}'")
        return ""
    name = m.group()
    if op is None:
        return _lookup(name, path, ctx)
    operand = inner[m.end() + len(op):]
    value = ctx.env.get(name)
    # the ":" forms treat an empty value like an unset one
    present = bool(value) if op.startswith(":") else value is not None
    if op.endswith("-"):
        return value if present else _interpolate(operand, path, ctx)
    if op.endswith("+"):
        return _interpolate(operand, path, ctx) if present else ""
    if not present:
        reason = f": {operand}" if operand else ""
        ctx.error(path, f"required variable {name} is missing a value{reason}")
        return ""
    return value


def _lookup(name: str, path: str, ctx: _Ctx) -> str:
    value = ctx.env.get(name)
    if value is None:
        if name not in ctx.unset_vars:  # one warning per variable is enough to act on
            ctx.unset_vars.add(name)
            ctx.warn(path, f"variable {name} is not set; an empty string is used")
        return ""
    return value


# ---------------------------------------------------------------------------------------------
# Small shape helpers
# ---------------------------------------------------------------------------------------------


def _mapping(value: object, path: str, ctx: _Ctx) -> dict:
    """`value` as a mapping; None is empty; anything else is an error (and treated as empty)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    ctx.error(path, f"must be a mapping (key: value), not {_kind(value)}")
    return {}


def _list(value: object, path: str, ctx: _Ctx) -> list:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    ctx.error(path, f"must be a list, not {_kind(value)}")
    return []


def _kind(value: object) -> str:
    names = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list",
             dict: "a mapping", type(None): "nothing"}
    return names.get(type(value), type(value).__name__)


def _check_keys(mapping: dict, allowed: set[str], path: str, ctx: _Ctx) -> None:
    for key in mapping:
        if str(key) not in allowed:
            ctx.error(f"{path}.{key}", f"unknown key '{key}': it is not part of the Compose Spec here")


def _scalar(value: object, path: str, ctx: _Ctx) -> str | None:
    """A string, number or boolean as the string Compose would pass on."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    ctx.error(path, f"must be a string, not {_kind(value)}")
    return None


def _int(value: object, path: str, ctx: _Ctx, minimum: int = 0) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        ctx.error(path, f"must be a whole number of at least {minimum}, not {value!r}")
        return None
    return value


def _present(value: object) -> bool:
    """Whether a key says something: `privileged: false` or `cap_add: []` ask for nothing."""
    return value not in (None, False, "", [], {})


def _put(spec: dict, key: str, value: object) -> None:
    if value is not None:
        spec[key] = value


# ---------------------------------------------------------------------------------------------
# Top level: services, volumes, networks
# ---------------------------------------------------------------------------------------------

_TOP_LEVEL_IGNORED = {"version", "name"}  # obsolete / the project is named by Dockyard
_TOP_LEVEL_UNSUPPORTED = {
    "secrets": "secrets: is not supported yet in Compose import; pass the values as environment variables",
    "configs": "configs: is not supported yet in Compose import; bake the files into the image",
    "include": "include: is not supported in Compose import; merge the files first "
               "(docker compose config prints the merged file)",
    "models": "models: is not supported in Compose import",
}
_TOP_LEVEL_KEYS = _TOP_LEVEL_IGNORED | _TOP_LEVEL_UNSUPPORTED.keys() | {"services", "volumes", "networks"}


def _check_top_level(doc: dict, ctx: _Ctx) -> None:
    for key, value in doc.items():
        if key in _TOP_LEVEL_UNSUPPORTED and _present(value):
            ctx.error(str(key), _TOP_LEVEL_UNSUPPORTED[key])
        elif key not in _TOP_LEVEL_KEYS:
            ctx.error(str(key), f"unknown key '{key}': it is not part of the Compose Spec")


def _services(doc: dict, ctx: _Ctx) -> dict[str, object]:
    if "services" not in doc:
        ctx.error("services", "is required: a Compose file defines its apps under services:")
        return {}
    services = _mapping(doc["services"], "services", ctx)
    if isinstance(doc["services"], dict) and not services:
        ctx.error("services", "defines no services")
    return {str(name): svc for name, svc in services.items()}


_VOLUME_KEYS = {"driver", "driver_opts", "external", "labels", "name"}


def _top_level_volumes(value: object, ctx: _Ctx) -> dict[str, str]:
    """Map each declared volume to the Dockyard volume name services will mount."""
    table: dict[str, str] = {}
    for key, spec in _mapping(value, "volumes", ctx).items():
        path = f"volumes.{key}"
        spec = _mapping(spec, path, ctx)
        _check_keys(spec, _VOLUME_KEYS, path, ctx)
        if spec.get("driver") not in (None, "local"):
            ctx.error(f"{path}.driver", f"volume driver '{spec['driver']}' is not supported: Dockyard "
                                        "manages volume storage itself (use driver: local or omit it)")
        if _present(spec.get("driver_opts")):
            ctx.error(f"{path}.driver_opts",
                      "driver_opts is not supported: Dockyard manages volume storage itself")
        if _present(spec.get("labels")):
            ctx.warn(f"{path}.labels", "volume labels are ignored: Dockyard volumes carry no labels")
        name = _volume_name(str(key), spec, path, ctx)
        if name in table.values():
            ctx.error(path, f"volume name '{name}' is used by two volumes")
        table[str(key)] = name
    return table


def _volume_name(key: str, spec: dict, path: str, ctx: _Ctx) -> str:
    """The Dockyard volume for a declared volume; external ones must already exist as named."""
    external = spec.get("external")
    if isinstance(external, dict):  # legacy form: external: {name: actual}
        name, external = str(external.get("name") or spec.get("name") or key), True
    else:
        name = str(spec.get("name") or key)
    if external not in (None, True, False):
        ctx.error(f"{path}.external", "must be true or false")
    if DNS_LABEL.match(name):
        if external:
            ctx.warn(f"{path}.external", f"volume '{name}' is external: it must already exist in the project")
        return name
    if external:
        ctx.error(path, f"external volume '{name}' cannot exist in Dockyard: volume names use lower-case "
                        "letters, digits and '-'")
        return name
    # Unlike a service name, nothing refers to a volume by name from inside a container, so a
    # Compose-style name such as db_data can safely become db-data.
    fixed = _suggest_label(name)
    if not DNS_LABEL.match(fixed):
        ctx.error(path, f"volume name '{name}' cannot be a Dockyard volume name "
                        "(lower-case letters, digits, '-')")
        return name
    ctx.warn(path, f"volume '{name}' is created as '{fixed}': Dockyard volume names use lower-case letters, "
                   "digits and '-'")
    return fixed


def _note_networks(doc: dict, services: dict[str, object], ctx: _Ctx) -> None:
    """Networks are accepted but not applied; say so once for the whole file."""
    where = []
    top = doc.get("networks")
    if _present(top):
        for key, spec in _mapping(top, "networks", ctx).items():
            _mapping(spec, f"networks.{key}", ctx)
        where.append("networks")
    for name, svc in services.items():
        if isinstance(svc, dict) and _present(svc.get("networks")):
            nets = svc["networks"]
            if not isinstance(nets, (list, dict)):
                ctx.error(f"services.{name}.networks", f"must be a list or a mapping, not {_kind(nets)}")
            where.append(f"services.{name}.networks")
    if where:
        ctx.warn(where[0], "networks are not applied: all apps of a project share the project's network and "
                           "reach each other by service name (network aliases, static addresses and drivers "
                           "are ignored)")


# ---------------------------------------------------------------------------------------------
# Services: which keys are honoured, ignored or refused
# ---------------------------------------------------------------------------------------------

# Translated into the App spec by the functions below.
_TRANSLATED = {
    "image", "command", "entrypoint", "environment", "env_file", "ports", "expose", "volumes",
    "healthcheck", "deploy", "scale", "restart", "labels", "user", "working_dir", "depends_on",
    "networks", "cpus", "mem_limit", "mem_reservation", "runtime",
    "build",  # refused in _image, which knows whether an image is given too
}

_RESOURCE_TUNING = ("Dockyard only sets cpu and memory (deploy.resources, cpus, mem_limit, "
                    "mem_reservation); other resource tuning is not applied")
_NAMED_BY_SERVICE = "names are managed by Dockyard; other apps reach this one by its service name"

# Harmless on a platform: accepted, not applied, and the warning says how it is treated.
_IGNORED = {
    "container_name": "container " + _NAMED_BY_SERVICE,
    "hostname": "host" + _NAMED_BY_SERVICE,
    "domainname": "host" + _NAMED_BY_SERVICE,
    "stop_signal": "Dockyard's default stop signal and grace period apply",
    "stop_grace_period": "Dockyard's default stop signal and grace period apply",
    "platform": "images are pulled for the platform of the node that runs them",
    "pull_policy": "Dockyard decides when to pull images",
    "init": "no init process is injected; the image's entrypoint runs as PID 1",
    "tty": "apps run detached, without a terminal",
    "stdin_open": "apps run detached, without standard input",
    "logging": "Dockyard collects container output itself; logging drivers are not configurable",
    "mac_address": "addresses are managed by the project's network",
    "profiles": "the service is imported whatever profiles are active",
    "links": "apps of a project reach each other by service name anyway (link aliases are not created)",
    "ulimits": "the engine's default ulimits apply",
    "shm_size": "the engine's default /dev/shm size applies",
    "tmpfs": "no tmpfs is mounted; the path stays on the container's writable layer",
    "read_only": "it is not applied yet, so the container's root filesystem stays writable",
    "isolation": "Linux containers use the engine's default isolation",
    "credential_spec": "it only applies to Windows containers",
    "develop": "compose watch settings are for local development",
    "attach": "Dockyard always collects container output",
    "annotations": "annotations are not applied to containers",
    **dict.fromkeys((
        "cpu_shares", "cpu_quota", "cpu_period", "cpu_count", "cpu_percent", "cpu_rt_period",
        "cpu_rt_runtime", "cpuset", "memswap_limit", "mem_swappiness", "oom_kill_disable",
        "oom_score_adj", "pids_limit", "blkio_config", "storage_opt"), _RESOURCE_TUNING),
}

# Keys Dockyard cannot honour: importing without them would change what the app does.
_UNSUPPORTED = {
    "extends": "extends: is not supported in Compose import; merge the extended service into this one "
               "(docker compose config prints the merged file)",
    "secrets": "secrets: is not supported yet in Compose import; pass the values as environment variables",
    "configs": "configs: is not supported yet in Compose import; bake the files into the image",
    "volumes_from": "volumes_from: is not supported; mount the same named volume in both services instead",
    "external_links": "external_links: is not supported: apps only reach apps of the same project",
    "dns": "dns: is not supported: containers use the project network's DNS, which resolves service names",
    "dns_search": "dns_search: is not supported: containers use the project network's DNS",
    "dns_opt": "dns_opt: is not supported: containers use the project network's DNS",
    "extra_hosts": "extra_hosts: is not supported: containers use the project network's DNS; "
                   "reach other apps by service name",
    "cap_drop": "cap_drop: is not supported yet: Dockyard cannot drop capabilities per app; remove it to "
                "run with the default capability set",
    "group_add": "group_add: is not supported yet; set user: to the uid:gid the app needs",
    "gpus": "gpus: is not supported: Dockyard does not schedule GPUs",
    "label_file": "label_file: is not supported; write the labels under labels:",
    "post_start": "post_start: lifecycle hooks are not supported",
    "pre_stop": "pre_stop: lifecycle hooks are not supported",
    "provider": "provider: is not supported in Compose import",
    "models": "models: is not supported in Compose import",
}


def _check_service_keys(svc: dict, path: str, ctx: _Ctx) -> None:
    """Warn about ignored keys, refuse unsupported, forbidden and unknown ones."""
    for key, value in svc.items():
        key, where = str(key), f"{path}.{key}"
        if key in _TRANSLATED:
            continue
        if key in _SECURITY_CHECKS:
            _SECURITY_CHECKS[key](value, where, ctx)
        elif key in _IGNORED:
            if _present(value):
                ctx.warn(where, f"{key} is ignored: {_IGNORED[key]}")
        elif key in _UNSUPPORTED:
            if _present(value):
                ctx.error(where, _UNSUPPORTED[key])
        else:
            ctx.error(where, f"unknown key '{key}': it is not part of the Compose Spec")


# ---------------------------------------------------------------------------------------------
# Security policy (baseline)
# ---------------------------------------------------------------------------------------------


def _forbid_if_true(what: str) -> Callable[[object, str, _Ctx], None]:
    def check(value: object, path: str, ctx: _Ctx) -> None:
        if value is True:
            ctx.forbid(path, what)
        elif value not in (None, False):
            ctx.error(path, "must be true or false")
    return check


def _forbid_if_given(what: str) -> Callable[[object, str, _Ctx], None]:
    def check(value: object, path: str, ctx: _Ctx) -> None:
        if _present(value):
            ctx.forbid(path, what)
    return check


def _namespace_mode(key: str, allowed: tuple[str, ...], refusal: str) -> Callable[[object, str, _Ctx], None]:
    """A `*_mode`-style key: `host` is forbidden, `allowed` values pass, anything else is refused."""
    def check(value: object, path: str, ctx: _Ctx) -> None:
        if value is None or value in allowed:
            return
        if value == "host":
            ctx.forbid(path, f"{key}: host shares the host's namespace with the container")
        else:
            ctx.error(path, f"{key}: {value} is not supported: {refusal}")
    return check


_ENGINE_SOCKETS = ("docker.sock", "podman.sock", "containerd.sock")


_WEAKENING_OPTS = ("seccomp:unconfined", "apparmor:unconfined", "label:disable", "no-new-privileges:false")


def _check_security_opt(value: object, path: str, ctx: _Ctx) -> None:
    for i, opt in enumerate(_list(value, path, ctx)):
        where = f"{path}[{i}]"
        text = str(opt).replace("=", ":")  # both separators are accepted by the engine
        if text in ("no-new-privileges", "no-new-privileges:true"):
            ctx.warn(where, "security_opt no-new-privileges is always on in Dockyard")
        elif text in _WEAKENING_OPTS:
            ctx.forbid(where, f"security_opt {opt} weakens the container's confinement")
        else:
            ctx.error(where, f"security_opt {opt} is not supported: Dockyard applies its own profiles")


def _check_use_api_socket(value: object, path: str, ctx: _Ctx) -> None:
    if value is True:
        ctx.forbid(path, "use_api_socket: mounting the Docker socket is always refused: it gives full "
                         "control of the host")


_SECURITY_CHECKS: dict[str, Callable[[object, str, _Ctx], None]] = {
    "privileged": _forbid_if_true("privileged: true gives the container full access to the host"),
    "cap_add": _forbid_if_given("cap_add: extra capabilities are not granted to apps"),
    "devices": _forbid_if_given("devices: host devices cannot be mapped into apps"),
    "device_cgroup_rules": _forbid_if_given("device_cgroup_rules: host devices cannot be opened by apps"),
    "sysctls": _forbid_if_given("sysctls: apps cannot change kernel parameters"),
    "cgroup_parent": _forbid_if_given("cgroup_parent: apps cannot choose their cgroup"),
    "security_opt": _check_security_opt,
    "use_api_socket": _check_use_api_socket,
    "network_mode": _namespace_mode("network_mode", (), "every app joins the project's network"),
    "pid": _namespace_mode("pid", (), "containers cannot share process namespaces"),
    "ipc": _namespace_mode("ipc", ("private",), "containers cannot share IPC namespaces"),
    "uts": _namespace_mode("uts", (), "containers cannot share UTS namespaces"),
    "userns_mode": _namespace_mode("userns_mode", (), "Dockyard sets user namespaces itself"),
    "cgroup": _namespace_mode("cgroup", ("private",), "only private cgroup namespaces are used"),
}


# ---------------------------------------------------------------------------------------------
# One service -> one App
# ---------------------------------------------------------------------------------------------


def _convert_service(name: str, svc: object, project: str, deps: list[str], ctx: _Ctx) -> dict | None:
    """Build the App manifest for one service, or None when it has errors (they are recorded)."""
    path = f"services.{name}"
    errors_before = len(ctx.errors)
    _check_service_name(name, path, ctx)
    if not isinstance(svc, dict):
        ctx.error(path, f"a service must be a mapping, not {_kind(svc)}")
        return None
    _check_service_keys(svc, path, ctx)
    deploy = _mapping(svc.get("deploy"), f"{path}.deploy", ctx)
    _check_deploy(deploy, f"{path}.deploy", ctx)
    spec: dict = {}
    _put(spec, "image", _image(svc, path, ctx))
    _put(spec, "command", _words(svc.get("entrypoint"), f"{path}.entrypoint", ctx))
    _put(spec, "args", _words(svc.get("command"), f"{path}.command", ctx))
    _put(spec, "env", _environment(svc, path, ctx) or None)
    _put(spec, "ports", _ports(svc, path, ctx) or None)
    _put(spec, "replicas", _replicas(svc, deploy, path, ctx))
    _put(spec, "resources", _resources(svc, deploy, path, ctx))
    _put(spec, "healthcheck", _healthcheck(svc.get("healthcheck"), f"{path}.healthcheck", ctx))
    _put(spec, "restartPolicy", _restart_policy(svc, deploy, path, ctx))
    _put(spec, "volumes", _volume_mounts(svc, path, ctx) or None)
    _put(spec, "labels", _labels(svc.get("labels"), f"{path}.labels", ctx))
    _put(spec, "runtime", _optional_str(svc, "runtime", path, ctx))
    _put(spec, "user", _optional_str(svc, "user", path, ctx))
    _put(spec, "workingDir", _optional_str(svc, "working_dir", path, ctx))
    _put(spec, "dependsOn", deps or None)
    _put(spec, "strategy", _strategy(deploy, f"{path}.deploy", ctx))
    if len(ctx.errors) > errors_before:
        return None
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "App",
        "metadata": {"name": name, "project": project, "labels": {SERVICE_LABEL: name}},
        "spec": spec,
    }
    _validate_app(manifest, path, ctx)
    return manifest


def _check_service_name(name: str, path: str, ctx: _Ctx) -> None:
    # Service names are host names other services connect to, so they are never rewritten.
    if DNS_LABEL.match(name):
        return
    if len(name) > 63:
        why = "it is longer than 63 characters"
    elif name != name.lower():
        why = "it contains upper-case letters"
    elif "_" in name:
        why = "it contains '_'"
    elif name.startswith("-") or name.endswith("-"):
        why = "it starts or ends with '-'"
    else:
        why = "app names use only lower-case letters, digits and '-'"
    ctx.error(path, f"service name '{name}' cannot be an app name: {why}; rename the service "
                    f"(e.g. '{_suggest_label(name)}') and the references to it")


def _suggest_label(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].rstrip("-")


def _validate_app(manifest: dict, path: str, ctx: _Ctx) -> None:
    """Last line of defence: report anything the App model refuses at the service's path."""
    try:
        App.model_validate(manifest)
    except ValidationError as e:
        for err in e.errors():
            where = ".".join(str(part) for part in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            ctx.error(path, f"the resulting App is invalid at {where}: {message}")


def _optional_str(svc: dict, key: str, path: str, ctx: _Ctx) -> str | None:
    if svc.get(key) is None:
        return None
    return _scalar(svc[key], f"{path}.{key}", ctx)


# --- image, entrypoint, command -------------------------------------------------------------

_BUILD_REFUSAL = ("build: is not supported in Compose import; build the image with a Dockyard Build "
                  "and reference it by image")


def _image(svc: dict, path: str, ctx: _Ctx) -> str | None:
    if "build" in svc:
        ctx.error(f"{path}.build", _BUILD_REFUSAL)
        return None
    image = svc.get("image")
    if image is None:
        ctx.error(f"{path}.image", "is required: every service needs an image")
        return None
    if not isinstance(image, str):
        ctx.error(f"{path}.image", f"must be a string, not {_kind(image)}")
        return None
    try:
        parse_image(image)
    except ValueError as e:
        ctx.error(f"{path}.image", str(e))
        return None
    return image


def _words(value: object, path: str, ctx: _Ctx) -> list[str] | None:
    """command/entrypoint: a list as given, or a string split like a shell would (no shell runs)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as e:
            ctx.error(path, f"cannot split '{value}' into words: {e}")
            return None
    words = [_scalar(w, f"{path}[{i}]", ctx) for i, w in enumerate(_list(value, path, ctx))]
    return None if None in words else words


# --- environment ----------------------------------------------------------------------------


def _environment(svc: dict, path: str, ctx: _Ctx) -> list[dict]:
    """env_file contents first (later files win), then `environment`, which overrides them."""
    merged: dict[str, str] = {}
    for name, value in _env_files(svc.get("env_file"), f"{path}.env_file", ctx):
        _set_env(merged, name, value, f"{path}.env_file", ctx)
    for name, value in _env_entries(svc.get("environment"), f"{path}.environment", ctx):
        _set_env(merged, name, value, f"{path}.environment.{name}", ctx)
    return [{"name": k, "value": v} for k, v in merged.items()]


def _set_env(merged: dict[str, str], name: str, value: str | None, path: str, ctx: _Ctx) -> None:
    if not ENV_NAME.match(name):
        ctx.error(path, f"'{name}' is not a valid environment variable name")
        return
    if value is None:  # "NAME" alone: Compose passes the variable through from the environment
        value = ctx.env.get(name)
        if value is None:
            kept = "; the env_file value is kept" if name in merged else ""
            ctx.warn(path, f"variable {name} has no value (it is not set in the environment) and is "
                           f"skipped{kept}")
            return
    merged[name] = value


def _env_entries(value: object, path: str, ctx: _Ctx) -> list[tuple[str, str | None]]:
    if value is None:
        return []
    if isinstance(value, dict):
        return [(str(k), None if v is None else _scalar(v, f"{path}.{k}", ctx) or "")
                for k, v in value.items()]
    pairs = []
    for i, item in enumerate(_list(value, path, ctx)):
        if not isinstance(item, str):
            ctx.error(f"{path}[{i}]", f"must be a string NAME=VALUE, not {_kind(item)}")
            continue
        name, eq, val = item.partition("=")
        pairs.append((name, val if eq else None))
    return pairs


def _env_files(value: object, path: str, ctx: _Ctx) -> list[tuple[str, str | None]]:
    """Variables from each env_file, read from `ctx.files` (the CLI sends their contents)."""
    entries = [value] if isinstance(value, (str, dict)) else _list(value, path, ctx)
    pairs = []
    for i, entry in enumerate(entries):
        where = f"{path}[{i}]" if isinstance(value, list) else path
        if isinstance(entry, dict):
            _check_keys(entry, {"path", "required", "format"}, where, ctx)
            name, required, fmt = entry.get("path"), entry.get("required", True), entry.get("format")
        else:
            name, required, fmt = entry, True, None
        if not isinstance(name, str) or not name:
            ctx.error(where, "an env_file entry needs a path")
            continue
        if fmt not in (None, "raw"):
            ctx.error(f"{where}.format", f"env_file format '{fmt}' is not supported (omit it or use raw)")
            continue
        text = ctx.files.get(name)
        if text is None:
            if required is False:
                ctx.warn(where, f"optional env_file '{name}' was not provided and is skipped")
            else:
                ctx.error(where, f"env_file '{name}' was not provided with the Compose file")
            continue
        pairs += _parse_env_file(text, name, where, ctx, raw=fmt == "raw")
    return pairs


def _parse_env_file(text: str, name: str, path: str, ctx: _Ctx,
                    raw: bool = False) -> list[tuple[str, str | None]]:
    """Parse `NAME=VALUE` lines; `#` comments, blank lines, `export`, and quoted values allowed.

    Values are taken literally (no interpolation) so a `$` in a password stays a `$`. A value
    in double quotes understands `\\n`, `\\t`, `\\"` and `\\\\` and may span lines; in single
    quotes it is literal. NAME alone (no `=`) takes the value from the environment.
    """
    lines = text.splitlines()
    pairs: list[tuple[str, str | None]] = []
    i = 0
    while i < len(lines):
        lineno, line = i + 1, lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, eq, rest = line.partition("=")
        if not eq:
            pairs.append((key.strip(), None))
            continue
        value, i, problem = (rest, i, None) if raw else _env_value(rest.strip(), lines, i)
        if problem:
            ctx.error(path, f"env_file '{name}' line {lineno}: {problem}")
            continue
        pairs.append((key.strip(), value))
    return pairs


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _env_value(rest: str, lines: list[str], i: int) -> tuple[str, int, str | None]:
    """The value after `=`; returns it, the index of the next line, and a problem if any."""
    if not rest or rest[0] not in "'\"":
        return re.sub(r"\s+#.*$", "", rest), i, None  # " # ..." after an unquoted value is a comment
    quote, body = rest[0], rest[1:]
    while True:
        end = _closing_quote(body, quote)
        if end >= 0:
            break
        if i >= len(lines):
            return "", i, f"the {quote} quote is never closed"
        body, i = body + "\n" + lines[i], i + 1  # a quoted value may span lines (keys, certificates)
    tail = body[end + 1:].strip()
    if tail and not tail.startswith("#"):
        return "", i, f"unexpected text after the closing quote: {tail}"
    value = body[:end]
    if quote == '"':
        value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), value)
    return value, i, None


def _closing_quote(body: str, quote: str) -> int:
    k = 0
    while k < len(body):
        if quote == '"' and body[k] == "\\":
            k += 2
            continue
        if body[k] == quote:
            return k
        k += 1
    return -1


# --- ports ----------------------------------------------------------------------------------

_LONG_PORT_KEYS = {"target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"}


def _ports(svc: dict, path: str, ctx: _Ctx) -> list[dict]:
    """`ports` and `expose` as container ports; host ports are not published on a platform."""
    found: list[dict] = []
    for i, entry in enumerate(_list(svc.get("ports"), f"{path}.ports", ctx)):
        where = f"{path}.ports[{i}]"
        found += _long_port(entry, where, ctx) if isinstance(entry, dict) else _short_port(entry, where, ctx)
    for i, entry in enumerate(_list(svc.get("expose"), f"{path}.expose", ctx)):
        found += _expose(entry, f"{path}.expose[{i}]", ctx)
    unique: dict[tuple[int, str], dict] = {}
    for port in found:  # "80:80" and "8080:80" both reach container port 80
        unique.setdefault((port["containerPort"], port["protocol"]), port)
    return list(unique.values())


def _short_port(entry: object, path: str, ctx: _Ctx) -> list[dict]:
    """`80`, `8080:80`, `127.0.0.1:8080:80/udp`, `[::1]:8080:80`, `3000-3002`, `8000-8002:3000-3002`."""
    if isinstance(entry, bool) or not isinstance(entry, (str, int)):
        ctx.error(path, f"must be a port such as \"8080:80\", not {_kind(entry)}")
        return []
    text, protocol = _split_protocol(str(entry).strip(), path, ctx)
    host_ip = ""
    if text.startswith("["):  # an IPv6 host address carries colons of its own
        host_ip, _, text = text[1:].partition("]")
        text = text.removeprefix(":")
    parts = text.split(":")
    if len(parts) > 3 or (host_ip and len(parts) != 2):
        ctx.error(path, f"'{entry}' is not a port: write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]")
        return []
    if len(parts) == 3:
        host_ip = parts.pop(0)
    published = parts[0] if len(parts) == 2 else ""
    if published and not re.fullmatch(r"\d+(-\d+)?", published):
        ctx.error(path, f"'{published}' in '{entry}' is not a host port or range")
        return []
    targets = _port_range(parts[-1], path, ctx)
    if published or host_ip:
        _warn_host_port(published, host_ip, parts[-1], path, ctx)
    return [{"containerPort": t, "protocol": protocol} for t in targets]


def _long_port(entry: dict, path: str, ctx: _Ctx) -> list[dict]:
    _check_keys(entry, _LONG_PORT_KEYS, path, ctx)
    if entry.get("target") is None:
        ctx.error(f"{path}.target", "is required: the port the container listens on")
        return []
    targets = _port_range(str(entry["target"]), f"{path}.target", ctx)
    protocol = str(entry.get("protocol") or "tcp").lower()
    if protocol not in ("tcp", "udp"):
        ctx.error(f"{path}.protocol", f"protocol '{protocol}' is not supported (use tcp or udp)")
        return []
    if entry.get("published") is not None or entry.get("host_ip"):
        published = str(entry.get("published") or "")
        _warn_host_port(published, str(entry.get("host_ip") or ""), str(entry["target"]), path, ctx)
    ports = [{"containerPort": t, "protocol": protocol} for t in targets]
    if entry.get("name") is not None:
        if len(ports) != 1 or not DNS_LABEL.match(str(entry["name"])):
            ctx.error(f"{path}.name",
                      f"'{entry['name']}' cannot name this port: use a DNS label for one port")
        else:
            ports[0]["name"] = str(entry["name"])
    return ports


def _expose(entry: object, path: str, ctx: _Ctx) -> list[dict]:
    if isinstance(entry, bool) or not isinstance(entry, (str, int)):
        ctx.error(path, f"must be a port such as \"3000\" or \"3000/udp\", not {_kind(entry)}")
        return []
    text, protocol = _split_protocol(str(entry).strip(), path, ctx)
    return [{"containerPort": t, "protocol": protocol} for t in _port_range(text, path, ctx)]


def _split_protocol(text: str, path: str, ctx: _Ctx) -> tuple[str, str]:
    text, slash, protocol = text.partition("/")
    protocol = protocol.lower() if slash else "tcp"
    if protocol not in ("tcp", "udp"):
        ctx.error(path, f"protocol '{protocol}' is not supported (use tcp or udp)")
    return text, protocol


def _port_range(text: str, path: str, ctx: _Ctx) -> list[int]:
    """`80` or an inclusive range `3000-3002`, expanded to one port each."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m:
        ctx.error(path, f"'{text}' is not a port number or range")
        return []
    first, last = int(m.group(1)), int(m.group(2) or m.group(1))
    if not 1 <= first <= last <= 65535:
        ctx.error(path, f"'{text}' is not a port range within 1-65535")
        return []
    if last - first + 1 > MAX_PORT_RANGE:
        ctx.error(path, f"port range '{text}' has {last - first + 1} ports; "
                        f"at most {MAX_PORT_RANGE} are allowed")
        return []
    return list(range(first, last + 1))


def _warn_host_port(published: str, host_ip: str, target: str, path: str, ctx: _Ctx) -> None:
    host = ":".join(p for p in (host_ip, published) if p)
    ctx.warn(path, f"ports: host port {host} is not published: Dockyard does not bind host ports; the "
                   f"gateway routes traffic to container port {target}")


# --- volumes --------------------------------------------------------------------------------

_LONG_VOLUME_KEYS = {"type", "source", "target", "read_only", "bind", "volume", "tmpfs", "image",
                     "consistency"}
_SHORT_VOLUME_MODES = {"ro", "rw", "z", "Z", "nocopy", "cached", "delegated", "consistent"}


def _volume_mounts(svc: dict, path: str, ctx: _Ctx) -> list[dict]:
    mounts = []
    for i, entry in enumerate(_list(svc.get("volumes"), f"{path}.volumes", ctx)):
        where = f"{path}.volumes[{i}]"
        parse = _long_volume if isinstance(entry, dict) else _short_volume
        mount = parse(entry, where, ctx)
        if mount:
            mounts.append(mount)
    return mounts


def _short_volume(entry: object, path: str, ctx: _Ctx) -> dict | None:
    """`data:/var/lib/x[:ro]` (named), `./x:/y` or `/x:/y` (host bind), `/data` (anonymous)."""
    if not isinstance(entry, str):
        ctx.error(path, f"must be a string such as \"data:/var/lib/data\" or a mapping, not {_kind(entry)}")
        return None
    parts = entry.split(":")
    if len(parts) == 1:
        return _mount("volume", "", parts[0], False, path, ctx)
    if len(parts) > 3:
        ctx.error(path, f"'{entry}' is not a volume: write SOURCE:TARGET[:ro]")
        return None
    modes = parts[2].split(",") if len(parts) == 3 else []
    bad = [m for m in modes if m not in _SHORT_VOLUME_MODES]
    if bad:
        ctx.error(path, f"unknown volume option '{bad[0]}' (use ro or rw)")
        return None
    source = parts[0]
    kind = "bind" if source.startswith((".", "/", "~")) or "/" in source else "volume"
    return _mount(kind, source, parts[1], "ro" in modes, path, ctx)


def _long_volume(entry: dict, path: str, ctx: _Ctx) -> dict | None:
    _check_keys(entry, _LONG_VOLUME_KEYS, path, ctx)
    kind, source, target = entry.get("type"), str(entry.get("source") or ""), str(entry.get("target") or "")
    if kind == "tmpfs":
        ctx.warn(path, f"tmpfs mount at {target} is ignored: no tmpfs is mounted; the path stays on the "
                       "container's writable layer")
        return None
    if kind in ("npipe", "cluster", "image"):
        ctx.error(f"{path}.type", f"volume type '{kind}' is not supported (use type: volume)")
        return None
    if kind not in ("volume", "bind"):
        ctx.error(f"{path}.type", "is required: use type: volume with a source naming a declared volume")
        return None
    options = _mapping(entry.get("volume"), f"{path}.volume", ctx)
    if options.get("subpath"):
        ctx.error(f"{path}.volume.subpath", "mounting a sub-path of a volume is not supported yet")
    read_only = entry.get("read_only", False)
    if not isinstance(read_only, bool):
        ctx.error(f"{path}.read_only", "must be true or false")
        return None
    return _mount(kind, source, target, read_only, path, ctx)


def _mount(kind: str, source: str, target: str, read_only: bool, path: str, ctx: _Ctx) -> dict | None:
    """Check a mount both syntaxes described and turn a named volume into a VolumeMount."""
    if kind == "bind":
        if posixpath.basename(source.rstrip("/")) in _ENGINE_SOCKETS:
            ctx.forbid(path, f"mounting the Docker socket ({source}) is always refused, whatever the policy: "
                             "it gives full control of the host")
        else:
            ctx.forbid(path, f"host bind mount '{source}' is not allowed: apps cannot see the host's files; "
                             "use a named volume declared under the top-level volumes:")
        return None
    if not target.startswith("/") or target == "/":
        ctx.error(path, f"mount target '{target}' must be an absolute path other than /")
        return None
    if not source:
        suggestion = _suggest_label(posixpath.basename(target)) or "data"
        ctx.error(path, f"anonymous volume at {target} is not supported: name it, e.g. "
                        f"'{suggestion}:{target}', and declare '{suggestion}' under the top-level volumes:")
        return None
    if source not in ctx.volumes:
        ctx.error(path, f"volume '{source}' is not declared under the top-level volumes:")
        return None
    return {"name": ctx.volumes[source], "mountPath": target, "readOnly": read_only}


# --- healthcheck ----------------------------------------------------------------------------

_HEALTHCHECK_DURATIONS = (("interval", "interval"), ("timeout", "timeout"), ("start_period", "startPeriod"))
_HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval", "disable"}


def _healthcheck(value: object, path: str, ctx: _Ctx) -> dict | None:
    hc = _mapping(value, path, ctx)
    if not hc:
        return None
    _check_keys(hc, _HEALTHCHECK_KEYS, path, ctx)
    if hc.get("disable") is True:
        return None
    if hc.get("test") is None:
        ctx.warn(path, "healthcheck without test is ignored: Dockyard cannot reuse the image's HEALTHCHECK")
        return None
    command = _health_command(hc["test"], f"{path}.test", ctx)
    if command is None:
        return None
    check: dict = {"exec": {"command": command}}
    for key, field_name in _HEALTHCHECK_DURATIONS:
        if hc.get(key) is not None:
            _put(check, field_name, _duration(hc[key], f"{path}.{key}", ctx))
    if hc.get("retries") is not None:
        _put(check, "retries", _int(hc["retries"], f"{path}.retries", ctx, minimum=1))
    if hc.get("start_interval") is not None:
        ctx.warn(f"{path}.start_interval",
                 "start_interval is ignored: checks run every interval from the start")
    return check


def _health_command(test: object, path: str, ctx: _Ctx) -> list[str] | None:
    """`["CMD", ...]` runs as is; `["CMD-SHELL", "x"]` and a plain string run in /bin/sh; NONE is none."""
    if isinstance(test, str):
        return ["/bin/sh", "-c", test]
    words = _words(test, path, ctx)
    if not words:
        if words == []:
            ctx.error(path, "must not be empty")
        return None
    head, rest = words[0], words[1:]
    if head == "NONE":
        return None
    if head == "CMD" and rest:
        return rest
    if head == "CMD-SHELL" and len(rest) == 1:
        return ["/bin/sh", "-c", rest[0]]
    ctx.error(path, "must be [\"CMD\", ...], [\"CMD-SHELL\", \"command\"], [\"NONE\"] or a string")
    return None


def _duration(value: object, path: str, ctx: _Ctx) -> str | int | float | None:
    """Durations stay as written ("1m30s"); only checked to be ones Dockyard understands."""
    try:
        if isinstance(value, (str, int, float)):
            parse_duration(value)
            return value
    except ValueError:
        pass
    ctx.error(path, f"'{value}' is not a duration (examples: 10s, 1m30s, 500ms)")
    return None


# --- deploy: replicas, resources, restart, update strategy ----------------------------------

_DEPLOY_KEYS = {"mode", "replicas", "resources", "restart_policy", "update_config", "rollback_config",
                "placement", "endpoint_mode", "labels"}
_DEPLOY_IGNORED = {
    "placement": "Dockyard's scheduler places containers",
    "endpoint_mode": "Dockyard's gateway and the project network route traffic to the app",
    "rollback_config": "Dockyard rolls back through app revisions with its own settings",
    "labels": "they label the Swarm service, which Dockyard does not have; use the service's labels:",
}


def _check_deploy(deploy: dict, path: str, ctx: _Ctx) -> None:
    _check_keys(deploy, _DEPLOY_KEYS, path, ctx)
    for key, why in _DEPLOY_IGNORED.items():
        if _present(deploy.get(key)):
            ctx.warn(f"{path}.{key}", f"deploy.{key} is ignored: {why}")
    mode = deploy.get("mode")
    if mode not in (None, "replicated"):  # replicated is what every App is: nothing to say
        hint = "; set deploy.replicas instead" if mode == "global" else ""
        ctx.error(f"{path}.mode", f"deploy.mode {mode} is not supported{hint}")


def _replicas(svc: dict, deploy: dict, path: str, ctx: _Ctx) -> int | None:
    replicas = deploy.get("replicas")
    if replicas is not None:
        replicas = _int(replicas, f"{path}.deploy.replicas", ctx)
    scale = svc.get("scale")
    if scale is not None:
        scale = _int(scale, f"{path}.scale", ctx)
    if replicas is not None and scale is not None and replicas != scale:
        ctx.error(f"{path}.scale", f"scale ({scale}) and deploy.replicas ({replicas}) disagree")
    return replicas if replicas is not None else scale


_LIMIT_KEYS = {"cpus", "memory", "pids"}
_RESERVATION_KEYS = {"cpus", "memory", "devices", "generic_resources"}


def _resources(svc: dict, deploy: dict, path: str, ctx: _Ctx) -> dict | None:
    """deploy.resources (and the older cpus/mem_limit/mem_reservation) as limits and requests."""
    where = f"{path}.deploy.resources"
    res = _mapping(deploy.get("resources"), where, ctx)
    _check_keys(res, {"limits", "reservations"}, where, ctx)
    limits = _mapping(res.get("limits"), f"{where}.limits", ctx)
    reservations = _mapping(res.get("reservations"), f"{where}.reservations", ctx)
    _check_keys(limits, _LIMIT_KEYS, f"{where}.limits", ctx)
    _check_keys(reservations, _RESERVATION_KEYS, f"{where}.reservations", ctx)
    if limits.get("pids") is not None:
        ctx.warn(f"{where}.limits.pids", "pids limit is ignored: only cpus and memory are translated")
    for key in ("devices", "generic_resources"):
        if _present(reservations.get(key)):
            ctx.error(f"{where}.reservations.{key}", f"reservations.{key} is not supported: "
                                                     "Dockyard does not schedule GPUs or other devices")
    out = {
        "limits": _amounts(limits, f"{where}.limits", svc, ("cpus", "mem_limit"), path, ctx),
        "requests": _amounts(reservations, f"{where}.reservations", svc, (None, "mem_reservation"), path,
                             ctx),
    }
    out = {k: v for k, v in out.items() if v}
    return out or None


def _amounts(section: dict, where: str, svc: dict, legacy: tuple[str | None, str | None], path: str,
             ctx: _Ctx) -> dict:
    """cpu and memory from a deploy.resources section, merged with the legacy service keys."""
    amounts = {}
    for key, out_key, legacy_key, convert in (("cpus", "cpu", legacy[0], _cpu),
                                              ("memory", "memory", legacy[1], _memory)):
        value = convert(section[key], f"{where}.{key}", ctx) if section.get(key) is not None else None
        if legacy_key and svc.get(legacy_key) is not None:
            old = convert(svc[legacy_key], f"{path}.{legacy_key}", ctx)
            if value is not None and old is not None and old != value:
                ctx.error(f"{path}.{legacy_key}", f"{legacy_key} ({svc[legacy_key]}) disagrees with "
                                                  f"deploy.resources ({section[key]})")
            value = value if value is not None else old
        _put(amounts, out_key, value)
    return amounts


def _cpu(value: object, path: str, ctx: _Ctx) -> str | None:
    """Compose cpus ("0.5", 0.5, 2) as a Dockyard CPU quantity; 0 means no limit, as in Docker."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        ctx.error(path, f"must be a number of CPUs such as 0.5, not {_kind(value)}")
        return None
    text = f"{value:g}" if isinstance(value, (int, float)) else value.strip()
    try:
        amount = parse_cpu(text)
    except ValueError as e:
        ctx.error(path, str(e))
        return None
    return text if amount > 0 else None


_COMPOSE_BYTES = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgtp])i?)?b?\s*$", re.IGNORECASE)


def _memory(value: object, path: str, ctx: _Ctx) -> str | None:
    """Compose memory ("512m", "1g", "512M", "1gb", bytes) as a Dockyard quantity ("512Mi").

    Docker reads every unit as binary whatever its case, so 512M is 512Mi; Dockyard's own
    parser reads M as 10^6, hence the conversion here rather than passing the text through.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        ctx.error(path, f"must be a memory amount such as 512m, not {_kind(value)}")
        return None
    m = _COMPOSE_BYTES.match(str(value))
    if not m:
        ctx.error(path, f"'{value}' is not a memory amount (examples: 512m, 1g, 256M)")
        return None
    unit = (m.group(2) or "").lower()
    n = int(float(m.group(1)) * 1024 ** ("kmgtp".index(unit) + 1 if unit else 0))
    return format_memory(n) if n > 0 else None  # 0 means no limit, as in Docker


_RESTART = {"no": "never", "always": "always", "on-failure": "on-failure", "unless-stopped": "always"}
_RESTART_CONDITIONS = {"none": "never", "on-failure": "on-failure", "any": "always"}


def _restart_policy(svc: dict, deploy: dict, path: str, ctx: _Ctx) -> str | None:
    """`restart` and deploy.restart_policy.condition; the deploy form wins when both are given."""
    policy = _restart(svc["restart"], f"{path}.restart", ctx) if svc.get("restart") is not None else None
    where = f"{path}.deploy.restart_policy"
    rp = _mapping(deploy.get("restart_policy"), where, ctx)
    if not rp:
        return policy
    _check_keys(rp, {"condition", "delay", "max_attempts", "window"}, where, ctx)
    for key in ("delay", "max_attempts", "window"):
        if rp.get(key) is not None:
            ctx.warn(f"{where}.{key}",
                     f"restart_policy.{key} is ignored: Dockyard's restart back-off applies")
    condition = rp.get("condition", "any")
    if condition not in _RESTART_CONDITIONS:
        ctx.error(f"{where}.condition", f"unknown condition '{condition}' (use none, on-failure or any)")
        return policy
    deploy_policy = _RESTART_CONDITIONS[condition]
    if policy is not None and policy != deploy_policy:
        ctx.warn(f"{path}.restart", f"restart is overridden by deploy.restart_policy ({condition})")
    return deploy_policy


def _restart(value: object, path: str, ctx: _Ctx) -> str | None:
    text = "no" if value is False else str(value)  # YAML 1.1 reads an unquoted `no` as false
    base, _, retries = text.partition(":")
    if base not in _RESTART or (retries and (base != "on-failure" or not retries.isdigit())):
        ctx.error(path, f"unknown restart policy '{text}' (use no, always, on-failure or unless-stopped)")
        return None
    if base == "unless-stopped":
        ctx.warn(path, "restart unless-stopped is treated as always: stop a Dockyard app by scaling it to 0")
    if retries:
        ctx.warn(path, f"restart on-failure:{retries}: the retry limit is ignored; Dockyard keeps restarting "
                       "on failure with back-off")
    return _RESTART[base]


_UPDATE_KEYS = {"parallelism", "delay", "failure_action", "monitor", "max_failure_ratio", "order"}


def _strategy(deploy: dict, path: str, ctx: _Ctx) -> dict | None:
    """deploy.update_config as a rolling update: start-first surges, stop-first takes down first."""
    where = f"{path}.update_config"
    uc = _mapping(deploy.get("update_config"), where, ctx)
    if not uc:
        return None
    _check_keys(uc, _UPDATE_KEYS, where, ctx)
    for key in ("delay", "failure_action", "monitor", "max_failure_ratio"):
        if uc.get(key) is not None:
            ctx.warn(f"{where}.{key}", f"update_config.{key} is ignored: only parallelism and order are "
                                       "translated (into spec.strategy)")
    parallelism = _int(uc.get("parallelism", 1), f"{where}.parallelism", ctx)
    order = uc.get("order", "stop-first")
    if parallelism is None:
        return None
    if order not in ("start-first", "stop-first"):
        ctx.error(f"{where}.order", f"unknown order '{order}' (use start-first or stop-first)")
        return None
    step: int | str = parallelism or "100%"  # Swarm's parallelism 0 updates everything at once
    if order == "start-first":
        return {"maxSurge": step, "maxUnavailable": 0}
    return {"maxSurge": 0, "maxUnavailable": step}


# --- labels, depends_on ---------------------------------------------------------------------


def _labels(value: object, path: str, ctx: _Ctx) -> dict[str, str] | None:
    """Container labels from a list (`k=v`) or a mapping; platform-reserved prefixes are refused."""
    if value is None:
        return None
    if isinstance(value, list):
        pairs = []
        for i, item in enumerate(value):
            key, _, val = str(item).partition("=")
            pairs.append((key, val, f"{path}[{i}]"))
    else:
        pairs = [(str(k), "" if v is None else _scalar(v, f"{path}.{k}", ctx) or "", f"{path}.{k}")
                 for k, v in _mapping(value, path, ctx).items()]
    labels = {}
    for key, val, where in pairs:
        if key.startswith(("dockyard.", "com.docker.")):
            ctx.error(where, f"label '{key}' is reserved: keys starting with dockyard. or com.docker. "
                             "are set by the platform")
        labels[key] = val
    return labels or None


_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def _dependencies(svc: object, path: str, services: dict[str, object], ctx: _Ctx) -> list[str]:
    """depends_on as a list of service names; conditions are accepted, unknown services are not."""
    if not isinstance(svc, dict) or svc.get("depends_on") is None:
        return []
    where, value = f"{path}.depends_on", svc["depends_on"]
    entries: dict[str, dict] = {}
    if isinstance(value, list):
        entries = {str(name): {} for name in value}
    else:
        for name, opts in _mapping(value, where, ctx).items():
            opts = _mapping(opts, f"{where}.{name}", ctx)
            _check_keys(opts, {"condition", "restart", "required"}, f"{where}.{name}", ctx)
            if opts.get("condition", "service_started") not in _CONDITIONS:
                ctx.error(f"{where}.{name}.condition", f"unknown condition '{opts['condition']}'")
            entries[str(name)] = opts
    deps = []
    for name, opts in entries.items():
        if name in services:
            deps.append(name)
        elif opts.get("required") is False:
            ctx.warn(f"{where}.{name}",
                     f"optional dependency '{name}' is not a service in this file; skipped")
        else:
            ctx.error(f"{where}.{name}", f"depends on '{name}', which is not a service in this file")
    return deps


# ---------------------------------------------------------------------------------------------
# Start order
# ---------------------------------------------------------------------------------------------


def _start_order(deps: dict[str, list[str]], ctx: _Ctx) -> list[str]:
    """Services with their dependencies first, otherwise in file order; cycles are errors."""
    order: list[str] = []
    pending = list(deps)
    while pending:
        ready = next((n for n in pending if all(d in order for d in deps[n])), None)
        if ready is None:
            _report_cycles(pending, deps, ctx)
            return order + pending
        order.append(ready)
        pending.remove(ready)
    return order


def _report_cycles(pending: list[str], deps: dict[str, list[str]], ctx: _Ctx) -> None:
    reported: set[str] = set()
    for start in pending:
        # every pending service waits on another pending one, so following any such edge loops
        walk, seen, node = [], {}, start
        while node not in seen:
            seen[node] = len(walk)
            walk.append(node)
            node = next(d for d in deps[node] if d in pending)
        cycle = walk[seen[node]:]
        if reported.isdisjoint(cycle):
            reported.update(cycle)
            ring = " -> ".join([*cycle, cycle[0]])
            ctx.error(f"services.{cycle[0]}.depends_on",
                      f"depends_on forms a cycle ({ring}): services {', '.join(sorted(cycle))} "
                      "cannot be started in any order")
