"""Log drains: CPU a drain spends per forwarded line, for each transport, from a real LogStore to
receivers on loopback in another process (so only the forwarder's CPU is counted).

Peer, measured in the same run over the same lines and receivers: the least a forwarder has to
do — lines already in memory, one `json.dumps` per line (NDJSON) or one RFC 5424 header per line
(syslog) with plain string formatting, one POST or `sendall` per 500 lines, no store reads, no
cursor writes, no status. The ratio is what reading the store, the cursor kept for at-least-once
delivery and the drain's bookkeeping cost on top."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard.logs import drains
from dockyard.logs.drains import DrainCursors, DrainWorker
from dockyard.logs.store import LogSource, LogStore
from dockyard.store.repository import StoredObject

from bench.common import log, machine_info, ratio, write_result

NAME = "drains"
BATCH = 500

# a receiver process: HTTP (204 to every POST), TCP and UDP sinks; prints its ports
RECEIVER = r"""
import http.server, socket, socketserver, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(204); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
class T(socketserver.StreamRequestHandler):
    def handle(self):
        while self.rfile.read(1 << 16): pass
h = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
t = socketserver.ThreadingTCPServer(("127.0.0.1", 0), T)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
for s in (h, t):
    threading.Thread(target=s.serve_forever, daemon=True).start()
print(h.server_address[1], t.server_address[1], u.getsockname()[1], flush=True)
while True:
    u.recv(1 << 16)
"""


class _NoStatus:
    def update_status(self, *a: Any, **kw: Any) -> None:
        pass


def _fill(store: LogStore, n: int) -> list[tuple[int, str, str]]:
    src = LogSource("bench", "p1", "web", 0, "dybench_bench_p1_web_h_0", "cid")
    now = time.time_ns()
    lines = [(now + i * 1000, "stderr" if i % 5 == 0 else "stdout",
              f"GET /api/items/{i} 200 {i % 97} ms user=alice trace={i:016x}") for i in range(n)]
    for i in range(0, n, 10_000):
        store.write([(src, lines[i:i + 10_000])])
    return lines


def _ours(store: LogStore, path: str, typ: str, url: str) -> float:
    """CPU seconds for one DrainWorker to forward everything in the store."""
    cursors = DrainCursors(path)
    uid = f"bench-{typ}-{url}"
    cursors.set(uid, 0)
    obj = StoredObject("LogDrain", "bench/p1", "d", uid, 1, 1, {}, {"dockyard.io/egress-private": "true"},
                       {"type": typ, "url": url, "labels": {"env": "bench"}}, {}, datetime.now(UTC))
    worker = DrainWorker(obj, _NoStatus(), store, cursors, "bench-host")  # type: ignore[arg-type]
    last = store.last_cursor("bench/p1")
    c0 = time.process_time()
    while worker.cursor is None or worker.cursor < last:
        worker.step()
    cpu = time.process_time() - c0
    cursors.close()
    return cpu


def _peer(lines: list[tuple[int, str, str]], how: str, port: int) -> float:
    """CPU seconds for the minimal forwarder (see the module doc)."""
    c0 = time.process_time()
    if how in ("http", "loki"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        for i in range(0, len(lines), BATCH):
            part = lines[i:i + BATCH]
            if how == "http":
                body = "".join(json.dumps({"ts": ts, "app": "web", "stream": st, "text": tx}) + "\n"
                               for ts, st, tx in part).encode()
            else:
                body = json.dumps({"streams": [{"stream": {"app": "web"},
                                                "values": [[str(ts), tx] for ts, _, tx in part]}]}).encode()
            conn.request("POST", "/in", body=body, headers={"Content-Type": "application/json"})
            conn.getresponse().read()
        conn.close()
    else:
        sock = socket.create_connection(("127.0.0.1", port)) if how == "tcp" else \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if how == "udp":
            sock.connect(("127.0.0.1", port))
        for i in range(0, len(lines), BATCH):
            msgs = [f"<14>1 {ts} host bench.p1.web 0 {st} - {tx}".encode() for ts, st, tx in lines[i:i + BATCH]]
            if how == "tcp":
                sock.sendall(b"".join(str(len(m)).encode() + b" " + m for m in msgs))
            else:
                for m in msgs:
                    sock.send(m)
        sock.close()
    return time.process_time() - c0


def run(quick: bool = False) -> dict[str, Any]:
    started = datetime.now(UTC)
    machine = machine_info()
    n = 20_000 if quick else 200_000
    log(f"== drains: CPU per forwarded line, {n:,} stored lines per transport (peer: a minimal forwarder)")
    drains.STATUS_INTERVAL = 1e9   # no store behind the worker here
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    results: dict[str, Any] = {}
    try:
        http_port, tcp_port, udp_port = (int(x) for x in receiver.stdout.readline().split())  # type: ignore[union-attr]
        with tempfile.TemporaryDirectory(prefix="dockyard-bench-drains-") as d:
            path = str(Path(d) / "logs.db")
            store = LogStore(path)
            lines = _fill(store, n)
            text_mb = sum(len(t) for _, _, t in lines) / 1e6
            cases = (("loki", "loki", f"http://127.0.0.1:{http_port}/loki/api/v1/push", "loki", http_port),
                     ("http", "http", f"http://127.0.0.1:{http_port}/in", "http", http_port),
                     ("syslog_tcp", "syslog", f"syslog+tcp://127.0.0.1:{tcp_port}", "tcp", tcp_port),
                     ("syslog_udp", "syslog", f"syslog://127.0.0.1:{udp_port}", "udp", udp_port))
            for key, typ, url, how, port in cases:
                ours = _ours(store, path, typ, url)
                peer = _peer(lines, how, port)
                results[key] = {"lines": n, "cpu_s": round(ours, 3), "lines_per_cpu_s": round(n / ours),
                                "mb_text_per_cpu_s": round(text_mb / ours, 2), "peer_cpu_s": round(peer, 3),
                                "peer_lines_per_cpu_s": round(n / peer), "ratio_cpu_ours_to_peer": ratio(ours, peer)}
                r = results[key]
                log(f"  {key:10s} {r['lines_per_cpu_s']:>9,} lines/CPU-s ({r['mb_text_per_cpu_s']} MB text/CPU-s); "
                    f"peer {r['peer_lines_per_cpu_s']:>9,} lines/CPU-s (ratio ours/peer {r['ratio_cpu_ours_to_peer']})")
            store.close()
    finally:
        receiver.kill()
        receiver.wait(10)
    data = {"transports": results,
            "note": "CPU of the forwarding process only (receivers run in another process); one DrainWorker "
                    "stepping through a LogStore filled with ~60-byte lines, cursor written per batch, status off"}
    write_result(NAME, data, quick=quick, started=started, machine=machine)
    os.sync()
    return data
