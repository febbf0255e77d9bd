"""HTTP client for the CLI: the saved login, requests, and problem+json turned into one line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


class CliError(Exception):
    """An error to print as one line before exiting non-zero."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def config_path() -> Path:
    if os.environ.get("DOCKYARD_CONFIG"):
        return Path(os.environ["DOCKYARD_CONFIG"])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "dockyard" / "config.json"


def load_config() -> dict[str, Any]:
    p = config_path()
    if p.exists():
        try:
            return json.loads(p.read_text())
        except ValueError:
            raise CliError(f"{p} is not valid JSON; remove it and log in again") from None
    return {}


def save_config(cfg: dict[str, Any]) -> None:
    p = config_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(cfg, indent=2))
    tmp.chmod(0o600)  # holds a bearer token
    tmp.replace(p)


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        cfg = load_config()
        self.url = (url or os.environ.get("DOCKYARD_URL") or cfg.get("url") or "").rstrip("/")
        self.token = token or os.environ.get("DOCKYARD_TOKEN") or cfg.get("token")
        if not self.url:
            raise CliError("not logged in: run `dockyard login URL -u USER --password-stdin` first")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=timeout)

    def request(self, method: str, path: str, *, json_body: Any = None, params: dict | None = None,
                content_type: str | None = None, ok_404: bool = False) -> Any:
        headers = {"Content-Type": content_type} if content_type else None
        try:
            r = self.http.request(method, path, json=json_body, params=_clean(params), headers=headers)
        except httpx.HTTPError as e:
            raise CliError(f"cannot reach Dockyard at {self.url}: {e}") from None
        if r.status_code == 404 and ok_404:
            return None
        if r.status_code >= 400:
            raise CliError(problem_text(r), r.status_code)
        if r.status_code == 204 or not r.content:
            return None
        return r.json()

    def stream(self, path: str, params: dict | None = None, timeout: float | None = None) -> Iterator[str]:
        """Lines of a streaming response (logs, server-sent events)."""
        try:
            with self.http.stream("GET", path, params=_clean(params),
                                  timeout=httpx.Timeout(10.0, read=timeout)) as r:
                if r.status_code >= 400:
                    r.read()
                    raise CliError(problem_text(r), r.status_code)
                yield from r.iter_lines()
        except httpx.ReadTimeout:
            raise TimeoutError from None
        except httpx.HTTPError as e:
            raise CliError(f"the stream from {self.url} broke: {e}") from None

    def events(self, path: str, params: dict | None = None, timeout: float | None = None) -> Iterator[dict]:
        """Decoded server-sent events of a watch."""
        data: list[str] = []
        for line in self.stream(path, params={**(params or {}), "watch": "1"}, timeout=timeout):
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                yield json.loads("\n".join(data))
                data = []


def _clean(params: dict | None) -> dict | None:
    return {k: v for k, v in params.items() if v is not None} if params else None


def problem_text(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return f"HTTP {r.status_code}: {r.text[:200]}"
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return f"HTTP {r.status_code}: {body}"


# kinds that live in a project, at /projects/{tenant}/{project}/<kind in lower case>s
PROJECT_KINDS = ("App", "Secret", "Config", "LogDrain", "AlertRule", "Notifier", "Silence", "Build", "BuildConfig")


def paths_for(obj: dict) -> tuple[str, str]:
    """(collection path, item path) of a manifest."""
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    if kind in ("Tenant", "Cluster"):
        return f"/{kind.lower()}s", f"/{kind.lower()}s/{name}"
    if kind == "Project":
        tenant = meta.get("tenant")
        if "/" in str(name):
            tenant, name = str(name).split("/", 1)
        return "/projects", f"/projects/{tenant}/{name}"
    if kind in PROJECT_KINDS:
        project = meta.get("project") or ""
        plural = f"{str(kind).lower()}s"
        return f"/projects/{project}/{plural}", f"/projects/{project}/{plural}/{name}"
    raise CliError(f"unknown kind '{kind}' (known: {', '.join(('Tenant', 'Cluster', 'Project', *PROJECT_KINDS))})")
