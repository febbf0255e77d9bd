"""Tenants share one engine: an image of acme/shop's repository that is on the engine (its App
pulled it, or a build made it) must not run in another project's App, which has no pull right on
that repository. The engine would happily start a local image by name, so Dockyard refuses it."""

from __future__ import annotations

import time

from dockyard_harness import Server, app_manifest, get_app, setup_project


def _settled(s: Server, app: str) -> dict | None:
    """other/shop's App's status once it is Failed or Ready."""
    st = get_app(s, app, "other/shop").get("status") or {}
    return st if st.get("phase") in ("Failed", "Ready") else None


def test_an_app_cannot_run_another_projects_image_from_the_engines_cache(server_factory, docker_api) -> None:  # noqa: ANN001
    s = server_factory()
    setup_project(s)
    setup_project(s, "other", "shop")
    secret_image = f"{s.registry}/acme/shop/private"
    docker_api.tag("dockyard/demo:1.0", secret_image, "1")  # as acme/shop's own App's pull leaves it
    try:
        with s.client() as c:
            r = c.post("/projects/other/shop/apps", json=app_manifest("thief", f"{secret_image}:1",
                                                                       project="other/shop", health=False))
            assert r.status_code == 201, r.text
        st = s.wait_for(lambda: _settled(s, "thief"), timeout=30, what="the App to settle")
        assert st["phase"] == "Failed", st
        assert "acme/shop" in str(st), st
        time.sleep(1)
        running = [x for x in docker_api.containers(all=True, filters={"label": f"dockyard.instance={s.instance}"})
                   if x["Image"].startswith(secret_image)]
        assert running == [], running
    finally:
        docker_api.remove_image(f"{secret_image}:1")


def test_an_image_id_prefix_does_not_name_another_tenants_image(server_factory, docker_api) -> None:  # noqa: ANN001
    """`image: 3bfc76` is a valid repository name, and the engine, finding no such name, falls back
    to image IDs starting with it: any image on the shared engine could be run by guessing hex."""
    s = server_factory()
    setup_project(s, "other", "shop")
    prefix = docker_api.inspect_image("dockyard/demo:1.0")["Id"].removeprefix("sha256:")[:12]
    with s.client() as c:
        r = c.post("/projects/other/shop/apps", json=app_manifest("guess", prefix, project="other/shop", health=False))
        assert r.status_code == 201, r.text
        r = c.post("/projects/other/shop/apps", json=app_manifest("byid", f"sha256:{prefix}", project="other/shop"))
        assert r.status_code == 422 and "by its ID" in r.text, r.text
    st = s.wait_for(lambda: _settled(s, "guess"), timeout=30, what="the App to settle")
    assert st["phase"] == "Failed", st
    assert not docker_api.containers(all=True, filters={"label": f"dockyard.instance={s.instance}"})


def test_a_build_cannot_start_from_another_projects_cached_image(server_factory, docker_api, gitserver) -> None:  # noqa: ANN001
    """Builds run with pull=0 on the shared engine: `FROM` another project's image would be taken
    from the engine's cache without asking the registry (and `FROM <id prefix>` from anyone's)."""
    git = gitserver
    s = server_factory()
    setup_project(s, "other", "shop")
    secret_image = f"{s.registry}/acme/shop/private"
    docker_api.tag("dockyard/demo:1.0", secret_image, "1")
    try:
        git.commit("steal", {"Dockerfile": f"FROM {secret_image}:1\nRUN true\n"})
        prefix = docker_api.inspect_image("dockyard/demo:1.0")["Id"].removeprefix("sha256:")[:12]
        git.commit("guess", {"Dockerfile": "ARG BASE\nFROM dockyard/demo:1.0\nCOPY --from=$BASE /bin/sh /x\n"})
        with s.client() as c:
            for name, repo, args in (("steal", "steal", {}), ("guess", "guess", {"BASE": prefix})):
                spec = {"source": {"git": git.url(repo)}, "image": name, "buildArgs": args}
                r = c.post("/projects/other/shop/builds",
                           json={"kind": "Build", "metadata": {"name": name, "project": "other/shop"}, "spec": spec})
                assert r.status_code == 201, r.text
            for name, says in (("steal", "acme/shop"), ("guess", "by its ID")):
                b = s.wait_for(lambda n=name: (c.get(f"/projects/other/shop/builds/{n}").json().get("status") or {})
                               .get("phase") in ("Failed", "Succeeded") and c.get(f"/projects/other/shop/builds/{n}").json(),
                               timeout=90, what=f"build {name} to end")
                assert b["status"]["phase"] == "Failed" and says in b["status"]["message"], b["status"]
    finally:
        docker_api.remove_image(f"{secret_image}:1")
        for img in docker_api.images(all=True, filters={"label": "dockyard.build.project=other/shop"}):
            try:
                docker_api.remove_image(img["Id"], force=True)
            except Exception:  # noqa: BLE001 — removed with a parent already
                pass
