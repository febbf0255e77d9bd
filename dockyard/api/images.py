"""Images in Dockyard's registry: browse repositories and tags, delete a tag, preheat an image on
the engine, the project's registry usage and retention, garbage collection, and the receiver of
the registry's push/delete notifications (`POST /registry/events`, outside /api/v1: the registry
authenticates with the shared notification secret, not a user token)."""

from __future__ import annotations

import hmac
from collections import defaultdict
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from dockyard.api.authz import AuthzDep
from dockyard.api.deps import StoreDep
from dockyard.api.problems import Problem
from dockyard.model.meta import Schema
from dockyard.model.project import ProjectSpec
from dockyard.registry import autodeploy, untagged
from dockyard.registry.client import RegistryClient, RegistryError
from dockyard.registry.events import EventReceiver, MalformedEnvelope, parse_envelope, record_deleted
from dockyard.registry.gc import GarbageCollector, GcBusy
from dockyard.registry.images import ImageRecords, TagRecord
from dockyard.registry.maintenance import apply_retention
from dockyard.registry.quota import StoreQuotaPolicy
from dockyard.registry.service import RegistryService
from dockyard.registry.tokens import MAX_NAME, REPOSITORY
from dockyard.registry.untagged import DigestUser
from dockyard.store.repository import Store

router = APIRouter(tags=["images"])
events_router = APIRouter(tags=["images"])
_TAG = r"^[\w][\w.-]{0,127}$"


class ImagePreheater(Protocol):
    """Pulls an image onto the engine(s) of a cluster (the server passes the controllers' resolver)."""

    def preheat_tag(self, repository: str, tag: str, cluster: str | None) -> dict:
        """{"image", "digest", "nodes": [{"name", "pulled", "error"?}]}; LookupError names what is missing."""


@dataclass
class RegistryTools:
    """What these routes need, made by the server when it runs a registry (app.state.images)."""

    service: RegistryService
    client: RegistryClient
    receiver: EventReceiver
    gc: GarbageCollector
    preheater: ImagePreheater | None = None


def _tools(request: Request) -> RegistryTools:
    tools = getattr(request.app.state, "images", None)
    if tools is None:
        raise Problem(404, "this server runs no image registry (--registry-listen off and no --registry-url)")
    return tools


def _registry_call(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except RegistryError as e:
        raise Problem(502 if e.status == 0 or e.status >= 500 else 409, f"the registry: {e}") from None


# --- notifications ---------------------------------------------------------------------------

@events_router.post("/registry/events", operation_id="registryEvents", include_in_schema=False)
async def registry_events(request: Request) -> Response:
    tools = _tools(request)
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {tools.service.notify_secret}".encode()):
        raise Problem(401, "notifications need the registry's shared secret")
    body = await request.body()
    try:
        notes = parse_envelope(body)
    except MalformedEnvelope as e:
        raise Problem(400, f"body: {e}") from None
    await run_in_threadpool(tools.receiver.receive, notes)
    return Response(status_code=200)


# --- browse -----------------------------------------------------------------------------------

def _check(authz: Any, action: str, tenant: str, project: str) -> None:
    authz.require(action, tenant=tenant, project=project, missing=f"project '{tenant}/{project}' not found")


def _repository(authz: Any, action: str, tenant: str, project: str, name: str) -> str:
    """`TENANT/PROJECT/NAME` once the caller may take `action` and the name is in distribution's
    grammar: the registry client would send a '..' that HTTP folds into another project's path."""
    _check(authz, action, tenant, project)
    repo = f"{tenant}/{project}/{name}"
    if len(repo) > MAX_NAME or not REPOSITORY.match(repo):
        raise Problem(400, f"path parameter name: '{name[:200]}' is not a repository name (lower-case letters and "
                           "digits separated by '.', '_', '-' or '/')")
    return repo


def _tag_rows(tools: RegistryTools, repository: str, tags: list[str], known: dict[str, TagRecord]) -> list[dict]:
    """Tags with digest, size, pushed-at/-by; a tag pushed while Dockyard did not listen is read
    from the registry (no pushed-at/-by then)."""
    rows = []
    for tag in tags:
        rec = known.get(tag)
        if rec is not None:
            rows.append(rec.public())
            continue
        m = _registry_call(tools.client.manifest, repository, tag)
        if m is not None:
            rows.append({"tag": tag, "digest": m.digest, "size": m.size, "mediaType": m.media_type,
                         "pushedAt": None, "pushedBy": None})
    return rows


def _repository_rows(store: Store, tools: RegistryTools, tenant: str, project: str) -> list[dict]:
    prefix = f"{tenant}/{project}/"
    records = ImageRecords(store)
    by_repo: dict[str, dict[str, TagRecord]] = defaultdict(dict)
    for rec in records.project_tags(tenant, project):
        by_repo[rec.repository][rec.tag] = rec
    rows = []
    for repo in _registry_call(tools.client.repositories, prefix):
        tags = _registry_call(tools.client.tags, repo)
        if not tags:
            continue  # every tag deleted: the registry keeps listing the name
        tag_rows = _tag_rows(tools, repo, tags, by_repo.get(repo, {}))
        sizes = {r["digest"]: r["size"] for r in tag_rows}
        pushes = [r["pushedAt"] for r in tag_rows if r["pushedAt"]]
        rows.append({"name": repo[len(prefix):], "repository": repo, "tagCount": len(tags), "size": sum(sizes.values()),
                     "lastPush": max(pushes) if pushes else None,
                     "image": f"{tools.service.settings.host}/{repo}"})
    return rows


@router.get("/projects/{tenant}/{project}/images", operation_id="listImages",
            summary="The project's repositories: tag count, size (distinct manifests), last push")
def list_images(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str) -> dict:
    _check(authz, "images.pull", tenant, project)
    tools = _tools(request)
    return {"items": _repository_rows(store, tools, tenant, project)}


@router.get("/projects/{tenant}/{project}/images/{name:path}/tags", operation_id="listImageTags",
            summary="Tags of a repository: digest, size, pushed-at, pushed-by, the Apps that use it")
def list_tags(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str) -> dict:
    repo = _repository(authz, "images.pull", tenant, project, name)
    tools = _tools(request)
    tags = _registry_call(tools.client.tags, repo)
    if not tags:
        raise Problem(404, f"repository {repo} has no tags (or does not exist)")
    known = {r.tag: r for r in ImageRecords(store).tags(repo)}
    users = autodeploy.apps_by_image(store, tools.service.settings, f"{tenant}/{project}")
    rows = _tag_rows(tools, repo, tags, known)
    for r in rows:  # Apps naming the tag, and Apps running its digest (`repo@sha256:…`)
        r["apps"] = sorted(set(users.get((repo, r["tag"]), []) + users.get((repo, r["digest"]), [])))
    rows.sort(key=lambda r: (r["pushedAt"] or "", r["tag"]), reverse=True)
    return {"repository": repo, "image": f"{tools.service.settings.host}/{repo}", "items": rows}


@router.delete("/projects/{tenant}/{project}/images/{name:path}/tags/{tag}", operation_id="deleteImageTag",
               summary="Delete a tag: its manifest goes when no other tag points to it and no App needs it "
                       "(else 409 naming them; force=true deletes what Apps need)")
def delete_tag(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str, name: str,
               tag: Annotated[str, Path(pattern=_TAG)], force: bool = False) -> dict:
    """The registry deletes manifests, not tags (distribution 2.8 has no tag deletion): deleting a
    manifest that other tags share would delete those too, so that is refused, naming them. A tag
    an App of the project uses, or whose digest an App runs or has in its rollout history (what
    `rollout undo` restores), is refused too unless `force`: the restart or the undo would need
    an image that is gone."""
    repo = _repository(authz, "images.delete", tenant, project, name)
    tools = _tools(request)
    digest = _registry_call(tools.client.digest, repo, tag)
    if digest is None:
        raise Problem(404, f"{repo}:{tag} not found")
    others = [t for t in _registry_call(tools.client.tags, repo)
              if t != tag and _registry_call(tools.client.digest, repo, t) == digest]
    if others:
        raise Problem(409, f"{repo}:{tag} has the digest {digest} of tag(s) {', '.join(sorted(others))} too, and the "
                           "registry deletes manifests, not tags: delete those tags as well, or push another "
                           f"image to {tag} instead")
    needed = _needed_by(store, tools.service, tenant, project, repo, tag, digest)
    if needed and not force:
        raise Problem(409, f"{repo}:{tag} ({digest}) is {needed}: a restart or `rollout undo` would need it; "
                           "delete it anyway with force=true (CLI: --force)")
    _registry_call(tools.client.delete_manifest, repo, digest, authz.user.name)
    record_deleted(store, tools.service, repo, digest, authz.user.name)
    return {"repository": repo, "tag": tag, "digest": digest, "deleted": True}


def _needed_by(store: Store, service: RegistryService, tenant: str, project: str, repo: str, tag: str,
               digest: str) -> str:
    """Why the project's Apps need repo:tag ("in use by App web; in the rollout history of App
    api revision 2"), or "" when none does."""
    scope = f"{tenant}/{project}"
    by_image = autodeploy.apps_by_image(store, service.settings, scope)
    naming = [DigestUser(scope, a) for key in ((repo, tag), (repo, digest)) for a in by_image.get(key, [])]
    users = untagged.digest_users(store, scope).get(digest, [])
    return untagged.describe_users(list(dict.fromkeys(naming + users)), scope)


class PreheatRequest(Schema):
    tag: str = Field(default="latest", pattern=_TAG)
    cluster: str | None = Field(default=None, max_length=63)


@router.post("/projects/{tenant}/{project}/images/{name:path}/preheat", operation_id="preheatImage",
             summary="Pull the image onto every node of the cluster now (before Apps need it)")
def preheat(request: Request, authz: AuthzDep, tenant: str, project: str, name: str,
            body: PreheatRequest | None = None) -> dict:
    repo = _repository(authz, "images.push", tenant, project, name)
    tools = _tools(request)
    body = body or PreheatRequest()
    if tools.preheater is None:
        raise Problem(404, "this server cannot preheat: it has no engine access for images")
    try:
        return tools.preheater.preheat_tag(repo, body.tag, body.cluster)
    except LookupError as e:
        raise Problem(404, str(e.args[0] if e.args else e)) from None
    except RegistryError as e:
        raise Problem(502, f"the registry: {e}") from None


# --- usage, retention, gc ---------------------------------------------------------------------

@router.get("/projects/{tenant}/{project}/registry", operation_id="getProjectRegistry",
            summary="The project's registry: storage used against spec.quota.storage, retention rules")
def project_registry(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str) -> dict:
    _check(authz, "images.pull", tenant, project)
    tools = _tools(request)
    spec = ProjectSpec.model_validate(store.get("Project", tenant, project).spec)
    usage = tools.service.usage
    used = usage.project_bytes(tenant, project) if usage is not None else None
    limit, tenant_limit = StoreQuotaPolicy(store, usage).limits(tenant, project) if usage is not None else (None, None)
    return {"host": tools.service.settings.host, "prefix": f"{tools.service.settings.host}/{tenant}/{project}/",
            "usage": {"bytes": used, "quotaBytes": limit, "tenantQuotaBytes": tenant_limit,
                      "quota": spec.quota.storage},
            "retention": [r.model_dump(by_alias=True, exclude_none=True) for r in spec.registry.retention]}


@router.post("/projects/{tenant}/{project}/registry/retention", operation_id="applyRetention",
             summary="Apply the project's retention rules now (dryRun=1: only show what would go)")
def retention_now(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str,
                  dry_run: Annotated[bool, Query(alias="dryRun")] = False) -> dict:
    _check(authz, "images.pull" if dry_run else "images.delete", tenant, project)
    tools = _tools(request)
    try:
        return apply_retention(store, tools.service, tools.client, tenant, project, dry_run=dry_run,
                               actor=authz.user.name)
    except RegistryError as e:
        raise Problem(502, f"the registry: {e}") from None


@router.post("/registry/gc", operation_id="registryGc",
             summary="Garbage-collect unreferenced blobs now (admin; pulls go on, pushes wait)")
def registry_gc(request: Request, authz: AuthzDep) -> dict:
    authz.require("registry.gc")
    tools = _tools(request)
    if not tools.service.runs_registry:
        raise Problem(409, "garbage collection needs Dockyard's own registry; an external one collects its own")
    try:
        return tools.gc.run().public()
    except GcBusy as e:
        raise Problem(409, str(e)) from None
