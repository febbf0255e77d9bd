"""Build routes beyond the declarative kinds: a build's log (followed live), cancel, starting a
Build from a BuildConfig, and the git servers' push webhook (`/hooks/builds/...`, authenticated by
the BuildConfig's webhook secret instead of a bearer token)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from dockyard.api.authz import AuthzDep
from dockyard.api.deps import StoreDep
from dockyard.api.problems import Problem
from dockyard.builds import logfile, starts, webhooks
from dockyard.model.build import CANCEL_ANNOTATION, FINISHED, BuildConfigSpec
from dockyard.store.errors import Conflict, NotFound
from dockyard.store.repository import Store, iso_time, now

router = APIRouter(prefix="/projects/{tenant}/{project}", tags=["builds"])
hooks = APIRouter(tags=["builds"])


def _logs_dir(request: Request) -> Path:
    d = getattr(request.app.state, "build_data_dir", None)
    if d is None:
        raise Problem(503, "builds are not available on this server")
    return Path(d)


def _phase(store: Store, scope: str, name: str, uid: str) -> str | None:
    """The Build's phase (Pending before the runner wrote any status); None when it is gone."""
    try:
        b = store.get("Build", scope, name)
    except NotFound:
        return None
    return ((b.status or {}).get("phase") or "Pending") if b.uid == uid else None


@router.get("/builds/{name}/logs", operation_id="getBuildLogs", response_class=StreamingResponse,
            summary="A build's log; follow=true streams it until the build ends",
            responses={200: {"content": {"text/plain": {}}}})
def build_logs(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str,
               follow: bool = False) -> StreamingResponse:
    scope = f"{tenant}/{project}"
    authz.require("builds.read", tenant=tenant, project=project, missing=f"build '{scope}/{name}' not found")
    build = store.get("Build", scope, name)
    path = logfile.log_path(_logs_dir(request), build.uid)
    stop = threading.Event()

    def finished() -> bool:
        return _phase(store, scope, name, build.uid) in (FINISHED | {None})

    chunks = logfile.read_log(path, follow=follow, finished=finished, stop=stop)
    return StreamingResponse(_off_thread(chunks, stop), media_type="text/plain; charset=utf-8")


async def _off_thread(chunks: Iterator[bytes], stop: threading.Event) -> AsyncIterator[bytes]:
    """Iterate a blocking iterator in worker threads; a client that leaves ends it through `stop`
    (the wait for the next chunk is abandoned, not waited out)."""
    try:
        while (chunk := await anyio.to_thread.run_sync(next, chunks, None, abandon_on_cancel=True)) is not None:
            yield chunk
    finally:
        stop.set()


@router.post("/builds/{name}/cancel", operation_id="cancelBuild", summary="Cancel a pending or running build")
def cancel_build(store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str) -> dict:
    scope = f"{tenant}/{project}"
    authz.require("builds.write", tenant=tenant, project=project, missing=f"build '{scope}/{name}' not found")
    b = store.get("Build", scope, name)
    phase = (b.status or {}).get("phase") or "Pending"
    if phase in FINISHED:
        raise Conflict(f"build '{scope}/{name}' has already ended ({phase})")
    if CANCEL_ANNOTATION not in b.annotations:
        b = store.replace("Build", scope, name, b.spec, annotations={**b.annotations,
                                                                     CANCEL_ANNOTATION: iso_time(now())})
    return b.manifest()


@router.post("/buildconfigs/{name}/start", operation_id="startBuild", status_code=201,
             summary="Start a Build from a BuildConfig; returns the new Build")
def start_build(store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str) -> dict:
    scope = f"{tenant}/{project}"
    authz.require("builds.write", tenant=tenant, project=project, missing=f"buildconfig '{scope}/{name}' not found")
    config = store.get("BuildConfig", scope, name)
    return starts.start_from_config(store, config, requester=authz.user.name,
                                    cause=f"started by {authz.user.name}").manifest()


# --- webhooks ------------------------------------------------------------------------------

UNKNOWN = "no build config with a webhook answers at this address, or the signature is wrong"


def _webhook_secret(store: Store, scope: str, name: str) -> tuple[Any, bytes]:
    """The BuildConfig and its webhook secret; (None, a random secret) when there is none, so that
    the caller, not authenticated yet, is answered exactly as for a wrong signature and cannot
    learn which projects and configs exist."""
    try:
        config = store.get("BuildConfig", scope, name)
        trigger = BuildConfigSpec.model_validate(config.spec).triggers.webhook
        if trigger is None or store.keyring is None:
            raise NotFound(name)
        secret = store.get("Secret", scope, trigger.secret)
        value = store.keyring.decrypt(secret.spec["ciphertext"])
    except (NotFound, KeyError, ValueError):
        value = b""
    if not value:
        return None, secrets.token_bytes(32)
    return config, value


def _hook(store: Store, tenant: str, project: str, name: str, headers: Any, body: bytes) -> JSONResponse:
    scope = f"{tenant}/{project}"
    config, secret = _webhook_secret(store, scope, name)
    try:
        source = webhooks.authenticate(headers, body, secret)
    except webhooks.Unauthenticated as e:
        raise Problem(401, f"{UNKNOWN} ({e})") from None
    if config is None:  # a random secret cannot be matched; never go on without a config
        raise Problem(401, UNKNOWN)
    event = webhooks.other_event(headers)
    if event is not None:
        return JSONResponse({"ignored": event}, status_code=200)
    try:
        push = webhooks.parse_push(source, body)
    except webhooks.Malformed as e:
        raise Problem(400, f"not a push event: {e}") from None
    ref = BuildConfigSpec.model_validate(config.spec).source.ref
    if push.deleted:
        return JSONResponse({"ignored": f"{push.ref} was deleted"}, status_code=200)
    if push.branch != ref.removeprefix("refs/heads/"):
        return JSONResponse({"ignored": f"{push.ref} is not the branch this config builds ({ref})"}, status_code=200)
    running = starts.running_build(store, config, push.after)
    if running is not None:
        return JSONResponse({"build": running.name, "commit": push.after,
                             "ignored": f"commit {push.after[:12]} is already being built"}, status_code=200)
    waiting = starts.queued_build(store, config)
    if waiting is not None:
        return JSONResponse({"build": waiting.name, "commit": push.after, "queued": "joined the waiting build"},
                            status_code=202)
    build = starts.start_from_config(store, config, requester=None,
                                     cause=f"{source} push of {push.after[:12]} to {push.ref}")
    return JSONResponse({"build": build.name, "commit": push.after}, status_code=202)


@hooks.post("/hooks/builds/{tenant}/{project}/{name}", operation_id="buildWebhook",
            summary="Git push webhook (Gitea/Gogs, GitHub or GitLab format): starts a Build of the BuildConfig",
            responses={202: {"description": "a Build was started"}, 200: {"description": "ignored (other branch)"},
                       400: {"description": "not a push event"}, 401: {"description": "wrong or no signature"}})
async def build_webhook(request: Request, tenant: str, project: str, name: str) -> JSONResponse:
    body = await request.body()
    return await run_in_threadpool(_hook, request.app.state.store, tenant, project, name, request.headers, body)
