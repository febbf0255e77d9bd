"""The dashboard's log page, in Debian's Chromium against a real server and engine.

One project, two apps: `chatty` prints 40,000 numbered lines at start (then sleeps), `web` is the
demo HTTP server (each request it answers logs one line). After the collector has stored them:
1. Search: on the project's Logs page (a fresh browser context per run), from a click on Search
   until its 500 rows are drawn with their matches marked. Peer, same run: the same request
   (`GET …/logs?grep=&since=1h&limit=500`) from httpx — the page's cost above the API is the ratio.
2. Live tail: from an HTTP request to `web` until its log line is a row of the page, with the
   filter `response:`: (a) the app's tail (its follow stream), (b) every app's tail (the page asks
   the store every 2 s). Peers: the same follow stream read by httpx (the engine's and server's
   part of (a)), and the search API asked every 50 ms until it has the line (the collector's part
   of (b): a line reaches the store at the next flush, every second).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.common import (
    TENANT,
    Server,
    app_manifest,
    check,
    goal,
    is_ready,
    log,
    machine_info,
    ms_summary,
    ratio,
    wait_until,
    write_result,
)
from bench.dashboard import CHROMIUM_ARGS, _api_times

NAME = "logpage"
PROJECT = "logs"
LINES = 40_000
ROWS = 500  # pages/logs.js LIMIT
GREP = "chatty line 1"  # about 11,000 of the lines: the newest 500 are shown


def _setup(server: Server, c: httpx.Client) -> tuple[str, str]:
    """The two apps, running; returns (the API base of the project, the web replica's address)."""
    server.setup_project(c, TENANT, PROJECT)
    apps = server.apps_path(TENANT, PROJECT)
    chatty = app_manifest("chatty", 1, project=PROJECT)
    chatty["spec"]["command"] = ["sh", "-c", f"seq 1 {LINES} | sed 's/^/chatty line /'; exec sleep 1000000"]
    web = app_manifest("web", 1, project=PROJECT)
    web["spec"]["ports"] = [{"containerPort": 8080}]
    for m in (chatty, web):
        check(c.post(apps, json=m), 201, f"create {m['metadata']['name']}")
    for name in ("chatty", "web"):
        wait_until(lambda n=name: is_ready(c.get(f"{apps}/{n}").json(), 1), timeout=120, interval=0.5,
                   what=f"{name} ready")
    base = f"/api/v1/projects/{TENANT}/{PROJECT}"
    wait_until(lambda: c.get(f"{base}/logs", params={"grep": f"chatty line {LINES}", "limit": 1}).json()["items"],
               timeout=120, interval=0.5, what="the last chatty line stored")
    ip = c.get(f"{apps}/web").json()["status"]["containers"][0]["ip"]
    return base, ip


def _browser_page(browser: Any, server: Server, hash_: str) -> Any:  # noqa: ANN401
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    ctx.add_init_script(f"localStorage.setItem('dockyard.token', '{server.token}');"
                        "localStorage.setItem('dockyard.user', '{\"name\": \"admin\", \"admin\": true}');")
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{server.url}/{hash_}")
    page.wait_for_selector("#logs-results[data-loaded='true']")
    return page


def _search_runs(browser: Any, server: Server, runs: int) -> list[float]:  # noqa: ANN401
    out = []
    for _ in range(runs):
        page = _browser_page(browser, server, f"#/projects/{TENANT}/{PROJECT}/logs")
        page.fill("#logs-grep", GREP)
        t0 = time.perf_counter()
        page.click("#logs-search")
        # the first search (no text) drew rows without marks: these are the new ones
        page.wait_for_selector(f"#logs-results tbody tr:nth-child({ROWS}) mark")
        out.append(time.perf_counter() - t0)
        page.context.close()
    return out


def _tail_runs(browser: Any, server: Server, hash_: str, ip: str, runs: int) -> list[float]:  # noqa: ANN401
    page = _browser_page(browser, server, hash_)
    page.fill("#logs-grep", "response:")
    page.check("#logs-tail")
    page.wait_for_selector("#logs-status >> text=Following")
    time.sleep(2)  # the stream is open, the first round of asking done
    out = []
    for _ in range(runs):
        n = page.locator("#logs-results tbody tr mark").count()
        t0 = time.perf_counter()
        httpx.get(f"http://{ip}:8080/bench", timeout=5)
        page.wait_for_selector(f"#logs-results tbody tr:nth-child({n + 1}) mark")
        out.append(time.perf_counter() - t0)
        time.sleep(0.3)
    page.uncheck("#logs-tail")
    page.context.close()
    return out


def _stream_peer(server: Server, base: str, ip: str, runs: int) -> list[float]:
    """The app's follow stream read by httpx: request → line received."""
    got = threading.Event()
    stop = threading.Event()

    def read() -> None:
        with httpx.stream("GET", f"{server.url}{base}/apps/web/logs", headers=server.headers(), timeout=None,
                          params={"follow": "true", "tail": "0", "grep": "response:", "format": "ndjson"}) as r:
            for line in r.iter_lines():
                if line.strip():
                    got.set()
                if stop.is_set():
                    return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    time.sleep(1.5)
    out = []
    for _ in range(runs):
        got.clear()
        t0 = time.perf_counter()
        httpx.get(f"http://{ip}:8080/peer", timeout=5)
        if not got.wait(30):
            raise TimeoutError("the follow stream did not deliver the line")
        out.append(time.perf_counter() - t0)
        time.sleep(0.3)
    stop.set()
    httpx.get(f"http://{ip}:8080/last", timeout=5)  # one more line lets the reader see `stop`
    return out


def _store_peer(c: httpx.Client, base: str, ip: str, runs: int) -> list[float]:
    """The search API asked every 50 ms: request → the line is stored and found."""
    out = []
    for _ in range(runs):
        since = datetime.now(UTC).isoformat()
        t0 = time.perf_counter()
        httpx.get(f"http://{ip}:8080/store", timeout=5)
        wait_until(lambda s=since: c.get(f"{base}/logs", params={"app": "web", "grep": "response:", "since": s})
                   .json()["items"], timeout=30, interval=0.05, what="the line in the store")
        out.append(time.perf_counter() - t0)
    return out


def run(quick: bool = False) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    runs = 3 if quick else 10
    started = datetime.now(UTC)
    machine = machine_info()
    log(f"== logpage: {LINES:,} stored lines; search and live tail in Chromium x{runs}")
    data: dict[str, Any] = {"lines": LINES, "rows": ROWS, "runs": runs}
    with Server(NAME) as server, server.client(timeout=120) as c:
        base, ip = _setup(server, c)
        api_s = _api_times(c, f"{base}/logs", {"grep": GREP, "since": "1h", "limit": ROWS, "format": "json"}, runs * 2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                search = ms_summary(_search_runs(browser, server, runs))
                here = f"#/projects/{TENANT}/{PROJECT}"
                app_tail = ms_summary(_tail_runs(browser, server, f"{here}/apps/web/logs?mode=search", ip, runs))
                all_tail = ms_summary(_tail_runs(browser, server, f"{here}/logs", ip, runs))
            finally:
                browser.close()
        stream = ms_summary(_stream_peer(server, base, ip, runs))
        store = ms_summary(_store_peer(c, base, ip, runs))
        api = ms_summary(api_s)
        for label, s in (("search: page click → 500 rows marked", search), ("search: API alone (peer)", api),
                         ("tail, one app (stream): request → row", app_tail),
                         ("tail, every app (asks each 2 s): request → row", all_tail),
                         ("peer: follow stream via httpx", stream), ("peer: line found in the store", store)):
            log(f"  {label:48s} median {s['median']:7.0f} ms  p90 {s['p90']:7.0f} ms")
        ratios = {"search_page_vs_api_median": ratio(search["median"], api["median"]),
                  "app_tail_vs_stream_median": ratio(app_tail["median"], stream["median"]),
                  "all_tail_vs_store_median": ratio(all_tail["median"], store["median"])}
        log(f"  ratios: {ratios}")
        data.update(search_page_ms=search, search_api_ms=api, app_tail_ms=app_tail, all_tail_ms=all_tail,
                    peer_stream_ms=stream, peer_store_ms=store, ratios=ratios,
                    goals=[goal(f"search usable ≤ 2000 ms (p90 {search['p90']:.0f} ms)", search["p90"] <= 2000),
                           goal(f"every app's tail ≤ 5000 ms (p90 {all_tail['p90']:.0f} ms)", all_tail["p90"] <= 5000)])
    write_result(NAME, data, quick=quick, started=started, machine=machine)
    return data
