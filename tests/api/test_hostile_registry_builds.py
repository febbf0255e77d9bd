"""Hostile probes of the registry token service and the build routes through the real API and
store: other tenants' things answer like things that do not exist, bad input is a 4xx, and an
unauthenticated webhook caller cannot tell which build configs exist."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from api_checks import viewer_and_stranger
from test_registry_api import registry  # noqa: F401 — the token service fixture

from dockyard.store import robots as robot_store

PW = "some-password-1"
P = "/api/v1/projects/acme/shop"


def test_webhook_does_not_tell_strangers_which_build_configs_exist(api) -> None:  # noqa: ANN001
    viewer_and_stranger(api, PW)
    api.post(f"{P}/secrets", json={"kind": "Secret", "metadata": {"name": "hook", "project": "acme/shop"},
                                   "spec": {"value": "s3cret"}}).raise_for_status()
    bc = {"apiVersion": "dockyard/v1", "kind": "BuildConfig", "metadata": {"name": "site", "project": "acme/shop"},
          "spec": {"source": {"git": "https://git.example/x.git"}, "image": "web",
                   "triggers": {"webhook": {"secret": "hook"}}}}
    api.post(f"{P}/buildconfigs", json=bc).raise_for_status()
    for headers in ({}, {"X-Gitlab-Token": "x"}, {"X-Hub-Signature-256": "sha256=00"}, {"X-Gitea-Signature": "00"}):
        answers = set()
        for path in ("acme/shop/site", "acme/shop/nope", "nope/nope/site"):
            r = api.post(f"/hooks/builds/{path}", content=b"{}", headers={**headers, "Authorization": ""})
            assert r.status_code == 401, r.text
            answers.add(r.json()["detail"])
        assert len(answers) == 1, (headers, answers)


def token(api, *scopes: str, user: str = "stranger", password: str = PW):  # noqa: ANN001, ANN201
    return api.get("/registry/token", params={"service": "dockyard-registry", "scope": list(scopes)},
                   auth=(user, password), headers={"Authorization": ""})


def grants(api, *scopes: str, user: str = "stranger", password: str = PW) -> list[list[str]]:  # noqa: ANN001
    r = token(api, *scopes, user=user, password=password)
    assert r.status_code == 200, r.text
    claims = r.json()["token"].split(".")[1]
    return [a["actions"] for a in json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["access"]]


@pytest.mark.usefixtures("registry")
def test_scope_names_the_registry_could_not_serve_get_nothing(api) -> None:  # noqa: ANN001
    """stranger owns other/shop: a name that starts there but is not a valid repository name
    ('..' back into acme/shop, a ':' smuggled in) must not carry their rights."""
    viewer_and_stranger(api, PW)
    assert grants(api, "repository:other/shop/web:pull,push") == [["pull", "push"]]
    tricks = ["repository:other/shop/../../acme/shop/web:pull,push", "repository:other/shop/./web:pull",
              "repository:other/shop/web:latest:push", "repository:other/shop/Web:pull",
              "repository:other/shop/web/:pull", "repository:other/shop/" + "a" * 250 + ":pull",
              "repository:acme/shop/../../other/shop/web:pull"]
    assert grants(api, *tricks) == [[]] * len(tricks)


@pytest.mark.usefixtures("registry")
def test_many_scopes_in_one_parameter_are_refused(api) -> None:  # noqa: ANN001
    viewer_and_stranger(api, PW)
    r = token(api, " ".join(f"repository:other/shop/x{i}:pull" for i in range(33)))
    assert r.status_code == 400 and "at most 32 scopes" in r.json()["detail"], r.text
    assert grants(api, " ".join(f"repository:other/shop/x{i}:pull" for i in range(32))) == [["pull"]] * 32


@pytest.mark.parametrize(("method", "path"), [("get", "tags"), ("delete", "tags/latest"), ("post", "preheat")])
def test_image_routes_refuse_names_that_leave_the_project(api, method: str, path: str) -> None:  # noqa: ANN001
    """'..' in the name would reach the registry client, whose HTTP library folds
    /v2/acme/shop/../../other/shop/web into other/shop's repository."""
    viewer_and_stranger(api, PW)
    for name in ("%2e%2e/%2e%2e/other/shop/web", "..%2F..%2Fother%2Fshop%2Fweb", "Web", "web%3Alatest"):
        r = api.request(method, f"/api/v1/projects/acme/shop/images/{name}/{path}")
        assert r.status_code == 400 and "not a repository name" in r.json()["detail"], (name, r.text)
    # a stranger learns nothing about acme/shop from it
    token = api.post("/api/v1/login", json={"username": "stranger", "password": PW}).json()["token"]
    r = api.request(method, f"/api/v1/projects/acme/shop/images/%2e%2e/x/{path}",
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404, r.text


@pytest.mark.usefixtures("registry")
def test_a_deleted_projects_robots_go_with_it(api, store) -> None:  # noqa: ANN001
    """A project made again under the same name (by another owner, say) must not list, or
    collide with, the robots of the one that was deleted."""
    viewer_and_stranger(api, PW)
    robots = "/api/v1/tenants/acme/projects/shop/robots"
    old = api.post(robots, json={"name": "ci", "access": "push"}).json()
    assert api.delete(P).status_code == 200
    assert api.post("/api/v1/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": "acme"}}
                    ).status_code == 201
    assert api.get(robots).json()["items"] == []
    r = api.post(robots, json={"name": "ci", "access": "pull"})
    assert r.status_code == 201, r.text
    assert token(api, "repository:acme/shop/web:pull,push", user=old["username"], password=old["secret"]
                 ).status_code == 401
    assert len(robot_store.list_robots(store, "acme", "shop")) == 1

    # a crash between a project's deletion and its robots' leaves rows of the old incarnation:
    # the new project's robot routes forget them
    robot_store.create_robot(store, "acme", "shop", "uid-of-a-deleted-incarnation", "stale", "push",
                             created_by="someone", ttl=None)
    assert [r["name"] for r in api.get(robots).json()["items"]] == ["ci"]
    assert len(robot_store.list_robots(store, "acme", "shop")) == 1


@pytest.mark.usefixtures("registry")
def test_huge_robot_lifetimes_are_a_422_not_a_500(api) -> None:  # noqa: ANN001
    viewer_and_stranger(api, PW)
    for expires in ("999999999999d", "99999999h", "9999999999999s"):
        r = api.post("/api/v1/tenants/acme/projects/shop/robots", json={"name": "ci", "expires": expires})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "expires", (expires, r.text)
    r = api.post("/api/v1/tokens", json={"name": "t", "expires": "999999999999d"})
    assert r.status_code == 422, r.text


def test_following_the_log_of_a_build_the_runner_has_not_touched_waits_for_it(api, store, tmp_path) -> None:  # noqa: ANN001
    """A Build made by POST has no status until the runner picks it up; `logs?follow=true` asked
    in between ended at once, empty (so `dockyard build start --git … -f` reported 'Pending')."""
    from dockyard.builds import logfile

    viewer_and_stranger(api, PW)
    api.app.state.build_data_dir = tmp_path
    b = {"kind": "Build", "metadata": {"name": "b1", "project": "acme/shop"},
         "spec": {"source": {"git": "https://git.example/x.git"}, "image": "web"}}
    uid = api.post(f"{P}/builds", json=b).json()["metadata"]["uid"]
    assert not store.get("Build", "acme/shop", "b1").status  # as the runner finds it
    got: list = []
    follower = threading.Thread(target=lambda: got.append(api.get(f"{P}/builds/b1/logs", params={"follow": "true"})))
    follower.start()
    time.sleep(1.0)
    write = logfile.BuildLogWriter(logfile.log_path(tmp_path, uid))
    write("a line written after the follow began")
    write.close()
    store.update_status("Build", "acme/shop", "b1", {"phase": "Succeeded"}, uid=uid)
    follower.join(10)
    assert not follower.is_alive() and got[0].status_code == 200
    assert "a line written after the follow began" in got[0].text, got[0].text
