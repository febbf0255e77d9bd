"""Admission: turn a submitted manifest into a validated, defaulted object, or explain exactly
which fields are wrong. No HTTP and no engine here; the API calls it on every write path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from dockyard.model.kinds import KINDS, KindInfo
from dockyard.model.meta import API_VERSION


@dataclass
class FieldError:
    field: str
    message: str


class InvalidObject(Exception):
    def __init__(self, kind: str, errors: list[FieldError]) -> None:
        self.kind = kind
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))


@dataclass
class Admitted:
    kind: str
    scope: str
    name: str
    spec: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: int | None = None


def field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(object)"


def _messages(e: ValidationError) -> list[FieldError]:
    errors = []
    for err in e.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "is required"
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        # pydantic adds the member name for unions (e.g. "int", "str"); users never wrote that
        loc = tuple(p for p in loc if p not in ("int", "str", "float", "constrained-str"))
        errors.append(FieldError(field_path(loc), msg))
    return errors


def scope_of(info: KindInfo, meta: dict[str, Any]) -> str:
    if info.scope == "cluster":
        return ""
    if info.scope == "tenant":
        return str(meta.get("tenant") or "")
    return str(meta.get("project") or "")


def admit(kind: str, body: Any, *, scope: str | None = None, name: str | None = None) -> Admitted:
    """Validate `body` as an object of `kind`; `scope`/`name` from the URL must agree with it."""
    info = KINDS[kind]
    if not isinstance(body, dict):
        raise InvalidObject(kind, [FieldError("(object)", "must be a JSON object")])
    errors: list[FieldError] = []
    if body.get("apiVersion", API_VERSION) != API_VERSION:
        errors.append(FieldError("apiVersion", f"must be {API_VERSION}"))
    if body.get("kind", kind) != kind:
        errors.append(FieldError("kind", f"must be {kind} at this address, not {body.get('kind')}"))
    raw_meta = body.get("metadata")
    if not isinstance(raw_meta, dict):
        raise InvalidObject(kind, errors + [FieldError("metadata", "is required and must be an object")])
    meta = dict(raw_meta)
    # a project may be written as name: acme/shop
    if kind == "Project" and isinstance(meta.get("name"), str) and "/" in meta["name"]:
        t, _, n = meta["name"].partition("/")
        if meta.get("tenant") not in (None, t):
            errors.append(FieldError("metadata.tenant", f"'{meta.get('tenant')}' disagrees with the name {meta['name']}"))
        meta["tenant"], meta["name"] = t, n
    if scope is not None:
        have = scope_of(info, meta)
        field_name = {"tenant": "metadata.tenant", "project": "metadata.project"}.get(info.scope)
        if have and have != scope and field_name:
            errors.append(FieldError(field_name, f"'{have}' does not match '{scope}' in the request path"))
        if info.scope == "tenant":
            meta["tenant"] = scope
        elif info.scope == "project":
            meta["project"] = scope
    if name is not None and meta.get("name") not in (None, name):
        errors.append(FieldError("metadata.name", f"'{meta.get('name')}' does not match '{name}' in the request path"))
    if name is not None:
        meta.setdefault("name", name)
    if info.scope == "tenant" and not meta.get("tenant"):
        errors.append(FieldError("metadata.tenant", "is required: the tenant this project belongs to"))
    if info.scope == "project" and not meta.get("project"):
        errors.append(FieldError("metadata.project", "is required: the project as TENANT/PROJECT"))
    # server-set fields are accepted on input (clients send back what they read) but not trusted
    rv_raw = meta.pop("resourceVersion", None)
    for server_field in ("uid", "generation", "createdAt"):
        meta.pop(server_field, None)
    candidate = {"metadata": meta, "spec": body.get("spec", {})}
    if "spec" not in body and kind == "App":
        errors.append(FieldError("spec", "is required"))
    unknown = set(body) - {"apiVersion", "kind", "metadata", "spec", "status"}
    errors += [FieldError(k, "unknown field") for k in sorted(unknown)]
    try:
        obj = info.model.model_validate(candidate)
    except ValidationError as e:
        errors += _messages(e)
        raise InvalidObject(kind, errors) from None
    if errors:
        raise InvalidObject(kind, errors)
    resource_version = None
    if rv_raw not in (None, ""):
        try:
            resource_version = int(str(rv_raw))
        except ValueError:
            raise InvalidObject(kind, [FieldError("metadata.resourceVersion", "must be a number")]) from None
    dumped = obj.dump()
    m = obj.metadata  # type: ignore[attr-defined]
    return Admitted(kind=kind, scope=scope_of(info, dumped["metadata"]), name=m.name, spec=dumped.get("spec", {}),
                    labels=dict(m.labels), annotations=dict(m.annotations), resource_version=resource_version)
