"""The build context a cloned repository may name: symbolic links in the repository must not make
the server read or send anything outside the checkout (its data dir holds keys and secrets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dockyard.builds.runner import _context_of


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    (work / "app").mkdir(parents=True)
    (work / "app" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "token.key").write_text("PRIVATE KEY\n")
    return work


def test_a_plain_context_and_links_inside_it_are_fine(checkout: Path) -> None:
    os.symlink("Dockerfile", checkout / "app" / "Dockerfile.link")
    (checkout / "app" / "ignore-list").write_text("*.tmp\n")
    os.symlink("ignore-list", checkout / "app" / ".dockerignore")
    context, dockerfile = _context_of(checkout, "app", "Dockerfile.link")
    assert context == (checkout / "app").resolve() and dockerfile == "Dockerfile"


@pytest.mark.parametrize(("link", "target", "context_dir", "dockerfile", "says"), [
    ("app/.dockerignore", "../../data/token.key", "app", "Dockerfile", ".dockerignore"),
    ("app/.dockerignore", "/etc/passwd", "app", "Dockerfile", ".dockerignore"),
    ("app/Dockerfile.out", "../../data/token.key", "app", "Dockerfile.out", "spec.dockerfile"),
    ("outside", "../data", "outside", "Dockerfile", "contextDir"),
    ("app/up", "../..", "app/up", "Dockerfile", "contextDir"),
])
def test_links_out_of_the_context_are_refused(checkout: Path, link: str, target: str, context_dir: str,
                                             dockerfile: str, says: str) -> None:
    os.symlink(target, checkout / link)
    with pytest.raises(ValueError, match=says):
        _context_of(checkout, context_dir, dockerfile)
