"""The engine's nodes: capacity and state for every logged-in user; for admins also the engine
version, this installation's running containers and their summed CPU and memory use (taken from
the metrics collector's newest readings). Usage of all tenants together is not for tenants'
eyes, and an engine version helps an attacker pick an exploit (docs/security.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from dockyard.api.authz import AuthzDep
from dockyard.api.deps import PlatformDep
from dockyard.api.problems import Problem
from dockyard.metrics.registry import metric_header, sample_line
from dockyard.model.cluster import LOCAL, ClusterError
from dockyard.model.project import project_cluster

router = APIRouter(tags=["nodes"])

# (name, help, value of a detailed node row) for the Prometheus exposition, admins only
NODE_GAUGES = (
    ("dockyard_node_up", "1 when the node's engine answers.", lambda r: 1.0 if r["status"] == "ready" else 0.0),
    ("dockyard_node_cpus", "CPUs of the node.", lambda r: r["cpus"]),
    ("dockyard_node_memory_total_bytes", "Memory of the node.", lambda r: r["memoryTotal"]),
    ("dockyard_node_containers", "Running containers of this installation on the node.", lambda r: r["containers"]),
    ("dockyard_node_cpu_percent", "CPU use of those containers, % of one core (newest readings).",
     lambda r: r["cpu"]),
    ("dockyard_node_memory_bytes", "Memory used by those containers (newest readings).", lambda r: r["memoryUsed"]),
)


def node_rows(request: Request, nodes: list[Any], *, details: bool) -> list[dict]:
    """One row per node; with `details`, the swarm fields and usage summed over the node's
    containers' newest readings."""
    provider = getattr(request.app.state, "metrics", None)
    usages = provider.current() if provider is not None and details else []
    rows = []
    for n in nodes:
        row: dict[str, Any] = {"cluster": n.cluster or LOCAL, "name": n.name, "status": n.status, "cpus": n.cpus,
                               "memoryTotal": n.memory_total}
        if details:
            row.update(role=n.role or None, availability=n.availability or None,
                       managerStatus=n.manager_status or None, labels=dict(n.labels), address=n.address or None)
            on_node = set(n.containers)
            mine = [u for u in usages if u.container in on_node]
            cpu = [u.cpu for u in mine if u.cpu is not None]
            used = sum(u.memory for u in mine)
            row.update(engineVersion=n.engine_version, containers=len(n.containers),
                       cpu=round(sum(cpu), 2) if cpu else None, memoryUsed=used)
        else:
            used = None
        row["memory"] = {"used": used, "total": n.memory_total}  # the dashboard's usage bar
        rows.append(row)
    return rows


def clusters_in_use(store: Any, authz: Any) -> set[str]:
    """The clusters a non-admin may know of: `local` and those of the projects they can see (the
    nodes of other tenants' clusters are none of their business). Blocking."""
    return {LOCAL} | {project_cluster(p.spec) for p in store.list("Project")[0]
                      if authz.can_see_project(p.scope, p.name)}


def cluster_nodes(request: Request, platform: Any, cluster: str | None, known: set[str] | None = None) -> list[Any]:
    """The nodes of `cluster` (None: of every cluster that answers); without cluster support on
    this server, the local engine's. `known`: the clusters the caller may see (None: all). Blocking."""
    if known is not None and cluster is not None and cluster not in known:
        raise Problem(404, f"cluster '{cluster}' not found")
    ops = getattr(request.app.state, "clusters", None)
    if ops is None:
        if cluster not in (None, LOCAL):
            raise Problem(404, f"cluster '{cluster}' not found (this server drives only its own engine, '{LOCAL}')")
        return platform.nodes()
    if known is not None and cluster is None:
        out: list[Any] = []
        for name in sorted(known, key=lambda c: (c != LOCAL, c)):
            try:
                out += ops.nodes(name)
            except ClusterError:
                continue  # removed meanwhile, or its driver cannot be opened: as ops.nodes(None) skips it
        return out
    try:
        return ops.nodes(cluster)
    except ClusterError as e:
        raise Problem(e.status, e.message) from None


@router.get("/nodes", operation_id="listNodes",
            summary="The nodes of every cluster (or of ?cluster=): capacity and state (admins: swarm fields, usage)")
async def list_nodes(request: Request, authz: AuthzDep, platform: PlatformDep,
                     cluster: Annotated[str | None, Query(max_length=63, description="only this cluster's")] = None,
                     ) -> dict:
    known = None if authz.is_admin else await run_in_threadpool(clusters_in_use, authz.store, authz)
    nodes = await run_in_threadpool(cluster_nodes, request, platform, cluster, known)
    return {"items": await run_in_threadpool(node_rows, request, nodes, details=authz.is_admin)}


def node_metrics_text(rows: list[dict]) -> str:
    """`dockyard_node_*` gauges labelled by node, from detailed node rows."""
    lines: list[str] = []
    for name, help_text, value in NODE_GAUGES:
        lines += metric_header(name, "gauge", help_text)
        lines += [sample_line(name, ("node",), (r["name"],), float(v)) for r in rows if (v := value(r)) is not None]
    return "\n".join(lines) + "\n"
