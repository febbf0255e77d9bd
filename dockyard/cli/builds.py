"""`dockyard build start|list|get|logs|cancel`, and the `get` tables of Build and BuildConfig
(BuildConfigs are written with `dockyard apply -f`). `register(app, kinds)` adds them."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from dockyard.cli.client import Client
from dockyard.cli.common import OutputOpt, ProjectOpt, project_of, run
from dockyard.cli.output import TABLES, age, emit, table

KIND_WORDS = {"build": "Build", "builds": "Build", "buildconfig": "BuildConfig", "buildconfigs": "BuildConfig",
              "bc": "BuildConfig"}
HEADERS = ["NAME", "CONFIG", "PHASE", "COMMIT", "IMAGE", "STARTED", "DURATION", "MESSAGE"]

build_app = typer.Typer(help="Builds from source: start, list, follow logs, cancel.", no_args_is_help=True)


def _base(project: str | None) -> str:
    return f"/projects/{project_of(project)}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{seconds:.1f}s"


def build_row(b: dict) -> list[Any]:
    st = b.get("status") or {}
    spec = b.get("spec") or {}
    phase = st.get("phase", "Pending")
    if phase == "Pending" and st.get("queuePosition"):
        phase = f"Pending (#{st['queuePosition']})"
    return [b["metadata"]["name"], st.get("buildConfig") or "-", phase, (st.get("commit") or "-")[:12],
            spec.get("image", ""), age(st["startedAt"]) if st.get("startedAt") else "-",
            duration(st.get("durationSeconds")), (st.get("message") or "")[:60]]


def buildconfig_row(c: dict) -> list[Any]:
    spec = c.get("spec") or {}
    src = spec.get("source") or {}
    hook = "yes" if (spec.get("triggers") or {}).get("webhook") else "no"
    return [c["metadata"]["name"], src.get("git", ""), src.get("ref", "main"), spec.get("image", ""),
            spec.get("deployTo") or "-", hook, age(c["metadata"].get("createdAt"))]


def by_time(items: list[dict]) -> list[dict]:
    """Newest first: by start (a pending build by its creation)."""
    return sorted(items, key=lambda b: (b.get("status") or {}).get("startedAt") or b["metadata"].get("createdAt") or "",
                  reverse=True)


@build_app.command("start")
def start(config: Annotated[str | None, typer.Argument(help="the BuildConfig to build")] = None,
          project: ProjectOpt = None,
          follow: Annotated[bool, typer.Option("--follow", "-f", help="then follow its log")] = False,
          git: Annotated[str | None, typer.Option("--git", help="without a BuildConfig: the repository URL")] = None,
          image: Annotated[str | None, typer.Option("--image", help="with --git: the repository name")] = None,
          ref: Annotated[str, typer.Option("--ref", help="with --git: branch, tag or SHA")] = "main",
          context_dir: Annotated[str, typer.Option("--context-dir")] = ".",
          dockerfile: Annotated[str, typer.Option("--dockerfile")] = "Dockerfile",
          build_arg: Annotated[list[str] | None, typer.Option("--build-arg", help="KEY=VALUE, repeatable")] = None,
          deploy_to: Annotated[str | None, typer.Option("--deploy-to", help="with --git: the App to roll out")] = None,
          ) -> None:
    """Start a Build from a BuildConfig (or, with --git and --image, a one-off Build) and print its name."""
    base = _base(project)
    c = run(Client)
    if config and git:
        raise typer.BadParameter("give a BuildConfig or --git, not both")
    if config:
        b = run(lambda: c.request("POST", f"{base}/buildconfigs/{config}/start"))
    elif git and image:
        args = dict(a.split("=", 1) for a in build_arg or [] if "=" in a)
        spec = {"source": {"git": git, "ref": ref, "contextDir": context_dir}, "dockerfile": dockerfile,
                "buildArgs": args, "image": image, **({"deployTo": deploy_to} if deploy_to else {})}
        name = f"{image[:40].replace('.', '-').replace('_', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"
        b = run(lambda: c.request("POST", f"{base}/builds", json_body={
            "apiVersion": "dockyard/v1", "kind": "Build", "metadata": {"name": name}, "spec": spec}))
    else:
        raise typer.BadParameter("give a BuildConfig, or --git URL and --image NAME")
    typer.echo(b["metadata"]["name"])
    if follow:
        _follow(c, base, b["metadata"]["name"])


@build_app.command("list")
def list_builds(project: ProjectOpt = None, output: OutputOpt = "table",
                config: Annotated[str | None, typer.Option("--config", help="only this BuildConfig's")] = None) -> None:
    """Builds with their phase and duration, newest first."""
    base = _base(project)
    c = run(Client)
    params = {"labelSelector": f"dockyard.io/buildconfig={config}"} if config else None
    items = by_time(run(lambda: c.request("GET", f"{base}/builds", params=params))["items"])
    if output == "table":
        typer.echo(table(HEADERS, [build_row(b) for b in items]))
    else:
        emit(items, output)


@build_app.command("get")
def get_build(name: Annotated[str, typer.Argument()], project: ProjectOpt = None, output: OutputOpt = "yaml") -> None:
    """One Build, whole (status: digest, tags, commit, times)."""
    base = _base(project)
    c = run(Client)
    b = run(lambda: c.request("GET", f"{base}/builds/{name}"))
    if output == "table":
        typer.echo(table(HEADERS, [build_row(b)]))
    else:
        emit(b, output)


def _follow(c: Client, base: str, name: str, follow: bool = True) -> None:
    """Print the log; when following, it ends with the build, and so does the command: exit 1 with
    the phase and message on stderr unless the build Succeeded (so scripts and CI can rely on it)."""
    def echo_all() -> None:
        for line in c.stream(f"{base}/builds/{name}/logs", params={"follow": "true" if follow else None}):
            typer.echo(line)

    run(echo_all)
    if not follow:
        return
    st = run(lambda: c.request("GET", f"{base}/builds/{name}")).get("status") or {}
    phase = st.get("phase") or "Pending"
    if phase != "Succeeded":
        typer.echo(f"build {name}: {phase}" + (f": {st['message']}" if st.get("message") else ""), err=True)
        raise typer.Exit(1)


@build_app.command("logs")
def logs(name: Annotated[str, typer.Argument()], project: ProjectOpt = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="until the build ends")] = False) -> None:
    """A build's log."""
    _follow(run(Client), _base(project), name, follow)


@build_app.command("cancel")
def cancel(name: Annotated[str, typer.Argument()], project: ProjectOpt = None) -> None:
    """Cancel a pending or running build (it ends Cancelled)."""
    base = _base(project)
    c = run(Client)
    run(lambda: c.request("POST", f"{base}/builds/{name}/cancel"))
    typer.echo(f"build {name}: cancel requested")


def register(app: typer.Typer, kinds: dict[str, str]) -> None:
    """Add `dockyard build` to `app` and the kind words and tables to `get`/`delete`/`apply`."""
    kinds.update(KIND_WORDS)
    TABLES["Build"] = (HEADERS, build_row)
    TABLES["BuildConfig"] = (["NAME", "GIT", "REF", "IMAGE", "DEPLOY TO", "WEBHOOK", "AGE"], buildconfig_row)
    app.add_typer(build_app, name="build")
