"""Hostile probes of the registry token service and the build routes through the real API and
store: other tenants' things answer like things that do not exist, bad input is a 4xx, and an
unauthenticated webhook caller cannot tell which build configs exist."""

from __future__ import annotations

from api_checks import viewer_and_stranger

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
