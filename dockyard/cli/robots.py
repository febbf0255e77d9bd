"""`dockyard robots`: a project's robot accounts, the registry logins for CI systems."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.client import Client
from dockyard.cli.common import OutputOpt, ProjectOpt, project_of, run
from dockyard.cli.output import age, emit, table

robots_app = typer.Typer(help="Robot accounts: registry logins for CI (`docker login -u 'robot$T+P+NAME'`). "
                              "They work at the registry only, not on the API.")
HEADERS = ["NAME", "ACCESS", "STATUS", "EXPIRES", "CREATED BY", "AGE", "LAST USED"]


def _path(project: str | None, name: str | None = None) -> str:
    tenant, proj = project_of(project).split("/")
    return f"/tenants/{tenant}/projects/{proj}/robots" + (f"/{name}" if name else "")


def robot_row(r: dict) -> list[Any]:
    status = "disabled" if r.get("disabled") else "expired" if r.get("expired") else "active"
    expires = r.get("expiresAt")
    return [r["name"], r["access"], status, expires[:19].replace("T", " ") if expires else "never",
            r.get("createdBy", ""), age(r.get("createdAt")),
            f"{age(r['lastUsedAt'])} ago" if r.get("lastUsedAt") else "never"]


@robots_app.callback(invoke_without_command=True)
def robots(ctx: typer.Context, project: ProjectOpt = None, output: OutputOpt = "table") -> None:
    """List the project's robot accounts (with no subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    data = run(lambda: Client().request("GET", _path(project)))
    if output != "table":
        emit(data, output)
        return
    typer.echo(table(HEADERS, [robot_row(r) for r in data["items"]]))


@robots_app.command("create")
def create(name: Annotated[str, typer.Argument()], project: ProjectOpt = None,
           access: Annotated[str, typer.Option(help="pull, or push (which includes pull)")] = "pull",
           expires: Annotated[str, typer.Option(help="lifetime, e.g. 12h or 30d; never for none")] = "30d",
           output: OutputOpt = "table") -> None:
    """Create a robot; prints its user name and secret (shown only this once)."""
    body = {"name": name, "access": access, "expires": None if expires == "never" else expires}
    r = run(lambda: Client().request("POST", _path(project), json_body=body))
    if output != "table":
        emit(r, output)
        return
    typer.echo(f"Robot {r['username']} created ({r['access']}, expires {r.get('expiresAt') or 'never'}).")
    typer.echo(f"Secret (shown only now): {r['secret']}")
    info = run(lambda: Client().request("GET", "/registry"))  # the host image references start with
    if info.get("host"):
        typer.echo(f"Log in with: docker login {info['host']} -u '{r['username']}' --password-stdin  "
                   "(the secret on standard input)")
    else:
        typer.echo("This server runs no registry (--registry-listen off): the robot can log in once it does.")


@robots_app.command("delete")
def delete(name: Annotated[str, typer.Argument()], project: ProjectOpt = None) -> None:
    """Delete a robot: its logins stop at once (tokens it already has expire within 5 minutes)."""
    run(lambda: Client().request("DELETE", _path(project, name)))
    typer.echo(f"Robot {name} deleted.")


def _set_disabled(name: str, project: str | None, disabled: bool) -> None:
    run(lambda: Client().request("PATCH", _path(project, name), json_body={"disabled": disabled}))
    typer.echo(f"Robot {name} {'disabled' if disabled else 'enabled'}.")


@robots_app.command("disable")
def disable(name: Annotated[str, typer.Argument()], project: ProjectOpt = None) -> None:
    """Refuse the robot's logins until it is enabled again."""
    _set_disabled(name, project, True)


@robots_app.command("enable")
def enable(name: Annotated[str, typer.Argument()], project: ProjectOpt = None) -> None:
    _set_disabled(name, project, False)


def register(app: typer.Typer) -> None:
    app.add_typer(robots_app, name="robots")
