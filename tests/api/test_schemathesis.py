"""Property-based API testing from the OpenAPI document: whatever a client sends that fits the
schema (and much that does not), the API answers without a server error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from dockyard.api.app import create_app  # noqa: E402
from dockyard.logs.store import LogStore  # noqa: E402
from dockyard.store.repository import Store  # noqa: E402
from dockyard.store.users import create_user, issue_token  # noqa: E402

_tmp = Path(tempfile.mkdtemp(prefix="dockyard-schemathesis-"))
_store = Store(f"sqlite:///{_tmp / 'db.sqlite'}")
_store.migrate()
_admin = create_user(_store, "admin", "schemathesis-admin-pw", is_admin=True)
TOKEN = issue_token(_store, _admin).token


class _NoLogs:
    def app_logs(self, *a, **kw):  # noqa: ANN002, ANN003, ANN201
        return iter(())


class _Platform:
    def engine_status(self) -> dict:
        return {"status": "ok"}

    def leader(self) -> bool:
        return True

    def nodes(self) -> list:
        return []


app = create_app(_store, logs=_NoLogs(), platform=_Platform(), log_search=LogStore(_tmp / "logs.db"))
app.state.limiter.buckets.rate = 1e9  # the fuzzer is not a flood to be throttled
app.state.limiter.buckets.burst = 1e9
app.state.login_throttle.delay = 0.0
_seed = [
    ("POST", "/api/v1/tenants", {"kind": "Tenant", "metadata": {"name": "acme"}}),
    ("POST", "/api/v1/projects", {"kind": "Project", "metadata": {"name": "shop", "tenant": "acme"}}),
    ("POST", "/api/v1/projects/acme/shop/apps", {"kind": "App", "metadata": {"name": "web"},
                                                 "spec": {"image": "dockyard/demo:1.0", "replicas": 0}}),
]
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


@pytest.fixture(scope="module", autouse=True)
def seeded() -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        for method, path, body in _seed:
            c.request(method, path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case) -> None:  # noqa: ANN001
    if case.path in ("/api/v1/logout",):
        return  # would revoke the token the other cases use
    if case.path.endswith("/test") and "notifiers" in case.path:
        return  # sends to wherever a fuzzed notifier points: tests talk to loopback only
    if case.query:
        # a watch or a followed log never ends by design; fuzz everything else about the request
        for endless in ("watch", "follow"):
            case.query.pop(endless, None)
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code < 500, f"{case.method} {case.formatted_path} -> {response.status_code}: " \
                                        f"{response.text[:300]}"
