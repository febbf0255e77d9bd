"""Images in Dockyard's registry with the real `docker push/pull` against a real `dockyard server`:
browse (digest, size, pushed-by), delete, autoDeploy to exact digests with history and rollback,
retention, garbage collection beside a concurrent pull, and preheat before the first container."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from dockyard_harness import PASSWORD, Server, app_containers, app_manifest, remove_instance_objects, setup_project
from peers import build_image, remove_registry_refs, run_docker, throwaway_env

pytestmark = pytest.mark.engine


@pytest.fixture
def reg(server_factory, tmp_path: Path) -> Iterator[tuple[Server, dict]]:  # noqa: ANN001
    """A server with project acme/shop and a docker client logged in to its registry as admin."""
    s = server_factory()
    setup_project(s)
    env = throwaway_env(tmp_path / "docker-config")
    run_docker(env, "login", "-u", "admin", "--password-stdin", s.registry, input=PASSWORD)
    yield s, env
    s.stop()  # its containers go first, so that nothing holds the images below
    remove_instance_objects(docker.APIClient(base_url=s.engine, version="1.41"), s.instance)
    remove_registry_refs(env, s.registry)


def push(s: Server, env: dict, source: str, name: str, tag: str) -> str:
    """Tag a local image as NAME:TAG in acme/shop and push it; returns the digest docker reports."""
    ref = f"{s.registry}/acme/shop/{name}:{tag}"
    run_docker(env, "tag", source, ref)
    out = run_docker(env, "push", ref).stdout
    digest = next(w for w in out.split() if w.startswith("sha256:"))
    return digest


def tags(s: Server, name: str) -> dict[str, dict]:
    with s.client() as c:
        r = c.get(f"/projects/acme/shop/images/{name}/tags")
        if r.status_code == 404:
            return {}
        r.raise_for_status()
        return {t["tag"]: t for t in r.json()["items"]}


def recorded(s: Server, name: str, tag: str, digest: str) -> bool:
    t = tags(s, name).get(tag)
    return bool(t and t["digest"] == digest and t["pushedBy"])


def test_browse_shows_digest_size_pushed_by_and_delete_removes_the_tag(reg) -> None:  # noqa: ANN001
    s, env = reg
    d1 = push(s, env, "dockyard/demo:1.0", "web", "1.0")
    d2 = push(s, env, "dockyard/demo:2.0", "web", "2.0")
    s.wait_for(lambda: recorded(s, "web", "1.0", d1) and recorded(s, "web", "2.0", d2), what="push events recorded")
    t = tags(s, "web")
    assert t["1.0"]["pushedBy"] == "admin" and t["1.0"]["size"] > 100_000
    assert t["1.0"]["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    with s.client() as c:
        repos = c.get("/projects/acme/shop/images").json()["items"]
        assert [(r["name"], r["tagCount"]) for r in repos] == [("web", 2)]
        assert repos[0]["size"] == t["1.0"]["size"] + t["2.0"]["size"] and repos[0]["lastPush"]
        events = c.get("/projects/acme/shop/events").json()["items"]
        assert any(e["reason"] == "ImagePushed" and "admin pushed web:2.0" in e["message"] for e in events)
        reg_info = c.get("/projects/acme/shop/registry").json()
        assert reg_info["usage"]["bytes"] > 0
    usage_lines = s.cli("images", "usage", "-p", "acme/shop").stdout.splitlines()
    assert usage_lines[0].startswith("project acme/shop: used ") and " of unlimited " in usage_lines[0]
    assert usage_lines[1] == f"registry {s.registry}: images are {s.registry}/acme/shop/NAME[:TAG]"

    out = s.cli("images", "-p", "acme/shop").stdout
    assert "web" in out and "2" in out
    out = s.cli("images", "tags", "acme/shop/web").stdout
    assert d1[:19] in out and "admin" in out

    # 2.0 and latest share a digest: the registry deletes manifests, so deleting one is refused, naming the other
    push(s, env, "dockyard/demo:2.0", "web", "latest")
    res = s.cli("images", "delete", "acme/shop/web:2.0", check=False)
    assert res.returncode != 0 and "latest" in res.stderr + res.stdout and "2.0" in tags(s, "web")

    s.cli("images", "delete", "acme/shop/web:1.0")
    assert "1.0" not in tags(s, "web")
    run_docker(env, "rmi", f"{s.registry}/acme/shop/web:1.0")
    res = run_docker(env, "pull", f"{s.registry}/acme/shop/web:1.0", check=False)
    assert res.returncode != 0 and "not found" in (res.stderr + res.stdout).lower()
    with s.client() as c:
        events = c.get("/projects/acme/shop/events").json()["items"]
        assert any(e["reason"] == "ImageDeleted" and "admin deleted web:1.0" in e["message"] for e in events)


def local_image_id(env: dict, ref: str) -> str:
    return run_docker(env, "image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def build_variant(env: dict, ref: str, label: str, size: int = 0, tmp: Path | None = None) -> None:
    """A small image of its own digest (a label, optionally a random layer of `size` bytes) on
    top of the local demo image: nothing is pulled."""
    build_image(env, ref, base="dockyard/demo:1.0", label=label, size=size, ctx=tmp and tmp / f"ctx-{label}")


def running_image_ids(docker_api: docker.APIClient, s: Server, app: str) -> set[str]:
    return {docker_api.inspect_container(c["Id"])["Image"] for c in app_containers(docker_api, s.instance, app, True)}


def settled(s: Server, app: str, digest: str) -> bool:
    with s.client() as c:
        a = c.get(f"/projects/acme/shop/apps/{app}").json()
    return a["spec"].get("imageDigest") == digest and (a.get("status") or {}).get("phase") == "Ready" \
        and a["status"].get("observedGeneration") == a["metadata"]["generation"]


def test_push_to_an_autodeploy_tag_rolls_out_the_exact_digest_and_rollback_restores_it(
        reg, docker_api: docker.APIClient) -> None:  # noqa: ANN001
    s, env = reg
    one, two = local_image_id(env, "dockyard/demo:1.0"), local_image_id(env, "dockyard/demo:2.0")
    d1 = push(s, env, "dockyard/demo:1.0", "web", "stable")
    image = f"{s.registry}/acme/shop/web:stable"
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest("auto", image, replicas=2, autoDeploy=True)
               ).raise_for_status()
        c.post("/projects/acme/shop/apps", json=app_manifest("pinned", image)).raise_for_status()
    s.wait_for(lambda: settled(s, "auto", d1) and settled(s, "pinned", d1), timeout=90, what="both apps on d1")
    assert running_image_ids(docker_api, s, "auto") == {one}

    d2 = push(s, env, "dockyard/demo:2.0", "web", "stable")
    assert d2 != d1
    s.wait_for(lambda: settled(s, "auto", d2) and running_image_ids(docker_api, s, "auto") == {two}
               and len(app_containers(docker_api, s.instance, "auto")) == 2, timeout=90, what="auto on d2")
    with s.client() as c:
        revs = c.get("/projects/acme/shop/apps/auto/revisions").json()["items"]
        assert [r["imageDigest"] for r in revs] == [r["template"]["imageDigest"] for r in revs] == [d1, d2]
        assert revs[1]["changeCause"] == "push of stable by admin" and revs[1]["current"]
        events = c.get("/projects/acme/shop/apps/auto/events").json()["items"]
        assert any(e["reason"] == "Deployed" and "autoDeploy" in e["message"] and d2 in e["message"] for e in events)
    history = s.cli("rollout", "history", "app", "auto", "-p", "acme/shop").stdout
    assert d1[:19] in history and d2[:19] in history and "push of stable by admin" in history
    # without autoDeploy the push changed nothing (its digest stays, its containers run image one)
    time.sleep(3)
    assert settled(s, "pinned", d1) and running_image_ids(docker_api, s, "pinned") == {one}

    with s.client() as c:
        c.post("/projects/acme/shop/apps/auto/rollback", json={"revision": revs[0]["revision"]}).raise_for_status()
    s.wait_for(lambda: settled(s, "auto", d1) and running_image_ids(docker_api, s, "auto") == {one}
               and len(app_containers(docker_api, s.instance, "auto")) == 2, timeout=90, what="rolled back to d1")
    # an `apply` of the unchanged manifest keeps the digest: nothing rolls although the tag moved on
    with s.client() as c:
        cur = c.get("/projects/acme/shop/apps/pinned").json()
        body = app_manifest("pinned", image)
        body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        c.put("/projects/acme/shop/apps/pinned", json=body).raise_for_status()
        assert c.get("/projects/acme/shop/apps/pinned").json()["spec"]["imageDigest"] == d1


def test_retention_keeps_the_last_n_matching_tags_and_tags_in_use(reg) -> None:  # noqa: ANN001
    s, env = reg
    digests = {}
    for i in range(1, 6):
        build_variant(env, f"h4-retention:v{i}", f"r{i}-{s.port}")
        digests[f"v{i}"] = push(s, env, f"h4-retention:v{i}", "api", f"v{i}")
        time.sleep(1.1)  # distinct push times
    push(s, env, "h4-retention:v1", "api", "keep-me")  # no rule matches it, but it shares v1's digest
    s.wait_for(lambda: len(tags(s, "api")) == 6 and all(t["pushedBy"] for t in tags(s, "api").values()),
               what="six tags recorded")
    with s.client() as c:
        # v2 is in use by an App (scaled to zero: nothing runs, the tag is still needed)
        c.post("/projects/acme/shop/apps", json=app_manifest("old", f"{s.registry}/acme/shop/api:v2", replicas=0)
               ).raise_for_status()
        r = c.patch("/projects/acme/shop", json={"spec": {"registry": {"retention": [{"tags": "v*", "keepLast": 2}]}}},
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
        bad = c.patch("/projects/acme/shop", json={"spec": {"registry": {"retention": [{"tags": "v*", "keepLast": -1}]}}},
                      headers={"Content-Type": "application/merge-patch+json"})
        assert bad.status_code == 422 and "spec.registry.retention[0].keepLast" in bad.text
        plan = c.post("/projects/acme/shop/registry/retention", params={"dryRun": "1"}).json()
        assert sorted(v["tag"] for v in plan["wouldDelete"]) == ["v3"]
        assert sorted((v["tag"], v["reason"]) for v in plan["protected"]) == [
            ("v1", "its digest is also the digest of a tag that stays (keep-me)"), ("v2", "in use by App old")]
        kept = {v["tag"]: v["reason"] for v in plan["kept"]}
        assert kept["keep-me"] == "no rule matches it" and kept["v5"].startswith("rule 1: keepLast 2 (newest 1 of 5")
        assert set(tags(s, "api")) == {"v1", "v2", "v3", "v4", "v5", "keep-me"}  # a dry run deletes nothing
    rows = {line.split()[1]: line for line in s.cli("images", "retention", "-p", "acme/shop", "--dry-run"
                                                     ).stdout.splitlines()[1:]}
    assert "would delete" in rows["v3"] and "kept" in rows["v4"] and "keepLast 2" in rows["v4"]
    assert "in use by App old" in rows["v2"] and "no rule matches it" in rows["keep-me"]
    out = s.cli("images", "retention", "-p", "acme/shop").stdout
    assert "v3" in out and "deleted" in out
    assert set(tags(s, "api")) == {"v1", "v2", "v4", "v5", "keep-me"}
    run_docker(env, "rmi", f"{s.registry}/acme/shop/api:v3")
    assert run_docker(env, "pull", f"{s.registry}/acme/shop/api:v3", check=False).returncode != 0
    for i in range(1, 6):
        run_docker(env, "rmi", f"h4-retention:v{i}", check=False)


def test_gc_frees_the_blobs_of_a_deleted_tag_while_a_concurrent_pull_succeeds(reg, tmp_path: Path) -> None:  # noqa: ANN001
    s, env = reg
    build_variant(env, "h4-gc:gone", f"gone-{s.port}", size=12 * 1024 * 1024, tmp=tmp_path)
    build_variant(env, "h4-gc:kept", f"kept-{s.port}", size=12 * 1024 * 1024, tmp=tmp_path)
    gone = push(s, env, "h4-gc:gone", "big", "gone")
    push(s, env, "h4-gc:kept", "big", "kept")
    s.wait_for(lambda: {"gone", "kept"} <= set(tags(s, "big")), what="pushes recorded")
    s.cli("images", "delete", "acme/shop/big:gone")
    kept_ref = f"{s.registry}/acme/shop/big:kept"
    # tags that moved on leave untagged manifests: one an App still runs (kept), one nobody needs (goes)
    for label in ("x", "y", "z", "w"):
        build_variant(env, f"h4-gc:{label}", f"{label}-{s.port}")
    dx = push(s, env, "h4-gc:x", "big", "moving")
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest("keeper", f"{s.registry}/acme/shop/big:moving",
                                                             replicas=0)).raise_for_status()
    s.wait_for(lambda: s.client().get("/projects/acme/shop/apps/keeper").json()["spec"].get("imageDigest") == dx,
               what="keeper pinned to its digest")
    push(s, env, "h4-gc:y", "big", "moving")
    dz = push(s, env, "h4-gc:z", "big", "orphan")
    push(s, env, "h4-gc:w", "big", "orphan")

    pulls: list[tuple[float, int, str]] = []
    done = threading.Event()

    def pull_repeatedly() -> None:
        while not done.is_set():
            run_docker(env, "rmi", kept_ref, check=False)
            res = run_docker(env, "pull", kept_ref, check=False)
            pulls.append((time.monotonic(), res.returncode, res.stderr[-300:]))

    t = threading.Thread(target=pull_repeatedly)
    t.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        with httpx.Client(base_url=s.url + "/api/v1", headers={"Authorization": f"Bearer {s.token}"},
                          timeout=300) as c:
            r = c.post("/registry/gc")
        ended = time.monotonic()
    finally:
        done.set()
        t.join(timeout=120)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["freedBytes"] >= 12 * 1024 * 1024, report
    during = [p for p in pulls if started <= p[0] <= ended + 1]
    assert pulls and all(code == 0 for _, code, _ in pulls), pulls
    assert during, f"no pull overlapped the collection ({started:.1f}-{ended:.1f}): {pulls}"
    assert run_docker(env, "pull", kept_ref).returncode == 0
    assert report["untaggedManifestsDeleted"] == 1, report
    assert run_docker(env, "pull", f"{s.registry}/acme/shop/big@{dx}").returncode == 0  # the App's digest stays
    assert run_docker(env, "pull", f"{s.registry}/acme/shop/big@{dz}", check=False).returncode != 0
    # a push works again afterwards (the writable registry is back)
    assert push(s, env, "h4-gc:gone", "big", "again") == gone
    with s.client() as c:
        assert c.post("/registry/gc").status_code == 200
    for ref in ("h4-gc:gone", "h4-gc:kept", "h4-gc:x", "h4-gc:y", "h4-gc:z", "h4-gc:w"):
        run_docker(env, "rmi", ref, check=False)


def test_preheat_pulls_the_image_before_any_container_starts(reg, docker_api: docker.APIClient) -> None:  # noqa: ANN001
    s, env = reg
    build_variant(env, "h4-pre:1", f"pre-{s.port}")
    digest = push(s, env, "h4-pre:1", "pre", "1")
    ref = f"{s.registry}/acme/shop/pre:1"
    run_docker(env, "rmi", ref, "h4-pre:1")
    since = int(time.time()) - 1
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest("pre", ref)).raise_for_status()
    s.wait_for(lambda: settled(s, "pre", digest), timeout=90, what="app on the pushed digest")
    until = int(time.time()) + 1
    evs = list(docker_api.events(since=since, until=until, decode=True))
    pulled = [e["timeNano"] for e in evs if e.get("Type") == "image" and e.get("Action") == "pull"
              and "acme/shop/pre" in e.get("id", "")]
    created = [e["timeNano"] for e in evs if e.get("Type") == "container" and e.get("Action") == "create"
               and (e.get("Actor", {}).get("Attributes", {}).get("dockyard.app") == "pre")]
    assert pulled and created and max(pulled) < min(created), (pulled, created)

    # a tag that is not there: the App says so, and nothing is created
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest("nope", f"{s.registry}/acme/shop/pre:nope")
               ).raise_for_status()

    def refused() -> dict | None:
        with s.client() as c:
            st = c.get("/projects/acme/shop/apps/nope").json().get("status") or {}
        return next((x for x in st.get("conditions") or [] if x["type"] == "Ready" and x["reason"] == "ImageNotFound"),
                    None)

    cond = s.wait_for(refused, what="ImageNotFound condition")
    assert "has no tag nope; push it first" in cond["message"], cond
    assert app_containers(docker_api, s.instance, "nope") == []

    # on demand, with the CLI; an unknown cluster is named in the error
    run_docker(env, "rmi", "-f", f"{ref}@{digest}", check=False)
    out = s.cli("images", "preheat", "acme/shop/pre:1").stdout
    assert "pulled" in out and digest in out
    assert docker_api.inspect_image(f"{ref}@{digest}")["Id"]
    res = s.cli("images", "preheat", "acme/shop/pre:1", "--cluster", "mars", check=False)
    assert res.returncode != 0 and "cluster 'mars' not found" in res.stderr + res.stdout
    assert "the only cluster is the local engine, named 'local', or by its engine's node name: " in res.stderr


def test_notifications_need_the_secret_and_are_applied_once(reg) -> None:  # noqa: ANN001
    s, env = reg
    body = {"events": [{"id": "evt-1", "timestamp": "2026-11-27T10:00:00.123456789Z", "action": "push",
                        "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                   "repository": "acme/shop/fake", "digest": "sha256:" + "a" * 64, "tag": "t1",
                                   "size": 500},
                        "actor": {"name": "carol"}}]}
    assert httpx.post(s.url + "/registry/events", json=body).status_code == 401
    assert httpx.post(s.url + "/registry/events", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    secret = (s.data_dir / "registry" / "notify-secret").read_text().strip()
    auth = {"Authorization": f"Bearer {secret}"}
    for _ in range(3):  # the registry retries: one row, one event
        assert httpx.post(s.url + "/registry/events", json=body, headers=auth).status_code == 200
    assert httpx.post(s.url + "/registry/events", content=b"{", headers=auth).status_code == 400
    with s.client() as c:
        events = c.get("/projects/acme/shop/events").json()["items"]
    pushed = [e for e in events if e["reason"] == "ImagePushed" and "carol pushed fake:t1" in e["message"]]
    assert len(pushed) == 1 and pushed[0].get("count", 1) == 1


@pytest.fixture
def fast_schedules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retention every 2 s and GC every 3 s in the servers started after it."""
    monkeypatch.setenv("DOCKYARD_REGISTRY_RETENTION_INTERVAL", "2s")
    monkeypatch.setenv("DOCKYARD_REGISTRY_GC_INTERVAL", "3s")


def test_retention_and_gc_run_on_their_schedule(fast_schedules: None, reg) -> None:  # noqa: ANN001
    s, env = reg
    try:
        for i in (1, 2, 3):
            build_variant(env, f"h4-sched:{i}", f"sched{i}-{s.port}")
            push(s, env, f"h4-sched:{i}", "job", f"b{i}")
            time.sleep(1.1)
        s.wait_for(lambda: len(tags(s, "job")) == 3 and all(t["pushedBy"] for t in tags(s, "job").values()),
                   what="three tags recorded")
        with s.client() as c:
            c.patch("/projects/acme/shop", json={"spec": {"registry": {"retention": [{"keepLast": 1}]}}},
                    headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
        s.wait_for(lambda: set(tags(s, "job")) == {"b3"}, timeout=30, what="scheduled retention")
        with s.client() as c:
            events = c.get("/projects/acme/shop/events").json()["items"]
        assert any(e["reason"] == "RetentionApplied" and "2 tag(s)" in e["message"] for e in events), events
        s.wait_for(lambda: "garbage collection freed" in s.log.read_text(), timeout=30, what="scheduled GC")
        assert run_docker(env, "pull", f"{s.registry}/acme/shop/job:b3").returncode == 0
    finally:
        for i in (1, 2, 3):
            run_docker(env, "rmi", f"h4-sched:{i}", f"{s.registry}/acme/shop/job:b{i}", check=False)


def image_deleted(s: Server) -> list[str]:
    """The messages of the project's ImageDeleted events, each repeat counted."""
    with s.client() as c:
        events = c.get("/projects/acme/shop/events").json()["items"]
    return sorted(e["message"].split(" (")[0] for e in events if e["reason"] == "ImageDeleted"
                  for _ in range(e.get("count", 1)))


def test_every_deleted_tag_gets_exactly_one_image_deleted_event_naming_who_asked(reg) -> None:  # noqa: ANN001
    s, env = reg
    push(s, env, "dockyard/demo:1.0", "solo", "1")
    build_variant(env, f"h4-events:c-{s.port}", f"events-{s.port}")
    try:
        for tag, source in (("a", "dockyard/demo:1.0"), ("b", "dockyard/demo:2.0"), ("c", f"h4-events:c-{s.port}")):
            push(s, env, source, "web", tag)
            time.sleep(1.1)  # distinct push times
        s.wait_for(lambda: len(tags(s, "web")) == 3 and all(t["pushedBy"] for t in tags(s, "web").values())
                   and tags(s, "solo"), what="pushes recorded")
        # the API's delete and the registry's notification of it: one event, naming the user
        s.cli("images", "delete", "acme/shop/solo:1")
        with s.client() as c:
            c.patch("/projects/acme/shop", json={"spec": {"registry": {"retention": [
                {"repositories": "web", "keepLast": 1}]}}},
                headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
        s.cli("images", "retention", "-p", "acme/shop")
        assert set(tags(s, "web")) == {"c"}
        time.sleep(3)  # the registry's notifications of the three deletes arrive meanwhile
        assert image_deleted(s) == ["admin deleted solo:1", "admin deleted web:a", "admin deleted web:b"]
    finally:
        run_docker(env, "rmi", f"h4-events:c-{s.port}", check=False)


def shop_on_site_1(s: Server, env: dict) -> tuple[str, str]:
    """site:1 and site:2 pushed (their digests), App shop (no replicas) created on site:1 and resolved."""
    d1 = push(s, env, "dockyard/demo:1.0", "site", "1")
    d2 = push(s, env, "dockyard/demo:2.0", "site", "2")
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest("shop", f"{s.registry}/acme/shop/site:1", replicas=0)
               ).raise_for_status()
    s.wait_for(lambda: s.client().get("/projects/acme/shop/apps/shop").json()["spec"].get("imageDigest") == d1,
               what="App shop on site:1")
    return d1, d2


def test_deleting_a_tag_an_app_uses_or_has_in_its_rollout_history_needs_force(reg) -> None:  # noqa: ANN001
    s, env = reg
    d1, d2 = shop_on_site_1(s, env)
    with s.client() as c:
        body = app_manifest("shop", f"{s.registry}/acme/shop/site:2", replicas=0)
        body["metadata"]["resourceVersion"] = c.get("/projects/acme/shop/apps/shop").json()["metadata"]["resourceVersion"]
        c.put("/projects/acme/shop/apps/shop", json=body).raise_for_status()
    s.wait_for(lambda: s.client().get("/projects/acme/shop/apps/shop").json()["spec"].get("imageDigest") == d2,
               what="revision 2 on site:2")
    with s.client() as c:
        # site:1 is no App's image any more, but revision 1 of shop runs its digest: undo would need it
        r = c.delete("/projects/acme/shop/images/site/tags/1")
        assert r.status_code == 409 and "App shop revision 1" in r.json()["detail"], r.text
        r = c.delete("/projects/acme/shop/images/site/tags/2")
        assert r.status_code == 409 and "in use by App shop" in r.json()["detail"], r.text
    res = s.cli("images", "delete", "acme/shop/site:1", check=False)
    assert res.returncode != 0 and "rollout history of App shop revision 1" in res.stderr + res.stdout
    assert set(tags(s, "site")) == {"1", "2"}
    s.cli("images", "delete", "acme/shop/site:1", "--force")
    assert set(tags(s, "site")) == {"2"}


def test_the_apps_column_counts_apps_that_run_a_tag_by_its_digest(reg) -> None:  # noqa: ANN001
    s, env = reg
    d1 = push(s, env, "dockyard/demo:1.0", "site", "1")
    push(s, env, "dockyard/demo:2.0", "site", "latest")
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest("pinned", f"{s.registry}/acme/shop/site@{d1}", replicas=0)
               ).raise_for_status()
    s.wait_for(lambda: "1" in tags(s, "site") and "latest" in tags(s, "site"), what="both tags")
    t = tags(s, "site")
    assert t["1"]["apps"] == ["pinned"] and t["latest"]["apps"] == []  # a digest reference names no tag
    row = next(line for line in s.cli("images", "tags", "acme/shop/site").stdout.splitlines() if line.startswith("1 "))
    assert row.split()[-1] == "pinned"


def test_a_new_image_by_merge_patch_or_by_apply_of_an_exported_manifest_drops_the_old_digest(reg) -> None:  # noqa: ANN001
    s, env = reg
    d1, d2 = shop_on_site_1(s, env)
    with s.client() as c:  # the patch names the image only: the digest of site:1 must not stay with site:2
        r = c.patch("/projects/acme/shop/apps/shop", json={"spec": {"image": f"{s.registry}/acme/shop/site:2"}},
                    headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200 and "imageDigest" not in r.json()["spec"], r.text
    s.wait_for(lambda: s.client().get("/projects/acme/shop/apps/shop").json()["spec"].get("imageDigest") == d2,
               what="site:2 resolved")
    with s.client() as c:  # an exported manifest (imageDigest in it) whose image was edited, applied whole
        exported = c.get("/projects/acme/shop/apps/shop").json()
        exported["spec"]["image"] = f"{s.registry}/acme/shop/site:1"
        exported.pop("status", None)
        r = c.put("/projects/acme/shop/apps/shop", json=exported)
        assert r.status_code == 200 and "imageDigest" not in r.json()["spec"], r.text
    s.wait_for(lambda: s.client().get("/projects/acme/shop/apps/shop").json()["spec"].get("imageDigest") == d1,
               what="site:1 resolved again")
