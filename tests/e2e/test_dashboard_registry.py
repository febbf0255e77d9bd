"""The dashboard's registry and builds pages in Debian's Chromium against a real server, its
registry and the real engine: an image pushed with `docker` shows in the Images tab with its
digest and who pushed it, a maintainer deletes a tag, a robot's secret is shown once (and docker
logs in with it); a build started from the page streams its log while it runs and ends
Succeeded, a sleeping build is cancelled from its page; a viewer is offered none of the buttons.
Screenshots go to tests/e2e/artifacts/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockyard_harness import PASSWORD, Server, app_manifest, setup_project
from peers import remove_registry_refs, run_docker, throwaway_env
from playwright.sync_api import expect
from test_builds import SECRET, buildconfig
from test_dashboard_observe import PW, _axe
from test_images import push, recorded

pytestmark = pytest.mark.engine

P = "/projects/acme/shop"
LONG = 120_000  # ms: a build on a busy 2-core machine


def _users(server: Server) -> None:
    """acme/shop with olivia (maintainer) and vera (viewer)."""
    setup_project(server)
    with server.client() as c:
        for user, role in (("olivia", "maintainer"), ("vera", "viewer")):
            c.post("/users", json={"name": user, "password": PW}).raise_for_status()
            c.post(f"{P}/members", json={"user": user, "role": role}).raise_for_status()


@pytest.fixture
def docker_env(server: Server, tmp_path: Path) -> Iterator[dict]:
    """The docker CLI's environment with a throwaway DOCKER_CONFIG; afterwards the images tagged
    for this server's registry leave the engine."""
    env = throwaway_env(tmp_path / "docker-config")
    yield env
    remove_registry_refs(env, server.registry)


def test_images_tab_shows_pushes_deletes_a_tag_and_makes_robots(server, browsing, browser, docker_env) -> None:  # noqa: ANN001
    _users(server)
    run_docker(docker_env, "login", "-u", "admin", "--password-stdin", server.registry, input=PASSWORD)
    d1 = push(server, docker_env, "dockyard/demo:1.0", "web", "1.0")
    d2 = push(server, docker_env, "dockyard/demo:2.0", "web", "2.0")
    server.wait_for(lambda: recorded(server, "web", "1.0", d1) and recorded(server, "web", "2.0", d2),
                    what="both pushes recorded")
    with server.client() as c:  # a storage quota and a retention rule, shown beside the usage
        c.patch(P, json={"spec": {"quota": {"storage": "1Gi"}, "registry": {"retention": [
            {"repositories": "web", "tags": "1.*", "keepLast": 0}]}}},
            headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()

    b = browsing(server.url)
    b.login("olivia", PW)
    page = b.page
    b.go(f"#{P}/images")
    repo = page.locator("#repositories tr[data-repo='web']")
    expect(repo.locator("td").nth(1)).to_have_text("2")
    expect(page.locator("#cmd-push")).to_contain_text(f"docker push {server.registry}/acme/shop/NAME:TAG")
    expect(page.locator("#cmd-login [data-copy]")).to_have_attribute("data-copy", f"docker login {server.registry}")
    expect(page.locator("#registry-usage [role=progressbar]")).to_have_count(1)
    expect(page.locator("#registry-usage .usage-label")).to_contain_text(" of 1.0 GiB")
    expect(page.locator("#retention-rules li")).to_have_text("images web · tags 1.* · keep the last 0")
    page.click("#retention-dry-run")  # the rules' dry run: 1.0 would go, 2.0 matches no rule; nothing is deleted
    expect(page.locator("#retention-preview [data-would-delete]")).to_have_count(1)
    expect(page.locator("#retention-preview [data-would-delete='web:1.0']")).to_have_count(1)
    repo.locator("a").click()
    row = page.locator("#tags tr[data-tag='1.0']")
    expect(row).to_contain_text(d1[:19])
    expect(row.locator(".pushed-by")).to_have_text("admin")
    expect(row.locator("[data-copy]")).to_have_attribute("data-copy", d1)
    expect(page.locator("#repo-pull")).to_contain_text(f"docker pull {server.registry}/acme/shop/web:")
    b.shot("project-images")

    # a maintainer deletes a tag, after confirming; the other stays, the registry no longer has it
    page.once("dialog", lambda d: d.accept())
    row.locator("[data-delete-tag='1.0']").click()
    expect(row).to_have_count(0)
    expect(page.locator("#tags tr[data-tag='2.0']")).to_contain_text(d2[:19])
    expect(repo.locator("td").nth(1)).to_have_text("1")
    with server.client() as c:
        assert [t["tag"] for t in c.get(f"{P}/images/web/tags").json()["items"]] == ["2.0"]

    # a robot: its secret shown once with the docker login line, and it is the secret docker accepts
    page.fill("#robot-name", "ci")
    page.select_option("#robot-access", "push")
    page.click("#robot-form button[type=submit]")
    secret = page.locator("#robot-secret-value code")
    expect(secret).to_have_count(1)
    value = secret.inner_text()
    assert len(value) >= 20, value
    expect(page.locator("#robot-login code")).to_have_text(
        f"docker login -u 'robot$acme+shop+ci' --password-stdin {server.registry}")
    expect(page.locator("#robots tr[data-robot='ci']")).to_contain_text("push and pull")
    b.shot("project-robot-secret")
    res = run_docker(docker_env, "login", "-u", "robot$acme+shop+ci", "--password-stdin", server.registry, input=value)
    assert "login succeeded" in res.stdout.lower(), res.stdout
    page.reload()
    expect(page.locator("#robots tr[data-robot='ci']")).to_have_count(1)
    expect(page.locator("#robot-secret-value")).to_have_count(0)
    assert value not in page.content()

    # the API's reason for a bad name is shown by the field
    page.fill("#robot-name", "-bad-")
    page.click("#robot-form button[type=submit]")
    expect(page.locator("#robot-form .field-error, #robots-card ~ section .error").first).to_contain_text("name")

    # disable, enable, and the page's axe check while the robot is listed
    page.click("[data-toggle-robot='ci']")
    expect(page.locator("#robots tr[data-robot='ci'] .badge")).to_have_text("disabled")
    page.click("[data-toggle-robot='ci']")
    expect(page.locator("#robots tr[data-robot='ci'] .badge")).to_have_text("active")
    found = _axe(browser, server.url, {f"#{P}/images?repo=web": "#tags[data-loaded='true']"})
    assert not found, "\n".join(found)
    page.once("dialog", lambda d: d.accept())
    page.click("[data-delete-robot='ci']")
    expect(page.locator("#robots tr[data-robot='ci']")).to_have_count(0)
    with server.client() as c:
        assert c.get("/tenants/acme/projects/shop/robots").json()["items"] == []

    # a viewer sees the tags and no delete, no robots
    v = browsing(server.url)
    v.login("vera", PW)
    v.go(f"#{P}/images?repo=web")
    expect(v.page.locator("#tags tr[data-tag='2.0']")).to_have_count(1)
    expect(v.page.locator("[data-delete-tag]")).to_have_count(0)
    expect(v.page.locator("#robots-card")).to_have_count(0)
    expect(v.page.locator("#robot-form")).to_have_count(0)


def test_a_build_from_the_page_streams_its_log_live_and_a_sleeping_one_is_cancelled(
        server, browsing, browser, gitserver, docker_env) -> None:  # noqa: ANN001
    _users(server)
    sha = gitserver.commit("site", {"Dockerfile": "FROM dockyard/demo:1.0\n"
                                                  "RUN o=out && echo first-step-$o && sleep 4 && echo second-step-$o\n"})
    gitserver.commit("slow", {"Dockerfile": "FROM dockyard/demo:1.0\nRUN sleep 120\n"})
    with server.client() as c:  # the admin makes them: a loopback git server needs the admin's egress mark
        c.post(f"{P}/secrets", json={"kind": "Secret", "metadata": {"name": "hook", "project": "acme/shop"},
                                     "spec": {"value": SECRET}}).raise_for_status()
        c.post(f"{P}/buildconfigs", json=buildconfig("site", gitserver.url("site"))).raise_for_status()
        c.post(f"{P}/buildconfigs", json=buildconfig("slow", gitserver.url("slow"), image="slow",
                                                     webhook=False)).raise_for_status()

    b = browsing(server.url)
    b.login("olivia", PW)
    page = b.page
    b.go(f"#{P}/builds")
    site = page.locator("#buildconfigs tr[data-config='site']")
    expect(site).to_contain_text(gitserver.url("site"))
    expect(site.locator("[data-copy]")).to_have_attribute("data-copy", f"{server.url}/hooks/builds/acme/shop/site")
    expect(page.locator("#buildconfigs tr[data-config='slow']")).to_contain_text(f"{server.registry}/acme/shop/slow")
    page.evaluate("window.__sameDocument = 'yes'")
    site.locator("[data-start='site']").click()

    # the build page: the log grows while the build runs, and stops when it has succeeded
    expect(page.locator("h1")).to_have_text("site-1")
    log = page.locator("#build-log")
    expect(log).to_contain_text("first-step-out", timeout=LONG)
    expect(page.locator(".page-head [data-phase]")).to_have_attribute("data-phase", "Running")
    assert "second-step-out" not in log.inner_text(), "the first line came before the build wrote the second"
    expect(page.locator("#cancel-build")).to_be_visible()
    expect(page.locator("#build-duration")).to_have_text(re.compile(r"^\d+s$"))  # the time so far, ticking
    expect(log).to_contain_text("second-step-out", timeout=LONG)
    expect(page.locator(".page-head [data-phase]")).to_have_attribute("data-phase", "Succeeded", timeout=LONG)
    expect(page.locator("#build-log[data-ended='true']")).to_have_count(1, timeout=LONG)
    expect(log).to_contain_text("build succeeded")
    expect(page.locator("#build-commit")).to_have_text(sha)
    expect(page.locator("#build-digest code")).to_contain_text("sha256:")
    expect(page.locator("#cancel-build")).to_have_count(0)
    assert page.evaluate("window.__sameDocument") == "yes", "the page was reloaded"
    b.shot("build-succeeded")

    # a sleeping build, cancelled from its page
    b.go(f"#{P}/builds")
    page.click("[data-start='slow']")
    expect(page.locator("h1")).to_have_text("slow-1")
    expect(log).to_contain_text("sleep 120", timeout=LONG)
    page.click("#cancel-build")
    expect(page.locator(".page-head [data-phase]")).to_have_attribute("data-phase", "Cancelled", timeout=30_000)
    expect(page.locator("#build-log[data-ended='true']")).to_have_count(1, timeout=30_000)
    expect(page.locator("#cancel-build")).to_have_count(0)

    # the history: newest first, phases in words, the commit
    b.go(f"#{P}/builds")
    rows = page.locator("#builds tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_have_attribute("data-build", "slow-1")
    expect(rows.nth(0)).to_contain_text("cancelled")
    expect(rows.nth(1)).to_contain_text("succeeded")
    expect(rows.nth(1)).to_contain_text(sha[:12])
    b.shot("project-builds")

    # a maintainer makes a BuildConfig through the deploy page's manifest mode; the tab lists it
    b.go(f"#{P}/deploy?mode=manifest")
    page.fill("#manifest-input", "kind: BuildConfig\nmetadata: {name: docs}\n"
                                 "spec: {source: {git: 'https://git.example.test/docs.git', ref: release}, image: docs}\n")
    page.click("#manifest-apply")
    expect(page.locator("#deploy-results")).to_contain_text("buildconfig/docs created")
    b.go(f"#{P}/builds")
    expect(page.locator("#buildconfigs tr[data-config='docs']")).to_contain_text("release")

    found = _axe(browser, server.url, {f"#{P}/builds": "#builds[data-loaded='true']",
                                       f"#{P}/builds/site-1": "#build-log[data-ended='true']"})
    assert not found, "\n".join(found)

    # a viewer reads builds and their logs, and is offered no start or cancel
    v = browsing(server.url)
    v.login("vera", PW)
    v.go(f"#{P}/builds")
    expect(v.page.locator("#builds tbody tr")).to_have_count(2)
    expect(v.page.locator("[data-start]")).to_have_count(0)
    v.go(f"#{P}/builds/site-1")
    expect(v.page.locator("#build-log")).to_contain_text("second-step-out")


def test_images_tab_takes_the_full_repository_path_names_a_missing_one_and_viewers_get_pull_lines_only(
        server, browsing, docker_env) -> None:  # noqa: ANN001
    """`?repo=acme/shop/web` (the path the CLI prints) opens web; a repository that does not exist
    says so in words without asking the API for its tags (no 404 in the console); a viewer, who may
    not push, is shown the login and pull lines only."""
    _users(server)
    run_docker(docker_env, "login", "-u", "admin", "--password-stdin", server.registry, input=PASSWORD)
    d1 = push(server, docker_env, "dockyard/demo:1.0", "web", "1.0")
    server.wait_for(lambda: recorded(server, "web", "1.0", d1), what="the push recorded")

    b = browsing(server.url)
    b.login("olivia", PW)
    page = b.page
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    for wanted in ("acme/shop/web", f"{server.registry}/acme/shop/web"):
        b.go(f"#{P}/images?repo={wanted}")
        expect(page.locator("#tags tr[data-tag='1.0']")).to_contain_text(d1[:19])
        expect(page.locator("#repository h2")).to_contain_text("web")
        expect(page.locator("#cmd-tag code")).to_have_text(f"docker tag IMAGE {server.registry}/acme/shop/web:TAG")
        expect(page.locator("#repositories tr[data-repo='web'] a[aria-current='page']")).to_have_count(1)
    b.go(f"#{P}/images?repo=nothere")
    expect(page.locator("#repositories tr[data-repo='web']")).to_have_count(1)
    expect(page.locator(".error")).to_contain_text('acme/shop has no repository "nothere"')
    expect(page.locator("#tags")).to_have_count(0)
    expect(page.locator("#cmd-push code")).to_have_text(f"docker push {server.registry}/acme/shop/NAME:TAG")
    assert not failed, failed

    v = browsing(server.url)
    v.login("vera", PW)
    v.go(f"#{P}/images?repo=acme/shop/web")
    expect(v.page.locator("#tags tr[data-tag='1.0']")).to_have_count(1)
    expect(v.page.locator("#cmd-pull code")).to_have_text(f"docker pull {server.registry}/acme/shop/web:TAG")
    expect(v.page.locator("#cmd-login")).to_have_count(1)
    expect(v.page.locator("#cmd-tag, #cmd-push")).to_have_count(0)
    expect(v.page.locator("#registry-commands")).not_to_contain_text("docker push")
    expect(v.page.locator("#registry-commands h2")).to_have_text("Pull")


def test_app_history_shows_the_digest_each_revision_ran(server, browsing, docker_env) -> None:  # noqa: ANN001
    """An App made from a pushed tag: its history lists revision 1 as IMAGE:TAG@short digest, as
    `dockyard rollout history` does, with the whole digest to copy (the API's imageDigest)."""
    setup_project(server)
    run_docker(docker_env, "login", "-u", "admin", "--password-stdin", server.registry, input=PASSWORD)
    d1 = push(server, docker_env, "dockyard/demo:1.0", "web", "1.0")
    with server.client() as c:
        c.post(f"{P}/apps", json=app_manifest("site", f"{server.registry}/acme/shop/web:1.0", health=False)
               ).raise_for_status()
    server.wait_for(lambda: (server.client().get(f"{P}/apps/site/revisions").json()["items"] or [{}])[-1]
                    .get("imageDigest") == d1, what="the revision's digest")
    b = browsing(server.url)
    b.login("admin", PASSWORD)
    b.go(f"#{P}/apps/site/history")
    cell = b.page.locator("#history tr[data-revision='1'] td").nth(1)  # the image column
    expect(cell).to_contain_text(f"{server.registry}/acme/shop/web:1.0@{d1[:19]}")
    expect(cell.locator("[data-copy]")).to_have_attribute("data-copy", d1)
    expect(cell.locator(".digest")).to_have_attribute("title", d1)


ONE_LINE = "el => el.getBoundingClientRect().height < 1.8 * parseFloat(getComputedStyle(el).fontSize) + 8"


def test_builds_tab_keeps_badges_on_one_line_cuts_long_messages_and_fits_a_narrow_window(
        server, browsing, gitserver) -> None:  # noqa: ANN001
    setup_project(server)
    words = " ".join(f"this-step-fails-on-purpose-{i}" for i in range(30))
    gitserver.commit("long", {"Dockerfile": f"FROM dockyard/demo:1.0\nRUN echo {words} && exit 3\n"})
    with server.client() as c:
        c.post(f"{P}/secrets", json={"kind": "Secret", "metadata": {"name": "hook", "project": "acme/shop"},
                                     "spec": {"value": SECRET}}).raise_for_status()
        c.post(f"{P}/buildconfigs", json=buildconfig("long", gitserver.url("long") + "/" + "a-long-path" * 6)
               ).raise_for_status()
        c.post(f"{P}/buildconfigs", json=buildconfig("site", gitserver.url("long"))).raise_for_status()
        c.post(f"{P}/buildconfigs/site/start").raise_for_status()
    server.wait_for(lambda: (server.client().get(f"{P}/builds/site-1").json().get("status") or {}).get("phase")
                    == "Failed", timeout=LONG / 1000, what="the build failed")
    with server.client() as c:
        message = c.get(f"{P}/builds/site-1").json()["status"]["message"]
    assert "this-step-fails-on-purpose-29" in message, message

    b = browsing(server.url)
    b.login("admin", PASSWORD)
    page = b.page
    b.go(f"#{P}/builds")
    row = page.locator("#builds tr[data-build='site-1']")
    expect(row.locator("[data-phase='Failed']")).to_be_visible()
    assert row.locator(".badge").evaluate(ONE_LINE), "the phase badge wraps"
    cell = row.locator("td").nth(5)
    expect(cell).to_have_attribute("title", message)
    assert cell.evaluate("el => el.scrollWidth > el.clientWidth"), "the long message is not cut"
    assert row.evaluate("el => el.getBoundingClientRect().height") < 60, "the row is taller than one line"
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth"), "the page scrolls sideways"

    page.set_viewport_size({"width": 420, "height": 900})
    b.go(f"#{P}/builds")
    expect(page.locator("#buildconfigs tr[data-config='long']")).to_have_count(1)
    heights = page.locator("#buildconfigs tbody tr, #builds tbody tr").evaluate_all(
        "rows => rows.map(r => r.getBoundingClientRect().height)")
    assert heights and max(heights) < 60, heights
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth"), "the page scrolls sideways at 420 px"
    b.shot("project-builds-narrow")
