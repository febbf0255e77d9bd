"""AppReconciler: makes an App's containers match its spec, one safe step at a time, and
writes what it observes back into the App's status."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from dockyard.controllers.images import ImageResolver
from dockyard.engines.base import (
    DesiredApp,
    EngineDriver,
    EngineError,
    MountedFile,
    ObservedApp,
    ObservedContainer,
    WorkloadKey,
)
from dockyard.model.app import AppSpec, run_image, template_hash, template_of
from dockyard.model.project import network_encrypted
from dockyard.registry.autodeploy import ImageTarget
from dockyard.store.errors import Conflict, NotFound
from dockyard.store.repository import Event, Store, StoredObject

log = logging.getLogger(__name__)


_REPLICA_REASONS = {"create": "ReplicaCreated", "remove": "ReplicaRemoved", "recreate": "ReplicaRecreated",
                    "start": "ReplicaStarted"}


class MissingReference(Exception):
    pass


@dataclass
class Outcome:
    """What the worker should do next with the key: requeue after `requeue` seconds, or not."""

    requeue: float | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(d: datetime) -> str:
    return d.isoformat().replace("+00:00", "Z")


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


class AppReconciler:
    def __init__(self, store: Store, engine: EngineDriver, drain_seconds: float = 1.0,
                 images: ImageResolver | None = None) -> None:
        self.store = store
        self.engine = engine
        self.drain_seconds = drain_seconds
        self.images = images  # None: no registry of Dockyard's own

    def reconcile(self, scope: str, name: str) -> Outcome:
        tenant, project = scope.split("/", 1)
        key = WorkloadKey(tenant, project, name)
        try:
            app = self.store.get("App", scope, name)
        except NotFound:
            removed = self.engine.remove_app(key)
            if removed:
                log.info("removed %d container(s) of deleted app %s/%s", removed, scope, name)
            return Outcome()
        spec = AppSpec.model_validate(app.spec)
        status = dict(app.status)
        pull_auth = None
        if self.images is not None and (owner := self.images.foreign_project(scope, spec)):
            self._fail(app, status, EngineError(
                f"image {spec.image} is in the repository of project {owner}: an App runs images of its own "
                f"project's repository ({scope}) only", permanent=True, reason="ImageNotAllowed"))
            return Outcome(requeue=30.0)
        target = self.images.target(scope, spec) if self.images is not None else None
        if target is not None:
            prepared = self._prepare_image(app, spec, status, target)
            if isinstance(prepared, Outcome):
                return prepared
            pull_auth = prepared
        revision = self._revision_for(scope, name, template_hash(template_of(spec)), status)
        try:
            files = self._files(scope, spec)
        except MissingReference as e:
            self._fail(app, status, EngineError(str(e), permanent=True, reason="ReferenceNotFound"))
            return Outcome(requeue=5.0)
        # containers are replaced when a secret's or config's content changes, too
        h = template_hash({"template": template_of(spec),
                           "files": {f.target: hashlib.sha256(f.data).hexdigest() for f in files}}) \
            if files else template_hash(template_of(spec))

        # rollout bookkeeping lives in the status, so a restarted server resumes it correctly
        if status.get("templateHash") != h:
            status["templateHash"] = h
            status["rolloutStartedAt"] = _iso(_now())
            status.pop("stalledReason", None)
        started = _parse(status.get("rolloutStartedAt")) or _now()
        deadline_passed = (_now() - started).total_seconds() > spec.strategy.progress_deadline_seconds
        hold = self._dependency_hold(scope, spec, status)
        desired = DesiredApp(key=key, spec=spec, template_hash=h, revision=revision, generation=app.generation,
                             files=files,
                             rollout_stalled=deadline_passed and status.get("phase") != "Ready",
                             hold_reason=hold, pull_auth=pull_auth,
                             network_encrypted=self._encrypted_network(tenant, project))
        def drain(leaving: list[ObservedContainer], observed: list[ObservedContainer]) -> None:
            # publish what runs now with the leaving replicas marked as draining, so that whoever
            # routes traffic stops sending it to them; then give in-flight requests a moment
            names = {c.name for c in leaving}
            cur = self.store.get("App", scope, name)
            st = dict(cur.status)
            st["containers"] = container_entries(observed, draining=names)
            st["readyReplicas"] = sum(1 for c in st["containers"] if c.get("ready"))
            self.store.update_status("App", scope, name, st, uid=cur.uid)
            time.sleep(self.drain_seconds)

        try:
            observed = self.engine.reconcile_app(desired, on_drain=drain)
        except EngineError as e:
            if not e.permanent:
                raise
            self._fail(app, status, e)
            return Outcome(requeue=15.0)
        self._write_status(app, status, desired, observed)
        for action in observed.actions:
            # what was done to a replica; why the App changed (deploy, scale by whom) the API records
            self.store.record_event(Event(scope, "App", name, "Normal", _REPLICA_REASONS.get(
                action.split(" ", 1)[0], "Replica"), action))
        for failure in observed.failures:
            self.store.record_event(Event(scope, "App", name, "Warning", "EngineError", failure))
        if observed.converged and not observed.actions:
            return Outcome()
        if observed.stalled_reason:
            return Outcome(requeue=5.0)
        return Outcome(requeue=0.01 if observed.actions else 1.0)

    def _prepare_image(self, app: StoredObject, spec: AppSpec, status: dict, target: ImageTarget
                       ) -> tuple[str, str] | Outcome:
        """For an image in Dockyard's registry: fill in the digest its tag points to (a spec write;
        the store makes it part of the revision being deployed), then preheat it on every node before
        any replica is touched. Returns the engine's pull credential, or what to do instead."""
        assert self.images is not None
        if not spec.image_digest and "@" not in spec.image:
            digest = self.images.digest(target)
            if digest is None:
                self._fail(app, status, EngineError(
                    f"image {spec.image}: repository {target.repository} has no tag {target.tag}; push it first",
                    permanent=True, reason="ImageNotFound"))
                return Outcome(requeue=10.0)
            try:
                self.store.replace("App", app.scope, app.name, {**app.spec, "imageDigest": digest},
                                   expected_rv=app.resource_version)
            except (Conflict, NotFound):
                pass  # changed or gone meanwhile: the change feed brings it back
            return Outcome(requeue=0.01)
        auth = self.images.pull_auth(target)
        ref = run_image(spec)
        if status.get("pulledImage") != ref:
            conds = _conditions(status)
            _set(conds, "Progressing", "True", "PullingImage",
                 f"pulling {ref} on {len(self.images.engines)} node(s) before the rollout")
            status.update(phase="Progressing", conditions=list(conds.values()))
            self.store.update_status("App", app.scope, app.name, status, uid=app.uid)
            failures = self.images.preheat(ref, auth)
            if failures:
                self._fail(app, status, EngineError(f"pulling {ref} failed: {'; '.join(failures)}", permanent=True,
                                                    reason="ImagePullFailed"))
                return Outcome(requeue=15.0)
            status["pulledImage"] = ref
        return auth

    def _files(self, scope: str, spec: AppSpec) -> list[MountedFile]:
        out = []
        for ref in spec.secrets:
            try:
                obj = self.store.get("Secret", scope, ref.name)
            except NotFound:
                raise MissingReference(f"secret '{ref.name}' not found in project {scope}") from None
            data = self.store.keyring.decrypt(obj.spec["ciphertext"])
            out.append(MountedFile(ref.name, ref.target or f"/run/secrets/{ref.name}", data, True))
        for ref in spec.configs:
            try:
                obj = self.store.get("Config", scope, ref.name)
            except NotFound:
                raise MissingReference(f"config '{ref.name}' not found in project {scope}") from None
            out.append(MountedFile(ref.name, ref.target or f"/run/configs/{ref.name}",
                                   obj.spec.get("data", "").encode(), False))
        return out

    def _revision_for(self, scope: str, name: str, h: str, status: dict) -> int:
        for rev in reversed(self.store.revisions(scope, name)):
            if rev.template_hash == h:
                return rev.revision
        return int(status.get("revision") or 0)

    def _encrypted_network(self, tenant: str, project: str) -> bool:
        try:
            return network_encrypted(self.store.get("Project", tenant, project).spec)
        except NotFound:
            return False

    def _dependency_hold(self, scope: str, spec: AppSpec, status: dict) -> str | None:
        if not spec.depends_on or status.get("replicas"):
            return None  # ordering matters for the first start only
        for dep in spec.depends_on:
            try:
                other = self.store.get("App", scope, dep)
            except NotFound:
                return f"waiting for app {dep}, which does not exist"
            if not other.status.get("readyReplicas") and other.spec.get("replicas", 1) > 0:
                return f"waiting for app {dep} to have a ready replica"
        return None

    def _fail(self, app: StoredObject, status: dict, e: EngineError) -> None:
        status.update(phase="Failed", observedGeneration=app.generation)
        conds = _conditions(status)
        _set(conds, "Ready", "False", e.reason, str(e))
        _set(conds, "Progressing", "False", e.reason, str(e))
        status["conditions"] = list(conds.values())
        if self.store.update_status("App", app.scope, app.name, status, uid=app.uid):
            if app.status.get("conditions") != status["conditions"]:
                self.store.record_event(Event(app.scope, "App", app.name, "Warning", e.reason, str(e)))

    def _write_status(self, app: StoredObject, status: dict, desired: DesiredApp, obs: ObservedApp) -> None:
        spec = desired.spec
        prior = app.status or {}
        # this template was rolled out completely before: fewer ready replicas now means some were lost
        # (a node or a container went away), not a rollout or a scale still under way
        was_settled = (prior.get("phase") in ("Ready", "Degraded") and prior.get("observedGeneration") == app.generation
                       and prior.get("revision") == desired.revision)
        surge, unavailable = spec.strategy.resolve(spec.replicas)
        status["observedGeneration"] = app.generation
        status["revision"] = desired.revision
        status["replicas"] = len(obs.containers)
        status["readyReplicas"] = obs.ready
        status["updatedReplicas"] = obs.updated
        status["availableReplicas"] = obs.ready
        conds = _conditions(status)
        before = {k: (v["status"], v["reason"]) for k, v in conds.items()}
        available = obs.ready >= spec.replicas - unavailable
        _set(conds, "Available", "True" if available else "False",
             "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
             f"{obs.ready} of {spec.replicas} replicas ready")
        if obs.converged:
            phase = "Ready"
            _set(conds, "Progressing", "True", "RolloutComplete", f"revision {desired.revision} is rolled out")
            _set(conds, "Ready", "True", "AllReplicasReady", f"{obs.updated_ready}/{spec.replicas} replicas ready")
            status.pop("stalledReason", None)
        elif obs.stalled_reason:
            phase = "Stalled"
            reason = stalled_reason(obs.stalled_reason)
            _set(conds, "Progressing", "False", reason, obs.stalled_reason)
            _set(conds, "Ready", "False", reason, obs.stalled_reason)
            status["stalledReason"] = obs.stalled_reason
        else:
            failing = [c for c in obs.containers if c.failing]
            if desired.hold_reason:
                phase, reason, msg = "Pending", "WaitingForDependencies", desired.hold_reason
            elif failing:
                c = failing[0]
                phase, reason = "Degraded", "ReplicaFailing"
                msg = f"replica {c.slot} is {c.health or c.state}" + (
                    f" (exit code {c.exit_code})" if c.exit_code else "") + (" (OOM killed)" if c.oom_killed else "")
            elif was_settled and not obs.old and obs.ready < spec.replicas:
                phase, reason = "Degraded", "ReplicasUnavailable"
                msg = f"{obs.ready} of {spec.replicas} replicas ready: replacing lost replicas"
            elif obs.old:
                phase, reason = "Progressing", "RollingUpdate"
                msg = f"{obs.updated_ready}/{spec.replicas} replicas of revision {desired.revision} ready, {obs.old} old"
            else:
                phase, reason = "Progressing", "ScalingReplicas"
                msg = f"{obs.updated_ready}/{spec.replicas} replicas ready"
            if obs.failures:
                msg += "; " + obs.failures[0]
            _set(conds, "Progressing", "True", reason, msg)
            _set(conds, "Ready", "False", reason, msg)
        status["phase"] = phase
        status["conditions"] = list(conds.values())
        status["containers"] = container_entries(obs.containers)
        self.store.update_status("App", app.scope, app.name, status, uid=app.uid)
        after = {k: (v["status"], v["reason"]) for k, v in conds.items()}
        if before.get("Ready") != after.get("Ready") and phase in ("Stalled", "Ready", "Degraded"):
            self.store.record_event(Event(app.scope, "App", app.name, "Normal" if phase == "Ready" else "Warning",
                                          conds["Ready"]["reason"], conds["Ready"]["message"]))


def stalled_reason(message: str) -> str:
    """The condition reason of a stalled rollout: the engine rolled it back itself (a Swarm update's
    failure action), its deadline passed, or a new replica failed."""
    if message.startswith("rolled back"):
        return "RolledBack"
    return "ProgressDeadlineExceeded" if "deadline" in message else "NewReplicaFailed"


def container_entries(observed: list[ObservedContainer], draining: set[str] = frozenset()) -> list[dict]:
    """Containers as the App's status shows them; draining ones are reported not ready."""
    out = []
    for c in sorted(observed, key=lambda c: (c.revision or 0, c.slot)):
        leaving = c.name in draining
        entry = {"name": c.name, "id": c.id[:12], "slot": c.slot, "revision": c.revision,
                 "state": "draining" if leaving else c.state, "health": c.health,
                 "ready": c.ready and not leaving, "restarts": c.restarts, "ip": c.ip, "startedAt": c.started_at,
                 "exitCode": c.exit_code, "oomKilled": c.oom_killed or None}
        out.append({k: v for k, v in entry.items() if v is not None})
    return out


def _conditions(status: dict) -> dict[str, dict]:
    return {c["type"]: dict(c) for c in status.get("conditions") or []}


def _set(conds: dict[str, dict], type_: str, value: str, reason: str, message: str) -> None:
    cur = conds.get(type_)
    ts = cur.get("lastTransitionTime") if cur and cur.get("status") == value else _iso(_now())
    conds[type_] = {"type": type_, "status": value, "reason": reason, "message": message, "lastTransitionTime": ts}
