"""`dockyard alerts`, `dockyard silence` and `dockyard notifier test`, and the `get` tables of
AlertRule, Notifier and Silence. `register(app)` adds them to the main command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from dockyard.cli.client import Client
from dockyard.cli.common import OutputOpt, ProjectOpt, project_of, run
from dockyard.cli.output import TABLES, age, emit, table
from dockyard.model.alerts import AlertRuleSpec, format_value
from dockyard.model.quantity import parse_duration

# the words `get`, `delete` and `describe` accept for these kinds
KIND_WORDS = {"alertrule": "AlertRule", "alertrules": "AlertRule", "notifier": "Notifier", "notifiers": "Notifier",
              "silence": "Silence", "silences": "Silence"}

notifier_app = typer.Typer(help="Notifiers: where alerts are sent.", no_args_is_help=True)



def _value(spec: dict, v: float | None) -> str:
    if v is None:
        return "-"
    try:
        return format_value(v, AlertRuleSpec.model_validate(spec).unit())
    except ValueError:
        return str(v)


def alert_rows(rules: list[dict]) -> list[list[Any]]:
    """One row per (rule, app) alert; a rule without alerts yet shows as inactive."""
    rows = []
    for r in rules:
        spec = r.get("spec") or {}
        alerts = (r.get("status") or {}).get("alerts") or [{"app": spec.get("app") or "", "state": "inactive"}]
        for a in alerts:
            since = a.get("resolvedAt") if a.get("state") == "resolved" else a.get("firingSince") or a.get("activeSince")
            rows.append([r["metadata"]["name"], a.get("app") or "-", a.get("state", "inactive"),
                         _value(spec, a.get("value")), age(since) if since else "-",
                         "yes" if a.get("silenced") else "no"])
    return rows


def rule_row(r: dict) -> list[Any]:
    spec = r.get("spec") or {}
    what = spec.get("condition") or f"{spec.get('metric')} {spec.get('op', '>')} {spec.get('threshold')}"
    if spec.get("condition") == "quota":
        what = f"quota {spec.get('resource')} {spec.get('op', '>')} {spec.get('threshold')}%"
    states = [a.get("state") for a in (r.get("status") or {}).get("alerts") or []]
    firing = sum(1 for s in states if s == "firing")
    return [r["metadata"]["name"], spec.get("app") or "*", what, spec.get("for", "0s"), firing,
            ",".join(spec.get("notifiers") or []) or "-", age(r["metadata"].get("createdAt"))]


def notifier_row(n: dict) -> list[Any]:
    spec = n.get("spec") or {}
    dest = ", ".join(spec.get("to") or []) if spec.get("type") == "email" else spec.get("url", "")
    return [n["metadata"]["name"], spec.get("type", ""), dest, age(n["metadata"].get("createdAt"))]


def silence_row(s: dict) -> list[Any]:
    spec = s.get("spec") or {}
    return [s["metadata"]["name"], spec.get("rule", ""), spec.get("app") or "*", spec.get("endsAt", ""),
            spec.get("comment", "")]


TABLES.update({
    "AlertRule": (["NAME", "APP", "CONDITION", "FOR", "FIRING", "NOTIFIERS", "AGE"], rule_row),
    "Notifier": (["NAME", "TYPE", "DESTINATION", "AGE"], notifier_row),
    "Silence": (["NAME", "RULE", "APP", "ENDS", "COMMENT"], silence_row),
})


def alerts(project: ProjectOpt = None, output: OutputOpt = "table") -> None:
    """The state of every alert of a project: one row per rule and app."""
    scope = project_of(project)
    c = run(Client)
    rules = run(lambda: c.request("GET", f"/projects/{scope}/alertrules"))["items"]
    if output != "table":
        emit({"items": rules}, output)
        return
    if not rules:
        typer.echo(f"No alert rules in {scope}.", err=True)
        return
    typer.echo(table(["RULE", "APP", "STATE", "VALUE", "SINCE", "SILENCED"], alert_rows(rules)))
    for r in rules:
        for p in (r.get("status") or {}).get("problems") or []:
            typer.echo(f"warning: rule {r['metadata']['name']}: {p}", err=True)


def silence(rule: Annotated[str, typer.Argument(help="the rule's name, or '*' for every rule")],
            duration: Annotated[str, typer.Option("--for", help="how long, e.g. 30m, 2h")],
            app_name: Annotated[str | None, typer.Option("--app", help="only this app's alert")] = None,
            comment: Annotated[str, typer.Option("--comment", help="why")] = "",
            project: ProjectOpt = None) -> None:
    """Hold a rule's notifications for a while (states still update; what is owed goes out after)."""
    scope = project_of(project)
    try:
        seconds = parse_duration(duration)
    except ValueError as e:
        raise typer.BadParameter(f"--for: {e}") from None
    now = datetime.now(UTC).replace(microsecond=0)
    ends = (now + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
    base = "all" if rule == "*" else rule
    name = f"{base[:40]}-{app_name[:10] + '-' if app_name else ''}{int(now.timestamp()):x}"
    spec: dict[str, Any] = {"rule": rule, "endsAt": ends, "comment": comment}
    if app_name:
        spec["app"] = app_name
    c = run(Client)
    run(lambda: c.request("POST", f"/projects/{scope}/silences",
                            json_body={"kind": "Silence", "metadata": {"name": name, "project": scope}, "spec": spec}))
    typer.echo(f"silence/{name} holds {rule}{' for app ' + app_name if app_name else ''} until {ends}")


@notifier_app.command("test")
def notifier_test(name: Annotated[str, typer.Argument()], project: ProjectOpt = None) -> None:
    """Send a test message through a notifier and show what its destination answered."""
    scope = project_of(project)
    c = run(Client)
    out = run(lambda: c.request("POST", f"/projects/{scope}/notifiers/{name}/test"))
    typer.echo(f"delivered through {out.get('type')} notifier {name}: {out.get('answer')}")


def register(app: typer.Typer, kinds: dict[str, str]) -> None:
    """Add the commands to `app` and the kind words to `kinds` (the `get`/`delete` vocabulary)."""
    kinds.update(KIND_WORDS)
    app.command("alerts")(alerts)
    app.command("silence")(silence)
    app.add_typer(notifier_app, name="notifier")
