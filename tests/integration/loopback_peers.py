"""Peers on 127.0.0.1 for notifier tests: a webhook receiver that records what arrives (unix time,
path, JSON body) and answers with a chosen status and JSON reply, and an SMTP server (aiosmtpd) that
keeps the messages it accepts."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


class Receiver:
    def __init__(self, status: int = 200, reply: dict | None = None) -> None:
        self.received: list[tuple[float, str, dict]] = []
        outer = self
        answer = json.dumps(reply if reply is not None else {"received": True}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.received.append((time.time(), self.path, body))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *a) -> None:  # noqa: ANN002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/dockyard"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, status: str | None = None) -> list[dict]:
        """The JSON bodies received, or those whose `status` field is `status`."""
        return [b for _, _, b in self.received if status is None or b.get("status") == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """An SMTP server on a free loopback port; `messages` holds (from, to, raw message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        with socket.socket() as probe:  # aiosmtpd checks its port by connecting to it: 0 will not do
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"

    def close(self) -> None:
        self._controller.stop()
