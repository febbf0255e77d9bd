"""What every command module shares: the -p/-o options, the project default, and how errors end a
command. Here rather than in main.py, which imports the command modules (they would have to import
it back inside each function)."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from dockyard.cli.client import CliError, load_config

ProjectOpt = Annotated[str | None, typer.Option("--project", "-p", help="TENANT/PROJECT (default: $DOCKYARD_PROJECT)")]
OutputOpt = Annotated[str, typer.Option("--output", "-o", help="table, json or yaml")]


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def run(fn: Any) -> Any:
    """fn(), with a CliError ending the command with its message."""
    try:
        return fn()
    except CliError as e:
        fail(str(e))


def project_of(project: str | None) -> str:
    p = project or os.environ.get("DOCKYARD_PROJECT") or load_config().get("project")
    if not p:
        fail("no project: pass -p TENANT/PROJECT or set $DOCKYARD_PROJECT")
    if p.count("/") != 1:
        fail(f"'{p}' is not a project: write it as TENANT/PROJECT, e.g. acme/shop")
    return p
