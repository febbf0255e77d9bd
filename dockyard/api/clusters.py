"""Routes of Kind Cluster and of the nodes of its swarms, for platform admins only.

`GET /clusters` lists the synthetic `local` cluster (the server's own engine, never stored) first and
then the stored ones, each with its live health merged into the status the cluster monitor wrote.
The writes go through the generic object operations (api/objects.py with api/cluster_rules.py)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Request, Response
from pydantic import Field, field_validator
from starlette.concurrency import run_in_threadpool

from dockyard.api import audit, objects
from dockyard.api.authz import AuthzDep, admin_only
from dockyard.api.cluster_rules import RETRY_AFTER
from dockyard.api.deps import ClusterOps, ClusterOpsDep, PlatformDep, StoreDep
from dockyard.api.nodes import node_rows
from dockyard.api.problems import Problem
from dockyard.api.resources import DryRun, Selector, SinceRV, Watch, _body_schema, _patch_schema, watch_list
from dockyard.model.cluster import LOCAL, ClusterError
from dockyard.model.meta import Schema, check_labels
from dockyard.store.repository import Store
from dockyard.store.selectors import parse_selector

router = APIRouter(tags=["clusters"], dependencies=[admin_only("clusters.manage")])
T = TypeVar("T")
HEALTH_THREADS = 8


def ops_call(fn: Callable[[], T]) -> T:
    """fn(), with a ClusterError answered as problem+json with its status (503: retry after RETRY_AFTER s)."""
    try:
        return fn()
    except ClusterError as e:
        raise Problem(e.status, e.message, headers={"Retry-After": RETRY_AFTER} if e.status == 503 else None) from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _local_cluster(platform: Any) -> dict:
    engine = platform.engine_status()
    return {"apiVersion": "dockyard/v1", "kind": "Cluster",
            "metadata": {"name": LOCAL, "labels": {}, "annotations": {}},
            "spec": {"driver": "docker", "endpoints": [{"url": engine.get("url", "")}],
                     "description": "the server's own engine (dockyard server --engine)"},
            "status": {"phase": "Ready" if engine.get("status") == "ok" else "Unavailable",
                       "writable": engine.get("status") == "ok", "message": f"engine {engine.get('status')}"}}


def _with_health(ops: ClusterOps | None, items: list[dict]) -> list[dict]:
    """`items` with each cluster's live health merged into its status (probed in parallel; the
    router caches health for 2 s, so this is fast). A probe that fails keeps the stored status."""
    if ops is None or not items:
        return items

    def probe(obj: dict) -> dict:
        try:
            live = ops.cluster_health(obj["metadata"]["name"]).status_fields()
        except ClusterError:
            return obj
        return {**obj, "status": {**(obj.get("status") or {}), **live, "lastProbe": _now()}}

    with ThreadPoolExecutor(max_workers=min(HEALTH_THREADS, len(items))) as pool:
        return list(pool.map(probe, items))


def _read(store: Store, authz: Any, platform: Any, name: str) -> dict:
    return _local_cluster(platform) if name == LOCAL else objects.get(store, authz, "Cluster", scope="", name=name)


def _not_local(name: str, doing: str) -> None:
    if name == LOCAL:
        raise Problem(409, f"cluster {LOCAL} is the server's own engine (dockyard server --engine): "
                           f"it cannot be {doing}")


@router.get("/clusters", operation_id="listClusters", summary="The clusters (local first) with their live status")
async def list_clusters(request: Request, store: StoreDep, authz: AuthzDep, platform: PlatformDep,
                        selector: Selector = None, watch: Watch = False, since: SinceRV = None) -> Any:
    """A watch streams the stored Clusters' changes (their status as the cluster monitor writes
    it; `local` is not stored, so it is not in the stream)."""
    if watch:
        return await watch_list(request, store, authz, "Cluster", "", since, selector)
    page = await run_in_threadpool(objects.list_page, store, authz, "Cluster", label_selector=selector)
    # `local` has no labels: a selector that asks for one leaves it out (list_page checked the selector)
    local = [await run_in_threadpool(_local_cluster, platform)] if not selector or \
        parse_selector(selector).matches({}) else []
    items = await run_in_threadpool(_with_health, request.app.state.clusters, [*local, *page["items"]])
    return {**page, "items": items}


@router.post("/clusters", operation_id="createCluster", status_code=201, summary="Add a cluster",
             openapi_extra=_body_schema("Cluster"))
def create_cluster(store: StoreDep, authz: AuthzDep, body: Annotated[Any, Body()], dry_run: DryRun = False) -> dict:
    return objects.create(store, authz, "Cluster", body, scope="", dry_run=dry_run)


@router.get("/clusters/{name}", operation_id="getCluster", summary="A cluster with its live status")
def get_cluster(request: Request, store: StoreDep, authz: AuthzDep, platform: PlatformDep, name: str) -> dict:
    return _with_health(request.app.state.clusters, [_read(store, authz, platform, name)])[0]


@router.put("/clusters/{name}", operation_id="replaceCluster", summary="Replace a cluster (apply)",
            openapi_extra=_body_schema("Cluster"))
def replace_cluster(store: StoreDep, authz: AuthzDep, name: str, body: Annotated[Any, Body()],
                    dry_run: DryRun = False) -> dict:
    _not_local(name, "changed")
    return objects.replace(store, authz, "Cluster", body, scope="", name=name, dry_run=dry_run)


@router.patch("/clusters/{name}", operation_id="patchCluster", summary="Merge-patch a cluster",
              openapi_extra=_patch_schema())
def patch_cluster(store: StoreDep, authz: AuthzDep, name: str, body: Annotated[Any, Body()],
                  dry_run: DryRun = False) -> dict:
    _not_local(name, "changed")
    return objects.patch(store, authz, "Cluster", body, scope="", name=name, dry_run=dry_run)


@router.delete("/clusters/{name}", operation_id="deleteCluster",
               summary="Remove a cluster (refused while projects are bound to it)")
def delete_cluster(store: StoreDep, authz: AuthzDep, name: str, dry_run: DryRun = False) -> dict:
    _not_local(name, "removed")
    return objects.delete(store, authz, "Cluster", scope="", name=name, dry_run=dry_run)


# --- nodes and join tokens of a swarm --------------------------------------------------------

def _swarm(store: Store, cluster: str, doing: str) -> None:
    """404 for an unknown cluster, 409 for one that is a single engine."""
    driver = "docker" if cluster == LOCAL else store.get("Cluster", "", cluster).spec.get("driver")
    if driver != "swarm":
        raise Problem(409, f"cluster {cluster} is a single engine: it has no nodes to {doing}")


class NodeUpdate(Schema):
    availability: Literal["active", "pause", "drain"] | None = None
    labels: dict[str, str | None] = Field(default_factory=dict, max_length=100,
                                          description="labels to set; a null value removes the label")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        check_labels({k: val or "" for k, val in v.items()})  # null (remove the label): its key is checked
        return v


def _update_node(request: Request, store: Store, ops: ClusterOps, cluster: str, node: str, doing: str,
                 change: NodeUpdate) -> dict:
    _swarm(store, cluster, doing)
    info = ops_call(lambda: ops.update_node(cluster, node, availability=change.availability,
                                            labels=change.labels or None))
    return node_rows(request, [info], details=True)[0]


@router.post("/clusters/{cluster}/nodes/{node}/drain", operation_id="drainNode",
             summary="Move a node's tasks elsewhere and schedule none there")
def drain_node(request: Request, store: StoreDep, ops: ClusterOpsDep, cluster: str, node: str) -> dict:
    return _update_node(request, store, ops, cluster, node, "drain", NodeUpdate(availability="drain"))


@router.post("/clusters/{cluster}/nodes/{node}/activate", operation_id="activateNode",
             summary="Let a drained or paused node take tasks again")
def activate_node(request: Request, store: StoreDep, ops: ClusterOpsDep, cluster: str, node: str) -> dict:
    return _update_node(request, store, ops, cluster, node, "activate", NodeUpdate(availability="active"))


@router.patch("/clusters/{cluster}/nodes/{node}", operation_id="updateNode",
              summary="Set a node's labels (null removes one) or availability")
def update_node(request: Request, store: StoreDep, ops: ClusterOpsDep, cluster: str, node: str,
                body: NodeUpdate) -> dict:
    return _update_node(request, store, ops, cluster, node, "label", body)


@router.get("/clusters/{cluster}/join-tokens", operation_id="getJoinTokens",
            summary="Tokens and commands to add nodes to a swarm (audited)")
async def join_tokens(request: Request, response: Response, store: StoreDep, ops: ClusterOpsDep,
                      cluster: str) -> dict:
    await run_in_threadpool(_swarm, store, cluster, "join")
    tokens = await run_in_threadpool(ops_call, lambda: ops.join_tokens(cluster))
    # a read the audit middleware does not record: whoever saw the tokens can add nodes
    await run_in_threadpool(audit.record, request, 200, f"join tokens of cluster {cluster} shown")
    response.headers["Cache-Control"] = "no-store"  # a credential: no browser or proxy may keep it
    addr = tokens.get("managerAddress", "")
    return {**tokens, "commands": {
        role: f"docker swarm join --token {tokens[role]} {addr}" for role in ("worker", "manager") if role in tokens}}
