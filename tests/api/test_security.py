"""Quotas, security policy, audit log and API hardening, through the real API and store."""

from __future__ import annotations

import threading

from sqlalchemy import delete, update

from dockyard.store.tables import audit_log

PW = "some-password-1"


def _login(api, name: str, password: str = PW) -> dict:  # noqa: ANN001
    r = api.post("/api/v1/login", json={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _project(api, quota: dict | None = None, policy: str | None = None, defaults: dict | None = None) -> None:  # noqa: ANN001
    assert api.post("/api/v1/tenants", json={"kind": "Tenant", "metadata": {"name": "acme"}}).status_code == 201
    spec: dict = {}
    if quota:
        spec["quota"] = quota
    if policy:
        spec["securityPolicy"] = policy
    if defaults:
        spec["defaults"] = defaults
    r = api.post("/api/v1/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": "acme"},
                                           "spec": spec})
    assert r.status_code == 201, r.text


def _app(name: str, **spec) -> dict:  # noqa: ANN003
    return {"kind": "App", "metadata": {"name": name}, "spec": {"image": "dockyard/demo:1.0", **spec}}


# --- quotas ------------------------------------------------------------------------------

def test_quota_refusal_names_resource_request_and_remaining(api) -> None:  # noqa: ANN001
    _project(api, quota={"memory": "256Mi", "replicas": 4})
    r = api.post("/api/v1/projects/acme/shop/apps", json=_app("a", replicas=2, resources={"memory": "100Mi"}))
    assert r.status_code == 201
    r = api.post("/api/v1/projects/acme/shop/apps", json=_app("b", replicas=1, resources={"memory": "100Mi"}))
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")
    detail = r.json()["detail"]
    assert "memory" in detail and "100Mi" in detail and "56Mi of 256Mi remaining" in detail
    # scaling down is always allowed, scaling up past the replicas quota is not
    assert api.post("/api/v1/projects/acme/shop/apps/a/scale", json={"replicas": 1}).status_code == 200
    r = api.post("/api/v1/projects/acme/shop/apps/a/scale", json={"replicas": 5})
    assert r.status_code == 403 and "quota exceeded" in r.json()["detail"]
    q = api.get("/api/v1/projects/acme/shop/quota").json()
    assert q["project"]["resources"]["memory"] == {"used": "100Mi", "hard": "256Mi"}
    assert q["project"]["resources"]["apps"]["used"] == "1"


def test_50_concurrent_creates_against_a_quota_of_5_end_with_exactly_5(api) -> None:  # noqa: ANN001
    _project(api, quota={"apps": 5})
    barrier = threading.Barrier(50)
    codes: list[int] = []

    def create(i: int) -> None:
        barrier.wait()
        codes.append(api.post("/api/v1/projects/acme/shop/apps", json=_app(f"a{i}", replicas=0)).status_code)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes.count(201) == 5 and codes.count(403) == 45, sorted(set(codes))
    assert len(api.get("/api/v1/projects/acme/shop/apps").json()["items"]) == 5


def test_tenant_quota_spans_its_projects(api) -> None:  # noqa: ANN001
    _project(api)
    assert api.patch("/api/v1/tenants/acme", json={"spec": {"quota": {"replicas": 3}}}).status_code == 200
    api.post("/api/v1/projects", json={"kind": "Project", "metadata": {"name": "blog", "tenant": "acme"}})
    assert api.post("/api/v1/projects/acme/shop/apps", json=_app("a", replicas=2)).status_code == 201
    r = api.post("/api/v1/projects/acme/blog/apps", json=_app("b", replicas=2))
    assert r.status_code == 403 and "tenant acme" in r.json()["detail"]


def test_defaults_give_every_container_limits(api) -> None:  # noqa: ANN001
    _project(api, defaults={"cpu": "250m", "memory": "64Mi", "pids": 128})
    spec = api.post("/api/v1/projects/acme/shop/apps", json=_app("a")).json()["spec"]
    assert spec["resources"]["cpu"] == "250m" and spec["resources"]["memory"] == "64Mi"
    assert spec["resources"]["pids"] == 128
    spec = api.post("/api/v1/projects/acme/shop/apps", json=_app("b", resources={"memory": "32Mi"})).json()["spec"]
    assert spec["resources"]["memory"] == "32Mi", "an app's own limit wins"


# --- security policy ---------------------------------------------------------------------

def test_baseline_refuses_each_dangerous_setting_naming_the_field(api) -> None:  # noqa: ANN001
    _project(api)
    cases = {
        "spec.securityContext.privileged": {"securityContext": {"privileged": True}},
        "spec.securityContext.hostNetwork": {"securityContext": {"hostNetwork": True}},
        "spec.securityContext.hostPID": {"securityContext": {"hostPid": True}},
        "spec.securityContext.hostIPC": {"securityContext": {"hostIpc": True}},
        "spec.volumes[0].hostPath": {"volumes": [{"name": "x", "mountPath": "/x", "hostPath": "/etc"}]},
        "spec.securityContext.devices": {"securityContext": {"devices": ["/dev/kmsg"]}},
        "spec.securityContext.capabilities.add[0]": {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}},
        "spec.securityContext.seccompProfile": {"securityContext": {"seccompProfile": "unconfined"}},
        "spec.securityContext.apparmorProfile": {"securityContext": {"apparmorProfile": "unconfined"}},
        "spec.securityContext.sysctls.kernel.panic": {"securityContext": {"sysctls": {"kernel.panic": "1"}}},
    }
    for field, spec in cases.items():
        r = api.post("/api/v1/projects/acme/shop/apps", json=_app("x", **spec))
        assert r.status_code == 403, (field, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (field, r.json())
    allowed = api.post("/api/v1/projects/acme/shop/apps",
                       json=_app("ok", securityContext={"capabilities": {"add": ["NET_BIND_SERVICE"]}}))
    assert allowed.status_code == 201
    assert api.get("/api/v1/projects/acme/shop/apps").json()["items"][0]["metadata"]["name"] == "ok"


def test_engine_socket_is_refused_even_for_privileged_projects(api) -> None:  # noqa: ANN001
    _project(api, policy="privileged")
    r = api.post("/api/v1/projects/acme/shop/apps", json=_app(
        "x", volumes=[{"name": "s", "mountPath": "/s", "hostPath": "/var/run"}]))
    assert r.status_code == 403 and "engine" in r.json()["detail"]
    r = api.post("/api/v1/projects/acme/shop/apps", json=_app("y", securityContext={"privileged": True}))
    assert r.status_code == 201


def test_restricted_requires_non_root_and_read_only_root_and_drops_all(api) -> None:  # noqa: ANN001
    _project(api, policy="restricted")
    r = api.post("/api/v1/projects/acme/shop/apps", json=_app("x"))
    fields = {e["field"] for e in r.json()["errors"]}
    assert r.status_code == 403 and {"spec.user", "spec.securityContext.readOnlyRootFilesystem"} <= fields
    r = api.post("/api/v1/projects/acme/shop/apps", json=_app(
        "y", user="1000:1000", securityContext={"readOnlyRootFilesystem": True}))
    assert r.status_code == 201
    assert r.json()["spec"]["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_patch_and_rollback_paths_are_checked_too(api) -> None:  # noqa: ANN001
    _project(api)
    assert api.post("/api/v1/projects/acme/shop/apps", json=_app("a")).status_code == 201
    r = api.patch("/api/v1/projects/acme/shop/apps/a", json={"spec": {"securityContext": {"privileged": True}}},
                  headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 403


# --- audit -------------------------------------------------------------------------------

def test_audit_records_writes_and_logins_and_verify_detects_tampering(api, store) -> None:  # noqa: ANN001
    _project(api)
    api.post("/api/v1/login", json={"username": "admin", "password": "wrong-password"})
    api.post("/api/v1/projects/acme/shop/apps", json=_app("a"))
    entries = api.get("/api/v1/audit").json()["items"]
    actions = [(e["action"], e["outcome"]) for e in entries]
    assert ("POST /login", 401) in actions and ("POST /login", 200) in actions
    assert ("POST /projects/{tenant}/{project}/apps", 201) in actions
    failed = next(e for e in entries if e["outcome"] == 401)
    assert failed["user"] == "admin" and failed["source"]
    app_entry = next(e for e in entries if e["action"].endswith("/apps"))
    assert app_entry["tenant"] == "acme" and app_entry["project"] == "shop" and app_entry["user"] == "admin"
    assert api.post("/api/v1/audit/verify").json()["ok"] is True

    with store.engine.begin() as conn:
        conn.execute(update(audit_log).where(audit_log.c.id == 2).values(user="somebody-else"))
    v = api.post("/api/v1/audit/verify").json()
    assert v["ok"] is False and v["brokenAt"] == 2


def test_audit_detects_deleted_entries(api, store) -> None:  # noqa: ANN001
    _project(api)
    with store.engine.begin() as conn:
        conn.execute(delete(audit_log).where(audit_log.c.id == 1))
    assert api.post("/api/v1/audit/verify").json()["ok"] is False


def test_tenant_owner_sees_only_their_tenants_audit(api) -> None:  # noqa: ANN001
    _project(api)
    api.post("/api/v1/tenants", json={"kind": "Tenant", "metadata": {"name": "other"}})
    api.post("/api/v1/users", json={"name": "olga", "password": PW})
    api.post("/api/v1/tenants/acme/members", json={"user": "olga", "role": "owner"})
    olga = _login(api, "olga")
    items = api.get("/api/v1/audit", headers=olga).json()["items"]
    assert items and all(e["tenant"] == "acme" for e in items)
    assert api.get("/api/v1/audit?tenant=other", headers=olga).status_code == 404
    assert api.post("/api/v1/audit/verify", headers=olga).status_code == 403


# --- hardening ---------------------------------------------------------------------------

def test_no_stack_traces_and_unknown_fields_refused(api) -> None:  # noqa: ANN001
    _project(api)
    r = api.post("/api/v1/projects/acme/shop/apps", json=_app("a", replicas=1, bogus=1))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "spec.bogus"
    r = api.post("/api/v1/projects/acme/shop/apps", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422) and "Traceback" not in r.text


def test_repeated_failed_logins_are_slowed_then_refused_with_429(api) -> None:  # noqa: ANN001
    import time

    api.app.state.login_throttle.delay = 0.2  # keep the test quick; the server default is 1 s
    codes = []
    t0 = time.monotonic()
    for _ in range(11):
        codes.append(api.post("/api/v1/login", json={"username": "admin", "password": "guess"}).status_code)
    assert codes[:10] == [401] * 10 and codes[10] == 429
    assert time.monotonic() - t0 >= 5 * 0.2, "attempts after the fifth were slowed down"
    r = api.post("/api/v1/login", json={"username": "admin", "password": "correct-horse-battery-staple"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0, "even the right password waits out the lock"


def test_per_token_rate_limit_answers_429(api) -> None:  # noqa: ANN001
    from dockyard.api.limits import TokenBuckets

    api.app.state.limiter.buckets = TokenBuckets(rate=5, burst=10)
    codes = [api.get("/api/v1/whoami").status_code for _ in range(30)]
    assert codes.count(200) >= 10 and 429 in codes
    r = next(api.get("/api/v1/whoami") for _ in range(5))
    assert r.status_code == 429 and "Retry-After" in r.headers
