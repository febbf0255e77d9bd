"""The images a Dockerfile builds from (`FROM`) and copies from (`COPY/ADD --from`), read before
the build so that the runner can refuse what the project may not use.

The engine is shared by every tenant and builds run with `pull=0`: a base image it already holds
is used from its cache, without asking the registry whether this project may pull it. So a
Dockerfile could start from another project's image in Dockyard's registry, or name any cached
image by an ID prefix (`FROM 3bfc76`, `FROM sha256:3bfc76`). References are expanded with the
global ARGs (defaults overridden by the build's arguments), as the classic builder does; one that
still holds a `$` cannot be judged and is refused."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

_VAR = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_ID_LIKE = re.compile(r"^(?:sha256:)?[0-9a-f]{1,64}$")


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    escape = "\\"
    lines = text.splitlines()
    for line in lines:  # parser directives come first
        m = re.match(r"^\s*#\s*(\w+)\s*=\s*(\S+)\s*$", line)
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
    current = ""
    for line in lines:
        if line.lstrip().startswith("#"):
            continue  # also inside a continued instruction
        stripped = line.rstrip()
        if stripped.endswith(escape):
            current += stripped[:-1] + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        if word:
            yield word.upper(), rest.strip()
        current = ""
    if current.strip():
        word, _, rest = current.strip().partition(" ")
        yield word.upper(), rest.strip()


def _expand(value: str, args: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        name = m.group("braced") or m.group("bare")
        if name in args:
            return args[name]
        return m.group("default") or "" if m.group("braced") else ""
    return _VAR.sub(one, value)


def image_references(text: str, build_args: dict[str, str]) -> list[str]:
    """Every image the Dockerfile names in FROM and COPY/ADD --from, expanded; stage names and
    stage numbers are left out."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    seen_from = False
    out: list[str] = []
    for word, rest in _instructions(text):
        if word == "ONBUILD":  # runs in a later build FROM this image: its --from is checked now
            word, _, rest = rest.partition(" ")
            word, rest = word.upper(), rest.strip()
        if word == "ARG" and not seen_from:
            for item in rest.split():
                name, eq, default = item.partition("=")
                args[name] = build_args.get(name, default.strip("\"'") if eq else "")
        elif word == "FROM":
            seen_from = True
            tokens = [t for t in rest.split() if not t.startswith("--")]
            if tokens:
                image = _expand(tokens[0], args)
                if image.lower() not in stages:
                    out.append(image)
                if len(tokens) >= 3 and tokens[1].lower() == "as":
                    stages.add(tokens[2].lower())
        elif word in ("COPY", "ADD"):
            for token in rest.split():
                if token.lower().startswith("--from="):
                    source = _expand(token.split("=", 1)[1], args)
                    if not source.isdigit() and source.lower() not in stages:
                        out.append(source)
    return out


def refusal(image: str, scope: str, owner_of: Callable[[str], str | None]) -> str | None:
    """Why a build of project `scope` may not use `image`, or None. `owner_of(ref)` is the
    "tenant/project" whose repository in Dockyard's registry `ref` names, or None."""
    if "$" in image or not image:
        return f"the Dockerfile names an image Dockyard cannot work out before the build ('{image}')"
    if image.lower() == "scratch":
        return None
    if _ID_LIKE.match(image):
        return f"the Dockerfile names an image by its ID ('{image}'): name it by repository and tag or digest"
    owner = owner_of(image)
    if owner is not None and owner != scope:
        return (f"the Dockerfile uses '{image}' from the repository of project {owner}: a build may use "
                f"images of its own project's repository ({scope}) only")
    return None


def check(text: str, build_args: dict[str, str], scope: str, owner_of: Callable[[str], str | None]) -> list[str]:
    """The images the Dockerfile names (`image_references`); ValueError with the first reason it
    may not be built for `scope`."""
    images = image_references(text, build_args)
    for image in images:
        why = refusal(image, scope, owner_of)
        if why:
            raise ValueError(why)
    return images
