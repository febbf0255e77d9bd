"""The registry of kinds: how each is scoped, named in URLs and validated."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.model.alerts import AlertRule, Notifier, Silence
from dockyard.model.app import App
from dockyard.model.build import Build, BuildConfig
from dockyard.model.cluster import Cluster
from dockyard.model.logdrain import LogDrain
from dockyard.model.meta import Schema
from dockyard.model.project import Project
from dockyard.model.secret import Config, Secret
from dockyard.model.tenant import Tenant


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    scope: str  # "cluster" (no parent), "tenant" (parent is a tenant), "project" (parent is tenant/project)
    model: type[Schema]


KINDS: dict[str, KindInfo] = {
    "Tenant": KindInfo("Tenant", "tenants", "cluster", Tenant),
    "Cluster": KindInfo("Cluster", "clusters", "cluster", Cluster),
    "Project": KindInfo("Project", "projects", "tenant", Project),
    "App": KindInfo("App", "apps", "project", App),
    "Secret": KindInfo("Secret", "secrets", "project", Secret),
    "Config": KindInfo("Config", "configs", "project", Config),
    "LogDrain": KindInfo("LogDrain", "logdrains", "project", LogDrain),
    "AlertRule": KindInfo("AlertRule", "alertrules", "project", AlertRule),
    "Notifier": KindInfo("Notifier", "notifiers", "project", Notifier),
    "Silence": KindInfo("Silence", "silences", "project", Silence),
    "Build": KindInfo("Build", "builds", "project", Build),
    "BuildConfig": KindInfo("BuildConfig", "buildconfigs", "project", BuildConfig),
}

BY_PLURAL = {k.plural: k for k in KINDS.values()}


def kind_info(name: str) -> KindInfo:
    """Look a kind up by its name, plural or singular, case-insensitively."""
    low = name.lower()
    for info in KINDS.values():
        if low in (info.kind.lower(), info.plural):
            return info
    raise KeyError(name)
