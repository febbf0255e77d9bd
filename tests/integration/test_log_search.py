"""Stored logs on the real engine: a line a replica writes is found by `dockyard logs --grep` within
5 s; it is still found after its container was replaced; a `kill -9` of the server neither repeats
nor loses lines (those written while it was down are collected after the restart); the NDJSON
export parses line by line; a project's search shows the APP column."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime

from dockyard_harness import app_containers, app_manifest, setup_project

# a unique first line, then a numbered tick every 0.1 s: gaps and repeats are visible in the numbers
TALK = ["sh", "-c", 'echo "hello-$MARK from $(hostname)"; i=0; '
                    'while :; do echo "tick $i"; echo "warn $i" >&2; i=$((i+1)); sleep 0.1; done']


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ticks(rows: list[dict], container: str) -> list[int]:
    return [int(r["text"].split()[1]) for r in rows if r["container"] == container and r["text"].startswith("tick ")]


def export(s, *args: str) -> list[dict]:  # noqa: ANN001
    out = s.cli("logs", "app", "talk", "-p", "acme/shop", "-o", "ndjson", *args).stdout
    return [json.loads(line) for line in out.splitlines()]   # every line is one JSON object


def test_a_line_is_found_survives_replacement_and_a_server_kill(server_factory, docker_api) -> None:  # noqa: ANN001
    s = server_factory()
    setup_project(s)
    mark = uuid.uuid4().hex[:12]
    needle = f"hello-{mark}"
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest(
            "talk", health=False, command=TALK, env=[{"name": "MARK", "value": mark}])).raise_for_status()
        s.wait_for(lambda: (c.get("/projects/acme/shop/apps/talk").json().get("status") or {}).get("readyReplicas") == 1,
                   timeout=60, what="talk to run")
    started = time.monotonic()
    first = s.wait_for(lambda: needle in s.cli("logs", "app", "talk", "-p", "acme/shop", "--grep", needle.upper()).stdout,
                       timeout=10, interval=0.2, what="the line to be found")
    assert first and time.monotonic() - started <= 5, "found by --grep within 5 s of the replica running"
    (old,) = app_containers(docker_api, s.instance, "talk")
    old_name = old["Names"][0].lstrip("/")
    out = s.cli("logs", "app", "talk", "-p", "acme/shop", "--grep", needle).stdout
    assert out.splitlines() == [f"[talk-0] {needle} from talk-0"], out

    # replace the container (a new template rolls it); its lines stay searchable
    with s.client() as c:
        c.patch("/projects/acme/shop/apps/talk", json={"spec": {"env": [
            {"name": "MARK", "value": mark}, {"name": "ROUND", "value": "2"}]}}).raise_for_status()
    s.wait_for(lambda: [x["Id"] for x in app_containers(docker_api, s.instance, "talk")] not in ([], [old["Id"]])
               and old["Id"] not in [x["Id"] for x in app_containers(docker_api, s.instance, "talk")],
               timeout=60, what="the old container to be replaced and removed")
    (new,) = app_containers(docker_api, s.instance, "talk")
    new_name = new["Names"][0].lstrip("/")
    found = s.wait_for(lambda: (lambda r: r if len(r["items"]) == 2 else None)(
        s.client().get("/projects/acme/shop/logs", params={"grep": needle}).json()), timeout=10, what="both hellos")
    assert [i["container"] for i in found["items"]] == [old_name, new_name]
    assert [i["app"] for i in found["items"]] == ["talk", "talk"] and found["truncated"] is False

    # the whole old container was collected before it was removed: every tick once, none missing
    rows = export(s)
    old_ticks = ticks(rows, old_name)
    assert old_ticks == list(range(len(old_ticks))) and len(old_ticks) > 10
    warns = [int(r["text"].split()[1]) for r in rows if r["container"] == old_name and r["stream"] == "stderr"]
    assert warns == list(range(len(warns))) and abs(len(warns) - len(old_ticks)) <= 1, "stderr, with its stream"

    # kill -9 the server while the new replica keeps writing; lines written meanwhile are collected
    time.sleep(1.5)
    s.kill()
    down = time.time()
    time.sleep(3)
    s.start()
    restarted = time.time()

    def caught_up() -> list[dict] | None:
        rows = export(s)
        newest = max((r for r in rows if r["container"] == new_name), key=lambda r: r["ts"], default=None)
        return rows if newest and newest["ts"] > _iso(restarted + 1) else None

    rows = s.wait_for(caught_up, timeout=20, interval=1, what="the collector to catch up after the restart")
    new_ticks = ticks(rows, new_name)
    assert new_ticks == list(range(len(new_ticks))), "no tick repeated or lost across the kill -9"
    during = [r for r in rows if r["container"] == new_name and _iso(down) < r["ts"] < _iso(restarted)]
    assert len(during) > 20, "lines written while the server was down were collected"
    keys = [(r["container"], r["ts"], r["stream"], r["text"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert all(set(r) == {"ts", "app", "replica", "container", "stream", "text"} for r in rows)

    # the project's search: an APP column
    out = s.cli("logs", "-p", "acme/shop", "--grep", needle).stdout.splitlines()
    assert out[0].split() == ["TIME", "APP", "REPLICA", "STREAM", "TEXT"] and len(out) == 3, out
    assert all(re.match(r"\S+Z\s+talk\s+0\s+stdout\s+hello-", line) for line in out[1:]), out

