"""`dockyard events`: a project's timeline, as a table or followed live (`-w`)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from dockyard.cli.client import Client, CliError
from dockyard.cli.common import fail, project_of, run
from dockyard.cli.output import age, emit, table

HEADERS = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
# column widths while following: rows are printed one by one, so widths cannot be measured
WATCH_WIDTHS = (9, 7, 16, 24)


def event_row(e: dict, *, with_count: bool) -> list[Any]:
    obj = f"{str(e.get('kind', '')).lower()}/{e.get('name', '')}"
    row = [age(e.get("lastSeen")), e.get("type", ""), e.get("reason", ""), obj, e.get("message", "")]
    return [*row, e.get("count", 1)] if with_count else row


def watch_line(e: dict) -> str:
    """One followed event on its own line; a repeat says how often it was seen."""
    cells = event_row(e, with_count=False)
    head = "   ".join(str(c).ljust(w) for c, w in zip(cells, WATCH_WIDTHS, strict=False))
    count = e.get("count", 1)
    return f"{head}   {cells[-1]}" + (f" (x{count})" if count > 1 else "")


def events(project: Annotated[str | None, typer.Option("--project", "-p", help="TENANT/PROJECT")] = None,
           watch: Annotated[bool, typer.Option("--watch", "-w", help="follow new events until Ctrl-C")] = False,
           app: Annotated[str | None, typer.Option("--app", help="only events of this app")] = None,
           type_: Annotated[str | None, typer.Option("--type", help="Normal or Warning")] = None,
           reason: Annotated[str | None, typer.Option("--reason")] = None,
           kind: Annotated[str | None, typer.Option("--kind", help="App, AlertRule, Node…")] = None,
           since: Annotated[str | None, typer.Option("--since", help="e.g. 1h, 30m or an RFC 3339 time")] = None,
           limit: Annotated[int, typer.Option("--limit", help="at most this many (the newest)")] = 100,
           output: Annotated[str, typer.Option("--output", "-o", help="table, json or yaml")] = "table") -> None:
    """What happened in a project: deploys, scaling, crashes, OOM kills, health, quota refusals,
    alerts, and the nodes' engines going down and up. Newest last."""

    path = f"/projects/{project_of(project)}/events"
    params = {"app": app, "type": type_, "reason": reason, "kind": kind, "since": since, "limit": limit}
    c = run(Client)
    if watch:
        try:
            _follow(c, path, params)
        except CliError as e:
            fail(str(e))
        except KeyboardInterrupt:
            raise typer.Exit(0) from None
        return
    data = run(lambda: c.request("GET", path, params=params))
    if output != "table":
        emit(data, output)
        return
    items = data["items"]
    if not items:
        typer.echo("No events found.", err=True)
        return
    with_count = any(e.get("count", 1) > 1 for e in items)
    typer.echo(table(HEADERS + (["COUNT"] if with_count else []), [event_row(e, with_count=with_count) for e in items]))


def _follow(c: Client, path: str, params: dict) -> None:
    """Print the newest events, then each new or repeated one as it is written. A broken stream is
    resumed after the last event seen, so nothing is lost or printed twice."""
    typer.echo("   ".join(h.ljust(w) for h, w in zip(HEADERS, WATCH_WIDTHS, strict=False)) + "   MESSAGE")
    cursor: str | None = None
    while True:
        try:
            for ev in c.events(path, params={**params, "resourceVersion": cursor}):
                if ev.get("type") == "ERROR":
                    raise CliError(str(ev.get("detail")), ev.get("status"))
                if ev.get("type") == "BOOKMARK":
                    cursor = ev.get("resourceVersion") or cursor
                    continue
                e = ev.get("object") or {}
                cursor = e.get("resourceVersion") or cursor
                typer.echo(watch_line(e))
        except CliError as e:
            if e.status is not None:
                raise
            typer.echo(f"({e}; reconnecting)", err=True)
        time.sleep(1.0)  # the stream broke (a server restart): resume after `cursor`
