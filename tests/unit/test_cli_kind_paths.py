"""The CLI keeps its own list of project-scoped kinds (importing `dockyard.model.kinds` would load
every kind's model, ~45 ms more on each command); this test holds it to the server's registry."""

from __future__ import annotations

from dockyard.cli.client import PROJECT_KINDS, paths_for
from dockyard.model.kinds import KINDS


def test_the_clis_project_kinds_and_their_paths_are_the_servers() -> None:
    assert set(PROJECT_KINDS) == {k for k, info in KINDS.items() if info.scope == "project"}
    for kind in PROJECT_KINDS:
        manifest = {"kind": kind, "metadata": {"name": "x", "project": "acme/shop"}}
        assert paths_for(manifest)[1] == f"/projects/acme/shop/{KINDS[kind].plural}/x"
