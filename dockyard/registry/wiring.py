"""Puts the image pieces together for `dockyard server`: the client to the registry, the
notification receiver, garbage collection and scheduled housekeeping for the API, and the image
resolver (digests, pull credentials, preheat, the autoDeploy tag check) for the controllers."""

from __future__ import annotations

from dockyard.api.images import RegistryTools
from dockyard.controllers.images import ImageResolver
from dockyard.controllers.manager import ControllerManager
from dockyard.engines.base import EngineDriver
from dockyard.registry.client import client_for
from dockyard.registry.events import EventReceiver
from dockyard.registry.gc import GarbageCollector
from dockyard.registry.maintenance import RegistryMaintenance
from dockyard.registry.service import RegistryService
from dockyard.store.repository import Store


def open_images(service: RegistryService | None, store: Store, engine: EngineDriver, manager: ControllerManager
                ) -> tuple[RegistryTools | None, RegistryMaintenance | None]:
    """The API's RegistryTools and the housekeeping thread (not started); (None, None) without a
    registry. The controllers' App reconciler gets its ImageResolver here."""
    if service is None:
        return None, None
    client = client_for(service)
    resolver = ImageResolver(service, client, [engine])
    manager.apps.images = resolver
    gc = GarbageCollector(service, store, client)
    tools = RegistryTools(service, client, EventReceiver(store, service, client=client), gc, preheater=resolver)
    return tools, RegistryMaintenance(store, service, client, gc, manager.leading.is_set)
