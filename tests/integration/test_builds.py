"""Builds from source, end to end: a git repository served by `git daemon` on loopback, a real
`dockyard server` with its registry, the real engine. A signed push webhook builds the commit,
pushes it to Dockyard's registry and rolls the App to the new digest; logs stream while the build
runs; builds are cancelled, fail with the builder's message, queue behind the concurrency limit;
git URLs to metadata or loopback addresses are refused as the egress policy says."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
from dockyard_harness import PASSWORD, Server, app_manifest, get_app, setup_project

P = "/projects/acme/shop"
SECRET = "hook-secret-1"


@pytest.fixture
def built_images(docker_api):  # noqa: ANN001, ANN201
    """Remove the images the servers' builds made (found by their build label) once the servers
    and their containers are gone: list this fixture before server_factory, so it ends after it."""
    servers: list[Server] = []
    yield servers
    for s in servers:
        for img in docker_api.images(all=True, filters={"label": f"dockyard.build.instance={s.instance}"}):
            try:
                docker_api.remove_image(img["Id"], force=True)
            except Exception:  # noqa: BLE001 — removed with a parent already
                pass


def buildconfig(name: str, git: str, *, image: str = "web", deploy: str | None = None, ref: str = "main",
                webhook: bool = True) -> dict:
    spec: dict = {"source": {"git": git, "ref": ref}, "image": image}
    if deploy:
        spec["deployTo"] = deploy
    if webhook:
        spec["triggers"] = {"webhook": {"secret": "hook"}}
    return {"apiVersion": "dockyard/v1", "kind": "BuildConfig", "metadata": {"name": name, "project": "acme/shop"},
            "spec": spec}


def gitea_push(ref: str, after: str) -> bytes:
    return json.dumps({"ref": ref, "before": "0" * 40, "after": after, "commits": [{"id": after}],
                       "repository": {"full_name": "acme/shop"}}).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def wait_phase(s: Server, c: httpx.Client, name: str, phases: set[str], timeout: float = 120) -> dict:
    def done():  # noqa: ANN202
        b = c.get(f"{P}/builds/{name}").json()
        return b if (b.get("status") or {}).get("phase") in phases else None

    return s.wait_for(done, timeout=timeout, interval=0.3, what=f"build {name} to reach {phases}")


def prepare(s: Server, c: httpx.Client) -> None:
    setup_project(s)
    c.post(f"{P}/secrets", json={"kind": "Secret", "metadata": {"name": "hook", "project": "acme/shop"},
                                 "spec": {"value": SECRET}}).raise_for_status()


def test_gitea_webhook_builds_pushes_and_deploys(built_images, server_factory, gitserver,  # noqa: ANN001
                                                 docker_api) -> None:  # noqa: ANN001
    s = server_factory()
    built_images.append(s)
    with s.client() as c:
        prepare(s, c)
        c.post(f"{P}/apps", json=app_manifest("web")).raise_for_status()
        s.wait_for(lambda: get_app(s, "web").get("status", {}).get("readyReplicas") == 1, what="web to run")
        s.cli("apply", "-f", "-", input=json.dumps(buildconfig("site", gitserver.url("site"), deploy="web")))
        assert "site" in s.cli("get", "buildconfigs", "-p", "acme/shop").stdout
        sha = gitserver.commit("site", {"Dockerfile": "FROM dockyard/demo:1.0\nCOPY hello.txt /www/hello.txt\n",
                                        "hello.txt": "hello from build one\n"})
        hook = f"{s.url}/hooks/builds/acme/shop/site"

        # wrong signature: 401, no build; malformed: 400, no build
        body = gitea_push("refs/heads/main", sha)
        r = httpx.post(hook, content=body, headers={"X-Gitea-Signature": sign(body, "wrong")})
        assert r.status_code == 401, r.text
        r = httpx.post(hook, content=body)
        assert r.status_code == 401, r.text
        bad = b"{not json"
        r = httpx.post(hook, content=bad, headers={"X-Gitea-Signature": sign(bad)})
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json"), r.text
        no_after = json.dumps({"ref": "refs/heads/main", "commits": []}).encode()
        r = httpx.post(hook, content=no_after, headers={"X-Gitea-Signature": sign(no_after)})
        assert r.status_code == 400 and "after" in r.json()["detail"], r.text
        other = gitea_push("refs/heads/feature", sha)
        r = httpx.post(hook, content=other, headers={"X-Gitea-Signature": sign(other)})
        assert r.status_code == 200 and "ignored" in r.json(), r.text
        assert c.get(f"{P}/builds").json()["items"] == []

        r = httpx.post(hook, content=body, headers={"X-Gitea-Signature": sign(body), "X-Gitea-Event": "push"})
        assert r.status_code == 202, r.text
        name = r.json()["build"]

        # the log streams while the build runs
        seen: list[str] = []
        first_at: list[str] = []

        def follow() -> None:
            with httpx.stream("GET", f"{s.url}/api/v1{P}/builds/{name}/logs", params={"follow": "true"},
                              headers={"Authorization": f"Bearer {s.token}"}, timeout=120) as res:
                for line in res.iter_lines():
                    if not first_at:
                        first_at.append(datetime.now(UTC).isoformat().replace("+00:00", "Z"))
                    seen.append(line)

        t = threading.Thread(target=follow)
        t.start()
        b = wait_phase(s, c, name, {"Succeeded", "Failed"})
        t.join(30)
        assert not t.is_alive(), "the followed log did not end with the build"
        st = b["status"]
        assert st["phase"] == "Succeeded", st
        assert st["commit"] == sha and st["tags"] == [sha, "main"] and st["buildConfig"] == "site"
        assert st["imageDigest"].startswith("sha256:") and st["durationSeconds"] > 0
        assert first_at and first_at[0] < st["finishedAt"], (first_at, st)  # lines came while it ran
        text = "\n".join(seen)
        assert "COPY hello.txt" in text and "pushed" in text and "build succeeded" in text, text

        # pushed by the build, as the registry recorded it (not `dockyard-ephemeral:acme/shop`)
        out = s.wait_for(lambda: (o := s.cli("images", "tags", "acme/shop/web").stdout) and f"build {name}" in o and o,
                         timeout=30, what="the push's notification")
        assert f"build {name} (by admin)" in out and "dockyard-ephemeral" not in out, out

        # in Dockyard's registry, under both tags, with that digest
        for tag in (sha, "main"):
            out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", f"admin:{PASSWORD}",
                                  f"docker://{s.registry}/acme/shop/web:{tag}"],
                                 capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout)["Digest"] == st["imageDigest"]

        # the App rolls to the digest (as its commit's tag, the shape autoDeploy writes) and serves it
        def rolled(image: str, digest: str):  # noqa: ANN202
            app = get_app(s, "web")
            cs = [x for x in app["status"].get("containers") or [] if x.get("ready")]
            return app if (app["spec"]["image"], app["spec"].get("imageDigest")) == (image, digest) and \
                app["status"].get("phase") == "Ready" and cs else None

        app = s.wait_for(lambda: rolled(f"{s.registry}/acme/shop/web:{sha}", st["imageDigest"]), timeout=90,
                         what="the app to roll to the built digest")
        ip = next(x["ip"] for x in app["status"]["containers"] if x.get("ready"))
        assert httpx.get(f"http://{ip}:8080/hello.txt", timeout=3).text == "hello from build one\n"
        revs = c.get(f"{P}/apps/web/revisions").json()["items"]
        assert revs[-1]["changeCause"] == f"build {name}"

        # an App that follows the branch's tag (its digest filled in from the tag) keeps following it:
        # the next build's deploy moves imageDigest, and no revision names two digests
        c.patch(f"{P}/apps/web", json={"spec": {"image": f"{s.registry}/acme/shop/web:main"}}).raise_for_status()
        s.wait_for(lambda: rolled(f"{s.registry}/acme/shop/web:main", st["imageDigest"]), timeout=60,
                   what="the app to follow the main tag")
        sha2 = gitserver.commit("site", {"hello.txt": "hello from build two\n"})
        body2 = gitea_push("refs/heads/main", sha2)
        r = httpx.post(hook, content=body2, headers={"X-Gitea-Signature": sign(body2)})
        second = r.json()["build"]
        st2 = wait_phase(s, c, second, {"Succeeded", "Failed"})["status"]
        assert st2["phase"] == "Succeeded" and st2["imageDigest"] != st["imageDigest"], st2
        s.wait_for(lambda: rolled(f"{s.registry}/acme/shop/web:main", st2["imageDigest"]), timeout=90,
                   what="the app to roll to the second build's digest")
        revs = c.get(f"{P}/apps/web/revisions").json()["items"]
        assert revs[-1]["changeCause"] == f"build {second}" and revs[-1]["imageDigest"] == st2["imageDigest"], revs
        assert all("@" not in (r["image"] or "") for r in revs), revs
        history = s.cli("rollout", "history", "app", "web", "-p", "acme/shop").stdout
        assert not any(line.count("@") > 1 for line in history.splitlines()), history

        # the CLI lists it with its duration, and prints its log (-f ends with the build)
        out = s.cli("build", "list", "-p", "acme/shop").stdout
        assert name in out and "Succeeded" in out, out
        out = s.cli("build", "logs", name, "-f", "-p", "acme/shop", timeout=30).stdout
        assert "COPY hello.txt" in out and out.rstrip().endswith("build succeeded"), out

        # a base image of the project's own repository that the engine lacks (by that reference) is
        # pulled from Dockyard's registry before the build, with a short-lived credential
        base = f"{s.registry}/acme/shop/web:{sha2}"
        docker_api.remove_image(base)  # the tag only: the image keeps its other tags
        gitserver.commit("onbase", {"Dockerfile": f"FROM {base}\nRUN cat /www/hello.txt\n"})
        out = s.cli("build", "start", "--git", gitserver.url("onbase"), "--image", "onbase", "-p", "acme/shop", "-f",
                    timeout=120).stdout
        assert f"pulling {base} from Dockyard's registry" in out and "hello from build two" in out, out


def test_github_and_gitlab_formats_start_builds(server_factory, gitserver) -> None:  # noqa: ANN001
    s = server_factory()
    with s.client() as c:
        prepare(s, c)
        c.post(f"{P}/buildconfigs", json=buildconfig("site", gitserver.url("site"))).raise_for_status()
        hook = f"{s.url}/hooks/builds/acme/shop/site"
        body = gitea_push("refs/heads/main", "a" * 40)
        r = httpx.post(hook, content=body, headers={"X-Hub-Signature-256": "sha256=" + sign(body, "x")})
        assert r.status_code == 401
        # GitHub pings a hook as soon as it is made (no ref, no commits): 200, ignored, once authenticated
        ping = json.dumps({"zen": "Keep it simple.", "hook_id": 1}).encode()
        r = httpx.post(hook, content=ping, headers={"X-GitHub-Event": "ping",
                                                    "X-Hub-Signature-256": "sha256=" + sign(ping, "x")})
        assert r.status_code == 401, r.text
        r = httpx.post(hook, content=ping, headers={"X-GitHub-Event": "ping", "X-Hub-Signature-256": "sha256=" + sign(ping)})
        assert r.status_code == 200 and r.json() == {"ignored": "ping"}, r.text
        mr = json.dumps({"object_kind": "merge_request"}).encode()
        r = httpx.post(hook, content=mr, headers={"X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Token": SECRET})
        assert r.status_code == 200 and r.json() == {"ignored": "Merge Request Hook"}, r.text
        assert c.get(f"{P}/builds").json()["items"] == []
        r = httpx.post(hook, content=body, headers={"X-Hub-Signature-256": "sha256=" + sign(body)})
        assert r.status_code == 202, r.text
        first = r.json()["build"]
        r = httpx.post(hook, content=body, headers={"X-Gitlab-Token": "nope"})
        assert r.status_code == 401
        r = httpx.post(hook, content=body, headers={"X-Gitlab-Token": SECRET})
        # the same commit again: the first build if it still waits (202) or is fetching it (200), or a new one
        assert r.status_code == 202 or (r.status_code == 200 and r.json()["build"] == first), r.text
        deleted = gitea_push("refs/heads/main", "0" * 40)
        r = httpx.post(hook, content=deleted, headers={"X-Gitlab-Token": SECRET})
        assert r.status_code == 200 and "ignored" in r.json()
        # unknown configs look like wrong secrets
        r = httpx.post(f"{s.url}/hooks/builds/acme/shop/nope", content=body, headers={"X-Gitlab-Token": SECRET})
        assert r.status_code == 401
        assert 1 <= len(c.get(f"{P}/builds").json()["items"]) <= 2


def test_cancel_failure_and_concurrency_limit(built_images, server_factory, gitserver, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("DOCKYARD_BUILD_CONCURRENCY", "1")
    s = server_factory()
    built_images.append(s)
    with s.client() as c:
        prepare(s, c)
        # three repositories, so that the engine's layer cache cannot make a build instant
        for n in ("q0", "q1", "q2"):
            gitserver.commit(n, {"Dockerfile": f"FROM dockyard/demo:1.0\nRUN echo {n} {time.time_ns()} && sleep 2\n"})
            c.post(f"{P}/buildconfigs", json=buildconfig(n, gitserver.url(n), image=n)).raise_for_status()
        gitserver.commit("slow", {"Dockerfile": "FROM dockyard/demo:1.0\nRUN sleep 120\n"})
        gitserver.commit("broken", {"Dockerfile": "FROM dockyard/demo:1.0\nRUN echo about to fail && exit 3\n"})
        c.post(f"{P}/buildconfigs", json=buildconfig("slow", gitserver.url("slow"), image="slow")).raise_for_status()

        # three builds, limit 1: never two Running at once, the others queue in order
        names = [c.post(f"{P}/buildconfigs/{n}/start").json()["metadata"]["name"] for n in ("q0", "q1", "q2")]
        assert names == ["q0-1", "q1-1", "q2-1"]
        # a push (or a replayed webhook) while q2's build waits joins it instead of queueing another
        push = gitea_push("refs/heads/main", "b" * 40)
        r = httpx.post(f"{s.url}/hooks/builds/acme/shop/q2", content=push, headers={"X-Gitea-Signature": sign(push)})
        assert r.status_code == 202 and r.json()["build"] == "q2-1", r.text
        most = 0
        positions: set[int] = set()
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            items = c.get(f"{P}/builds").json()["items"]
            phases = [(i.get("status") or {}).get("phase") for i in items]
            most = max(most, phases.count("Running"))
            positions |= {(i.get("status") or {}).get("queuePosition") for i in items} - {None}
            if all(p == "Succeeded" for p in phases):
                break
            assert "Failed" not in phases, items
            time.sleep(0.2)
        else:
            raise AssertionError(f"builds did not finish: {phases}")
        assert most == 1 and positions == {1, 2}
        starts = sorted((i["status"]["startedAt"], i["status"]["finishedAt"], i["metadata"]["name"]) for i in items)
        assert [n for _, _, n in starts] == names
        for (_, end, _), (begin, _, _) in zip(starts, starts[1:], strict=False):
            assert begin >= end  # one after the other
        assert all(i["status"]["durationSeconds"] >= 2 for i in items), items

        # cancel a build while its Dockerfile sleeps
        name = c.post(f"{P}/buildconfigs/slow/start").json()["metadata"]["name"]

        def sleeping():  # noqa: ANN202
            r = c.get(f"{P}/builds/{name}/logs")
            return "RUN sleep 120" in r.text
        s.wait_for(sleeping, timeout=60, what="the build to reach its sleep")
        t0 = time.monotonic()
        out = s.cli("build", "cancel", name, "-p", "acme/shop").stdout
        assert "cancel" in out
        b = wait_phase(s, c, name, {"Cancelled", "Failed", "Succeeded"}, timeout=30)
        assert b["status"]["phase"] == "Cancelled" and time.monotonic() - t0 < 15, b["status"]
        assert c.post(f"{P}/builds/{name}/cancel").status_code == 409
        assert not list((s.data_dir / "builds" / "work").iterdir())

        # a failing Dockerfile (a one-off Build, without a BuildConfig): Failed, with the builder's message
        name = s.cli("build", "start", "--git", gitserver.url("broken"), "--image", "broken", "--build-arg", "A=1",
                     "-p", "acme/shop").stdout.strip()
        assert name.startswith("broken-")
        b = wait_phase(s, c, name, {"Succeeded", "Failed"})
        assert b["status"]["phase"] == "Failed" and "returned a non-zero code: 3" in b["status"]["message"], b
        log = s.cli("build", "logs", name, "-p", "acme/shop").stdout
        assert "about to fail" in log and "build failed" in log


def test_git_url_egress_rules(server_factory, gitserver) -> None:  # noqa: ANN001
    s = server_factory()
    with s.client() as c:
        prepare(s, c)
        r = c.post(f"{P}/buildconfigs", json=buildconfig("meta", "http://169.254.169.254/latest.git"))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "spec.source.git", r.text
        r = c.post(f"{P}/builds", json={"kind": "Build", "metadata": {"name": "f", "project": "acme/shop"},
                                        "spec": {"source": {"git": "file:///etc"}, "image": "x"}})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "spec.source.git", r.text
        c.post("/users", json={"name": "mia", "password": "maintainer-pw-1"}).raise_for_status()
        c.post(f"{P}/members", json={"user": "mia", "role": "maintainer"}).raise_for_status()
        tok = httpx.post(f"{s.url}/api/v1/login", json={"username": "mia", "password": "maintainer-pw-1"}).json()["token"]
        mia = httpx.Client(base_url=f"{s.url}/api/v1", headers={"Authorization": f"Bearer {tok}"})
        r = mia.post(f"{P}/buildconfigs", json=buildconfig("local", gitserver.url("site")))
        assert r.status_code == 403 and r.json()["errors"][0]["field"] == "spec.source.git", r.text
        # the admin may; the admin's mark goes with the config and the Builds it starts
        r = c.post(f"{P}/buildconfigs", json=buildconfig("local", gitserver.url("site")))
        assert r.status_code == 201, r.text
        assert r.json()["metadata"]["annotations"]["dockyard.io/egress-private"] == "true"
        r = mia.post(f"{P}/buildconfigs/local/start")
        assert r.status_code == 201 and r.json()["metadata"]["annotations"]["dockyard.io/egress-private"] == "true"


def test_build_step_limits_and_a_server_killed_mid_build(server_factory, gitserver, docker_api) -> None:  # noqa: ANN001
    s = server_factory()
    with s.client() as c:
        prepare(s, c)
        c.patch("/projects/acme/shop", json={"spec": {"defaults": {"memory": "96Mi", "cpu": "500m"}}})\
            .raise_for_status()
        sha = gitserver.commit("slow", {"Dockerfile": "FROM dockyard/demo:1.0\nRUN sleep 173\n"})
        c.post(f"{P}/buildconfigs", json=buildconfig("slow", gitserver.url("slow"), image="slow")).raise_for_status()
        name = c.post(f"{P}/buildconfigs/slow/start").json()["metadata"]["name"]
        s.wait_for(lambda: "RUN sleep 173" in c.get(f"{P}/builds/{name}/logs").text, timeout=60,
                   what="the build to reach its sleep")
        # a webhook for the commit that build is building (sent twice, replayed) names it, starts nothing
        push = gitea_push("refs/heads/main", sha)
        r = httpx.post(f"{s.url}/hooks/builds/acme/shop/slow", content=push, headers={"X-Gitea-Signature": sign(push)})
        assert r.status_code == 200 and r.json()["build"] == name and "already being built" in r.json()["ignored"], r.text
        assert [b["metadata"]["name"] for b in c.get(f"{P}/builds").json()["items"]] == [name]

    def build_containers() -> list[dict]:
        return [x for x in docker_api.containers(all=True) if "sleep 173" in x.get("Command", "")]

    # the step runs with the project's default limits, on the project's network
    step = s.wait_for(build_containers, timeout=30, what="the build step's container")[0]
    host = docker_api.inspect_container(step["Id"])["HostConfig"]
    assert host["Memory"] == 96 * 2**20 and host["MemorySwap"] == 96 * 2**20, host
    assert host["CpuQuota"] == 50_000 and host["CpuPeriod"] == 100_000, host
    assert host["NetworkMode"] == f"dy{s.instance}_acme_shop", host
    assert list((s.data_dir / "builds" / "work").iterdir())
    s.kill(signal.SIGKILL)

    # the engine ends the build when its client goes, and removes the step's container (forcerm)
    s.wait_for(lambda: not build_containers(), timeout=30, what="the build's container to go")
    s.start()
    with s.client() as c:
        b = wait_phase(s, c, name, {"Failed", "Cancelled", "Succeeded"}, timeout=60)
        assert b["status"]["phase"] == "Failed" and "interrupted" in b["status"]["message"], b["status"]
        assert b["status"]["finishedAt"]
        assert "interrupted" in c.get(f"{P}/builds/{name}/logs").text
    assert not list((s.data_dir / "builds" / "work").iterdir())
    assert not build_containers()


def test_a_base_image_missing_from_the_engine_is_refused_without_a_pull(server_factory, gitserver,  # noqa: ANN001
                                                                         docker_api) -> None:  # noqa: ANN001
    """`pull=0` does not stop the classic builder from pulling a FROM image it lacks (from Docker
    Hub for a bare name): the runner reads the FROM lines (global ARGs, --platform, stage names)
    and refuses before the engine sees the build."""
    missing = f"dockyard/absent-base:{time.time_ns()}"
    s = server_factory()
    with s.client() as c:
        prepare(s, c)
        gitserver.commit("absent", {"Dockerfile": f"ARG BASE={missing}\n"
                                                  "FROM --platform=linux/amd64 dockyard/demo:1.0 AS first\n"
                                                  "FROM first AS second\nFROM ${BASE}\nCOPY --from=second /bin/sh /sh\n"})
        c.post(f"{P}/buildconfigs", json=buildconfig("absent", gitserver.url("absent"), image="absent"))\
            .raise_for_status()
        since = int(time.time()) - 1
        # `build start -f` follows the log and exits 1, saying the phase and message, as the build fails
        out = s.cli("build", "start", "absent", "-f", "-p", "acme/shop", check=False, timeout=120)
        name = out.stdout.splitlines()[0]
        assert out.returncode == 1 and f"build {name}: Failed: base image {missing} is not on" in out.stderr, out
        b = wait_phase(s, c, name, {"Succeeded", "Failed"})
        until = int(time.time()) + 1
    assert b["status"]["phase"] == "Failed", b["status"]
    assert b["status"]["message"] == (
        f"base image {missing} is not on the engine; builds never pull (load or build it, or push it to "
        "Dockyard's registry and name it with the registry host)"), b["status"]
    pulls = [e for e in docker_api.events(since=since, until=until, decode=True, filters={"type": "image"})
             if e.get("Action") == "pull" or "absent-base" in json.dumps(e)]
    assert pulls == [], pulls
    log = (s.data_dir / "builds" / "logs").glob("*.log")
    text = "\n".join(p.read_text() for p in log)
    assert "Step 1/" not in text and "not on the engine" in text, text


def test_a_cancel_during_the_push_takes_effect_after_it(built_images, server_factory, gitserver) -> None:  # noqa: ANN001
    """A push is not cut short (its tags would move while the Build said nothing of it): the
    Build ends Cancelled with the digest its tags now name, and is not deployed."""
    s = server_factory()
    built_images.append(s)
    with s.client() as c:
        prepare(s, c)
        c.post(f"{P}/apps", json=app_manifest("web")).raise_for_status()
        sha = gitserver.commit("big", {"Dockerfile": "FROM dockyard/demo:1.0\n"
                                                     f"RUN echo {time.time_ns()} && dd if=/dev/urandom of=/big bs=1M "
                                                     "count=200\n"})
        c.post(f"{P}/buildconfigs", json=buildconfig("big", gitserver.url("big"), image="big", deploy="web"))\
            .raise_for_status()
        name = c.post(f"{P}/buildconfigs/big/start").json()["metadata"]["name"]
        s.wait_for(lambda: "pushing" in c.get(f"{P}/builds/{name}/logs").text, timeout=120, interval=0.05,
                   what="the build to start pushing")
        assert c.post(f"{P}/builds/{name}/cancel").status_code == 200
        st = wait_phase(s, c, name, {"Succeeded", "Failed", "Cancelled"})["status"]
        target = f"{s.registry}/acme/shop/big"
        assert st["phase"] == "Cancelled" and st["imageDigest"].startswith("sha256:"), st
        assert st["message"] == (f"cancelled after the push: {target}:{sha}, {target}:main now point to "
                                 f"{st['imageDigest']}; not deployed"), st
        for tag in (sha, "main"):
            out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", f"admin:{PASSWORD}",
                                  f"docker://{target}:{tag}"], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0 and json.loads(out.stdout)["Digest"] == st["imageDigest"], out.stderr
        assert get_app(s, "web")["spec"]["image"] == "dockyard/demo:1.0"
        out = s.cli("build", "logs", name, "-f", "-p", "acme/shop", check=False, timeout=30)
        assert out.returncode == 1 and f"build {name}: Cancelled: cancelled after the push" in out.stderr, out
        assert "pushed" in out.stdout, out
