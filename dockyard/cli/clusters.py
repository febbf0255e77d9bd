"""`dockyard cluster add|remove|join-token`, `dockyard node drain|activate|label`, and the tables of
`dockyard get clusters` and `dockyard get nodes [--cluster C]` (admins only, except node capacity)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dockyard.cli.client import Client
from dockyard.cli.common import OutputOpt, fail, run
from dockyard.cli.output import TABLES, age, emit, human_bytes, table

cluster_app = typer.Typer(help="Add and remove clusters (engines and Docker Swarms); admins only.",
                          no_args_is_help=True)
node_app = typer.Typer(help="Drain, activate and label the nodes of a swarm cluster; admins only.",
                       no_args_is_help=True)
KIND_WORDS = {"cluster": "Cluster", "clusters": "Cluster"}
ClusterOpt = Annotated[str | None, typer.Option("--cluster", "-c",
                                                help="the node's cluster (needed when two clusters have the name)")]


def _labels(row: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((row or {}).items())) or "-"


def cluster_row(c: dict) -> list[Any]:
    spec, st = c.get("spec") or {}, c.get("status") or {}
    urls = [e["url"] for e in spec.get("endpoints") or []]
    shown = st.get("activeEndpoint") or (urls[0] if urls else "-")
    others = len([u for u in urls if u != shown])
    nodes = st.get("nodes") or {}
    return [c["metadata"]["name"], spec.get("driver", ""), shown + (f" (+{others})" if others else ""),
            st.get("phase", "Unknown"), f"{nodes.get('ready', 0)}/{nodes['total']}" if nodes.get("total") else "-",
            _labels(c["metadata"].get("labels")), age(c["metadata"].get("createdAt"))]


NODE_HEADERS = ["CLUSTER", "NAME", "ROLE", "AVAILABILITY", "STATE", "MANAGER", "ENGINE", "CPUS", "MEMORY", "LABELS"]


def node_row(n: dict) -> list[Any]:
    return [n.get("cluster", "-"), n["name"], n.get("role") or "-", n.get("availability") or "-", n.get("status", "-"),
            n.get("managerStatus") or "-", n.get("engineVersion") or "-", n.get("cpus", "-"),
            human_bytes(n.get("memoryTotal")), _labels(n.get("labels"))]


def get_nodes(cluster: str | None, output: str) -> None:
    """`dockyard get nodes [--cluster C]`: the nodes of every cluster, or of one."""
    c = run(Client)
    data = run(lambda: c.request("GET", "/nodes", params={"cluster": cluster}))
    if output != "table":
        emit(data, output)
        return
    typer.echo(table(NODE_HEADERS, [node_row(n) for n in data["items"]]))


def _read(path: Path | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as e:
        fail(f"cannot read {what} {path}: {e.strerror}")
    return None


@cluster_app.command("add")
def add(name: Annotated[str, typer.Argument()],
        endpoint: Annotated[list[str], typer.Option("--endpoint", "-e", help="unix:///…, tcp://host:port or "
                                                    "ssh://user@host; repeat for more swarm managers")],
        driver: Annotated[str, typer.Option("--driver", help="docker (one engine) or swarm")] = "swarm",
        tls_ca: Annotated[Path | None, typer.Option("--tls-ca", help="PEM file: the engines' CA")] = None,
        tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM file: the client certificate")] = None,
        tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM file: the client key (stored sealed)")]
        = None,
        label: Annotated[list[str] | None, typer.Option("--label", "-l", help="k=v, e.g. region=eu-west")] = None,
        description: Annotated[str | None, typer.Option("--description")] = None,
        tenant: Annotated[list[str] | None, typer.Option("--tenant", "-t", help="only this tenant's projects may "
                                                         "use it; repeat for more (default: every tenant)")] = None,
        ) -> None:
    """Add a cluster. The TLS files apply to every tcp:// endpoint."""
    tls_files = (tls_ca, tls_cert, tls_key)
    if any(tls_files) and not all(tls_files):
        fail("give --tls-ca, --tls-cert and --tls-key together")
    tls = dict(zip(("ca", "cert", "key"), (_read(p, w) for p, w in zip(tls_files, ("CA", "certificate", "key"),
                                                                      strict=True)), strict=True))
    labels = {}
    for item in label or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            fail(f"--label {item}: write KEY=VALUE")
        labels[k] = v
    endpoints = [{"url": u, **({"tls": tls} if all(tls_files) and u.startswith("tcp://") else {})} for u in endpoint]
    spec: dict[str, Any] = {"driver": driver, "endpoints": endpoints}
    if description:
        spec["description"] = description
    if tenant:
        spec["tenants"] = tenant
    c = run(Client)
    run(lambda: c.request("POST", "/clusters", json_body={
        "apiVersion": "dockyard/v1", "kind": "Cluster", "metadata": {"name": name, "labels": labels}, "spec": spec}))
    typer.echo(f"cluster/{name} added; `dockyard get clusters` shows its state")


@cluster_app.command("remove")
def remove(name: Annotated[str, typer.Argument()]) -> None:
    """Remove a cluster (refused while projects are bound to it)."""
    c = run(Client)
    run(lambda: c.request("DELETE", f"/clusters/{name}"))
    typer.echo(f"cluster/{name} removed")


@cluster_app.command("join-token")
def join_token(name: Annotated[str, typer.Argument()], output: OutputOpt = "table") -> None:
    """How to add nodes to a swarm cluster (the tokens are secrets; showing them is audited)."""
    c = run(Client)
    res = run(lambda: c.request("GET", f"/clusters/{name}/join-tokens"))
    if output != "table":
        emit(res, output)
        return
    for role, command in res.get("commands", {}).items():
        typer.echo(f"# on a new {role}, run:\n{command}")


def _node_cluster(c: Client, node: str, cluster: str | None) -> str:
    """The cluster of `node`: --cluster, else the only cluster that has a node of that name."""
    if cluster:
        return cluster
    rows = run(lambda: c.request("GET", "/nodes"))["items"]
    found = sorted({r.get("cluster", "") for r in rows if r["name"] == node})
    if not found:
        fail(f"no cluster has a node named {node} (`dockyard get nodes` lists them)")
    if len(found) > 1:
        fail(f"clusters {', '.join(found)} each have a node named {node}: say which with --cluster")
    return found[0]


def _node_change(node: str, cluster: str | None, method: str, suffix: str, body: dict | None, done: str) -> None:
    c = run(Client)
    where = _node_cluster(c, node, cluster)
    row = run(lambda: c.request(method, f"/clusters/{where}/nodes/{node}{suffix}", json_body=body))
    typer.echo(f"node/{node} ({where}) {done}: availability {row.get('availability') or '-'}, "
               f"labels {_labels(row.get('labels'))}")


@node_app.command("drain")
def drain(name: Annotated[str, typer.Argument()], cluster: ClusterOpt = None) -> None:
    """Move the node's tasks to other nodes and schedule none there (before maintenance or removal)."""
    _node_change(name, cluster, "POST", "/drain", None, "drained")


@node_app.command("activate")
def activate(name: Annotated[str, typer.Argument()], cluster: ClusterOpt = None) -> None:
    """Let a drained node take tasks again."""
    _node_change(name, cluster, "POST", "/activate", None, "activated")


@node_app.command("label")
def label_node(name: Annotated[str, typer.Argument()],
               changes: Annotated[list[str], typer.Argument(help="KEY=VALUE sets a label, KEY- removes it")],
               cluster: ClusterOpt = None) -> None:
    """Set or remove node labels (placement constraints and spread use them: node.labels.KEY)."""
    labels: dict[str, str | None] = {}
    for item in changes:
        if item.endswith("-") and "=" not in item:
            labels[item[:-1]] = None
        elif "=" in item and not item.startswith("="):
            k, _, v = item.partition("=")
            labels[k] = v
        else:
            fail(f"'{item}': write KEY=VALUE to set a label or KEY- to remove it")
    _node_change(name, cluster, "PATCH", "", {"labels": labels}, "labelled")


def register(app: typer.Typer, kinds: dict[str, str]) -> None:
    """Add `dockyard cluster` and `dockyard node` to `app`, and the kind words and table to `get`."""
    kinds.update(KIND_WORDS)
    TABLES["Cluster"] = (["NAME", "DRIVER", "ENDPOINTS", "STATUS", "NODES", "LABELS", "AGE"], cluster_row)
    app.add_typer(cluster_app, name="cluster")
    app.add_typer(node_app, name="node")
