"""The build runner: a queue of Pending Builds, run on the server holding the controllers' lease,
at most `$DOCKYARD_BUILD_CONCURRENCY` (default 2) at a time, oldest first.

One build: fetch the source (`builds.source`) into `<data>/builds/work/<uid>`, build it on the
project's engine with the project's default limits on the project's network, push it to
`<registry>/<tenant>/<project>/<image>` tagged with the commit SHA and the ref (with an ephemeral,
repository-scoped push credential), roll it out to `spec.deployTo` (`builds.deploy`). Phases
Pending → Running → Succeeded | Failed | Cancelled; the log goes to `<data>/builds/logs/<uid>.log`.

Cancel is a request in the store (the annotation `CANCEL_ANNOTATION`, set by the API), so that it
reaches the runner of whichever server leads. Restarts: a Build found Running that this process
does not run was cut off by a stop or a crash, and is marked Failed; the work directory is
emptied on every start (the engine removes a build's containers itself when its client goes).
History: each BuildConfig keeps its last `historyLimit` finished Builds (default 10)."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from dockyard.admission.requester import REQUESTER_ANNOTATION
from dockyard.api.objects import PLATFORM_DEFAULTS
from dockyard.builds import logfile, starts
from dockyard.builds.deploy import DeployError, deploy
from dockyard.builds.dockerfile import check as check_dockerfile
from dockyard.builds.source import Limits, SourceError, fetch
from dockyard.engines.base import EngineDriver, EngineError, ImageBuild
from dockyard.model.build import BUILD_FIELDS, CANCEL_ANNOTATION, FINISHED, BuildConfigSpec, BuildSpec, ref_tag
from dockyard.model.project import ProjectSpec
from dockyard.model.quantity import parse_cpu, parse_memory
from dockyard.store.errors import NotFound
from dockyard.store.repository import Store, StoredObject, iso_time, now

log = logging.getLogger(__name__)

PUSH_CREDENTIAL_TTL = 900.0   # seconds: a push outlasting it fails (the token is asked for once per blob)
PRUNE_EVERY = 60.0
MAX_DOCKERFILE = 1024 * 1024


class PushRegistry(Protocol):
    """What the runner needs of `dockyard.registry.service.RegistryService`."""

    settings: Any  # .host: the registry address in image references

    def credential(self, tenant: str, project: str, actions: tuple[str, ...], ttl: float = 3600,
                   repository: str | None = None, subject: str | None = None) -> tuple[str, str]: ...


def concurrency_from_env() -> int:
    raw = os.environ.get("DOCKYARD_BUILD_CONCURRENCY", "2")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"DOCKYARD_BUILD_CONCURRENCY must be a whole number, not '{raw}'") from None
    if not 1 <= n <= 64:
        raise ValueError("DOCKYARD_BUILD_CONCURRENCY must be between 1 and 64")
    return n


class Cancelled(Exception):
    pass


@dataclass
class Job:
    build: StoredObject
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    why: str = "cancelled"   # the message a cancelled build ends with


class BuildRunner:
    def __init__(self, store: Store, engine: EngineDriver, data_dir: Path, *, leading: Callable[[], bool],
                 registry: PushRegistry | None, concurrency: int | None = None,
                 limits: Limits | None = None, build_timeout: float = 3600.0) -> None:
        self.store = store
        self.engine = engine
        self.data_dir = data_dir
        self.work_dir = data_dir / "builds" / "work"
        self.leading = leading
        self.registry = registry
        self.concurrency = concurrency or concurrency_from_env()
        self.limits = limits or Limits()
        self.build_timeout = build_timeout
        self._jobs: dict[str, Job] = {}   # by uid
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._recovered = False
        self._pruned_at = 0.0
        self._finished = False  # a build ended since the last prune

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="build-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Cancel what runs (each build ends Cancelled, unless the process dies first: then the
        next leader marks it Failed) and wait a little for the builds to clean up."""
        self._stop.set()
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.why = "cancelled: the server stopped"
            job.cancel.set()
        deadline = time.monotonic() + 5  # a push cannot be cut short; the next leader marks it Failed
        for job in jobs:
            if job.thread:
                job.thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._thread:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            seen = self.store.last_local_rv
            try:
                if self.leading():
                    if not self._recovered:
                        self._recover()
                        self._recovered = True
                    self._tick()
                else:
                    self._recovered = False
                    self._cancel_all()  # another server leads now: it will find these and mark them
            except Exception:  # noqa: BLE001 — a store hiccup must not end the runner
                log.exception("build runner round failed")
                self._stop.wait(1.0)
            self.store.wait_for_change(seen, timeout=1.0)

    def _cancel_all(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.why = "cancelled: this server lost the lead to another"
                job.cancel.set()

    # --- rounds ---------------------------------------------------------------------------

    def _recover(self) -> None:
        """After a start or a lease take-over: builds left Running by a server that stopped are
        Failed (their output may be half pushed), and no work directory is left behind."""
        with self._lock:
            mine = set(self._jobs)
        for b in self.store.list("Build")[0]:
            st = b.status or {}
            if st.get("phase") == "Running" and b.uid not in mine:
                ended = now()
                began = datetime.fromisoformat(st["startedAt"]) if st.get("startedAt") else ended
                self._finish_status(b, {**st, "phase": "Failed", "finishedAt": iso_time(ended),
                                        "durationSeconds": round((ended - began).total_seconds(), 3),
                                        "message": "interrupted: the server stopped during the build"})
                note = logfile.BuildLogWriter(logfile.log_path(self.data_dir, b.uid))
                note("interrupted: the server stopped during the build")
                note.close()
        if self.work_dir.is_dir():
            for entry in self.work_dir.iterdir():
                if entry.name.split(".")[0] not in mine:
                    shutil.rmtree(entry, ignore_errors=True)

    def _tick(self) -> None:
        builds = self.store.list("Build")[0]
        with self._lock:
            running = dict(self._jobs)
        pending: list[StoredObject] = []
        for b in builds:
            phase = (b.status or {}).get("phase") or "Pending"
            if CANCEL_ANNOTATION in b.annotations and phase not in FINISHED:
                if b.uid in running:
                    running[b.uid].cancel.set()
                elif phase == "Pending":
                    self._finish_status(b, {**(b.status or {}), "phase": "Cancelled", "queuePosition": None,
                                            "message": "cancelled before it started"})
                continue
            if phase == "Pending" and b.uid not in running:
                pending.append(b)
        pending.sort(key=lambda b: (b.created_at, b.scope, b.name))
        free = self.concurrency - len(running)
        for b in pending[:max(free, 0)]:
            self._launch(b)
        for pos, b in enumerate(pending[max(free, 0):], start=1):
            st = {**(b.status or {}), "phase": "Pending", "queuePosition": pos}
            self.store.update_status("Build", b.scope, b.name, st, uid=b.uid)
        if self._finished or time.monotonic() - self._pruned_at > PRUNE_EVERY:
            self._prune()

    def _prune(self) -> None:
        self._pruned_at = time.monotonic()
        self._finished = False
        builds = self.store.list("Build")[0]  # with the statuses written since this round's list
        limits: dict[tuple[str, str], int] = {}
        for c in self.store.list("BuildConfig")[0]:
            try:
                limits[(c.scope, c.name)] = BuildConfigSpec.model_validate(c.spec).history_limit
            except ValidationError:
                continue
        gone = {b.uid for b in starts.prune_history(self.store, builds, limits)}
        logfile.remove_logs_except(self.data_dir, {b.uid for b in builds if b.uid not in gone})

    def _launch(self, b: StoredObject) -> None:
        job = Job(b)
        job.thread = threading.Thread(target=self._run, args=(job,), name=f"build-{b.name}", daemon=True)
        with self._lock:
            self._jobs[b.uid] = job
        job.thread.start()

    # --- one build ------------------------------------------------------------------------

    def _finish_status(self, b: StoredObject, st: dict) -> None:
        st = {k: v for k, v in st.items() if v is not None}
        st.pop("queuePosition", None)
        self.store.update_status("Build", b.scope, b.name, st, uid=b.uid)

    def _run(self, job: Job) -> None:
        b = job.build
        write = logfile.BuildLogWriter(logfile.log_path(self.data_dir, b.uid))
        started = now()
        t0 = time.monotonic()
        status: dict[str, Any] = {k: v for k, v in (b.status or {}).items() if k in ("buildConfig",)}
        status.update(phase="Running", startedAt=iso_time(started))
        self.store.update_status("Build", b.scope, b.name, status, uid=b.uid)
        timer = threading.Timer(self.build_timeout, job.cancel.set)
        timer.daemon = True
        timer.start()
        work = self.work_dir / b.uid
        try:
            self._build(job, work, status, write)
            status.update(phase="Succeeded", message=None)
            write("build succeeded")
        except Cancelled as e:
            timed_out = time.monotonic() - t0 >= self.build_timeout
            why = f"took longer than {self.build_timeout:.0f} s" if timed_out else job.why
            if e.args:  # after the push: say which tags moved (and why, when it was not a user's cancel)
                why = e.args[0] if why == "cancelled" else f"{why}; {e.args[0]}"
            status.update(phase="Failed" if timed_out else "Cancelled", message=why)
            write(status["message"])
        except (SourceError, EngineError, DeployError, ValueError) as e:
            status.update(phase="Failed", message=str(e)[:2000])
            write(f"build failed: {e}")
        except Exception as e:  # noqa: BLE001 — whatever went wrong, the Build must not stay Running
            log.exception("build %s/%s failed", b.scope, b.name)
            status.update(phase="Failed", message=f"internal error: {type(e).__name__}: {e}"[:2000])
            write(status["message"])
        finally:
            timer.cancel()
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(work.parent / f"{work.name}.home", ignore_errors=True)
            finished = now()
            status.update(finishedAt=iso_time(finished), durationSeconds=round(time.monotonic() - t0, 3))
            try:
                self._finish_status(b, status)
            except Exception:  # noqa: BLE001
                log.exception("could not record the end of build %s/%s", b.scope, b.name)
            write.close()
            with self._lock:
                self._jobs.pop(b.uid, None)
            self._finished = True
            log.info("build %s/%s: %s in %.1f s", b.scope, b.name, status["phase"], status["durationSeconds"])

    def _check(self, job: Job) -> None:
        if job.cancel.is_set():
            raise Cancelled()

    def _build(self, job: Job, work: Path, status: dict, write: Callable[[str], None]) -> None:
        b = job.build
        spec = BuildSpec.model_validate({k: v for k, v in b.spec.items() if k in BUILD_FIELDS})
        tenant, _, project = b.scope.partition("/")
        registry = self.registry
        if registry is None or not getattr(registry.settings, "host", None):
            raise ValueError("this server runs without a registry (--registry-listen off): there is nowhere to push")
        repository = f"{tenant}/{project}/{spec.image}"
        target = f"{registry.settings.host}/{repository}"
        try:
            commit = fetch(spec.source.git, spec.source.ref, work, annotations=b.annotations, limits=self.limits,
                           stop=job.cancel, log=write)
        except SourceError as e:
            self._check(job)
            raise e from None
        status["commit"] = commit  # recorded now: a webhook for this commit joins this build
        self.store.update_status("Build", b.scope, b.name, status, uid=b.uid)
        self._check(job)
        context, dockerfile = _context_of(work, spec.source.context_dir, spec.dockerfile)
        bases = _check_base_images(context / dockerfile, spec.build_args, b.scope, registry.settings)
        self._ensure_base_images(bases, registry, tenant, project, write)
        self._check(job)
        tags = list(dict.fromkeys([commit, ref_tag(spec.source.ref)]))
        memory, cpu = self._limits_of(tenant, project)
        build = ImageBuild(context=str(context), dockerfile=dockerfile, tags=tuple(f"{target}:{t}" for t in tags),
                           build_args=spec.build_args, memory=memory, cpu=cpu,
                           network=self.engine.ensure_project(tenant, project),
                           # not dockyard.instance/tenant/project: containers of the image would inherit
                           # those and look like this installation's own to the orphan collector
                           labels={"dockyard.build.instance": self.engine.instance, "dockyard.build.project": b.scope,
                                   "dockyard.build.name": b.name, "dockyard.build.uid": b.uid,
                                   "dockyard.build.commit": commit})
        write(f"building {target} on {self.engine.url} (memory {memory // (1024 * 1024)} MiB, cpu {cpu:g})")
        try:
            for out in self.engine.build_image(build, job.cancel):
                if out.line:
                    write(out.line)
        except EngineError:
            self._check(job)
            raise
        self._check(job)
        requester = b.annotations.get(REQUESTER_ANNOTATION, "")
        user, password = registry.credential(tenant, project, ("pull", "push"), ttl=PUSH_CREDENTIAL_TTL,
                                             repository=repository,
                                             subject=f"build {b.name}" + (f" (by {requester})" if requester else ""))
        # not cancellable: a push cut off between tags would leave some tags moved and the Build
        # without the digest they now name; a cancel that comes meanwhile takes effect after it
        digest = ""
        for tag in tags:
            write(f"pushing {target}:{tag}")
            digest = self.engine.push_image(f"{target}:{tag}", (user, password))
        status.update(tags=tags, imageDigest=digest, image=f"{target}@{digest}")
        write(f"pushed {target}@{digest}")
        self.store.update_status("Build", b.scope, b.name, status, uid=b.uid)
        if job.cancel.is_set():
            moved = ", ".join(f"{target}:{t}" for t in tags)
            raise Cancelled(f"cancelled after the push: {moved} now point to {digest}; not deployed")
        if spec.deploy_to:
            gen = deploy(self.store, scope=b.scope, app=spec.deploy_to, target=target, tags=tags, digest=digest,
                         build=b.name, requester=requester)
            write(f"deployed to app {spec.deploy_to} (generation {gen})")

    def _ensure_base_images(self, images: list[str], registry: PushRegistry, tenant: str, project: str,
                            write: Callable[[str], None]) -> None:
        """Every image the Dockerfile builds or copies from must be on the engine before the build:
        with `pull=0` the classic builder still pulls a missing FROM image (from Docker Hub for a
        bare name). Images of the project's repository in Dockyard's registry are pulled here, with
        an ephemeral pull credential; anything else missing is refused."""
        for image in dict.fromkeys(images):
            if image.lower() == "scratch" or self.engine.has_image(image):
                continue
            if registry.settings.image_project(image) is not None:  # the project's own (checked before)
                write(f"pulling {image} from Dockyard's registry")
                self.engine.pull_image(image, registry.credential(tenant, project, ("pull",), ttl=PUSH_CREDENTIAL_TTL))
                continue
            raise ValueError(f"base image {image} is not on the engine; builds never pull (load or build it, "
                             "or push it to Dockyard's registry and name it with the registry host)")

    def _limits_of(self, tenant: str, project: str) -> tuple[int, float]:
        """The project's default container limits (the platform's when it sets none)."""
        try:
            defaults = ProjectSpec.model_validate(self.store.get("Project", tenant, project).spec).defaults
        except NotFound:
            raise ValueError(f"project {tenant}/{project} is gone") from None
        return (parse_memory(defaults.memory or PLATFORM_DEFAULTS.memory),
                parse_cpu(defaults.cpu or PLATFORM_DEFAULTS.cpu))


def _check_base_images(path: Path, build_args: dict[str, str], scope: str, settings: Any) -> list[str]:
    """Refuse a Dockerfile that builds from, or copies from, an image the project may not use
    (`builds.dockerfile`): the shared engine would take it from its cache unchecked. Returns the
    images it names (FROM and COPY/ADD --from, stages left out)."""
    if path.stat().st_size > MAX_DOCKERFILE:
        raise ValueError(f"spec.dockerfile: larger than {MAX_DOCKERFILE // 1024} KiB")

    def owner_of(ref: str) -> str | None:
        found = settings.image_project(ref)
        return f"{found[0]}/{found[1]}" if found else None

    return check_dockerfile(path.read_text(errors="replace"), build_args, scope, owner_of)


def _context_of(checkout: Path, context_dir: str, dockerfile: str) -> tuple[Path, str]:
    """The context directory and the Dockerfile in it, refusing symbolic links that lead out of
    the checkout (the model refused '..' already; a link in the repository could still)."""
    root = checkout.resolve()
    context = (checkout / context_dir).resolve()
    if not context.is_relative_to(root):
        raise ValueError(f"spec.source.contextDir '{context_dir}' leads out of the repository")
    if not context.is_dir():
        raise ValueError(f"spec.source.contextDir '{context_dir}' is not a directory in the repository")
    df = (context / dockerfile).resolve()
    if not df.is_relative_to(context):
        raise ValueError(f"spec.dockerfile '{dockerfile}' leads out of the build context")
    if not df.is_file():
        raise ValueError(f"spec.dockerfile: there is no file '{dockerfile}' in '{context_dir}'")
    # the engine driver reads .dockerignore on this server: a link to the data dir (or to a huge
    # blob of the registry's storage) must not be followed out of the context
    ignore = context / ".dockerignore"
    if ignore.is_symlink() and not ignore.resolve().is_relative_to(context):
        raise ValueError(f"'.dockerignore' in '{context_dir}' is a symbolic link that leads out of the build context")
    return context, str(df.relative_to(context))
