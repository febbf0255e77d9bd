"""ProjectReconciler: each project has its own engine network; a deleted project's engine
objects are removed."""

from __future__ import annotations

from dockyard.controllers.app import Outcome
from dockyard.engines.base import EngineDriver
from dockyard.model.project import network_encrypted
from dockyard.store.errors import NotFound
from dockyard.store.repository import Store


class ProjectReconciler:
    def __init__(self, store: Store, engine: EngineDriver) -> None:
        self.store = store
        self.engine = engine

    def reconcile(self, tenant: str, name: str) -> Outcome:
        try:
            project = self.store.get("Project", tenant, name)
        except NotFound:
            self.engine.remove_project(tenant, name)
            return Outcome()
        network = self.engine.ensure_project(tenant, name, encrypted=network_encrypted(project.spec))
        status = dict(project.status)
        status.update(observedGeneration=project.generation, network=network,
                      conditions=[{"type": "Ready", "status": "True", "reason": "NetworkReady",
                                   "message": f"network {network} exists"}])
        self.store.update_status("Project", tenant, name, status, uid=project.uid)
        return Outcome()


class OrphanCollector:
    """Removes engine objects of this installation that no App or Project in the store owns."""

    def __init__(self, store: Store, engine: EngineDriver) -> None:
        self.store = store
        self.engine = engine

    def collect(self) -> list[str]:
        removed: list[str] = []
        on_engine = self.engine.list_apps()
        projects_on_engine = self.engine.list_projects()
        apps, _, _ = self.store.list("App")
        projects, _, _ = self.store.list("Project")
        known_apps = {(a.scope, a.name) for a in apps}
        known_projects = {(p.scope, p.name) for p in projects}
        for key in on_engine:
            if (key.scope, key.app) not in known_apps:
                if self.engine.remove_app(key):
                    removed.append(f"app {key.scope}/{key.app}")
        for tenant, project in projects_on_engine:
            if (tenant, project) not in known_projects:
                self.engine.remove_project(tenant, project)
                removed.append(f"project {tenant}/{project}")
        return removed
