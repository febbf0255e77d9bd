"""`dockyard top nodes`: the engine's nodes with their capacity and, for admins, what runs there."""

from __future__ import annotations

from typing import Any

import typer

from dockyard.cli.client import Client
from dockyard.cli.common import run
from dockyard.cli.output import emit, human_bytes, table

HEADERS = ["CLUSTER", "NODE", "STATUS", "CPUS", "CPU", "MEMORY", "CONTAINERS", "ENGINE"]


def node_row(n: dict) -> list[Any]:
    cpu = n.get("cpu")
    used = n.get("memoryUsed")
    memory = f"{human_bytes(used) if used is not None else '-'}/{human_bytes(n.get('memoryTotal'))}"
    return [n.get("cluster") or "local", n["name"], n.get("status", "-"), n.get("cpus", "-"),
            "-" if cpu is None else f"{cpu:.1f}%", memory, n.get("containers", "-"), n.get("engineVersion", "-")]


def top_nodes(output: str) -> None:
    """Print GET /nodes (usage columns show "-" for non-admins, who see capacity only)."""

    c = run(Client)
    data = run(lambda: c.request("GET", "/nodes"))
    if output != "table":
        emit(data, output)
        return
    typer.echo(table(HEADERS, [node_row(n) for n in data["items"]]))
