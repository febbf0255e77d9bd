"""GET /metrics: the Prometheus text format, the platform's own metrics, and per-app samples
limited to what the caller may see."""

from __future__ import annotations

import re

from api_checks import viewer_and_stranger

from dockyard.metrics.registry import Counter, Histogram, Registry
from dockyard.metrics.service import Usage

PW = "prom-password-1"


def usage(tenant: str, app: str, replica: int) -> Usage:
    return Usage(tenant, "shop", app, replica, f"dy_{tenant}_shop_{app}_h_{replica}", 1.0, 12.5, 1000, 2**20, 1.0,
                 2.0, 0.0, 0.0, 3, 1, 4.25, 100, 200, 300, 400)


class FakeMetrics:
    def range(self, *a, **kw):  # noqa: ANN002, ANN003, ANN201
        raise AssertionError("not used")

    def current(self, tenant=None, project=None, app=None):  # noqa: ANN001, ANN201
        return [usage("acme", "web", 0), usage("acme", "web", 1), usage("other", "db", 0)]


def test_registry_renders_text_format_0_0_4() -> None:
    r = Registry()
    h = r.register(Histogram("x_seconds", "Help.", ("route",), buckets=(0.1, 1)))
    c = r.register(Counter("y_total", "Y.", ("kind",)))
    h.observe(('/a/{b}"\n\\',), 0.05)
    h.observe(('/a/{b}"\n\\',), 0.5)
    h.observe(('/a/{b}"\n\\',), 5)
    c.inc(("App",))
    c.inc(("App",), 2)
    assert r.render() == (
        '# HELP x_seconds Help.\n# TYPE x_seconds histogram\n'
        'x_seconds_bucket{route="/a/{b}\\"\\n\\\\",le="0.1"} 1\n'
        'x_seconds_bucket{route="/a/{b}\\"\\n\\\\",le="1"} 2\n'
        'x_seconds_bucket{route="/a/{b}\\"\\n\\\\",le="+Inf"} 3\n'
        'x_seconds_sum{route="/a/{b}\\"\\n\\\\"} 5.55\n'
        'x_seconds_count{route="/a/{b}\\"\\n\\\\"} 3\n'
        '# HELP y_total Y.\n# TYPE y_total counter\ny_total{kind="App"} 3\n')


def test_metrics_endpoint_needs_a_token_and_shows_only_visible_apps(api) -> None:  # noqa: ANN001
    viewer_and_stranger(api, PW)
    api.app.state.metrics = FakeMetrics()
    assert api.get("/api/v1/projects/acme/shop/apps").status_code == 200  # one request to time

    assert api.get("/metrics", headers={"Authorization": ""}).status_code == 401
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = r.text
    assert re.search(r'^dockyard_api_request_duration_seconds_count\{method="GET",'
                     r'route="/api/v1/projects/\{tenant\}/\{project\}/apps",status="200"\} [1-9]', text, re.M), text
    assert "# TYPE dockyard_reconcile_duration_seconds histogram" in text
    assert "# TYPE dockyard_reconcile_errors_total counter" in text
    assert 'dockyard_container_cpu_usage_seconds_total{tenant="acme",project="shop",app="web",replica="1"} 4.25' \
        in text
    assert 'dockyard_container_memory_limit_bytes{tenant="other",project="shop",app="db",replica="0"} 1048576' in text
    assert "dockyard_scrape_containers 3" in text
    for line in text.splitlines():  # every line is a comment or `name{labels} value`
        assert line.startswith("# ") or re.fullmatch(r'[a-z_:]+(\{.*\})? [-+0-9.eE]+|[a-z_:]+(\{.*\})? \+Inf',
                                                      line), line

    def scrape_as(user: str) -> str:
        login = api.post("/api/v1/login", json={"username": user, "password": PW}).json()
        return api.get("/metrics", headers={"Authorization": f"Bearer {login['token']}"}).text

    viewer = scrape_as("viewer1")
    assert 'tenant="acme"' in viewer and "other" not in viewer and "dockyard_scrape_containers 2" in viewer
    stranger = scrape_as("stranger")
    assert 'tenant="other"' in stranger and "acme" not in stranger and "dockyard_scrape_containers 1" in stranger
