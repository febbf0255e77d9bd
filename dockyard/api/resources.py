"""Routes for the declarative kinds (Tenant, Project, App): create, get, list (paginated, label
selectors, watch), replace, merge-patch and delete, with the same shape for every kind."""


from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from dockyard.api import cluster_rules, objects
from dockyard.api.authz import Authorizer, AuthzDep
from dockyard.api.deps import StoreDep
from dockyard.api.problems import Problem
from dockyard.api.watch import watch_response
from dockyard.model.kinds import KINDS
from dockyard.store.repository import Store
from dockyard.store.selectors import parse_selector

router = APIRouter()

DryRun = Annotated[bool, Query(alias="dryRun", description="validate and admit, store nothing")]
Watch = Annotated[bool, Query(description="stream changes as server-sent events")]
SinceRV = Annotated[str | None, Query(alias="resourceVersion", pattern=r"^\d{1,18}$",  # fits 64 bits
                                      description="watch changes after this resourceVersion")]
Selector = Annotated[str | None, Query(alias="labelSelector", max_length=1000,
                                       description="e.g. app=web,tier!=db,env in (a,b)")]
Limit = Annotated[int | None, Query(ge=1, le=objects.MAX_PAGE)]
Continue = Annotated[str | None, Query(alias="continue", max_length=2000)]
NameFilter = Annotated[str | None, Query(alias="name", max_length=63, description="names containing this")]


def _body_schema(kind: str) -> dict[str, Any]:
    # the kind's sub-schemas are published under components/schemas by api/app.py:openapi_with_kinds
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{kind}"}}}}}


def _patch_schema() -> dict[str, Any]:
    obj = {"type": "object", "description": "RFC 7386 JSON merge patch of the object"}
    return {"requestBody": {"required": True, "content": {"application/merge-patch+json": {"schema": obj},
                                                         "application/json": {"schema": obj}}}}


async def watch_list(request: Request, store: Store, authz: Authorizer, kind: str, scope: str | None, since: str | None,
                     label_selector: str | None) -> Any:
    """A list's watch: the current objects (unless `since` is given), then every change of the
    objects the caller may see, re-checking the caller's rights while the stream is open."""
    try:
        sel = parse_selector(label_selector) if label_selector else None
    except ValueError as e:
        raise Problem(400, f"labelSelector: {e}") from None

    # the first page also checks that the caller may see the scope
    first = await run_in_threadpool(objects.list_page, store, authz, kind, scope=scope,
                                    label_selector=label_selector, limit=None)

    def initial() -> tuple[list[dict], int]:
        return first["items"], int(first["metadata"]["resourceVersion"])

    def matches(s: str, n: str, o: dict) -> bool:
        return scope is None or s == scope

    def revalidate() -> Any:
        again = objects.reauthorize(store, request)
        objects.check_list_scope(again, kind, scope)
        return objects.visible_filter(again, kind)

    return watch_response(request, store, kind, since=int(since) if since else None,
                          matches=matches, selector=sel, initial=initial, revalidate=revalidate)


def add_kind_routes(kind: str, *, collection: str, item: str, collection_scope: Callable[..., str | None],
                    item_key: Callable[..., tuple[str, str]], write_checks: Sequence[Any] = ()) -> None:
    """Register the standard routes of `kind`; `collection_scope` and `item_key` are
    dependencies that read the path parameters of the two URL shapes; `write_checks` are
    dependencies of the create, replace, patch and delete routes."""
    plural = KINDS[kind].plural
    checks = list(write_checks)
    CollectionScope = Annotated[str | None, Depends(collection_scope)]
    ItemKey = Annotated[tuple[str, str], Depends(item_key)]

    @router.get(collection, operation_id=f"list{kind}s", tags=[plural], summary=f"List or watch {plural}")
    async def list_objects(request: Request, store: StoreDep, authz: AuthzDep, scope: CollectionScope,
                           watch: Watch = False, since: SinceRV = None, label_selector: Selector = None,
                           limit: Limit = None, cont: Continue = None, name: NameFilter = None) -> Any:
        if watch:
            return await watch_list(request, store, authz, kind, scope, since, label_selector)
        return await run_in_threadpool(objects.list_page, store, authz, kind, scope=scope,
                                       label_selector=label_selector, limit=limit, continue_token=cont,
                                       name_contains=name)

    @router.post(collection, operation_id=f"create{kind}", tags=[plural], status_code=201,
                 summary=f"Create a {kind}", openapi_extra=_body_schema(kind), dependencies=checks)
    def create_object(store: StoreDep, authz: AuthzDep, scope: CollectionScope,
                      body: Annotated[Any, Body()], dry_run: DryRun = False) -> dict:
        return objects.create(store, authz, kind, body, scope=scope, dry_run=dry_run)

    @router.get(item, operation_id=f"get{kind}", tags=[plural], summary=f"Get a {kind}")
    async def get_object(request: Request, store: StoreDep, authz: AuthzDep, key: ItemKey,
                         watch: Watch = False, since: SinceRV = None) -> Any:
        scope, name = key
        if watch:
            # read it first: a missing object is a plain 404, not a broken stream
            rv_now = await run_in_threadpool(store.current_rv)
            current = await run_in_threadpool(objects.get, store, authz, kind, scope=scope, name=name)

            def initial() -> tuple[list[dict], int]:
                return [current], rv_now

            def revalidate_one() -> Any:
                objects.get(store, objects.reauthorize(store, request), kind, scope=scope, name=name)
                return None

            return watch_response(request, store, kind, since=int(since) if since else None,
                                  matches=lambda s, n, o: (s, n) == (scope, name), selector=None,
                                  initial=initial, revalidate=revalidate_one)
        return await run_in_threadpool(objects.get, store, authz, kind, scope=scope, name=name)

    @router.put(item, operation_id=f"replace{kind}", tags=[plural], summary=f"Replace a {kind} (apply)",
                openapi_extra=_body_schema(kind), dependencies=checks)
    def replace_object(store: StoreDep, authz: AuthzDep, key: ItemKey, body: Annotated[Any, Body()],
                       dry_run: DryRun = False) -> dict:
        return objects.replace(store, authz, kind, body, scope=key[0], name=key[1], dry_run=dry_run)

    @router.patch(item, operation_id=f"patch{kind}", tags=[plural], summary=f"Merge-patch a {kind}",
                  openapi_extra=_patch_schema(), dependencies=checks)
    def patch_object(store: StoreDep, authz: AuthzDep, key: ItemKey, body: Annotated[Any, Body()],
                     dry_run: DryRun = False) -> dict:
        return objects.patch(store, authz, kind, body, scope=key[0], name=key[1], dry_run=dry_run)

    @router.delete(item, operation_id=f"delete{kind}", tags=[plural], summary=f"Delete a {kind}",
                   dependencies=checks)
    def delete_object(store: StoreDep, authz: AuthzDep, key: ItemKey, dry_run: DryRun = False) -> dict:
        return objects.delete(store, authz, kind, scope=key[0], name=key[1], dry_run=dry_run)


async def _tenant_collection() -> str:
    return ""


async def _tenant_item(name: str) -> tuple[str, str]:
    return "", name


async def _project_collection(tenant: Annotated[str | None, Query(max_length=63)] = None) -> str | None:
    return tenant


async def _project_item(tenant: str, name: str) -> tuple[str, str]:
    return tenant, name


async def _app_collection(tenant: str, project: str) -> str:
    return f"{tenant}/{project}"


async def _app_item(tenant: str, project: str, name: str) -> tuple[str, str]:
    return f"{tenant}/{project}", name


add_kind_routes("Tenant", collection="/tenants", item="/tenants/{name}",
                collection_scope=_tenant_collection, item_key=_tenant_item)
add_kind_routes("Project", collection="/projects", item="/projects/{tenant}/{name}",
                collection_scope=_project_collection, item_key=_project_item)


async def engine_write(request: Request, tenant: str, project: str, dry_run: DryRun = False) -> None:
    """Writes that reach the project's engine are refused while its cluster cannot apply them;
    a dry run changes nothing and passes."""
    if not dry_run:
        await cluster_rules.cluster_writable(request, tenant, project)


ENGINE_WRITE_CHECKS = [Depends(engine_write)]
add_kind_routes("App", collection="/projects/{tenant}/{project}/apps", item="/projects/{tenant}/{project}/apps/{name}",
                collection_scope=_app_collection, item_key=_app_item, write_checks=ENGINE_WRITE_CHECKS)


add_kind_routes("Secret", collection="/projects/{tenant}/{project}/secrets",
                item="/projects/{tenant}/{project}/secrets/{name}",
                collection_scope=_app_collection, item_key=_app_item, write_checks=ENGINE_WRITE_CHECKS)
add_kind_routes("Config", collection="/projects/{tenant}/{project}/configs",
                item="/projects/{tenant}/{project}/configs/{name}",
                collection_scope=_app_collection, item_key=_app_item, write_checks=ENGINE_WRITE_CHECKS)
for _kind in ("LogDrain", "AlertRule", "Notifier", "Silence", "Build", "BuildConfig"):
    add_kind_routes(_kind, collection=f"/projects/{{tenant}}/{{project}}/{KINDS[_kind].plural}",
                    item=f"/projects/{{tenant}}/{{project}}/{KINDS[_kind].plural}/{{name}}",
                    collection_scope=_app_collection, item_key=_app_item)


@router.get("/apps", operation_id="listAllApps", tags=["apps"], summary="List or watch the apps of every project")
async def list_all_apps(request: Request, store: StoreDep, authz: AuthzDep, watch: Watch = False, since: SinceRV = None,
                        label_selector: Selector = None, limit: Limit = None, cont: Continue = None,
                        name: NameFilter = None) -> Any:
    if watch:
        return await watch_list(request, store, authz, "App", None, since, label_selector)
    return await run_in_threadpool(objects.list_page, store, authz, "App", label_selector=label_selector, limit=limit,
                                   continue_token=cont, name_contains=name)
