"""Image digests of Apps and the registry's notifications, without a registry: the digest the
controller fills in is part of the revision being deployed (not a new one), an unchanged `apply`
keeps it, a changed template drops it, notification envelopes are read and applied once, and the
controllers' tag check deploys a push whose notification was lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dockyard.controllers.images import ImageResolver
from dockyard.model.app import AppSpec, keep_image_digest, run_image
from dockyard.registry.events import MalformedEnvelope, parse_envelope
from dockyard.registry.images import ImageRecords, TagRecord
from dockyard.registry.settings import RegistrySettings
from dockyard.store.repository import Store

SCOPE = "acme/shop"
IMAGE = "127.0.0.1:5000/acme/shop/web:stable"
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def spec(**extra: object) -> dict:
    return {"image": IMAGE, "replicas": 1, **extra}


def test_a_filled_in_digest_completes_the_revision_and_a_new_digest_is_a_new_one(store: Store) -> None:
    store.create("App", SCOPE, "web", spec(), change_cause="created")
    obj = store.get("App", SCOPE, "web")
    store.replace("App", SCOPE, "web", {**obj.spec, "imageDigest": D1}, expected_rv=obj.resource_version)
    revs = store.revisions(SCOPE, "web")
    assert [(r.revision, r.template.get("imageDigest"), r.change_cause) for r in revs] == [(1, D1, "created")]
    obj = store.get("App", SCOPE, "web")
    store.replace("App", SCOPE, "web", {**obj.spec, "imageDigest": D2}, change_cause="push of stable by bob")
    revs = store.revisions(SCOPE, "web")
    assert [(r.revision, r.template.get("imageDigest"), r.change_cause) for r in revs] == [
        (1, D1, "created"), (2, D2, "push of stable by bob")]


def test_an_unchanged_apply_keeps_the_digest_and_a_changed_template_drops_it() -> None:
    current = spec(imageDigest=D1, autoDeploy=True)
    assert keep_image_digest(current, spec(autoDeploy=True))["imageDigest"] == D1
    assert keep_image_digest(current, spec(replicas=3))["imageDigest"] == D1  # replicas are not the template
    assert "imageDigest" not in keep_image_digest(current, spec(env=[{"name": "A", "value": "1"}]))
    assert "imageDigest" not in keep_image_digest(current, {"image": IMAGE.replace("stable", "next")})
    assert keep_image_digest(current, spec(imageDigest=D2))["imageDigest"] == D2  # a rollback's own digest


def test_a_new_image_with_the_digest_a_merge_patch_carried_along_drops_the_digest() -> None:
    current = spec(imageDigest=D1)
    patched = {**current, "image": IMAGE.replace("stable", "next")}  # PATCH {"spec": {"image": …}}
    assert "imageDigest" not in keep_image_digest(current, patched)
    assert keep_image_digest(current, {**patched, "imageDigest": D2})["imageDigest"] == D2  # a digest of its own


def test_replicas_run_image_at_digest() -> None:
    assert run_image(AppSpec.model_validate(spec(imageDigest=D1))) == f"{IMAGE}@{D1}"
    assert run_image(AppSpec.model_validate(spec())) == IMAGE
    # a bare name is spelled with its tag: the engine would take it for an image ID prefix otherwise
    assert run_image(AppSpec.model_validate({"image": "3bfc76"})) == "3bfc76:latest"
    pinned = f"{IMAGE}@{D2}"
    assert run_image(AppSpec.model_validate({"image": pinned, "imageDigest": D1})) == pinned


def test_envelopes_keep_manifest_pushes_and_deletes_only() -> None:
    body = b"""{"events": [
      {"id": "1", "timestamp": "2026-11-27T10:00:00.123456789Z", "action": "push",
       "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 527,
                  "digest": "sha256:aa", "repository": "acme/shop/web", "tag": "1.0"}, "actor": {"name": "alice"}},
      {"id": "2", "action": "push", "target": {"mediaType": "application/octet-stream", "digest": "sha256:bb",
                                               "repository": "acme/shop/web"}},
      {"id": "3", "action": "pull", "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                               "digest": "sha256:aa", "repository": "acme/shop/web"}},
      {"id": "4", "action": "delete", "target": {"digest": "sha256:aa", "repository": "acme/shop/web"}}]}"""
    notes = parse_envelope(body)
    assert [(n.id, n.action, n.tag, n.actor) for n in notes] == [("1", "push", "1.0", "alice"), ("4", "delete", None, "")]
    assert notes[0].at == datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    for bad in (b"{", b"[]", b'{"events": 3}'):
        with pytest.raises(MalformedEnvelope):
            parse_envelope(bad)


def test_records_apply_each_notification_once_and_ignore_an_older_push(store: Store) -> None:
    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    new = TagRecord("acme/shop/web", "1.0", D2, 10, MANIFEST, at, "bob")
    old = TagRecord("acme/shop/web", "1.0", D1, 10, MANIFEST, at.replace(hour=9), "alice")
    records = ImageRecords(store)
    with store.tx() as conn:
        assert records.first_time(conn, "e1") and not records.first_time(conn, "e1")
        assert records.record_push(conn, new)
        assert not records.record_push(conn, old)  # a retried, older notification arriving late
    assert [(t.digest, t.pushed_by) for t in records.tags("acme/shop/web")] == [(D2, "bob")]
    with store.tx() as conn:
        assert records.record_delete(conn, "acme/shop/web", D2, None) == ["1.0"]
        assert records.record_delete(conn, "acme/shop/web", D2, None) == []
    assert records.tags("acme/shop/web") == []
    assert records.forget_events(older_than=timedelta(0)) == 1


class FakeClient:
    """The registry's answer to HEAD of a tag."""

    def __init__(self, digests: dict[tuple[str, str], str]) -> None:
        self.digests = digests
        self.asked = 0

    def digest(self, repository: str, tag: str) -> str | None:
        self.asked += 1
        return self.digests.get((repository, tag))


class FakeRegistry:
    def __init__(self) -> None:
        self.settings = RegistrySettings(listen="127.0.0.1:5000", root=Path("/nonexistent"), api_url="http://x")


def test_the_tag_check_rolls_out_a_push_whose_notification_was_lost(store: Store) -> None:
    store.create("Tenant", "", "acme", {})
    store.create("Project", "acme", "shop", {})
    store.create("App", SCOPE, "auto", spec(imageDigest=D1, autoDeploy=True), change_cause="created")
    store.create("App", SCOPE, "pinned", spec(imageDigest=D1), change_cause="created")
    with store.tx() as conn:  # the push itself was recorded; its auto-deploy never ran
        ImageRecords.record_push(conn, TagRecord("acme/shop/web", "stable", D2, 1, MANIFEST, datetime.now(UTC), "bob"))
    client = FakeClient({("acme/shop/web", "stable"): D2})
    resolver = ImageResolver(FakeRegistry(), client, [])  # type: ignore[arg-type]
    assert resolver.check_tags(store, interval=60) == 1
    assert store.get("App", SCOPE, "auto").spec["imageDigest"] == D2
    assert store.get("App", SCOPE, "pinned").spec["imageDigest"] == D1  # no autoDeploy: untouched
    assert store.revisions(SCOPE, "auto")[-1].change_cause == "push of stable by bob"
    assert client.asked == 1
    assert resolver.check_tags(store, interval=60) == 0 and client.asked == 1  # not again within the interval
    assert resolver.check_tags(store, interval=0) == 0  # nothing new: no write, no revision
    assert len(store.revisions(SCOPE, "auto")) == 2


def test_image_keys_name_the_tag_or_the_digest_an_app_runs() -> None:
    from pathlib import Path

    from dockyard.registry.autodeploy import image_keys
    from dockyard.registry.settings import RegistrySettings

    st = RegistrySettings(listen="127.0.0.1:5000", root=Path("/nonexistent"), api_url="http://127.0.0.1:1")
    d = "sha256:" + "b" * 64
    assert image_keys(st, "acme/shop", "127.0.0.1:5000/acme/shop/web:1") == [("acme/shop/web", "1")]
    assert image_keys(st, "acme/shop", "127.0.0.1:5000/acme/shop/web") == [("acme/shop/web", "latest")]
    assert image_keys(st, "acme/shop", f"127.0.0.1:5000/acme/shop/web@{d}") == [("acme/shop/web", d)]
    assert image_keys(st, "acme/shop", f"127.0.0.1:5000/acme/shop/web:1@{d}") == [("acme/shop/web", d),
                                                                                   ("acme/shop/web", "1")]
    assert image_keys(st, "acme/shop", "127.0.0.1:5000/other/shop/web:1") == []
