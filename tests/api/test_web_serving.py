"""How the server serves the dashboard (security headers, no files outside its folder) and the
all-projects watch the overview follows (only what the caller may see)."""

from __future__ import annotations

import json
import threading

import pytest

from dockyard import web

PW = "web-password-1"


def test_dashboard_is_served_with_its_security_headers(api) -> None:  # noqa: ANN001
    web.mount(api.app)
    r = api.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    js = api.get("/ui/js/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert api.get("/ui/i18n/zh-CN.json").json()["nav.overview"] == "概览"
    docs = api.get("/api/v1/docs").text
    assert "/ui/vendor/swagger-ui-bundle.js" in docs and "cdn." not in docs  # nothing from a CDN
    for bad in ("/ui/%00", "/ui/../pyproject.toml", "/ui/%2e%2e/__init__.py", "/ui/..%2f..%2fpyproject.toml",
                "/ui/vendor/evil.js", "/ui/vendor/..%2f..%2fpackage.json", "/ui/js"):
        assert api.get(bad).status_code == 404, bad


@pytest.mark.timeout(30)
def test_watch_of_all_apps_streams_only_what_the_caller_may_see(api) -> None:  # noqa: ANN001
    for t in ("alpha", "beta"):
        assert api.post("/api/v1/tenants", json={"kind": "Tenant", "metadata": {"name": t}}).status_code == 201
        assert api.post("/api/v1/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": t}}
                        ).status_code == 201
    assert api.post("/api/v1/users", json={"name": "alice", "password": PW}).status_code == 201
    assert api.post("/api/v1/tenants/alpha/members", json={"user": "alice", "role": "viewer"}).status_code == 201
    token = api.post("/api/v1/login", json={"username": "alice", "password": PW}).json()["token"]
    alice = {"Authorization": f"Bearer {token}"}
    since = api.get("/api/v1/apps").json()["metadata"]["resourceVersion"]
    with api.stream("GET", "/api/v1/apps", params={"watch": "1", "resourceVersion": since}, headers=alice) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        seen: list[dict] = []
        lines = r.iter_lines()

        def read() -> None:
            for line in lines:
                if line.startswith("data:"):
                    data = json.loads(line[5:])
                    if data["type"] in ("ADDED", "MODIFIED", "DELETED", "ERROR"):
                        seen.append(data)
                        return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        for t in ("beta", "alpha"):  # beta's first: alice must never receive it
            assert api.post(f"/api/v1/projects/{t}/shop/apps", json={
                "kind": "App", "metadata": {"name": f"{t}-web"}, "spec": {"image": "a", "replicas": 0}}).status_code == 201
        reader.join(10)
    assert [(d["type"], d["object"]["metadata"]["name"]) for d in seen] == [("ADDED", "alpha-web")]
