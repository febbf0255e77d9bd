"""The metrics routes over a fake MetricsProvider: parameters, shapes, rights, metrics off."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from api_checks import viewer_and_stranger

from dockyard.cli.output import usage_rows
from dockyard.metrics.service import Usage

PW = "metrics-password-1"
T = 1_789_999_980.0


@dataclass
class FakeSeries:
    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass
class FakeRange:
    resolution: str
    step: float
    series: list[FakeSeries]
    aggregate: list[tuple[float, float]]


@dataclass
class FakeMetrics:
    calls: list[tuple] = field(default_factory=list)

    def range(self, metric, match, start, end, step, agg, group_by):  # noqa: ANN001, ANN201
        self.calls.append((metric, match, start, end, step, agg, group_by))
        if group_by == "replica":
            series = [FakeSeries({"replica": "10"}, [(T, 2.0)]), FakeSeries({"replica": "2"}, [(T, 1.0)])]
        else:
            series = [FakeSeries({"app": "web"}, [(T, 3.0)])]
        return FakeRange("raw", step, series, [(T, 3.0)])

    def current(self, tenant=None, project=None, app=None):  # noqa: ANN001, ANN201
        rows = [Usage("acme", "shop", "web", s, f"dy_acme_shop_web_h_{s}", T, 50.0 + s, 1000 * (s + 1), 64 * 2**20,
                      10.0, 20.0, 0.0, 0.0, s, 0, 1.0, 1, 2, 3, 4) for s in (0, 1)]
        rows.append(Usage("acme", "shop", "db", 0, "dy_acme_shop_db_h_0", T, None, 5000, None, None, None, None,
                          None, 0, 1, 0.0, 0, 0, 0, 0))
        return [u for u in rows if (app is None or u.app == app) and tenant == "acme" and project == "shop"]


@pytest.fixture
def world(api):  # noqa: ANN001, ANN201
    viewer_and_stranger(api, PW)
    for name in ("web", "db"):
        r = api.post("/api/v1/projects/acme/shop/apps", json={
            "kind": "App", "metadata": {"name": name}, "spec": {"image": "dockyard/demo:1.0", "replicas": 0}})
        assert r.status_code == 201, r.text
    fake = FakeMetrics()
    api.app.state.metrics = fake
    return fake


def login(api, name: str) -> dict:  # noqa: ANN001
    r = api.post("/api/v1/login", json={"username": name, "password": PW})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


APP = "/api/v1/projects/acme/shop/apps/web/metrics"


def test_app_metrics_shape_and_arguments(api, world) -> None:  # noqa: ANN001
    viewer = login(api, "viewer1")
    r = api.get(APP, params={"metric": "cpu", "from": "2026-11-27T09:00:00Z", "to": "2026-11-27T11:00:00+01:00",
                             "step": "1m", "agg": "max"}, headers=viewer)
    assert r.status_code == 200, r.text
    body = r.json()
    start = datetime(2026, 11, 27, 9, tzinfo=UTC).timestamp()
    assert world.calls[-1] == ("cpu", {"tenant": "acme", "project": "shop", "app": "web"}, start, start + 3600,
                               60.0, "max", "replica")
    assert body == {"metric": "cpu", "unit": "percent", "from": start, "to": start + 3600, "step": 60.0,
                    "resolution": "raw", "aggregation": "max", "app": "web",
                    "replicas": [{"replica": "2", "points": [[T, 1.0]]}, {"replica": "10", "points": [[T, 2.0]]}],
                    "total": {"points": [[T, 3.0]]}}
    # defaults: the last hour, about 360 points (10 s), sum
    before = time.time()
    assert api.get(APP, params={"metric": "memory"}).status_code == 200
    metric, _, s, e, step, agg, _ = world.calls[-1]
    assert (metric, step, agg) == ("memory", 10.0, "sum") and abs(e - before) < 5 and abs(e - s - 3600) < 0.01
    # relative times and unix seconds
    assert api.get(APP, params={"metric": "cpu", "from": "-6h", "to": "now", "step": "5m"}).status_code == 200
    _, _, s, e, step, _, _ = world.calls[-1]
    assert abs(e - s - 6 * 3600) < 1 and step == 300
    assert api.get(APP, params={"metric": "cpu", "from": "1789999980", "to": "1790003580"}).status_code == 200
    assert world.calls[-1][2:4] == (1789999980.0, 1790003580.0)


def test_project_metrics_and_top(api, world) -> None:  # noqa: ANN001
    r = api.get("/api/v1/projects/acme/shop/metrics", params={"metric": "network_rx"})
    assert r.status_code == 200, r.text
    assert r.json()["apps"] == [{"app": "web", "points": [[T, 3.0]]}] and r.json()["unit"] == "bytes/s"
    assert world.calls[-1][1] == {"tenant": "acme", "project": "shop"} and world.calls[-1][6] == "app"
    r = api.get("/api/v1/projects/acme/shop/top")
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [a["app"] for a in items] == ["db", "web"]
    web = items[1]
    assert (web["replicas"], web["cpu"], web["memory"], web["memoryLimit"], web["networkRx"], web["restarts"]) == \
        (2, 101.0, 3000, 128 * 2**20, 20.0, 1)
    assert web["containers"][0] == {"replica": 0, "container": "dy_acme_shop_web_h_0", "timestamp": T, "cpu": 50.0,
                                    "memory": 1000, "memoryLimit": 64 * 2**20, "networkRx": 10.0, "networkTx": 20.0,
                                    "blockRead": 0.0, "blockWrite": 0.0, "restarts": 0, "oomKills": 0}
    assert items[0]["cpu"] is None and items[0]["memoryLimit"] is None  # not read twice yet; no limit
    r = api.get("/api/v1/projects/acme/shop/top", params={"app": "web"})
    assert [a["app"] for a in r.json()["items"]] == ["web"]
    headers, rows = usage_rows(r.json(), per_replica=True)
    assert headers[:3] == ["APP", "REPLICA", "CPU"] and rows[1][:4] == ["web", 1, "51.0%", "2.0Ki/64.0Mi"]
    headers, rows = usage_rows(api.get("/api/v1/projects/acme/shop/top").json(), per_replica=False)
    assert rows[0][:4] == ["db", 1, "-", "4.9Ki/unlimited"]


@pytest.mark.parametrize(("params", "field", "words"), [
    ({}, "metric", "Field required"),
    ({"metric": "cpus"}, "metric", "not a metric"),
    ({"metric": "cpu", "from": "yesterday"}, "from", "not an RFC 3339 time"),
    ({"metric": "cpu", "from": "2026-11-27T09:00:00"}, "from", "no time zone"),
    ({"metric": "cpu", "to": "-1x"}, "to", "not a relative time"),
    ({"metric": "cpu", "to": "nan"}, "to", "not a time"),
    ({"metric": "cpu", "from": "-1h", "to": "-2h"}, "from", "before 'to'"),
    ({"metric": "cpu", "step": "0s"}, "step", "at least 1s"),
    ({"metric": "cpu", "step": "ten"}, "step", "not a duration"),
    ({"metric": "cpu", "from": "-30d", "step": "1s"}, "step", "at most 11000"),
    ({"metric": "cpu", "agg": "median"}, "agg", "not an aggregation"),
])
def test_bad_parameters_are_400_naming_the_parameter(api, world, params, field, words) -> None:  # noqa: ANN001
    r = api.get(APP, params=params)
    assert r.headers["content-type"] == "application/problem+json", r.text
    if field == "metric" and not params:
        assert r.status_code in (400, 422) and "metric" in r.text
        return
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["field"] == field and words in r.json()["detail"], r.json()
    assert r.json()["detail"].startswith(f"{field}: ")


def test_rights_missing_apps_and_metrics_off(api, world) -> None:  # noqa: ANN001
    stranger = login(api, "stranger")
    for url in (APP, "/api/v1/projects/acme/shop/metrics", "/api/v1/projects/acme/shop/top"):
        r = api.get(url, params={"metric": "cpu"}, headers=stranger)
        assert r.status_code == 404, (url, r.text)
    calls = len(world.calls)
    assert api.get("/api/v1/projects/acme/shop/apps/nope/metrics", params={"metric": "cpu"}).status_code == 404
    assert api.get("/api/v1/projects/acme/shop/top", params={"app": "nope"}).status_code == 404
    assert len(world.calls) == calls, "nothing was asked of the provider"
    api.app.state.metrics = None
    r = api.get(APP, params={"metric": "cpu"})
    assert r.status_code == 503 and "metrics are off" in r.json()["detail"]
    # invisible stays 404 even with metrics off (no hint that the project exists)
    assert api.get(APP, params={"metric": "cpu"}, headers=stranger).status_code == 404
