"""`dockyard` commands."""

from __future__ import annotations

import difflib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from dockyard.cli import alerts as alerts_cli
from dockyard.cli import builds as builds_cli
from dockyard.cli import clusters as clusters_cli
from dockyard.cli import events as events_cli
from dockyard.cli import images as images_cli
from dockyard.cli import logs as logs_cli
from dockyard.cli import robots as robots_cli
from dockyard.cli.client import Client, CliError, load_config, paths_for, save_config
from dockyard.cli.common import OutputOpt, ProjectOpt, fail, project_of, run
from dockyard.cli.drains import describe_logdrain
from dockyard.cli.nodes import top_nodes
from dockyard.cli.output import TABLES, age, emit, table, usage_rows

app = typer.Typer(help="Dockyard: a multi-tenant container cloud. `dockyard COMMAND --help` for details.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
rollout_app = typer.Typer(help="Rollout history, undo and restart.", no_args_is_help=True)
app.add_typer(rollout_app, name="rollout")
create_app = typer.Typer(help="Create users, tokens, secrets and configs.", no_args_is_help=True)
app.add_typer(create_app, name="create")
app.command(name="logs")(logs_cli.logs)
app.command(name="events")(events_cli.events)

KINDS = {"app": "App", "apps": "App", "project": "Project", "projects": "Project", "tenant": "Tenant",
         "tenants": "Tenant", "secret": "Secret", "secrets": "Secret", "config": "Config", "configs": "Config",
         "logdrain": "LogDrain", "logdrains": "LogDrain"}
alerts_cli.register(app, KINDS)
robots_cli.register(app)
builds_cli.register(app, KINDS)
images_cli.register(app)
clusters_cli.register(app, KINDS)
# things `get` and `delete` know besides the declarative kinds
EXTRA_GET = ("users", "user", "tokens", "token", "members", "quota")


def kind_of(word: str) -> str:
    k = KINDS.get(word.lower())
    if not k:
        fail(f"unknown kind '{word}' (known: {', '.join(w for w in KINDS if w.endswith('s'))})")
    return k


def item_path(kind: str, name: str, project: str | None) -> str:
    if kind in ("Tenant", "Cluster"):
        return f"/{kind.lower()}s/{name}"
    if kind == "Project":
        if "/" not in name:
            fail(f"give the project as TENANT/PROJECT, not '{name}'")
        return f"/projects/{name}"
    return f"/projects/{project_of(project)}/{kind.lower()}s/{name}"


def collection_path(kind: str, project: str | None, all_projects: bool = False) -> str:
    if kind in ("Tenant", "Cluster"):
        return f"/{kind.lower()}s"
    if kind == "Project":
        return "/projects"
    if all_projects and kind == "App":
        return "/apps"
    return f"/projects/{project_of(project)}/{kind.lower()}s"


# --- server and login ----------------------------------------------------------------------

@app.command()
def server(listen: Annotated[str, typer.Option(help="address:port to serve the API on")] = "127.0.0.1:8080",
           data_dir: Annotated[Path | None, typer.Option(help="default $DOCKYARD_DATA_DIR or ./.dockyard")] = None,
           engine: Annotated[str | None, typer.Option(help="engine URL: unix://, tcp://, ssh://")] = None,
           database_url: Annotated[str | None, typer.Option(
               help="default $DOCKYARD_DATABASE_URL or SQLite in the data dir")] = None,
           workers: Annotated[int, typer.Option(help="reconcile worker threads")] = 4,
           registry_listen: Annotated[str | None, typer.Option(
               help="HOST:PORT of the image registry, or off (default $DOCKYARD_REGISTRY_LISTEN or 127.0.0.1:5000)")]
           = None,
           registry_url: Annotated[str | None, typer.Option(
               help="use this external registry instead of running one (Dockyard stays its token service)")]
           = None) -> None:
    """Run the Dockyard server (API and controllers)."""
    from dockyard.server import ServerConfig
    from dockyard.server import run as run_server

    cfg = ServerConfig(listen=listen,
                       data_dir=data_dir or Path(os.environ.get("DOCKYARD_DATA_DIR") or ".dockyard"),
                       engine_url=engine or os.environ.get("DOCKYARD_ENGINE") or os.environ.get("DOCKER_HOST")
                       or "unix:///var/run/docker.sock",
                       database_url=database_url or os.environ.get("DOCKYARD_DATABASE_URL"), workers=workers,
                       resync=float(os.environ.get("DOCKYARD_RESYNC_SECONDS", "30")))
    reg = registry_listen or os.environ.get("DOCKYARD_REGISTRY_LISTEN") or cfg.registry_listen
    cfg.registry_listen = None if reg == "off" else reg
    cfg.registry_url = registry_url or os.environ.get("DOCKYARD_REGISTRY_URL") or None
    run_server(cfg)


@app.command()
def login(url: Annotated[str, typer.Argument(help="e.g. http://127.0.0.1:8080")],
          username: Annotated[str, typer.Option("--username", "-u")] = "admin",
          password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False) -> None:
    """Log in and save the session token in ~/.config/dockyard/config.json."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    if not password:
        fail("empty password")
    c = Client(url=url, token="-")
    c.http.headers.pop("Authorization", None)
    res = run(lambda: c.request("POST", "/login", json_body={"username": username, "password": password}))
    cfg = load_config()
    cfg.update(url=url.rstrip("/"), token=res["token"], user=username)
    save_config(cfg)
    typer.echo(f"Logged in to {url} as {username}.")


@app.command()
def logout() -> None:
    """Revoke the saved session token and forget it."""
    cfg = load_config()
    if cfg.get("token"):
        try:
            Client().request("POST", "/logout")
        except CliError:
            pass
    cfg.pop("token", None)
    save_config(cfg)
    typer.echo("Logged out.")


@app.command()
def version() -> None:
    """Client and server versions."""
    from dockyard import __version__

    typer.echo(f"client: {__version__}")
    info = run(lambda: Client().request("GET", "/info"))
    typer.echo(f"server: {info['version']} (engine {info['engine']['url']}: {info['engine']['status']})")


# --- manifests -----------------------------------------------------------------------------

def read_documents(files: list[str]) -> list[tuple[str, Any, Path | None]]:
    docs = []
    for f in files:
        path = None if f == "-" else Path(f)
        try:
            text = sys.stdin.read() if path is None else path.read_text()
        except OSError as e:
            fail(f"cannot read {f}: {e.strerror}")
        try:
            for d in yaml.safe_load_all(text):
                if d is not None:
                    docs.append((f, d, path))
        except yaml.YAMLError as e:
            fail(f"{f} is not valid YAML: {str(e).splitlines()[0]}")
    return docs


def expand(c: Client, docs: list[tuple[str, Any, Path | None]], project: str | None) -> list[dict]:
    """Manifests to apply: Compose files are converted by the server into Apps of the project."""
    from dockyard.compose.convert import looks_like_compose

    out: list[dict] = []
    for name, doc, path in docs:
        if looks_like_compose(doc):
            p = project_of(project)
            files = {}
            for svc in (doc.get("services") or {}).values():
                env_files = (svc or {}).get("env_file") if isinstance(svc, dict) else None
                for ef in ([env_files] if isinstance(env_files, (str, dict)) else env_files or []):
                    ef_path = ef.get("path") if isinstance(ef, dict) else ef
                    if isinstance(ef_path, str):
                        full = (path.parent if path else Path.cwd()) / ef_path
                        if full.exists():
                            files[ef_path] = full.read_text()
            res = run(lambda: c.request("POST", "/compose/convert", json_body={
                "project": p, "compose": doc, "files": files, "env": dict(os.environ)}))
            for w in res.get("warnings", []):
                typer.echo(f"warning: {name}: {w['field']}: {w['message']}", err=True)
            out.extend(res["items"])
            continue
        if not isinstance(doc, dict) or "kind" not in doc:
            fail(f"{name}: a document has no kind (expected a Dockyard manifest or a Compose file)")
        doc.setdefault("apiVersion", "dockyard/v1")
        meta = doc.setdefault("metadata", {})
        if doc.get("kind") in ("App", "Secret", "Config"):
            if project and meta.get("project") not in (None, project):
                fail(f"{name}: app {meta.get('name')} belongs to {meta.get('project')}, not {project}")
            if not meta.get("project"):
                meta["project"] = project_of(project)
        out.append(doc)
    order = {"Tenant": 0, "Cluster": 0, "Project": 1}
    return sorted(out, key=lambda d: order.get(d.get("kind", ""), 2))


def label_of(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if obj.get("kind") == "Project" and meta.get("tenant") and "/" not in str(name):
        name = f"{meta['tenant']}/{name}"
    return f"{str(obj.get('kind', '')).lower()}/{name}"


def spec_changes(before: dict, after: dict) -> list[str]:
    a = yaml.safe_dump({"spec": before.get("spec"), "labels": before["metadata"].get("labels")}, sort_keys=True)
    b = yaml.safe_dump({"spec": after.get("spec"), "labels": after["metadata"].get("labels")}, sort_keys=True)
    return [line for line in difflib.unified_diff(a.splitlines(), b.splitlines(), "stored", "file", lineterm="")]


@app.command()
def apply(file: Annotated[list[str], typer.Option("--filename", "-f", help="manifest or Compose file; - for stdin")],
          project: ProjectOpt = None,
          dry_run: Annotated[bool, typer.Option("--dry-run",
                                                help="validate and admit on the server, store nothing")] = False) -> None:
    """Create or update objects from manifests (kubectl-style YAML) or a Compose file."""
    c = run(Client)
    objs = expand(c, read_documents(file), project)
    failed = False
    for obj in objs:
        try:
            collection, item = paths_for(obj)
            current = c.request("GET", item, ok_404=True)
            params = {"dryRun": "true"} if dry_run else None
            if current is None:
                c.request("POST", collection, json_body=obj, params=params)
                verb = "created"
            else:
                obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                res = c.request("PUT", item, json_body=obj, params=params)
                changed = res["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] or (
                    dry_run and (res.get("spec") != current.get("spec")
                                 or res["metadata"].get("labels") != current["metadata"].get("labels")))
                verb = "configured" if changed else "unchanged"
                if dry_run and changed:
                    for line in spec_changes(current, res)[2:]:
                        typer.echo(f"    {line}")
            typer.echo(f"{label_of(obj)} {verb}{' (dry run)' if dry_run else ''}")
        except CliError as e:
            typer.echo(f"error: {label_of(obj)}: {e}", err=True)
            failed = True
    if failed:
        raise typer.Exit(1)


@app.command()
def diff(file: Annotated[list[str], typer.Option("--filename", "-f")], project: ProjectOpt = None) -> None:
    """Show how the objects in a file differ from what is stored (exit 1 when they differ)."""
    c = run(Client)
    differs = False
    for obj in expand(c, read_documents(file), project):
        collection, item = paths_for(obj)
        current = run(lambda: c.request("GET", item, ok_404=True))
        if current is None:
            res = run(lambda: c.request("POST", collection, json_body=obj, params={"dryRun": "true"}))
            typer.echo(f"+ {label_of(obj)} (new)")
            for line in yaml.safe_dump({"spec": res.get("spec")}, sort_keys=True).splitlines():
                typer.echo(f"+   {line}")
            differs = True
            continue
        obj["metadata"].pop("resourceVersion", None)
        res = run(lambda: c.request("PUT", item, json_body=obj, params={"dryRun": "true"}))
        lines = spec_changes(current, res)
        if lines:
            differs = True
            typer.echo(f"~ {label_of(obj)}")
            for line in lines:
                typer.echo(f"    {line}")
    if differs:
        raise typer.Exit(1)


# --- reading -------------------------------------------------------------------------------

@app.command()
def get(kind: Annotated[str, typer.Argument(help="apps, projects or tenants")],
        name: Annotated[str | None, typer.Argument()] = None, project: ProjectOpt = None,
        output: OutputOpt = "table",
        selector: Annotated[str | None, typer.Option("--selector", "-l", help="label selector")] = None,
        all_projects: Annotated[bool, typer.Option("--all-projects", "-A")] = False,
        watch: Annotated[bool, typer.Option("--watch", "-w", help="keep printing changes")] = False,
        cluster: Annotated[str | None, typer.Option("--cluster", help="(get nodes) only this cluster's")] = None,
        ) -> None:
    """List objects, or show one (also: users, tokens, members, quota, nodes)."""
    if kind.lower() in ("nodes", "node"):
        clusters_cli.get_nodes(cluster, output)
        return
    if kind.lower() in EXTRA_GET:
        get_extra(kind.lower(), project, output)
        return
    k = kind_of(kind)
    c = run(Client)
    headers, row = TABLES[k]
    if all_projects and k == "App" and not name:
        # apps of several projects may share a name: say whose each one is
        one_project_row = row
        headers = ["PROJECT", *headers]

        def row(obj: dict) -> list[Any]:
            return [obj["metadata"].get("project", ""), *one_project_row(obj)]
    if name:
        obj = run(lambda: c.request("GET", item_path(k, name, project)))
        if output == "table":
            typer.echo(table(headers, [row(obj)]))
        else:
            emit(obj, output)
        return
    if watch:
        path = collection_path(k, project, all_projects)
        typer.echo(table(headers, []))
        try:
            for ev in c.events(path, params={"labelSelector": selector}):
                if ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    r = row(ev["object"])
                    typer.echo(table(headers, [r]).splitlines()[1] + ("   (deleted)" if ev["type"] == "DELETED" else ""))
        except CliError as e:
            fail(str(e))
        return
    items: list[dict] = []
    cont = None
    while True:
        page = run(lambda: c.request("GET", collection_path(k, project, all_projects),
                                     params={"labelSelector": selector, "limit": 500, "continue": cont}))
        items.extend(page["items"])
        cont = page["metadata"].get("continue")
        if not cont:
            break
    if output == "table":
        if not items:
            typer.echo(f"No {k.lower()}s found.", err=True)
            return
        typer.echo(table(headers, [row(i) for i in items]))
    else:
        emit({"items": items}, output)


@app.command()
def describe(kind: Annotated[str, typer.Argument()], name: Annotated[str, typer.Argument()],
             project: ProjectOpt = None) -> None:
    """Spec, status, conditions, containers and recent events of an object."""
    k = kind_of(kind)
    c = run(Client)
    path = item_path(k, name, project)
    obj = run(lambda: c.request("GET", path))
    meta, spec, st = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    out = [f"Name:         {meta['name']}", f"Kind:         {obj['kind']}"]
    if meta.get("project"):
        out.append(f"Project:      {meta['project']}")
    if meta.get("tenant"):
        out.append(f"Tenant:       {meta['tenant']}")
    out += [f"Created:      {meta.get('createdAt')} ({age(meta.get('createdAt'))} ago)",
            f"Labels:       {', '.join(f'{a}={b}' for a, b in meta.get('labels', {}).items()) or '<none>'}",
            f"Generation:   {meta.get('generation')} (observed {st.get('observedGeneration', '-')})"]
    if k == "App":
        res = spec.get("resources") or {}
        out += [f"Image:        {spec.get('image')}",
                f"Replicas:     {spec.get('replicas')} desired, {st.get('replicas', 0)} present, "
                f"{st.get('readyReplicas', 0)} ready, {st.get('updatedReplicas', 0)} updated",
                f"Phase:        {st.get('phase', 'Pending')}",
                f"Revision:     {st.get('revision', '-')}",
                f"Strategy:     {spec.get('strategy', {}).get('type')} (maxSurge {spec.get('strategy', {}).get('maxSurge')}, "
                f"maxUnavailable {spec.get('strategy', {}).get('maxUnavailable')})",
                f"Resources:    {json.dumps(res) if res else '<none>'}",
                "Ports:        " + (", ".join(f"{p['containerPort']}/{p.get('protocol', 'tcp')}"
                                              for p in spec.get("ports", [])) or "<none>")]
        if spec.get("healthcheck"):
            hc = spec["healthcheck"]
            what = next(f"{kk} {json.dumps(hc[kk])}" for kk in ("exec", "http", "tcp") if kk in hc)
            out.append(f"Healthcheck:  {what} every {hc.get('interval')}, timeout {hc.get('timeout')}, "
                       f"retries {hc.get('retries')}")
    if k == "LogDrain":
        out += describe_logdrain(spec, st)
    if st.get("conditions"):
        out += ["Conditions:", table(["  TYPE", "STATUS", "REASON", "MESSAGE"],
                                     [[f"  {x['type']}", x["status"], x.get("reason", ""), x.get("message", "")]
                                      for x in st["conditions"]])]
    if k == "App":
        cs = st.get("containers") or []
        out.append("Containers:" + ("" if cs else " <none>"))
        if cs:
            out.append(table(["  REPLICA", "CONTAINER", "REVISION", "STATE", "HEALTH", "RESTARTS", "IP"],
                             [[f"  {x['slot']}", x["name"], x.get("revision", "-"), x["state"], x.get("health", "-"),
                               x.get("restarts", 0), x.get("ip", "-")] for x in cs]))
        evs = run(lambda: c.request("GET", path + "/events", params={"limit": 15}))["items"]
        out.append("Events:" + ("" if evs else " <none>"))
        if evs:
            out.append(table(["  AGE", "TYPE", "REASON", "MESSAGE"],
                             [[f"  {age(e['at'])}", e["type"], e["reason"],
                               e["message"] + (f" (x{e['count']})" if e.get("count", 1) > 1 else "")] for e in evs]))
    typer.echo("\n".join(out))


# --- changing ------------------------------------------------------------------------------

@app.command()
def delete(kind: Annotated[str | None, typer.Argument()] = None, name: Annotated[str | None, typer.Argument()] = None,
           project: ProjectOpt = None,
           file: Annotated[list[str] | None, typer.Option("--filename", "-f")] = None) -> None:
    """Delete an object (deleting a project deletes its apps), or the objects of a file.
    Also: `delete user NAME`, `delete token ID`."""
    c = run(Client)
    if kind in ("user", "users") and name:
        run(lambda: c.request("DELETE", f"/users/{name}"))
        typer.echo(f"user/{name} deleted")
        return
    if kind in ("token", "tokens") and name:
        run(lambda: c.request("DELETE", f"/tokens/{name}"))
        typer.echo(f"token {name} revoked")
        return
    if file:
        objs = expand(c, read_documents(file), project)
        for obj in reversed(objs):
            _, item = paths_for(obj)
            res = run(lambda: c.request("DELETE", item, ok_404=True))
            typer.echo(f"{label_of(obj)} {'deleted' if res else 'not found'}")
        return
    if not kind or not name:
        fail("give KIND NAME, or -f FILE")
    k = kind_of(kind)
    run(lambda: c.request("DELETE", item_path(k, name, project)))
    typer.echo(f"{k.lower()}/{name} deleted")


@app.command()
def scale(kind: Annotated[str, typer.Argument(help="app")], name: Annotated[str, typer.Argument()],
          replicas: Annotated[int, typer.Option("--replicas", min=0, max=1000)], project: ProjectOpt = None) -> None:
    """Set the number of replicas of an app."""
    if kind_of(kind) != "App":
        fail("only apps can be scaled")
    c = run(Client)
    run(lambda: c.request("POST", item_path("App", name, project) + "/scale", json_body={"replicas": replicas}))
    typer.echo(f"app/{name} scaled to {replicas}")


def parse_timeout(text: str) -> float:
    from dockyard.model.quantity import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        fail(f"--timeout: {e}")
        raise AssertionError("unreachable") from e  # fail() exits


def _condition(obj: dict, cond: str) -> bool:
    st = obj.get("status") or {}
    if cond == "ready":
        gen_ok = st.get("observedGeneration") == obj["metadata"].get("generation")
        return gen_ok and any(x["type"] == "Ready" and x["status"] == "True" for x in st.get("conditions", []))
    if cond.startswith("condition="):
        want = cond.split("=", 1)[1]
        t, _, v = want.partition("=")
        return any(x["type"].lower() == t.lower() and x["status"] == (v or "True") for x in st.get("conditions", []))
    fail(f"--for: unknown condition '{cond}' (ready, delete, condition=TYPE[=STATUS])")
    return False


@app.command()
def wait(kind: Annotated[str, typer.Argument()], name: Annotated[str, typer.Argument()],
         for_: Annotated[str, typer.Option("--for", help="ready, delete or condition=TYPE[=STATUS]")] = "ready",
         timeout: Annotated[str, typer.Option(help="e.g. 60s, 5m")] = "60s", project: ProjectOpt = None) -> None:
    """Wait until an object is ready (or deleted, or has a condition)."""
    k = kind_of(kind)
    c = run(Client)
    path = item_path(k, name, project)
    deadline = time.monotonic() + parse_timeout(timeout)
    last: dict | None = None
    while time.monotonic() < deadline:
        try:
            for ev in c.events(path, timeout=max(deadline - time.monotonic(), 0.1)):
                if ev.get("type") == "DELETED" and for_ == "delete":
                    typer.echo(f"{k.lower()}/{name} deleted")
                    return
                if ev.get("type") in ("ADDED", "MODIFIED"):
                    last = ev["object"]
                    if for_ != "delete" and _condition(last, for_):
                        typer.echo(f"{k.lower()}/{name} condition met ({for_})")
                        return
                if time.monotonic() >= deadline:
                    break
        except TimeoutError:
            break
        except CliError as e:
            if e.status == 404 and for_ == "delete":
                typer.echo(f"{k.lower()}/{name} deleted")
                return
            fail(str(e))
    why = ""
    if last:
        ready = next((x for x in (last.get("status") or {}).get("conditions", []) if x["type"] == "Ready"), None)
        if ready:
            why = f": {ready.get('reason')}: {ready.get('message')}"
    fail(f"timed out after {timeout} waiting for {k.lower()}/{name} ({for_}){why}")


@rollout_app.command("history")
def rollout_history(kind: Annotated[str, typer.Argument()], name: Annotated[str, typer.Argument()],
                    project: ProjectOpt = None, output: OutputOpt = "table") -> None:
    """The last 10 revisions of an app."""
    c = run(Client)
    res = run(lambda: c.request("GET", item_path(kind_of(kind), name, project) + "/revisions"))
    if output != "table":
        emit(res, output)
        return
    typer.echo(table(["REVISION", "IMAGE", "CREATED", "CHANGE-CAUSE"],
                     [[f"{r['revision']}{' *' if r['current'] else ''}",
                       r.get("image", "") + (f"@{r['imageDigest'][:19]}" if r.get("imageDigest") else ""),
                       age(r["createdAt"]),
                       r.get("changeCause") or ""] for r in res["items"]]))


@rollout_app.command("undo")
def rollout_undo(kind: Annotated[str, typer.Argument()], name: Annotated[str, typer.Argument()],
                 project: ProjectOpt = None,
                 to_revision: Annotated[int | None, typer.Option("--to-revision", min=1)] = None) -> None:
    """Roll an app back to the previous revision (or --to-revision N)."""
    c = run(Client)
    body = {"revision": to_revision} if to_revision else {}
    res = run(lambda: c.request("POST", item_path(kind_of(kind), name, project) + "/rollback", json_body=body))
    typer.echo(f"app/{name} rolled back (image {res['spec']['image']})")


@rollout_app.command("restart")
def rollout_restart(kind: Annotated[str, typer.Argument(help="app (may be left out), or the app's name")],
                    name: Annotated[str | None, typer.Argument()] = None, project: ProjectOpt = None) -> None:
    """Replace every replica of an app by a rolling update (`rollout restart web` or `rollout restart app web`)."""
    if name is None:
        kind, name = "app", kind
    if kind_of(kind) != "App":
        fail("only apps can be restarted")
    c = run(Client)
    res = run(lambda: c.request("POST", item_path("App", name, project) + "/restart"))
    typer.echo(f"app/{name} restarting (restartedAt {res['spec']['restartedAt']}); "
               f"follow it with: dockyard rollout status app {name}")


@rollout_app.command("status")
def rollout_status(kind: Annotated[str, typer.Argument()], name: Annotated[str, typer.Argument()],
                   project: ProjectOpt = None,
                   watch: Annotated[bool, typer.Option("--watch/--no-watch", "-w",
                                                       help="wait until the rollout ends (default)")] = True,
                   timeout: Annotated[str, typer.Option(help="how long to wait, e.g. 60s, 5m")] = "5m") -> None:
    """Follow the app's rollout until it is complete (exit 0) or stalled (exit 1)."""
    c = run(Client)
    path = item_path(kind_of(kind), name, project)
    deadline = time.monotonic() + parse_timeout(timeout)
    last = None
    while True:
        obj = run(lambda: c.request("GET", path))
        st = obj.get("status") or {}
        prog = next((x for x in st.get("conditions", []) if x["type"] == "Progressing"), None)
        # the controller has not seen the latest change yet: what status says is about the one before
        seen = st.get("observedGeneration") == obj["metadata"].get("generation")
        phase = st.get("phase", "Pending") if seen else "Pending"
        line = f"app/{name}: {phase}, revision {st.get('revision', '-')}" + (
            f": {prog['message']}" if prog and seen else "" if seen else ": waiting for the controller")
        if line != last:
            typer.echo(line)
            last = line
        if phase == "Stalled":
            raise typer.Exit(1)
        if phase == "Ready" or not watch:
            return
        if time.monotonic() >= deadline:
            fail(f"timed out after {timeout}: the rollout of app/{name} is still {phase}")
        time.sleep(0.5)


# --- users, tokens, members, quota ---------------------------------------------------------

def get_extra(what: str, project: str | None, output: str) -> None:
    c = run(Client)
    if what in ("users", "user"):
        res = run(lambda: c.request("GET", "/users"))
        rows = [[u["name"], "yes" if u["admin"] else "", age(u["createdAt"])] for u in res["items"]]
        headers = ["NAME", "ADMIN", "AGE"]
    elif what in ("tokens", "token"):
        res = run(lambda: c.request("GET", "/tokens"))
        rows = [[t["id"], t["name"], t["kind"], t.get("project") or "*", t.get("role") or "(user's)",
                 t.get("expiresAt") or "never", "revoked" if t["revoked"] else "active"] for t in res["items"]]
        headers = ["ID", "NAME", "KIND", "PROJECT", "ROLE", "EXPIRES", "STATE"]
    elif what == "members":
        p = project_of(project)
        res = run(lambda: c.request("GET", f"/projects/{p}/members"))
        rows = [[m["user"], m["role"], m["scope"] + (" (tenant)" if m.get("inherited") else "")] for m in res["items"]]
        headers = ["USER", "ROLE", "GRANTED ON"]
    else:
        p = project_of(project)
        res = run(lambda: c.request("GET", f"/projects/{p}/quota"))
        rows = []
        for level in ("project", "tenant"):
            for r, v in res[level]["resources"].items():
                rows.append([f"{level} {res[level]['name']}", r, v["used"], v["hard"] if v["hard"] is not None else "-"])
        headers = ["SCOPE", "RESOURCE", "USED", "HARD"]
    if output != "table":
        emit(res, output)
    else:
        typer.echo(table(headers, rows))


@create_app.command("user")
def create_user_cmd(name: Annotated[str, typer.Argument()],
                    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
                    admin: Annotated[bool, typer.Option("--admin", help="a platform admin")] = False) -> None:
    """Create a user (admins only)."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True)
    c = run(Client)
    run(lambda: c.request("POST", "/users", json_body={"name": name, "password": password, "admin": admin}))
    typer.echo(f"user/{name} created")


@create_app.command("token")
def create_token_cmd(name: Annotated[str, typer.Option("--name")] = "api",
                     expires: Annotated[str, typer.Option("--expires", help="e.g. 12h, 30d, or never")] = "30d",
                     project: Annotated[str | None, typer.Option("--project", "-p")] = None,
                     role: Annotated[str | None, typer.Option("--role", help="viewer, developer, maintainer, owner")] = None,
                     ) -> None:
    """Create an API token; its secret is printed once."""
    c = run(Client)
    res = run(lambda: c.request("POST", "/tokens", json_body={
        "name": name, "expires": None if expires == "never" else expires, "project": project, "role": role}))
    typer.echo(res["token"])
    typer.echo(f"token {res['id']} ({name}) expires {res.get('expiresAt') or 'never'}; "
               "it is shown only now", err=True)


def _file_value(from_file: Path | None, from_literal: str | None) -> bytes:
    if (from_file is None) == (from_literal is None):
        fail("give exactly one of --from-file F or --from-literal VALUE")
    if from_file is not None:
        try:
            return sys.stdin.buffer.read() if str(from_file) == "-" else from_file.read_bytes()
        except OSError as e:
            fail(f"cannot read {from_file}: {e.strerror}")
    return (from_literal or "").encode()


@create_app.command("secret")
def create_secret_cmd(name: Annotated[str, typer.Argument()],
                      from_file: Annotated[Path | None, typer.Option("--from-file", help="a file; - for stdin")] = None,
                      from_literal: Annotated[str | None, typer.Option("--from-literal")] = None,
                      project: ProjectOpt = None) -> None:
    """Create or replace a secret (containers see it at /run/secrets/NAME)."""
    import base64

    value = _file_value(from_file, from_literal)
    p = project_of(project)
    body = {"apiVersion": "dockyard/v1", "kind": "Secret", "metadata": {"name": name, "project": p},
            "spec": {"valueBase64": base64.b64encode(value).decode()}}
    _upsert(body, f"/projects/{p}/secrets", f"/projects/{p}/secrets/{name}", f"secret/{name}")


@create_app.command("config")
def create_config_cmd(name: Annotated[str, typer.Argument()],
                      from_file: Annotated[Path | None, typer.Option("--from-file")] = None,
                      from_literal: Annotated[str | None, typer.Option("--from-literal")] = None,
                      project: ProjectOpt = None) -> None:
    """Create or replace a config (containers see it at /run/configs/NAME)."""
    value = _file_value(from_file, from_literal)
    try:
        text = value.decode()
    except UnicodeDecodeError:
        fail("a config must be text (UTF-8); use a secret for binary data")
    p = project_of(project)
    body = {"apiVersion": "dockyard/v1", "kind": "Config", "metadata": {"name": name, "project": p},
            "spec": {"data": text}}
    _upsert(body, f"/projects/{p}/configs", f"/projects/{p}/configs/{name}", f"config/{name}")


def _upsert(body: dict, collection: str, item: str, label: str) -> None:
    c = run(Client)
    current = run(lambda: c.request("GET", item, ok_404=True))
    if current is None:
        run(lambda: c.request("POST", collection, json_body=body))
        typer.echo(f"{label} created")
    else:
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        res = run(lambda: c.request("PUT", item, json_body=body))
        changed = res["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"]
        typer.echo(f"{label} {'configured' if changed else 'unchanged'}")


@app.command()
def audit(project: ProjectOpt = None, tenant: Annotated[str | None, typer.Option("--tenant")] = None,
          user: Annotated[str | None, typer.Option("--user")] = None,
          limit: Annotated[int, typer.Option("--limit")] = 100, output: OutputOpt = "table",
          action: Annotated[str | None, typer.Argument(help="`verify` checks the hash chain")] = None) -> None:
    """Who did what, when, from where: the audit log (`dockyard audit verify` checks it)."""
    c = run(Client)
    if action == "verify":
        res = run(lambda: c.request("POST", "/audit/verify"))
        if res["ok"]:
            typer.echo(f"audit log intact: {res['entries']} entries, hash chain verified")
            return
        fail(f"audit log TAMPERED: {res['reason']}")
    elif action is not None:
        fail(f"unknown audit action '{action}' (verify)")
    res = run(lambda: c.request("GET", "/audit", params={"project": project, "tenant": tenant, "user": user,
                                                         "limit": limit}))
    if output != "table":
        emit(res, output)
        return
    typer.echo(table(["TIME", "USER", "FROM", "ACTION", "OBJECT", "RESULT"],
                     [[e["at"][:19], e["user"], e["source"], e["action"], e["object"], e["outcome"]]
                      for e in res["items"]]))


@app.command()
def passwd(password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                        help="read the current and the new password, a line each")] = False,
           user: Annotated[str | None, typer.Option("--user", help="(admins) set another user's password")] = None) -> None:
    """Change your password (or, as an admin, another user's)."""
    cfg = load_config()
    me = cfg.get("user")
    target = user or me
    if not target:
        fail("not logged in")
    if password_stdin:
        current = sys.stdin.readline().rstrip("\n") if target == me else None
        new = sys.stdin.readline().rstrip("\n")
    else:
        current = typer.prompt("Current password", hide_input=True) if target == me else None
        new = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    c = run(Client)
    run(lambda: c.request("POST", f"/users/{target}/password", json_body={"currentPassword": current, "password": new}))
    typer.echo(f"password of {target} changed")


def _scope_path(tenant: str | None, project: str | None) -> str:
    if bool(tenant) == bool(project):
        fail("give exactly one of --tenant T or --project T/P")
    return f"/tenants/{tenant}" if tenant else f"/projects/{project_of(project)}"


@app.command()
def grant(role: Annotated[str, typer.Argument(help="viewer, developer, maintainer or owner")],
          user: Annotated[str, typer.Option("--user")],
          tenant: Annotated[str | None, typer.Option("--tenant")] = None,
          project: Annotated[str | None, typer.Option("--project", "-p")] = None) -> None:
    """Give a user a role on a tenant or a project."""
    c = run(Client)
    path = _scope_path(tenant, project)
    run(lambda: c.request("POST", f"{path}/members", json_body={"user": user, "role": role}))
    typer.echo(f"{user} is now {role} of {tenant or project}")


@app.command()
def revoke(user: Annotated[str, typer.Option("--user")],
           tenant: Annotated[str | None, typer.Option("--tenant")] = None,
           project: Annotated[str | None, typer.Option("--project", "-p")] = None) -> None:
    """Take a user's role on a tenant or a project away."""
    c = run(Client)
    path = _scope_path(tenant, project)
    run(lambda: c.request("DELETE", f"{path}/members/{user}"))
    typer.echo(f"{user} no longer has a role on {tenant or project}")


@app.command()
def top(kind: Annotated[str | None, typer.Argument(help="app (to show one app's replicas)")] = None,
        name: Annotated[str | None, typer.Argument()] = None, project: ProjectOpt = None,
        output: OutputOpt = "table") -> None:
    """Current CPU, memory, network and restarts of a project's apps, or of one app's replicas;
    `top nodes`: the engine's nodes."""
    if kind in ("nodes", "node") and name is None:
        top_nodes(output)
        return
    if kind is not None and name is None:
        kind, name = "app", kind  # `dockyard top web`
    if kind is not None and kind_of(kind) != "App":
        fail("top shows apps: dockyard top [app NAME] -p TENANT/PROJECT")
    c = run(Client)
    data = run(lambda: c.request("GET", f"/projects/{project_of(project)}/top",
                                 params={"app": name} if name else None))
    if output != "table":
        emit(data, output)
        return
    headers, rows = usage_rows(data, per_replica=name is not None)
    if not rows:
        typer.echo("no running containers" + (f" of app {name}" if name else "") + " (metrics arrive every 10 s)")
        return
    typer.echo(table(headers, rows))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
