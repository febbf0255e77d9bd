"""`dockyard images`: repositories and tags of Dockyard's registry, delete, preheat, retention, GC."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from dockyard.cli.client import Client, CliError
from dockyard.cli.common import OutputOpt, project_of, run
from dockyard.cli.output import age, emit, human_bytes, table
from dockyard.registry.settings import split_repository_ref  # pure parsing, no I/O

images_app = typer.Typer(help="Images in Dockyard's registry: `dockyard images -p T/P` lists the repositories.",
                         invoke_without_command=True)


def split_ref(ref: str, *, tag_required: bool) -> tuple[str, str, str | None]:
    """"[HOST/]T/P/NAME[:TAG]" → ("T/P", "NAME", TAG); a registry host in front is dropped."""
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        ref = rest
    found = split_repository_ref(ref)
    if found is None or "@" in ref:
        raise CliError(f"'{ref}' is not a repository of Dockyard's registry: write TENANT/PROJECT/NAME"
                       + (":TAG" if tag_required else "[:TAG]"))
    tenant, project, name, tag = found
    if tag_required and not tag:
        raise CliError(f"'{ref}' names no tag: write TENANT/PROJECT/NAME:TAG")
    return f"{tenant}/{project}", name, tag


def _call(method: str, path: str, output: str, client: Any = None, **kw: Any) -> Any:
    """The API's answer; printed as JSON or YAML (and None returned) unless the output is a table."""
    c = client or run(Client)
    data = run(lambda: c.request(method, path, **kw))
    if output != "table":
        emit(data, output)
        return None
    return data


@images_app.callback()
def images(ctx: typer.Context,
           project: Annotated[str | None, typer.Option("--project", "-p", help="TENANT/PROJECT")] = None,
           output: OutputOpt = "table") -> None:
    """List the project's repositories: tags, size, last push."""
    if ctx.invoked_subcommand is not None:
        return
    data = _call("GET", f"/projects/{project_of(project)}/images", output)
    if data is None:
        return
    rows = [[r["name"], r["tagCount"], human_bytes(r["size"]), age(r.get("lastPush")) if r.get("lastPush") else "-",
             r["image"]] for r in data["items"]]
    typer.echo(table(["REPOSITORY", "TAGS", "SIZE", "LAST PUSH", "IMAGE"], rows))


@images_app.command("tags")
def tags(repository: Annotated[str, typer.Argument(help="TENANT/PROJECT/NAME")], output: OutputOpt = "table") -> None:
    """The repository's tags with digest, size, pushed-at, pushed-by and the Apps using them."""
    scope, name, _ = run(lambda: split_ref(repository, tag_required=False))
    data = _call("GET", f"/projects/{scope}/images/{name}/tags", output)
    if data is None:
        return
    rows = [[t["tag"], t["digest"][:19], human_bytes(t["size"]), age(t["pushedAt"]) if t.get("pushedAt") else "-",
             t.get("pushedBy") or "-", ",".join(t.get("apps") or []) or "-"] for t in data["items"]]
    typer.echo(table(["TAG", "DIGEST", "SIZE", "PUSHED", "BY", "APPS"], rows))


@images_app.command("delete")
def delete(ref: Annotated[str, typer.Argument(help="TENANT/PROJECT/NAME:TAG")],
           force: Annotated[bool, typer.Option("--force", help="delete it although an App uses it or has its "
                                                                "digest in its rollout history")] = False) -> None:
    """Delete a tag (its manifest; refused while another tag points to the same digest, and while an
    App uses it or has its digest in its rollout history unless --force)."""
    scope, name, tag = run(lambda: split_ref(ref, tag_required=True))
    res = _call("DELETE", f"/projects/{scope}/images/{name}/tags/{tag}", "table",
                params={"force": "true"} if force else None)
    typer.echo(f"deleted {res['repository']}:{res['tag']} ({res['digest']})")


@images_app.command("preheat")
def preheat(ref: Annotated[str, typer.Argument(help="TENANT/PROJECT/NAME[:TAG]")],
            cluster: Annotated[str | None, typer.Option("--cluster", help="cluster name (default: the local one)")]
            = None, output: OutputOpt = "table") -> None:
    """Pull the image onto every node of the cluster now, before Apps need it."""
    scope, name, tag = run(lambda: split_ref(ref, tag_required=False))
    res = _call("POST", f"/projects/{scope}/images/{name}/preheat", output,
                json_body={"tag": tag or "latest", "cluster": cluster})
    if res is None:
        return
    for n in res["nodes"]:
        typer.echo(f"{n['engine']}: " + ("pulled " + res["image"] if n["pulled"] else f"FAILED: {n.get('error')}"))
    if not all(n["pulled"] for n in res["nodes"]):
        raise typer.Exit(1)


@images_app.command("retention")
def retention(project: Annotated[str | None, typer.Option("--project", "-p", help="TENANT/PROJECT")] = None,
              dry_run: Annotated[bool, typer.Option("--dry-run", help="only show what would be deleted and kept")]
              = False, output: OutputOpt = "table") -> None:
    """Apply the project's retention rules (spec.registry.retention) now; every tag is listed with
    what happens to it and why."""
    res = _call("POST", f"/projects/{project_of(project)}/registry/retention", output,
                params={"dryRun": "1" if dry_run else None})
    if res is None:
        return
    gone = res.get("wouldDelete" if dry_run else "deleted") or []
    rows = [[v["repository"], v["tag"], v["digest"][:19], "would delete" if dry_run else "deleted", v["reason"]]
            for v in gone] + [[v["repository"], v["tag"], v["digest"][:19], "kept", v["reason"]]
                              for v in (res.get("protected") or []) + (res.get("kept") or [])]
    typer.echo(table(["REPOSITORY", "TAG", "DIGEST", "ACTION", "WHY"], rows))
    for f in res.get("failed") or []:
        typer.echo(f"failed: {f}", err=True)


@images_app.command("gc")
def gc(output: OutputOpt = "table") -> None:
    """Garbage-collect the registry's unreferenced blobs now (admin)."""
    res = _call("POST", "/registry/gc", output, client=run(lambda: Client(timeout=3600)))
    if res is None:
        return
    typer.echo(f"freed {human_bytes(res['freedBytes'])} ({res['blobsBefore']} → {res['blobsAfter']} blobs) "
               f"in {res['seconds']:.1f}s")


@images_app.command("usage")
def usage(project: Annotated[str | None, typer.Option("--project", "-p", help="TENANT/PROJECT")] = None,
          output: OutputOpt = "table") -> None:
    """Registry storage the project uses against its quota (spec.quota.storage), and its retention rules."""
    res = _call("GET", f"/projects/{project_of(project)}/registry", output)
    if res is None:
        return
    u = res["usage"]
    quota = human_bytes(u["quotaBytes"]) if u.get("quotaBytes") is not None else "unlimited"
    project_name = res["prefix"][len(res["host"]) + 1:].rstrip("/") if res.get("host") else res["prefix"]
    typer.echo(f"project {project_name}: used {human_bytes(u['bytes'] or 0)} of {quota} "
               "(each blob counted once, however many tags and repositories share it)")
    typer.echo(f"registry {res['host']}: images are {res['prefix']}NAME[:TAG]")
    for r in res.get("retention") or []:
        typer.echo(f"retention: repositories {r.get('repositories', '*')} tags {r.get('tags', '*')}"
                   + (f" keepLast {r['keepLast']}" if "keepLast" in r else "")
                   + (f" keepDays {r['keepDays']}" if "keepDays" in r else ""))


def register(app: typer.Typer) -> None:
    app.add_typer(images_app, name="images")
