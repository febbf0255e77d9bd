"""Tables, JSON and YAML output, and ages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import typer
import yaml

from dockyard.model.quantity import approx_memory


def age(ts: str | None) -> str:
    if not ts:
        return "-"
    try:
        then = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    s = int((datetime.now(UTC) - then).total_seconds())
    if s < 120:
        return f"{max(s, 0)}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in cells:
        lines.append("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def emit(data: Any, fmt: str) -> None:
    if fmt == "json":
        typer.echo(json.dumps(data, indent=2))
    elif fmt == "yaml":
        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())
    else:
        raise typer.BadParameter(f"unknown output format '{fmt}' (table, json, yaml)")


def app_row(a: dict) -> list[Any]:
    st = a.get("status") or {}
    spec = a.get("spec") or {}
    return [a["metadata"]["name"], spec.get("image", ""), f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            st.get("phase", "Pending"), age(a["metadata"].get("createdAt"))]


def project_row(p: dict) -> list[Any]:
    st = p.get("status") or {}
    ready = next((c["status"] for c in st.get("conditions", []) if c["type"] == "Ready"), "Unknown")
    return [f"{p['metadata']['tenant']}/{p['metadata']['name']}", st.get("network", "-"),
            "Ready" if ready == "True" else "Pending", age(p["metadata"].get("createdAt"))]


def tenant_row(t: dict) -> list[Any]:
    return [t["metadata"]["name"], (t.get("spec") or {}).get("displayName", ""), age(t["metadata"].get("createdAt"))]


def secret_row(x: dict) -> list[Any]:
    spec = x.get("spec") or {}
    return [x["metadata"]["name"], (spec.get("sha256") or "")[:16], spec.get("size", ""), age(x["metadata"].get("createdAt"))]


def config_row(x: dict) -> list[Any]:
    return [x["metadata"]["name"], len((x.get("spec") or {}).get("data", "")), age(x["metadata"].get("createdAt"))]


def logdrain_row(d: dict) -> list[Any]:
    spec, st = d.get("spec") or {}, d.get("status") or {}
    ready = next((c for c in st.get("conditions", []) if c["type"] == "Ready"), None)
    state = "Paused" if spec.get("paused") else ("-" if ready is None else
                                                   "True" if ready["status"] == "True" else ready.get("reason") or "False")
    return [d["metadata"]["name"], spec.get("type", ""), urlsplit(spec.get("url", "")).netloc or "-", state,
            st.get("sentLines", 0), (st.get("lastError") or "-")[:60], age(d["metadata"].get("createdAt"))]


TABLES = {
    "App": (["NAME", "IMAGE", "READY", "STATUS", "AGE"], app_row),
    "Project": (["NAME", "NETWORK", "STATUS", "AGE"], project_row),
    "Tenant": (["NAME", "DISPLAY NAME", "AGE"], tenant_row),
    "Secret": (["NAME", "SHA256", "SIZE", "AGE"], secret_row),
    "Config": (["NAME", "SIZE", "AGE"], config_row),
    "LogDrain": (["NAME", "TYPE", "DESTINATION", "READY", "SENT", "LAST ERROR", "AGE"], logdrain_row),
}


def human_bytes(n: float | None, suffix: str = "") -> str:
    """1536 → 1.5Ki (binary units, as memory limits are written)."""
    return "-" if n is None else approx_memory(n) + suffix


def usage_rows(data: dict, *, per_replica: bool) -> tuple[list[str], list[list[Any]]]:
    """The `dockyard top` table from GET …/top: one row per app, or per replica of the app(s)."""

    def cpu(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}%"

    def mem(used: int, limit: int | None) -> str:
        return f"{human_bytes(used)}/{human_bytes(limit) if limit else 'unlimited'}"

    if per_replica:
        headers = ["APP", "REPLICA", "CPU", "MEMORY", "NET RX", "NET TX", "RESTARTS", "OOM KILLS"]
        rows = [[a["app"], c["replica"], cpu(c["cpu"]), mem(c["memory"], c["memoryLimit"]),
                 human_bytes(c["networkRx"], "/s"), human_bytes(c["networkTx"], "/s"), c["restarts"], c["oomKills"]]
                for a in data.get("items", []) for c in a["containers"]]
        return headers, rows
    headers = ["APP", "REPLICAS", "CPU", "MEMORY", "NET RX", "NET TX", "RESTARTS", "OOM KILLS"]
    rows = [[a["app"], a["replicas"], cpu(a["cpu"]), mem(a["memory"], a["memoryLimit"]),
             human_bytes(a["networkRx"], "/s"), human_bytes(a["networkTx"], "/s"), a["restarts"], a["oomKills"]]
            for a in data.get("items", [])]
    return headers, rows
