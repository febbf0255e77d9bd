"""API latency under load.

1. 100 Apps with replicas 0 (no containers), then 50 concurrent clients, each on its own
   keep-alive connection, GET one App (client i reads app i) for ~10 s: p50 / p99.
2. 50 concurrent clients apply (PUT) their own App with its current metadata.resourceVersion,
   changing a label each time, for ~10 s: p50 / p99 (409 Conflicts are counted apart).
3. 10,000 Apps (replicas 0) created by 8 concurrent clients in a project of their own (the creation
   rate is recorded), then the whole project listed page by page with limit=500, several
   passes: p50 / p99 per page.

Peer: GET /healthz of the same server, at the same concurrency (50 clients for 1 and 2, one
sequential client for 3), measured in the same run; the ratios are printed.

Clients are threads in this process, each with its own session token (the server rate-limits
per token) and its own keep-alive connection. They use the standard library's http.client,
because on a 2-core machine httpx's own per-request CPU (about 3x that of
http.client, measured) would be taken from the server under test; BENCH_CLIENT=httpx selects
httpx instead. The client's CPU seconds are recorded next to the server's.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.common import (
    PROJECT,
    TENANT,
    BenchError,
    Server,
    app_manifest,
    check,
    goal,
    log,
    machine_info,
    ms_summary,
    proc_cpu_seconds,
    ratio,
    wait_until,
    write_result,
)

NAME = "api"
CLIENTS = 50
BASE_APPS = 100
BIG_PROJECT = "p2"
PAGE = 500
CREATE_CLIENTS = 8


class Conn:
    """One keep-alive HTTP/1.1 connection to the server (stdlib, or httpx with BENCH_CLIENT=httpx)."""

    def __init__(self, server: Server, token: str | None = None) -> None:
        self.server = server
        self.use_httpx = os.environ.get("BENCH_CLIENT") == "httpx"
        self.headers = {**server.headers(token), "Content-Type": "application/json", "Accept": "application/json"}
        self._c: Any = None
        self._open()

    def _open(self) -> None:
        if self.use_httpx:
            self._c = httpx.Client(base_url=self.server.url, headers=self.headers, timeout=120)
        else:
            self._c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=120)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        for attempt in (1, 2):
            try:
                if self.use_httpx:
                    r = self._c.request(method, path, content=data)
                    return r.status_code, r.content
                self._c.request(method, path, body=data, headers=self.headers)
                resp = self._c.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, ConnectionError) as e:
                self.close()
                self._open()
                if attempt == 2:
                    raise BenchError(f"{method} {path}: {e}") from e
        raise AssertionError("unreachable")

    def close(self) -> None:
        try:
            self._c.close()
        except Exception:  # noqa: BLE001
            pass


# an operation: given its connection, do one request and return (HTTP status, seconds it took)
Op = Callable[[Conn], tuple[int, float]]


def timed(conn: Conn, method: str, path: str, body: Any = None) -> tuple[int, float, bytes]:
    t0 = time.perf_counter()
    status, data = conn.request(method, path, body)
    return status, time.perf_counter() - t0, data


def load(server: Server, clients: int, seconds: float, make_op: Callable[[int, Conn], Op]) -> dict[str, Any]:
    """`clients` threads, each on its own connection, run their op back to back for `seconds`
    (closed loop). One untimed request per client first opens the connection."""
    results: list[list[tuple[int, float]]] = [[] for _ in range(clients)]
    errors: list[str] = []
    deadline = [0.0]
    tokens = server.client_tokens(clients)
    barrier = threading.Barrier(clients + 1, action=lambda: deadline.__setitem__(0, time.perf_counter() + seconds))

    def worker(i: int) -> None:
        conn = Conn(server, tokens[i])
        try:
            op = make_op(i, conn)
            op(conn)  # warm-up: connection and first-request costs are not measured
        except Exception as e:  # noqa: BLE001
            errors.append(f"client {i} warm-up: {e}")
            barrier.abort()
            conn.close()
            return
        try:
            barrier.wait(timeout=120)
            mine = results[i]
            while time.perf_counter() < deadline[0]:
                mine.append(op(conn))
        except threading.BrokenBarrierError:
            pass
        except Exception as e:  # noqa: BLE001
            errors.append(f"client {i}: {e}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        barrier.wait(timeout=120)
    except threading.BrokenBarrierError:
        raise BenchError(f"load clients did not start: {errors[:3]}") from None
    c0, s0, t0 = time.process_time(), proc_cpu_seconds(server.pid), time.perf_counter()
    for t in threads:
        t.join(timeout=seconds + 180)
    wall = time.perf_counter() - t0
    client_cpu, server_cpu = time.process_time() - c0, proc_cpu_seconds(server.pid) - s0
    flat = [x for r in results for x in r]
    ok = [lat for status, lat in flat if 200 <= status < 300]
    if errors:
        log(f"    {len(errors)} client error(s), e.g. {errors[0]}")
    if not ok:
        raise BenchError(f"no successful request at all (statuses {Counter(s for s, _ in flat)}, errors {errors[:3]})")
    statuses = Counter(s for s, _ in flat)
    return {"clients": clients, "seconds": round(wall, 2), "requests": len(flat), "ok": len(ok),
            "rps": round(len(ok) / wall, 1), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "latency_ms": ms_summary(ok),
            "latency_ms_non_2xx": ms_summary([lat for status, lat in flat if not 200 <= status < 300]),
            "client_errors": len(errors), "server_cpu_s": round(server_cpu, 2), "client_cpu_s": round(client_cpu, 2),
            "server_cpu_ms_per_request": round(1000 * server_cpu / max(len(flat), 1), 3)}


def _line(label: str, r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    if r["ok"] != r["requests"]:
        log(f"    note: {r['requests'] - r['ok']} of {r['requests']} answers were not 2xx ({r['statuses']}); "
            "the latencies below are of the 2xx answers only")
    log(f"  {label:<34} p50 {lat['median']:7.1f} ms  p99 {lat['p99']:7.1f} ms  max {lat['max']:7.1f} ms  "
        f"{r['rps']:7.1f} req/s  (statuses {r['statuses']}; server CPU {r['server_cpu_ms_per_request']:.2f} ms/req, "
        f"client CPU {r['client_cpu_s']:.1f} s)")


def _healthz_op(i: int, conn: Conn) -> Op:
    def op(c: Conn) -> tuple[int, float]:
        status, lat, _ = timed(c, "GET", "/healthz")
        return status, lat

    return op


def _get_op(server: Server) -> Callable[[int, Conn], Op]:
    def make(i: int, conn: Conn) -> Op:
        path = f"{server.apps_path()}/a{i % BASE_APPS:03d}"

        def op(c: Conn) -> tuple[int, float]:
            status, lat, _ = timed(c, "GET", path)
            return status, lat

        return op

    return make


def _apply_op(server: Server) -> Callable[[int, Conn], Op]:
    def make(i: int, conn: Conn) -> Op:
        name = f"a{i % BASE_APPS:03d}"
        path = f"{server.apps_path()}/{name}"
        status, data = conn.request("GET", path)
        if status != 200:
            raise BenchError(f"GET {path}: {status}")
        state = {"rv": json.loads(data)["metadata"]["resourceVersion"], "k": itertools.count()}

        def op(c: Conn) -> tuple[int, float]:
            body = app_manifest(name, 0, labels={"bench-apply": f"c{i}-{next(state['k'])}"})
            body["metadata"]["resourceVersion"] = state["rv"]
            status, lat, data = timed(c, "PUT", path, body)
            if status == 200:
                state["rv"] = json.loads(data)["metadata"]["resourceVersion"]
            elif status == 409:  # re-read outside the timed request
                s2, d2 = c.request("GET", path)
                if s2 == 200:
                    state["rv"] = json.loads(d2)["metadata"]["resourceVersion"]
            return status, lat

        return op

    return make


def _create_many(server: Server, project: str, count: int, clients: int) -> dict[str, Any]:
    names = iter(range(count))
    lock = threading.Lock()
    lat: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    path = server.apps_path(TENANT, project)
    tokens = server.client_tokens(clients)

    def worker(token: str) -> None:
        conn = Conn(server, token)
        mine: list[float] = []
        try:
            while True:
                with lock:
                    k = next(names, None)
                if k is None:
                    return
                status, t, data = timed(conn, "POST", path, app_manifest(f"app-{k:05d}", 0, project=project))
                mine.append(t)
                with lock:
                    statuses[status] += 1
                if status != 201:
                    errors.append(f"app-{k:05d}: {status} {data[:200]!r}")
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))
        finally:
            conn.close()
            with lock:
                lat.extend(mine)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(tokens[i],), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    last_report = time.monotonic()
    for t in threads:
        while t.is_alive():
            t.join(timeout=5)
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                with lock:
                    log(f"    ... {sum(statuses.values())} created so far")
    wall = time.perf_counter() - t0
    created = statuses.get(201, 0)
    if errors:
        log(f"    {len(errors)} failed create(s), e.g. {errors[0]}")
    if created < count:
        raise BenchError(f"only {created} of {count} apps were created: {errors[:3]}")
    return {"count": count, "clients": clients, "seconds": round(wall, 2), "rate_per_s": round(count / wall, 1),
            "latency_ms": ms_summary(lat), "statuses": {str(k): v for k, v in statuses.items()}}


def _list_all(server: Server, conn: Conn, project: str, expected: int) -> tuple[list[float], list[int], float, int]:
    """One full listing, page by page: per-page seconds, page sizes (bytes), total seconds, Ready count."""
    base = f"{server.apps_path(TENANT, project)}?limit={PAGE}"
    token = None
    pages: list[float] = []
    sizes: list[int] = []
    n = ready = 0
    t0 = time.perf_counter()
    while True:
        status, lat, data = timed(conn, "GET", base + (f"&continue={token}" if token else ""))
        if status != 200:
            raise BenchError(f"list page {len(pages) + 1}: HTTP {status}: {data[:300]!r}")
        pages.append(lat)
        sizes.append(len(data))
        doc = json.loads(data)
        n += len(doc["items"])
        ready += sum(1 for o in doc["items"] if (o.get("status") or {}).get("phase") == "Ready")
        token = (doc.get("metadata") or {}).get("continue")
        if not token:
            break
        if len(pages) > expected // PAGE + 10:
            raise BenchError("the listing does not end")
    total = time.perf_counter() - t0
    if n != expected:
        raise BenchError(f"the listing returned {n} apps, not {expected}")
    return pages, sizes, total, ready


def _wait_reconciled(server: Server, c: httpx.Client, project: str, names: list[str], timeout: float) -> float:
    t0 = time.perf_counter()

    def all_ready() -> bool:
        for name in names:
            st = c.get(f"{server.apps_path(TENANT, project)}/{name}").json().get("status") or {}
            if st.get("phase") != "Ready":
                return False
        return True

    wait_until(all_ready, timeout=timeout, interval=0.5, what=f"apps of {project} to be reconciled")
    return time.perf_counter() - t0


def _idle_cpu(server: Server, seconds: float) -> float:
    s0 = proc_cpu_seconds(server.pid)
    time.sleep(seconds)
    return round((proc_cpu_seconds(server.pid) - s0) / seconds, 3)


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 3.0 if quick else 10.0
    many = 1000 if quick else 10_000
    passes = 2 if quick else 5
    started = datetime.now(UTC)
    machine = machine_info()
    client_kind = "httpx" if os.environ.get("BENCH_CLIENT") == "httpx" else "http.client"
    log(f"== api: GET / apply at {CLIENTS} concurrent clients ({seconds:.0f} s each), list of {many} apps "
        f"(limit={PAGE}, {passes} passes); peer GET /healthz; client {client_kind}")
    data: dict[str, Any] = {"clients": CLIENTS, "phase_seconds": seconds, "client": client_kind}
    with Server(NAME) as server, server.client(timeout=600) as c:
        server.setup_project(c)
        for k in range(BASE_APPS):
            check(c.post(server.apps_path(), json=app_manifest(f"a{k:03d}", 0)), 201, "create app")
        _wait_reconciled(server, c, PROJECT, [f"a{k:03d}" for k in range(BASE_APPS)], timeout=300)
        data["server_idle_cpu_cores_100_apps"] = _idle_cpu(server, 3)

        hz = load(server, CLIENTS, seconds, _healthz_op)
        _line(f"GET /healthz x{CLIENTS} (peer)", hz)
        get = load(server, CLIENTS, seconds, _get_op(server))
        _line(f"GET app x{CLIENTS}", get)
        apply = load(server, CLIENTS, seconds, _apply_op(server))
        _line(f"PUT app (apply) x{CLIENTS}", apply)
        conflicts = apply["statuses"].get("409", 0)
        hz1 = load(server, 1, min(seconds, 5.0), _healthz_op)
        _line("GET /healthz x1 (peer for list)", hz1)

        log(f"  creating {many} apps (replicas 0) in {TENANT}/{BIG_PROJECT} with {CREATE_CLIENTS} clients ...")
        server.setup_project(c, TENANT, BIG_PROJECT)
        created = _create_many(server, BIG_PROJECT, many, CREATE_CLIENTS)
        log(f"  created {many} apps in {created['seconds']:.1f} s = {created['rate_per_s']:.1f} apps/s "
            f"(POST p50 {created['latency_ms']['median']:.1f} ms, p99 {created['latency_ms']['p99']:.1f} ms)")
        settle = _wait_reconciled(server, c, BIG_PROJECT, [f"app-{k:05d}" for k in range(many - 20, many)],
                                  timeout=1800)
        busy = _idle_cpu(server, 5)
        log(f"  controllers reconciled the last apps {settle:.1f} s after creation ended; server CPU afterwards, "
            f"no requests: {busy:.2f} cores")

        conn = Conn(server)
        page_lat: list[float] = []
        full: list[float] = []
        sizes: list[int] = []
        ready_counts: list[int] = []
        s0 = proc_cpu_seconds(server.pid)
        try:
            for _ in range(passes):
                pl, sz, total, ready = _list_all(server, conn, BIG_PROJECT, many)
                page_lat += pl
                sizes += sz
                full.append(total)
                ready_counts.append(ready)
        finally:
            conn.close()
        list_cpu = proc_cpu_seconds(server.pid) - s0
        lp = ms_summary(page_lat)
        log(f"  {'list page (limit=500), sequential':<34} p50 {lp['median']:7.1f} ms  p99 {lp['p99']:7.1f} ms  "
            f"max {lp['max']:7.1f} ms  ({lp['n']} pages, {max(sizes) // 1024} KiB/page; full listing of {many} "
            f"median {sorted(full)[len(full) // 2]:.2f} s; server CPU {1000 * list_cpu / len(page_lat):.0f} ms/page)")

        t0 = time.perf_counter()
        check(c.delete(f"/api/v1/projects/{TENANT}/{BIG_PROJECT}"), 200, "delete the big project")
        delete_big = time.perf_counter() - t0
        server.projects.remove((TENANT, BIG_PROJECT))
        log(f"  deleting the project with {many} apps took {delete_big:.1f} s (one request)")

    g50, g99 = get["latency_ms"]["median"], get["latency_ms"]["p99"]
    h50, h99 = hz["latency_ms"]["median"], hz["latency_ms"]["p99"]
    a99 = apply["latency_ms"]["p99"]
    log(f"  ratios vs /healthz at the same concurrency: GET p50 {ratio(g50, h50):.2f}x, p99 {ratio(g99, h99):.2f}x; "
        f"apply p50 {ratio(apply['latency_ms']['median'], h50):.2f}x, p99 {ratio(a99, h99):.2f}x; "
        f"list page p99 vs sequential /healthz p99 {ratio(lp['p99'], hz1['latency_ms']['p99']):.1f}x")
    log(f"  apply: {conflicts} x 409 Conflict (counted apart; each client applies its own app)")
    goals = [goal(f"GET p99 <= 100 ms (is {g99:.1f} ms)", g99 <= 100),
             goal(f"apply p99 <= 250 ms (is {a99:.1f} ms)", a99 <= 250),
             goal(f"list page p99 <= 1 s (is {lp['p99']:.1f} ms)", lp["p99"] <= 1000)]
    data.update({
        "healthz": hz, "get": get, "apply": apply, "apply_conflicts": conflicts, "healthz_sequential": hz1,
        "create": created, "reconcile_settle_s": round(settle, 2), "server_cpu_cores_after_create": busy,
        "list": {"apps": many, "page_limit": PAGE, "passes": passes, "page_ms": lp,
                 "full_listing_s": [round(x, 3) for x in full], "page_bytes_max": max(sizes),
                 "ready_apps_seen_per_pass": ready_counts,
                 "server_cpu_ms_per_page": round(1000 * list_cpu / len(page_lat), 1)},
        "delete_big_project_s": round(delete_big, 2),
        "ratios": {"get_p50_vs_healthz": ratio(g50, h50), "get_p99_vs_healthz": ratio(g99, h99),
                   "apply_p50_vs_healthz": ratio(apply["latency_ms"]["median"], h50),
                   "apply_p99_vs_healthz": ratio(a99, h99),
                   "list_page_p99_vs_sequential_healthz_p99": ratio(lp["p99"], hz1["latency_ms"]["p99"])},
        "goals": goals,
    })
    write_result(NAME, data, quick=quick, started=started, machine=machine)
    return data
