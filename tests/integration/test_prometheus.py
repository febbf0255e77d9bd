"""Debian's Prometheus scrapes a real server's /metrics with a bearer token on loopback, and its
query API returns Dockyard's series (per-app and the platform's own)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from dockyard_harness import app_manifest, free_port, setup_project

PROMETHEUS = shutil.which("prometheus")


def test_prometheus_scrapes_dockyard(server_factory, tmp_path: Path) -> None:  # noqa: ANN001
    if PROMETHEUS is None:
        pytest.skip("Debian's prometheus is not installed (WANT_TEST=1 scripts/install.sh installs it)")
    s = server_factory()
    setup_project(s)
    with s.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest("web", health=False)).raise_for_status()
        s.wait_for(lambda: any(a["app"] == "web" for a in c.get("/projects/acme/shop/top").json()["items"]),
                   timeout=60, interval=1, what="the collector to read web's container")
    token_file = tmp_path / "token"
    token_file.write_text(s.token)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: dockyard
    metrics_path: /metrics
    authorization: {{type: Bearer, credentials_file: {token_file}}}
    static_configs: [{{targets: ["127.0.0.1:{s.port}"]}}]
""")
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        prom = f"http://127.0.0.1:{port}"

        def query(q: str) -> list:
            try:
                r = httpx.get(f"{prom}/api/v1/query", params={"query": q}, timeout=5)
            except httpx.HTTPError:
                return []
            return r.json()["data"]["result"] if r.status_code == 200 else []

        deadline = time.monotonic() + 60
        up = mem = []
        while time.monotonic() < deadline and not (up and mem):
            up = [x for x in query('up{job="dockyard"}') if x["value"][1] == "1"]
            mem = query('dockyard_container_memory_bytes{tenant="acme",project="shop",app="web"}')
            time.sleep(0.5)
        assert up, f"Prometheus never scraped Dockyard successfully:\n{(tmp_path / 'prometheus.log').read_text()[-2000:]}"
        assert mem and mem[0]["metric"]["replica"] == "0" and float(mem[0]["value"][1]) > 0, mem
        limit = query('dockyard_container_memory_limit_bytes{app="web"}')
        assert limit and float(limit[0]["value"][1]) > 0
        api = query('sum(dockyard_api_request_duration_seconds_count{route="/api/v1/projects/{tenant}/{project}/top"})')
        assert api and float(api[0]["value"][1]) >= 1, api
        assert query("dockyard_workqueue_depth"), "the work-queue gauge is exposed"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
