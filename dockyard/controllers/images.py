"""The controllers' side of Dockyard's registry: resolving an App's tag to the digest it deploys,
the pull credential the engine gets, preheating a new image on every node before a rollout, and
the periodic tag check that catches a push notification that never arrived (autoDeploy)."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from dockyard.engines.base import EngineDriver, EngineError
from dockyard.model.app import AppSpec
from dockyard.registry import autodeploy
from dockyard.registry.autodeploy import ImageTarget
from dockyard.registry.client import RegistryClient, RegistryError
from dockyard.registry.images import ImageRecords
from dockyard.registry.settings import RegistrySettings
from dockyard.store.repository import Store

log = logging.getLogger(__name__)
PULL_CREDENTIAL_TTL = 900  # seconds: longer than any pull of one image takes


def tag_check_interval() -> float:
    """Seconds between checks of autoDeploy tags against the registry ($DOCKYARD_AUTODEPLOY_CHECK_SECONDS)."""
    return float(os.environ.get("DOCKYARD_AUTODEPLOY_CHECK_SECONDS", "60"))


class Registry(Protocol):
    """What this module needs of RegistryService (dockyard/registry/service.py)."""

    settings: RegistrySettings

    def credential(self, tenant: str, project: str, actions: tuple[str, ...], ttl: float = 3600,
                   repository: str | None = None) -> tuple[str, str]: ...


class ImageResolver:
    """`engines`: every engine (node) that may run the project's Apps; preheat pulls on all of
    them in parallel. One engine today (the docker driver), a list so that a cluster adds its nodes."""

    def __init__(self, registry: Registry, client: RegistryClient, engines: list[EngineDriver]) -> None:
        self.registry = registry
        self.client = client
        self.engines = engines
        self._checked_at = 0.0

    def target(self, scope: str, spec: AppSpec) -> ImageTarget | None:
        return autodeploy.image_target(self.registry.settings, scope, spec.image)

    def foreign_project(self, scope: str, spec: AppSpec) -> str | None:
        """The project whose repository the App's image names, when that is not the App's own: the
        App has no pull right there, and the engine, shared by every tenant, would otherwise start
        that project's image from its cache by name."""
        found = self.registry.settings.image_project(spec.image)
        owner = f"{found[0]}/{found[1]}" if found else None
        return owner if owner != scope else None

    def digest(self, target: ImageTarget) -> str | None:
        """The digest the tag points to now; EngineError (temporary) when the registry does not answer."""
        try:
            return self.client.digest(target.repository, target.tag)
        except RegistryError as e:
            raise EngineError(f"cannot resolve {target.repository}:{target.tag}: {e}", reason="RegistryUnavailable") \
                from None

    def pull_auth(self, target: ImageTarget) -> tuple[str, str]:
        tenant, project, _ = target.repository.split("/", 2)
        return self.registry.credential(tenant, project, ("pull",), ttl=PULL_CREDENTIAL_TTL,
                                        repository=target.repository)

    def preheat(self, image: str, auth: tuple[str, str] | None, engines: list[EngineDriver] | None = None
                ) -> list[str]:
        """Pull `image` on every engine at once; the failures, one line per engine ([] = all have it)."""
        return [f"{url}: {err}" for url, err in self._pull_everywhere(image, auth, engines or self.engines) if err]

    @staticmethod
    def _pull_everywhere(image: str, auth: tuple[str, str] | None, engines: list[EngineDriver]
                         ) -> list[tuple[str, str | None]]:
        def pull(engine: EngineDriver) -> tuple[str, str | None]:
            try:
                engine.pull_image(image, auth)
                return engine.url, None
            except EngineError as e:
                return engine.url, str(e)

        if len(engines) == 1:
            return [pull(engines[0])]
        with ThreadPoolExecutor(max_workers=min(len(engines), 16), thread_name_prefix="preheat") as pool:
            return list(pool.map(pull, engines))

    def engines_of(self, cluster: str | None) -> list[EngineDriver]:
        """The engines of a cluster by name: the server's own, named "local" or by its node (a stored
        Cluster's nodes pull for themselves)."""
        if cluster is None or cluster == "local":
            return self.engines
        names: list[str] = []
        for engine in self.engines:
            others = getattr(engine, "clusters", None)  # the cluster router: the stored Clusters
            if others is not None and cluster in others()[1:]:
                raise LookupError(f"cluster '{cluster}' is not preheated: its nodes pull images themselves when "
                                  "tasks start; preheat covers the server's own engine, 'local'")
            try:
                nodes = [n.name for n in engine.nodes()]
            except EngineError:
                nodes = []
            if cluster in nodes:
                return [engine]
            names += nodes
        also = f", or by its engine's node name: {', '.join(names)}" if names else ""
        raise LookupError(f"cluster '{cluster}' not found: the only cluster is the local engine, named 'local'{also}")

    def preheat_tag(self, repository: str, tag: str, cluster: str | None) -> dict:
        """The API's on-demand preheat: resolve the tag, pull `image:tag@digest` on the cluster's
        engines; LookupError when the cluster or the tag does not exist."""
        engines = self.engines_of(cluster)
        digest = self.client.digest(repository, tag)
        if digest is None:
            raise LookupError(f"{repository}:{tag} not found in the registry")
        image = f"{self.registry.settings.host}/{repository}:{tag}@{digest}"
        auth = self.pull_auth(ImageTarget(repository, tag))
        results = self._pull_everywhere(image, auth, engines)
        return {"image": image, "digest": digest,
                "nodes": [{"engine": url, "pulled": err is None, **({"error": err} if err else {})}
                          for url, err in results]}

    def check_tags(self, store: Store, *, interval: float | None = None) -> int:
        """Compare every autoDeploy App's tag with its digest, at most every `interval` seconds,
        and roll out what changed (a push whose notification was lost). Returns the roll-outs."""
        every = tag_check_interval() if interval is None else interval
        if time.monotonic() - self._checked_at < every:
            return 0
        self._checked_at = time.monotonic()
        records = ImageRecords(store)
        rolled = 0
        for app in store.list("App")[0]:
            target = autodeploy.followed_tag(self.registry.settings, app)
            if target is None or not app.spec.get("imageDigest"):
                continue  # an App without a digest yet gets one from its own reconcile
            try:
                now = self.client.digest(target.repository, target.tag)
            except RegistryError as e:
                log.warning("autoDeploy check of %s/%s: %s", app.scope, app.name, e)
                return rolled
            if now and now != app.spec["imageDigest"]:
                rec = records.tag(target.repository, target.tag)
                actor = rec.pushed_by if rec and rec.digest == now else ""
                rolled += autodeploy.roll_out_digest(store, app, now, autodeploy.push_cause(target.tag, actor))
        return rolled
