"""Log drains on the real engine: a replica's lines, collected into the real log store by the real
collector, reach receivers on loopback — RFC 5424 syslog over TCP and UDP, NDJSON over HTTP, Loki's
push format — and nothing is lost while a receiver is down or the server is killed. Admission
refuses metadata addresses for everyone and loopback for maintainers, naming `spec.url`.

Receivers are small servers in this test. Grafana Loki itself is used when a `loki` binary that is
Grafana Loki is on PATH (Debian's package of that name is an unrelated genetics program, and Grafana
Loki is not packaged in Debian); otherwise that one test is skipped and says so."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import socket
import socketserver
import subprocess
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import httpx
import pytest
from dockyard_harness import PASSWORD, Server, app_manifest, free_port, setup_project

RFC5424 = re.compile(rb'^<(\d+)>1 (\S+) (\S+) (\S+) (\S+) (\S+) (\[dockyard@32473 [^\]]*\]) \xef\xbb\xbf(.*)$',
                     re.S)


def ticker(mark: str) -> list[str]:
    """A replica that writes a numbered line to stdout and to stderr every 0.2 s."""
    return ["sh", "-c", f'i=0; while :; do echo "tick-{mark}-$i"; echo "oops-{mark}-$i" >&2; i=$((i+1)); '
            "sleep 0.2; done"]


def numbers(lines: list[str], prefix: str) -> set[int]:
    return {int(m.group(1)) for t in lines for m in [re.search(re.escape(prefix) + r"(\d+)$", t)] if m}


# --- receivers -------------------------------------------------------------------------------------

class HttpReceiver:
    """Records POST bodies; can be stopped (open keep-alive connections too) and started again on the
    same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[tuple[str, dict, bytes]] = []
        self.lock = threading.Lock()
        self.server: http.server.ThreadingHTTPServer | None = None
        self.connections: list[socket.socket] = []

    def start(self) -> HttpReceiver:
        rx = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with rx.lock:
                    rx.connections.append(self.connection)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with rx.lock:
                    rx.requests.append((self.path, dict(self.headers), body))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a) -> None:  # noqa: ANN002
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            for conn in self.connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.connections.clear()

    def ndjson(self) -> list[dict]:
        with self.lock:
            return [json.loads(line) for _, _, body in self.requests for line in body.decode().splitlines()]


class SyslogReceiver:
    """RFC 5424 over TCP (octet counting) and UDP on loopback."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        rx = self

        class Tcp(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while True:
                    head = b""
                    while not head.endswith(b" "):
                        c = self.rfile.read(1)
                        if not c:
                            return
                        head += c
                    msg = self.rfile.read(int(head))
                    with rx.lock:
                        rx.messages.append(("tcp", msg))

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with rx.lock:
                    rx.messages.append(("udp", self.request[0]))

        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Tcp)
        self.tcp.daemon_threads = True
        self.udp = socketserver.UDPServer(("127.0.0.1", 0), Udp)
        for srv in (self.tcp, self.udp):
            threading.Thread(target=srv.serve_forever, daemon=True).start()

    def parsed(self, transport: str) -> list[tuple[bytes, ...]]:
        with self.lock:
            out = []
            for t, m in self.messages:
                if t == transport:
                    match = RFC5424.match(m)
                    assert match, f"not RFC 5424: {m[:200]!r}"
                    out.append(match.groups())
            return out

    def stop(self) -> None:
        for srv in (self.tcp, self.udp):
            srv.shutdown()
            srv.server_close()


def drain(name: str, type_: str, url: str, **spec) -> dict:  # noqa: ANN003
    return {"apiVersion": "dockyard/v1", "kind": "LogDrain", "metadata": {"name": name, "project": "acme/shop"},
            "spec": {"type": type_, "url": url, **spec}}


def ready_of(c: httpx.Client, name: str) -> dict:
    st = c.get(f"/projects/acme/shop/logdrains/{name}").json().get("status") or {}
    cond = next((x for x in st.get("conditions", []) if x["type"] == "Ready"), {})
    return {**st, "ready": cond.get("status"), "reason": cond.get("reason")}


def run_ticker(s: Server, c: httpx.Client, app: str, mark: str) -> None:
    c.post("/projects/acme/shop/apps", json=app_manifest(app, health=False, command=ticker(mark))).raise_for_status()
    s.wait_for(lambda: (c.get(f"/projects/acme/shop/apps/{app}").json().get("status") or {}).get("readyReplicas") == 1,
               timeout=60, what=f"{app} to run")


# --- tests -----------------------------------------------------------------------------------------

def test_lines_reach_syslog_http_and_loki_receivers(server_factory) -> None:  # noqa: ANN001
    s = server_factory()
    setup_project(s)
    mark = uuid.uuid4().hex[:8]
    http_rx, loki_rx, syslog_rx = HttpReceiver().start(), HttpReceiver().start(), SyslogReceiver()
    try:
        with s.client() as c:
            tcp_port, udp_port = syslog_rx.tcp.server_address[1], syslog_rx.udp.server_address[1]
            for body in (drain("ndjson", "http", f"http://127.0.0.1:{http_rx.port}/in?src=dy", apps=["web"],
                               labels={"env": "test"}, headers={"Authorization": "Bearer s3cret"}),
                         drain("loki", "loki", f"http://127.0.0.1:{loki_rx.port}/loki/api/v1/push",
                               labels={"env": "test"}, headers={"X-Scope-OrgID": "acme"}),
                         drain("sys-tcp", "syslog", f"syslog+tcp://127.0.0.1:{tcp_port}", labels={"env": "test"}),
                         drain("sys-udp", "syslog", f"syslog://127.0.0.1:{udp_port}", apps=["web"])):
                r = c.post("/projects/acme/shop/logdrains", json=body)
                assert r.status_code == 201, r.text
                # an admin wrote a loopback destination: the object carries the mark senders require
                assert r.json()["metadata"]["annotations"] == {"dockyard.io/egress-private": "true"}
            for name in ("ndjson", "loki", "sys-tcp", "sys-udp"):
                s.wait_for(lambda n=name: ready_of(c, n)["ready"] == "True", timeout=15, what=f"{name} ready")
            run_ticker(s, c, "web", mark)
            run_ticker(s, c, "other", f"x{mark}")
            started = time.monotonic()

            # HTTP: NDJSON records of app web only, with labels and the headers given
            recs = s.wait_for(lambda: [r for r in http_rx.ndjson() if f"tick-{mark}-" in r["text"]] or None,
                              timeout=10, interval=0.2, what="a tick over HTTP")
            assert time.monotonic() - started < 10
            rec = recs[0]
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", rec["ts"])
            assert {k: rec[k] for k in ("tenant", "project", "app", "replica", "stream", "labels")} == {
                "tenant": "acme", "project": "shop", "app": "web", "replica": 0, "stream": "stdout",
                "labels": {"env": "test"}}
            assert rec["container"].startswith("dy") and "_acme_shop_web_" in rec["container"]
            s.wait_for(lambda: any(r["stream"] == "stderr" and f"oops-{mark}-" in r["text"] for r in http_rx.ndjson()),
                       timeout=10, what="a stderr line over HTTP")
            assert all(r["app"] == "web" for r in http_rx.ndjson()), "apps: [web] lets only web through"
            path, headers, _ = http_rx.requests[0]
            assert path == "/in?src=dy"
            assert headers["Content-Type"] == "application/x-ndjson" and headers["Authorization"] == "Bearer s3cret"

            # Loki push format: one stream per (app, replica, stream), ns timestamps as strings, sorted
            def loki_streams() -> list[dict]:
                out = []
                for p, h, body in list(loki_rx.requests):
                    assert p == "/loki/api/v1/push" and h["Content-Type"] == "application/json"
                    assert h["X-Scope-OrgID"] == "acme"
                    out += json.loads(body)["streams"]
                return out

            s.wait_for(lambda: any(f"tick-{mark}-" in v[1] for st in loki_streams() for v in st["values"]),
                       timeout=10, what="a tick in a Loki push")
            s.wait_for(lambda: any(st["stream"]["app"] == "other" for st in loki_streams()), timeout=10,
                       what="the other app's lines in a Loki push (no apps filter)")
            for st in loki_streams():
                assert set(st["stream"]) == {"tenant", "project", "app", "replica", "stream", "env"}
                ns = [int(v[0]) for v in st["values"]]
                assert ns == sorted(ns) and all(isinstance(v[0], str) for v in st["values"])

            # syslog: RFC 5424, stdout info / stderr err, octet-counted over TCP, datagrams over UDP
            s.wait_for(lambda: any(m[7].decode().startswith(f"oops-{mark}-") for m in syslog_rx.parsed("tcp")),
                       timeout=10, what="a stderr line over syslog TCP")
            s.wait_for(lambda: any(m[3] == b"acme.shop.other" for m in syslog_rx.parsed("tcp")), timeout=10,
                       what="the other app over syslog TCP")
            s.wait_for(lambda: any(m[7].decode().startswith(f"tick-{mark}-") for m in syslog_rx.parsed("udp")),
                       timeout=10, what="a line over syslog UDP")
            for pri, _, _, _, procid, msgid, sd, _ in syslog_rx.parsed("tcp"):
                assert int(pri) == (11 if msgid == b"stderr" else 14)
                assert procid == b"0" and b'tenant="acme" project="shop"' in sd and b'env="test"' in sd
            assert {m[3] for m in syslog_rx.parsed("udp")} == {b"acme.shop.web"}

            s.wait_for(lambda: all(ready_of(c, n).get("sentLines", 0) > 0 for n in ("ndjson", "loki", "sys-tcp")),
                       timeout=25, what="sentLines in the drains' status")
            st = ready_of(c, "ndjson")
            assert st["lastSentAt"] and st["observedGeneration"] == 1 and "lastError" not in st

        out = s.cli("get", "logdrains", "-p", "acme/shop").stdout
        rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
        assert out.splitlines()[0].split()[:5] == ["NAME", "TYPE", "DESTINATION", "READY", "SENT"], out
        assert rows["ndjson"][1:4] == ["http", f"127.0.0.1:{http_rx.port}", "True"], out
        assert int(rows["ndjson"][4]) > 0, out
        described = s.cli("describe", "logdrain", "ndjson", "-p", "acme/shop").stdout
        assert "Headers:      Authorization" in described and "s3cret" not in described, described
    finally:
        http_rx.stop()
        loki_rx.stop()
        syslog_rx.stop()


def test_nothing_is_lost_while_the_receiver_is_down_or_the_server_is_killed(server_factory, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("DOCKYARD_DRAIN_MAX_BACKOFF", "2")
    s = server_factory()
    setup_project(s)
    mark = uuid.uuid4().hex[:8]
    rx = HttpReceiver().start()
    prefix = f"tick-{mark}-"
    try:
        with s.client() as c:
            c.post("/projects/acme/shop/logdrains", json=drain("central", "http", f"http://127.0.0.1:{rx.port}/"),
                   ).raise_for_status()
            s.wait_for(lambda: ready_of(c, "central")["ready"] == "True", timeout=15, what="the drain ready")
            run_ticker(s, c, "web", mark)
            s.wait_for(lambda: numbers([r["text"] for r in rx.ndjson()], prefix), timeout=10, what="first ticks")

            rx.stop()
            down_at = max(numbers([r["text"] for r in rx.ndjson()], prefix))
            # (the first failure may be the closed keep-alive connection; then the refused connect)
            st = s.wait_for(lambda: (lambda x: x if x["ready"] == "False" and "refused" in x.get("lastError", "").lower()
                                     else None)(ready_of(c, "central")),
                            timeout=15, what="the drain to report the refused connection")
            assert st["reason"] == "SendFailed" and st["lastErrorAt"], st
            time.sleep(3)
            rx.start()
            # everything written meanwhile arrives once the receiver is back
            s.wait_for(lambda: max(numbers([r["text"] for r in rx.ndjson()], prefix)) > down_at + 25,
                       timeout=20, what="the lines written during the outage")
            s.wait_for(lambda: ready_of(c, "central")["ready"] == "True", timeout=15, what="the drain ready again")

        # a crash of the server: the drain resumes from its cursor in logs.db
        s.kill()
        killed_at = max(numbers([r["text"] for r in rx.ndjson()], prefix))
        time.sleep(2)
        s.start()
        s.wait_for(lambda: max(numbers([r["text"] for r in rx.ndjson()], prefix)) > killed_at + 20,
                   timeout=30, what="lines after the restart")
        got = numbers([r["text"] for r in rx.ndjson()], prefix)
        missing = set(range(min(got), max(got) + 1)) - got
        assert not missing, f"lines lost: {sorted(missing)[:20]}"
        texts = [r["text"] for r in rx.ndjson() if r["stream"] == "stdout"]
        # at least once: a repeat is at most the batch in flight at the crash, never a replay of history
        assert len(texts) - len(set(texts)) <= 500
    finally:
        rx.stop()


def _maintainer(s: Server) -> httpx.Client:
    with s.client() as c:
        c.post("/users", json={"name": "mia", "password": PASSWORD}).raise_for_status()
        c.post("/projects/acme/shop/members", json={"user": "mia", "role": "maintainer"}).raise_for_status()
        c.post("/users", json={"name": "dev", "password": PASSWORD}).raise_for_status()
        c.post("/projects/acme/shop/members", json={"user": "dev", "role": "developer"}).raise_for_status()
    token = httpx.post(s.url + "/api/v1/login", json={"username": "mia", "password": PASSWORD}).json()["token"]
    return httpx.Client(base_url=s.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_admission_refuses_metadata_for_admins_and_loopback_for_maintainers(server_factory) -> None:  # noqa: ANN001
    s = server_factory()
    setup_project(s)
    with s.client() as admin, _maintainer(s) as mia:
        r = admin.post("/projects/acme/shop/logdrains", json=drain("meta", "http", "http://169.254.169.254/latest/"))
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
        assert r.json()["errors"][0]["field"] == "spec.url" and "metadata" in r.json()["errors"][0]["message"]

        port = free_port()
        r = mia.post("/projects/acme/shop/logdrains", json=drain("mine", "http", f"http://127.0.0.1:{port}/"))
        assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json", r.text
        assert r.json()["errors"] == [{"field": "spec.url", "message": r.json()["errors"][0]["message"]}]
        assert "only a platform admin" in r.json()["errors"][0]["message"]

        r = mia.post("/projects/acme/shop/logdrains", json=drain("typo", "syslog", f"http://127.0.0.1:{port}/"))
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "spec.url", r.text

        # the mark cannot be forged: a maintainer's manifest carrying it still needs an admin
        forged = drain("forged", "http", f"http://127.0.0.1:{port}/")
        forged["metadata"]["annotations"] = {"dockyard.io/egress-private": "true"}
        assert mia.post("/projects/acme/shop/logdrains", json=forged).status_code == 403

        # an admin's loopback drain: the maintainer may pause it, not point it elsewhere
        admin.post("/projects/acme/shop/logdrains", json=drain("ops", "http", f"http://127.0.0.1:{port}/")
                   ).raise_for_status()
        r = mia.patch("/projects/acme/shop/logdrains/ops", json={"spec": {"paused": True}})
        assert r.status_code == 200 and r.json()["metadata"]["annotations"] == {"dockyard.io/egress-private": "true"}
        r = mia.patch("/projects/acme/shop/logdrains/ops", json={"spec": {"url": f"http://127.0.0.1:{port + 1}/"}})
        assert r.status_code == 403 and r.json()["errors"][0]["field"] == "spec.url"
        s.wait_for(lambda: ready_of(admin, "ops")["reason"] == "Paused", timeout=15, what="the paused status")

    # the CLI: apply -f, get, describe, delete -f
    manifest = (f"apiVersion: dockyard/v1\nkind: LogDrain\nmetadata: {{name: from-cli, project: acme/shop}}\n"
                f"spec: {{type: syslog, url: 'syslog+tcp://127.0.0.1:{port}', apps: [web]}}\n")
    s.cli("apply", "-f", "-", input=manifest)
    out = s.cli("get", "logdrains", "-p", "acme/shop").stdout
    assert any(line.split()[:3] == ["from-cli", "syslog", f"127.0.0.1:{port}"] for line in out.splitlines()), out
    assert "Apps:         web" in s.cli("describe", "logdrain", "from-cli", "-p", "acme/shop").stdout
    s.cli("delete", "-f", "-", input=manifest)
    assert "from-cli" not in s.cli("get", "logdrains", "-p", "acme/shop").stdout

    # drains are for maintainers: a developer neither sees nor writes them
    token = httpx.post(s.url + "/api/v1/login", json={"username": "dev", "password": PASSWORD}).json()["token"]
    with httpx.Client(base_url=s.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}) as dev:
        assert dev.get("/projects/acme/shop/logdrains").status_code == 403
        assert dev.post("/projects/acme/shop/logdrains", json=drain("d", "http", "http://127.0.0.1:1/")
                        ).status_code == 403


# --- rsyslog, a real RFC 5424 receiver ---------------------------------------------------------------

RSYSLOG_CONFIG = """
global(workDirectory="{dir}")
module(load="imtcp")
module(load="imudp")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imudp" address="127.0.0.1" port="{udp}")
template(name="fields" type="list") {{
  property(name="inputname") constant(value="|") property(name="syslogseverity-text") constant(value="|")
  property(name="hostname") constant(value="|") property(name="app-name") constant(value="|")
  property(name="procid") constant(value="|") property(name="msgid") constant(value="|")
  property(name="structured-data") constant(value="|") property(name="msg") constant(value="\\n")
}}
:inputname, isequal, "rsyslogd" stop
*.* action(type="omfile" file="{dir}/received.log" template="fields")
"""


def test_rsyslog_parses_what_the_syslog_drains_send(server_factory, tmp_path: Path) -> None:  # noqa: ANN001
    rsyslogd = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if Path("/usr/sbin/rsyslogd").exists() else None)
    if rsyslogd is None:
        pytest.skip("rsyslogd is not installed (Debian package rsyslog; scripts/install.sh installs it with WANT_TEST=1)")
    tcp, udp = free_port(), free_port()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONFIG.format(dir=tmp_path, tcp=tcp, udp=udp))
    proc = subprocess.Popen([rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "rsyslog.err", "wb"))  # noqa: SIM115
    received = tmp_path / "received.log"
    try:
        s = server_factory()
        setup_project(s)
        mark = uuid.uuid4().hex[:8]
        with s.client() as c:
            for name, url in (("rs-tcp", f"syslog+tcp://127.0.0.1:{tcp}"), ("rs-udp", f"syslog://127.0.0.1:{udp}")):
                c.post("/projects/acme/shop/logdrains", json=drain(name, "syslog", url, labels={"env": "test"})
                       ).raise_for_status()
                s.wait_for(lambda n=name: ready_of(c, n)["ready"] == "True", timeout=15, what=f"{name} ready")
            run_ticker(s, c, "web", mark)

        def rows() -> list[list[str]]:
            text = received.read_text(errors="replace") if received.exists() else ""
            return [line.split("|", 7) for line in text.splitlines() if mark in line]

        def both() -> list[list[str]] | None:
            got = rows()
            seen = {(r[0], r[1]) for r in got}
            return got if {("imtcp", "info"), ("imtcp", "err"), ("imudp", "info"), ("imudp", "err")} <= seen else None

        got = s.wait_for(both, timeout=15, interval=0.5, what="stdout and stderr lines in rsyslog over TCP and UDP")
        for _, severity, host, app_name, procid, msgid, sd, msg in got:
            assert (app_name, procid) == ("acme.shop.web", "0"), got[:3]
            assert msgid == ("stderr" if severity == "err" else "stdout"), got[:3]
            assert sd.startswith('[dockyard@32473 tenant="acme" project="shop" app="web" replica="0" container="dy')
            assert sd.endswith(' env="test"]') and host not in ("", "-")
            assert msg.lstrip("\ufeff").startswith(("tick-" if severity == "info" else "oops-") + mark)
    finally:
        proc.terminate()
        proc.wait(10)


# --- Grafana Loki, when it is installed ------------------------------------------------------------

def grafana_loki() -> str | None:
    path = shutil.which("loki")
    if not path:
        return None
    try:
        out = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if "loki, version" in (out.stdout + out.stderr) else None


LOKI_CONFIG = """
auth_enabled: false
analytics: {{reporting_enabled: false}}
server: {{http_listen_address: 127.0.0.1, http_listen_port: {http}, grpc_listen_address: 127.0.0.1,
         grpc_listen_port: {grpc}, log_level: warn}}
common:
  path_prefix: {dir}
  replication_factor: 1
  ring: {{instance_addr: 127.0.0.1, kvstore: {{store: inmemory}}}}
  storage: {{filesystem: {{chunks_directory: {dir}/chunks, rules_directory: {dir}/rules}}}}
memberlist: {{bind_addr: [127.0.0.1], join_members: []}}
schema_config:
  configs: [{{from: 2020-01-01, store: boltdb-shipper, object_store: filesystem, schema: v11,
              index: {{prefix: index_, period: 24h}}}}]
"""


def test_a_replica_line_is_found_in_grafana_loki(server_factory, tmp_path: Path) -> None:  # noqa: ANN001
    loki = grafana_loki()
    if loki is None:
        pytest.skip("Grafana Loki is not installed: Debian's `loki` package is an unrelated program (MCMC linkage "
                    "analysis) and Grafana Loki is not packaged in Debian; the Loki push format is checked by "
                    "test_lines_reach_syslog_http_and_loki_receivers")
    port = free_port()
    (tmp_path / "loki.yaml").write_text(LOKI_CONFIG.format(http=port, grpc=free_port(), dir=tmp_path / "loki"))
    proc = subprocess.Popen([loki, f"-config.file={tmp_path / 'loki.yaml'}"], stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "loki.log", "wb"))  # noqa: SIM115
    try:
        base = f"http://127.0.0.1:{port}"
        s = server_factory()
        s.wait_for(lambda: httpx.get(base + "/ready", timeout=2).status_code == 200 if proc.poll() is None else
                   pytest.fail((tmp_path / "loki.log").read_text()[-2000:]), timeout=60, what="loki ready")
        setup_project(s)
        mark = uuid.uuid4().hex[:8]
        with s.client() as c:
            c.post("/projects/acme/shop/logdrains", json=drain("loki", "loki", base + "/loki/api/v1/push",
                                                              labels={"env": "test"})).raise_for_status()
            s.wait_for(lambda: ready_of(c, "loki")["ready"] == "True", timeout=15, what="the drain ready")
            run_ticker(s, c, "web", mark)
            started = time.monotonic()
            query = urllib.parse.urlencode({"query": '{app="web", env="test"}', "limit": 1000,
                                            "start": str(int((time.time() - 600) * 1e9))})

            def found() -> bool:
                r = httpx.get(f"{base}/loki/api/v1/query_range?{query}", timeout=5)
                return r.status_code == 200 and any(f"tick-{mark}-" in v[1] for st in r.json()["data"]["result"]
                                                    for v in st["values"])

            s.wait_for(found, timeout=15, interval=0.5, what="the line in Loki")
            assert time.monotonic() - started < 15
    finally:
        proc.terminate()
        proc.wait(10)
