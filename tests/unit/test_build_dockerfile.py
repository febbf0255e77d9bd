"""Which images a Dockerfile names, and which of them a project's build may not use."""

from __future__ import annotations

import pytest

from dockyard.builds.dockerfile import check, image_references

REG = "127.0.0.1:5000"


def owner_of(ref: str) -> str | None:
    if not ref.startswith(REG + "/"):
        return None
    t, p = ref[len(REG) + 1:].split("/")[:2]
    return f"{t}/{p}"


def test_references_follow_args_stages_continuations_and_the_escape_directive() -> None:
    text = (f"# escape=`\nARG BASE={REG}/acme/shop/x:1\nARG V\nFROM $BASE AS b\nfrom b\n"
            "FROM --platform=linux/amd64 ${IMG:-alpine}:${V} as c\nCOPY --from=b /a /b\n"
            f"COPY --from={REG}/acme/shop/y:2 `\n   /x /y\nADD --from=0 a b\nFROM 3bfc76\n")
    assert image_references(text, {"V": "3"}) == [f"{REG}/acme/shop/x:1", "alpine:3", f"{REG}/acme/shop/y:2",
                                                  "3bfc76"]
    # an ARG after the first FROM does not change what FROM reads (the builder uses global ARGs only)
    assert image_references(f"ARG B={REG}/acme/shop/x:1\nFROM scratch\nARG B=ok\nFROM $B\n", {}) == \
        ["scratch", f"{REG}/acme/shop/x:1"]


@pytest.mark.parametrize("text", [
    f"FROM {REG}/acme/shop/private:1\n",
    f"FROM dockyard/demo:1.0\nCOPY --from={REG}/acme/shop/private:1 /secret /\n",
    "ARG B\nFROM $B\n",                       # the build argument below names acme/shop's image
    "FROM 3bfc76\n", "FROM sha256:3bfc76\n",  # an image ID prefix: whatever the engine holds
    "FROM ${B:+x}\n",                         # a form left unexpanded: cannot be judged
    # an ONBUILD trigger would copy from it in a later build that starts from this image
    f"FROM dockyard/demo:1.0\nONBUILD COPY --from={REG}/acme/shop/private:1 /secret /\n",
])
def test_what_other_projects_or_ids_name_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        check(text, {"B": f"{REG}/acme/shop/private:1"}, "other/shop", owner_of)


def test_own_project_public_images_stages_and_scratch_are_fine() -> None:
    check(f"FROM {REG}/other/shop/base:1 AS build\nFROM dockyard/demo:1.0\nCOPY --from=build /a /a\n"
          "FROM scratch\nCOPY --from=1 /a /a\n", {}, "other/shop", owner_of)
