"""`dockyard logs`: an app's logs (live from the engine, or searched in the stored history with
`--grep`), a whole project's stored logs (`dockyard logs -p T/P --grep TEXT`), and NDJSON export."""

from __future__ import annotations

from typing import Annotated

import typer

from dockyard.cli.client import Client, CliError
from dockyard.cli.common import fail, project_of, run
from dockyard.cli.output import emit, table

HEADERS = ["TIME", "APP", "REPLICA", "STREAM", "TEXT"]


def app_line(name: str, item: dict, timestamps: bool) -> str:
    """A stored line as the app route prints a live one: `[web-1] text`."""
    ts = f"{item['ts']} " if timestamps else ""
    return f"[{name}-{item['replica']}] {ts}{item['text']}"


def logs(kind: Annotated[str | None, typer.Argument(help="app (leave out, with -p, for a whole project)")] = None,
         name: Annotated[str | None, typer.Argument(help="the app's name")] = None,
         project: Annotated[str | None, typer.Option("--project", "-p", help="TENANT/PROJECT")] = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="keep following (new replicas included)")] = False,
         grep: Annotated[str | None, typer.Option("--grep", help="only lines containing this text (ASCII letters "
                                                                  "in any case); without -f it searches the stored "
                                                                  "history, replaced containers included")] = None,
         since: Annotated[str | None, typer.Option(help="e.g. 10m, 1h or an RFC 3339 time")] = None,
         until: Annotated[str | None, typer.Option(help="stored history only: e.g. 10m (ago) or an RFC 3339 "
                                                        "time")] = None,
         tail: Annotated[int | None, typer.Option(help="live: lines per replica from the end; stored: the newest "
                                                       "N lines (default 1000)")] = None,
         timestamps: Annotated[bool, typer.Option("--timestamps")] = False,
         output: Annotated[str, typer.Option("--output", "-o", help="text, json (stored lines) or ndjson "
                                                                    "(an export of the stored lines)")] = "text",
         ) -> None:
    """Print logs. `dockyard logs app web -f` follows every replica live; `dockyard logs app web
    --since 1h --grep TEXT` searches the stored history of all its replicas, replaced containers
    included; `dockyard logs -p acme/shop --grep TEXT` searches every app of the project (APP column);
    `-o ndjson` exports the stored lines, one JSON object per line."""
    from dockyard.cli.main import item_path, kind_of  # main registers this command

    if output not in ("text", "json", "ndjson"):
        fail(f"unknown output '{output}' (text, json or ndjson)")
    if kind is not None:
        if kind_of(kind) != "App" or not name:
            fail("logs are available for apps: dockyard logs app NAME (or -p TENANT/PROJECT for a whole project)")
    elif name is not None:
        fail("write `dockyard logs app NAME`")
    scope = project_of(project)
    c = run(Client)
    search = {"app": name, "grep": grep, "since": since, "until": until}
    try:
        if follow or (name is not None and not grep and output == "text"):
            # live, from the engine: every current replica (while following, grep filters)
            if name is None or output == "json":
                fail("-f follows one app's lines as text or ndjson: dockyard logs app NAME -f [--grep TEXT]")
            params = {"follow": str(follow).lower(), "tail": tail, "since": since, "grep": grep,
                      "timestamps": str(timestamps).lower(), "format": "ndjson" if output == "ndjson" else None}
            for line in c.stream(item_path("App", name, project) + "/logs", params=params):
                typer.echo(line)
        elif output == "ndjson":
            for line in c.stream(f"/projects/{scope}/logs", params={**search, "format": "ndjson", "limit": tail}):
                typer.echo(line)
        else:
            print_stored(c.request("GET", f"/projects/{scope}/logs", params={**search, "limit": tail}), name,
                         timestamps, output)
    except CliError as e:
        fail(str(e))
    except KeyboardInterrupt:
        pass


def print_stored(data: dict, app: str | None, timestamps: bool, output: str) -> None:
    if output == "json":
        emit(data, "json")
        return
    items = data["items"]
    if app is not None:
        for item in items:
            typer.echo(app_line(app, item, timestamps))
    elif items:
        typer.echo(table(HEADERS, [[i["ts"], i["app"], i["replica"], i["stream"], i["text"]] for i in items]))
    else:
        typer.echo("No lines found.", err=True)
    if data.get("truncated"):
        typer.echo(f"(only the newest {len(items)} lines; narrow with --since/--grep or raise --tail)", err=True)
