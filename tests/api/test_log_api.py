"""The stored-log routes over a real LogStore (no engine): search, export, the app route's grep,
parameters named in errors, rights, log search off."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from api_checks import viewer_and_stranger

from dockyard.api.deps import LogRecord
from dockyard.logs.store import LogSource, LogStore

PW = "logs-password-1"
SEC = 10**9


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def src(app: str, replica: int, container: str, tenant: str = "acme") -> LogSource:
    return LogSource(tenant, "shop", app, replica, container, f"id-{container}")


class LiveLogs:
    """A live stream for the follow route: what an engine would send."""

    def app_logs(self, tenant: str, project: str, app: str, *, follow: bool, tail: int | None,
                 since: float | None, timestamps: bool, stop: threading.Event) -> Iterator[LogRecord]:
        for i, text in enumerate(["GET /health 200", "ERROR disk full", "GET / 200", "error: retry"]):
            yield LogRecord(replica=i % 2, container=f"c{i % 2}", text=text)


@pytest.fixture
def world(api, tmp_path: Path):  # noqa: ANN001, ANN201
    viewer_and_stranger(api, PW)
    r = api.post("/api/v1/projects/acme/shop/apps", json={
        "kind": "App", "metadata": {"name": "web"}, "spec": {"image": "dockyard/demo:1.0", "replicas": 0}})
    assert r.status_code == 201, r.text
    store = LogStore(tmp_path / "logs.db")
    # lines after the project was made (a search never shows lines from before: a predecessor's);
    # web's replica 0 was replaced by a new container (other name) an hour later; api is another app
    t0 = int((time.time() + 1) * 1e9)
    store.t0 = t0 / 1e9
    store.write([(src("web", 0, "web_old_0"), [(t0 + i * SEC, "stdout", f"old line {i}") for i in range(5)]),
                 (src("web", 0, "web_new_0"), [(t0 + 3600 * SEC + i * SEC, "stderr", f"new 100% line_{i}")
                                               for i in range(5)]),
                 (src("api", 1, "api_1"), [(t0 + 3600 * SEC + i * SEC, "stdout", f"api line {i}") for i in range(3)]),
                 (src("web", 0, "other_0", tenant="other"), [(time.time_ns(), "stdout", "old line of another project")])])
    api.app.state.log_search = store
    api.app.state.logs = LiveLogs()
    yield store
    store.close()


def login(api, name: str) -> dict:  # noqa: ANN001
    r = api.post("/api/v1/login", json={"username": name, "password": PW})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


LOGS = "/api/v1/projects/acme/shop/logs"
APP_LOGS = "/api/v1/projects/acme/shop/apps/web/logs"


def test_project_search_across_apps_and_replaced_containers(api, world) -> None:  # noqa: ANN001
    viewer = login(api, "viewer1")
    r = api.get(LOGS, params={"grep": "LINE 2"}, headers=viewer)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["text"] for i in body["items"]] == ["old line 2", "api line 2"] and body["truncated"] is False
    item = body["items"][1]
    assert (item["app"], item["replica"], item["container"], item["stream"]) == ("api", 1, "api_1", "stdout")
    assert item["ts"].endswith("Z") and item["ts"][:4].isdigit()
    (item,) = api.get(LOGS, params={"grep": "line_4", "app": "web"}, headers=viewer).json()["items"]
    assert (item["container"], item["stream"]) == ("web_new_0", "stderr"), "the replaced container's lines"
    # % and _ are literal; app filter; newest last; limit marks truncation
    assert [i["text"] for i in api.get(LOGS, params={"grep": "100%"}).json()["items"]][-1] == "new 100% line_4"
    assert api.get(LOGS, params={"grep": "e_4"}).json()["items"][0]["text"] == "new 100% line_4"
    assert api.get(LOGS, params={"grep": "line%"}).json()["items"] == []
    r = api.get(LOGS, params={"app": "api", "limit": 2}).json()
    assert [i["text"] for i in r["items"]] == ["api line 1", "api line 2"] and r["truncated"] is True
    # time range: relative (30m: the last half hour) and RFC 3339
    assert len(api.get(LOGS, params={"app": "web", "since": "30m"}).json()["items"]) == 10
    middle = iso(world.t0 + 1800)
    recent = [i["text"] for i in api.get(LOGS, params={"app": "web", "since": middle}).json()["items"]]
    assert recent == [f"new 100% line_{i}" for i in range(5)]
    old = api.get(LOGS, params={"app": "web", "until": middle}).json()["items"]
    assert [i["text"] for i in old] == [f"old line {i}" for i in range(5)]
    assert api.get(LOGS, params={"app": "web", "until": "-1m"}).json()["items"] == []
    assert api.get(LOGS, params={"since": "2000-01-01T00:00:00Z", "until": "2000-01-02T00:00:00+08:00"}
                   ).json()["items"] == []
    # unix seconds too large for nanoseconds in a float (1e300 s is inf ns): clamped, not a 500
    assert api.get(LOGS, params={"until": "1e300"}).json()["items"]
    assert api.get(LOGS, params={"since": "1e300"}).json()["items"] == []
    assert api.get(APP_LOGS, params={"grep": "line", "since": "1e300"}).text == ""


def test_a_project_made_again_does_not_see_its_predecessors_lines(api, world) -> None:  # noqa: ANN001
    time.sleep(0.01)
    assert api.delete("/api/v1/projects/other/shop").status_code in (200, 202, 204)
    assert api.post("/api/v1/projects", json={"kind": "Project", "metadata": {"name": "shop", "tenant": "other"}}
                    ).status_code == 201
    assert api.get("/api/v1/projects/other/shop/logs").json()["items"] == []
    assert api.get(LOGS, params={"app": "web", "grep": "line", "limit": 1}).json()["items"]  # others keep theirs

def test_ndjson_export_is_a_streamed_download(api, world) -> None:  # noqa: ANN001
    r = api.get(LOGS, params={"format": "ndjson", "app": "web"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    assert r.headers["content-disposition"] == 'attachment; filename="acme-shop-web-logs.ndjson"'
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert [x["text"] for x in rows] == [f"old line {i}" for i in range(5)] + [f"new 100% line_{i}" for i in range(5)]
    r = api.get(LOGS, params={"format": "ndjson", "limit": 3, "grep": "LINE"})
    assert [json.loads(x)["text"] for x in r.text.splitlines()] == ["api line 2", "new 100% line_3", "new 100% line_4"]


def test_app_route_greps_the_history_or_filters_the_live_stream(api, world) -> None:  # noqa: ANN001
    r = api.get(APP_LOGS, params={"grep": "line 3"})
    assert r.status_code == 200, r.text
    assert r.text == "[web-0] old line 3\n"
    r = api.get(APP_LOGS, params={"grep": "line_", "tail": 2, "format": "ndjson", "timestamps": True})
    rows = [json.loads(x) for x in r.text.splitlines()]
    assert [x["line"] for x in rows] == ["new 100% line_3", "new 100% line_4"] and rows[0]["time"].endswith("Z")
    assert api.get(APP_LOGS, params={"grep": "line_", "tail": 0}).text == ""  # as tail 0 without grep
    r = api.get(APP_LOGS, params={"grep": "error", "follow": True})
    assert r.text == "[web-1] ERROR disk full\n[web-1] error: retry\n"
    # without grep the route is what it was: the engine's lines
    assert api.get(APP_LOGS).text.count("\n") == 4


@pytest.mark.parametrize(("url", "params", "field", "words"), [
    (LOGS, {"grep": "x" * 1001}, "grep", "at most 1000"),
    (LOGS, {"grep": "a\nb"}, "grep", "single line"),
    (LOGS, {"since": "yesterday"}, "since", "not an RFC 3339 time"),
    (LOGS, {"until": "2026-11-27T09:00:00"}, "until", "no time zone"),
    (LOGS, {"since": "-1h", "until": "-2h"}, "since", "after 'until'"),
    (LOGS, {"limit": 0}, "limit", "greater than or equal to 1"),
    (LOGS, {"limit": 20000}, "limit", "at most 10000"),
    (LOGS, {"format": "csv"}, "format", "match pattern"),
    (APP_LOGS, {"grep": "x" * 1001}, "grep", "at most 1000"),
    (APP_LOGS, {"grep": "x", "since": "soon"}, "since", "not an RFC 3339 time"),
])
def test_bad_parameters_are_400_naming_the_parameter(api, world, url, params, field, words) -> None:  # noqa: ANN001
    r = api.get(url, params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    err = r.json()["errors"][0]
    assert err["field"].endswith(field) and words in r.json()["detail"], r.json()


def test_rights_and_log_search_off(api, world) -> None:  # noqa: ANN001
    stranger = login(api, "stranger")
    for url in (LOGS, APP_LOGS):
        assert api.get(url, params={"grep": "line"}, headers=stranger).status_code == 404
    # the stranger's own project holds only its own lines
    r = api.get("/api/v1/projects/other/shop/logs", headers=stranger)
    assert [i["text"] for i in r.json()["items"]] == ["old line of another project"]
    assert api.get("/api/v1/projects/acme/nope/logs").status_code == 404, "an admin asking for no project"
    api.app.state.log_search = None
    r = api.get(LOGS)
    assert r.status_code == 503 and "log search is off" in r.json()["detail"]
    assert api.get(APP_LOGS, params={"grep": "x"}).status_code == 503
    assert api.get(LOGS, headers=stranger).status_code == 404, "invisible stays 404 with log search off"
